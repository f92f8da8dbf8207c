export interface CodecPoolOptions {
  /**
   * Most idle items kept for reuse; items released beyond it are closed. Bounds what a
   * burst of joins leaves behind (an Opus decoder holds ~18 KB, an encoder ~30 KB).
   */
  max?: number;
}

const defaultMaxIdle = 128;

/**
 * Reuses decoders and encoders as participants come and go, so a join costs no libopus
 * allocation in the steady state. Released items are reset (when they have reset()) and
 * handed out again; close() closes every item the pool created, in use or idle.
 */
export class CodecPool<T extends { reset?(): void; close(): void }> {
  readonly #create: () => T;
  readonly #maxIdle: number;
  readonly #idle: T[] = [];
  readonly #inUse = new Set<T>();
  #closed = false;

  constructor(create: () => T, opts: CodecPoolOptions = {}) {
    const max = opts.max ?? defaultMaxIdle;
    if (!(max >= 0)) throw new RangeError(`max must be >= 0, not ${max}`);
    this.#create = create;
    this.#maxIdle = max;
  }

  /** Items created and not yet closed: in use plus idle. */
  get size(): number {
    return this.#inUse.size + this.#idle.length;
  }

  /** Items waiting for reuse. */
  get idle(): number {
    return this.#idle.length;
  }

  /** An idle item (most recently released first), or a new one. */
  acquire(): T {
    if (this.#closed) throw Object.assign(new Error('CodecPool is closed'), { code: 'ERR_CLOSED' });
    const item = this.#idle.pop() ?? this.#create();
    this.#inUse.add(item);
    return item;
  }

  /** Returns an item from acquire(); releasing it twice or to another pool throws. */
  release(item: T): void {
    if (this.#closed) {
      item.close(); // already closed by close(); idempotent
      return;
    }
    if (!this.#inUse.delete(item)) {
      throw new Error('CodecPool.release: item is not in use from this pool (released twice?)');
    }
    if (this.#idle.length >= this.#maxIdle) {
      item.close();
      return;
    }
    try {
      item.reset?.();
    } catch {
      // An item that cannot reset (e.g. closed by its user) must not be handed out again.
      item.close();
      return;
    }
    this.#idle.push(item);
  }

  /** Closes every item, idle and in use; idempotent. Releasing after close() is harmless. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const item of this.#idle) item.close();
    for (const item of this.#inUse) item.close();
    this.#idle.length = 0;
    this.#inUse.clear();
  }
}
