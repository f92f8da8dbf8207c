/**
 * Graceful shutdown on SIGTERM / SIGINT (Kubernetes sends SIGTERM, then SIGKILL after the pod's
 * grace period): the first signal drains the node (no new traffic, viewers move elsewhere) and
 * exits 0; a second signal exits at once.
 */
import type { Logger } from '@mcu/control';

export interface Drainable {
  drain(opts: { timeoutMs: number }): Promise<unknown>;
  close(): Promise<unknown>;
}

export interface ShutdownOptions {
  /** Longest drain before closing anyway; keep it below the pod's terminationGracePeriodSeconds. */
  drainTimeoutMs?: number;
  /** Runs after the target closed (e.g. close the NATS connection). */
  after?: () => Promise<unknown>;
  signals?: NodeJS.Signals[];
  /** Tests replace process.exit. */
  exit?: (code: number) => void;
}

export const defaultDrainTimeoutMs = 25_000;

/** Installs the handlers; returns a function that removes them. */
export function onShutdownSignals(target: Drainable, logger: Logger, opts: ShutdownOptions = {}): () => void {
  const exit = opts.exit ?? ((code: number) => process.exit(code));
  const signals = opts.signals ?? ['SIGTERM', 'SIGINT'];
  const timeoutMs = opts.drainTimeoutMs ?? defaultDrainTimeoutMs;
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      logger.flush();
      exit(1);
      return;
    }
    stopping = true;
    logger.info({ signal, timeoutMs }, 'shutting down: draining');
    void (async () => {
      let code = 0;
      try {
        await target.drain({ timeoutMs });
        await target.close();
        await opts.after?.();
        logger.info({ signal }, 'drained, exiting');
      } catch (err) {
        logger.error({ err }, 'shutdown failed');
        code = 1;
      }
      logger.flush();
      exit(code);
    })();
  };
  for (const s of signals) process.on(s, handler);
  return () => {
    for (const s of signals) process.off(s, handler);
  };
}
