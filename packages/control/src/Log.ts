/**
 * Structured logs: one JSON line per lifecycle event (pino), with ids as fields (`node`, `event`,
 * `participant`, `session`, `relay`) so that a log pipeline can follow one event or one viewer.
 * Nothing is logged on the per-packet path. Tests stay quiet (`silent` under vitest) unless
 * MCU_LOG_LEVEL asks for more.
 */
import { pino, type DestinationStream, type Logger as PinoLogger } from 'pino';
import { z } from 'zod';

export const logLevelSchema = z.enum(['trace', 'debug', 'info', 'warn', 'error', 'silent']);
export type LogLevel = z.infer<typeof logLevelSchema>;

export type Logger = PinoLogger;

export interface LoggerOptions {
  level?: LogLevel;
  /** Logged as `name` on every line (e.g. `mixer`, `relay`). */
  name?: string;
  /** Fields on every line (e.g. `{ node: 'relay-1' }`). */
  bindings?: Record<string, unknown>;
  /** Where the lines go (default stdout); tests pass a stream to read them back. */
  destination?: DestinationStream;
}

/** The level when none is given: MCU_LOG_LEVEL, else `silent` under vitest, else `info`. */
export function defaultLogLevel(env: NodeJS.ProcessEnv = process.env): LogLevel {
  const fromEnv = env.MCU_LOG_LEVEL;
  if (fromEnv) {
    const parsed = logLevelSchema.safeParse(fromEnv.toLowerCase());
    if (parsed.success) return parsed.data;
  }
  return env.VITEST ? 'silent' : 'info';
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const level = opts.level === undefined ? defaultLogLevel() : logLevelSchema.parse(opts.level);
  const options = {
    level,
    name: opts.name,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  };
  // Synchronous stdout by default: lines written just before process.exit are not lost.
  const logger = opts.destination ? pino(options, opts.destination) : pino(options);
  return opts.bindings ? logger.child(opts.bindings) : logger;
}
