/**
 * A single-consumer async iterator fed by pushes: the shape behind every
 * subscription, KV watch and status stream on both buses. Ending it (from the
 * producer with `end()`, or from the consumer by breaking out of `for await`)
 * runs `onEnd` once, which is where the owner releases what it holds.
 */
/** What an owner needs to end a queue without knowing its item type. */
export interface Endable {
  end(error?: unknown): void;
}

export class AsyncQueue<T> implements AsyncIterableIterator<T>, Endable {
  #items: T[] = [];
  #head = 0;
  #waiter: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | undefined;
  #ended = false;
  #error: unknown = undefined;
  #onEnd: (() => void) | undefined;

  constructor(onEnd?: () => void) {
    this.#onEnd = onEnd;
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** Items pushed but not yet taken by the consumer. */
  get pending(): number {
    return this.#items.length - this.#head;
  }

  push(item: T): boolean {
    if (this.#ended) return false;
    if (this.#waiter) {
      const w = this.#waiter;
      this.#waiter = undefined;
      w.resolve({ value: item, done: false });
    } else {
      this.#items.push(item);
    }
    return true;
  }

  /**
   * Stop accepting items. Items already queued are still delivered; then the
   * iterator finishes, or throws `error` if one is given.
   */
  end(error?: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#error = error;
    const onEnd = this.#onEnd;
    this.#onEnd = undefined;
    if (this.#waiter) {
      const w = this.#waiter;
      this.#waiter = undefined;
      if (error !== undefined) w.reject(error);
      else w.resolve({ value: undefined, done: true });
      this.#error = undefined;
    }
    onEnd?.();
  }

  next(): Promise<IteratorResult<T>> {
    if (this.#head < this.#items.length) {
      const value = this.#items[this.#head++];
      if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
        this.#items = this.#items.slice(this.#head);
        this.#head = 0;
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.#ended) {
      const error = this.#error;
      if (error !== undefined) {
        this.#error = undefined;
        return Promise.reject(error);
      }
      return Promise.resolve({ value: undefined, done: true });
    }
    if (this.#waiter) return Promise.reject(new Error('AsyncQueue supports one pending next() at a time'));
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }

  /** Called by `for await` on break/throw: the consumer is gone, drop what is queued. */
  return(): Promise<IteratorResult<T>> {
    this.#items = [];
    this.#head = 0;
    this.end();
    this.#error = undefined;
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }
}
