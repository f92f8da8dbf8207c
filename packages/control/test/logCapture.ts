/** A logger whose JSON lines a test reads back (parsed, in order). */
import { Writable } from 'node:stream';
import { createLogger, type LoggerOptions } from '../src/index.js';

export function captureLog(opts: Omit<LoggerOptions, 'destination'> = {}) {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { lines, logger: createLogger({ level: 'info', ...opts, destination }) };
}
