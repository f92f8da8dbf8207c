/** Test helpers: read async iterables without ending them, and bounded waits. */

/**
 * Drains an async iterable in the background into `items`, so a test can wait
 * for the n-th item without holding a pending `next()` (breaking out of a
 * `for await` would end the subscription under test).
 */
export class Collector<T> {
  readonly items: T[] = [];
  done = false;
  error: unknown = undefined;
  #wake = new Set<() => void>();

  constructor(iterable: AsyncIterable<T>) {
    void (async () => {
      try {
        for await (const item of iterable) {
          this.items.push(item);
          this.#notify();
        }
      } catch (err) {
        this.error = err;
      }
      this.done = true;
      this.#notify();
    })();
  }

  #notify(): void {
    for (const wake of [...this.#wake]) wake();
  }

  /** Resolves once `predicate(items)` holds; rejects after `timeoutMs` saying what arrived. */
  async until(predicate: (items: T[]) => boolean, timeoutMs = 3000, what = 'condition'): Promise<T[]> {
    if (predicate(this.items)) return this.items;
    return new Promise<T[]>((resolve, reject) => {
      const wake = () => {
        if (predicate(this.items)) {
          cleanup();
          resolve(this.items);
        } else if (this.done) {
          cleanup();
          reject(new Error(`iterator ended before ${what}; got ${this.items.length} items${this.error ? `, error ${String(this.error)}` : ''}`));
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; got ${this.items.length} items`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.#wake.delete(wake);
      };
      this.#wake.add(wake);
    });
  }

  count(n: number, timeoutMs = 3000): Promise<T[]> {
    return this.until((items) => items.length >= n, timeoutMs, `${n} items`);
  }

  async ended(timeoutMs = 3000): Promise<void> {
    await this.until(() => this.done, timeoutMs, 'the end');
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Retries `fn` until it resolves, for at most `timeoutMs`; rethrows the last error. */
export async function eventually<T>(fn: () => Promise<T>, timeoutMs = 10_000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(intervalMs);
    }
  }
}
