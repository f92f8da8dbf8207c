import { TooManyRequestsError } from '@mcu/control';

export interface RateLimiterOptions {
  /** Requests one key may make in a burst. */
  burst: number;
  /** One request is given back this often (ms). */
  refillMs: number;
  /** Keys remembered at most: past it, keys whose bucket is full again are forgotten. */
  maxKeys?: number;
  /** Monotonic milliseconds (a manual clock in tests). */
  now?: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * Token buckets by key (a viewer, a node): `take(key)` passes or throws `TooManyRequestsError`
 * (429) with how long until the next request passes, so a flood is answered at once instead of
 * slowing everyone down. Memory is bounded: idle keys whose bucket is full are forgotten.
 */
export class RateLimiter {
  readonly #buckets = new Map<string, Bucket>();
  readonly #burst: number;
  readonly #refillMs: number;
  readonly #maxKeys: number;
  readonly #now: () => number;
  /** Requests refused (429) since the start. */
  refused = 0;

  constructor(opts: RateLimiterOptions) {
    if (!(opts.burst >= 1 && opts.refillMs > 0)) throw new RangeError('RateLimiter: burst ≥ 1 and refillMs > 0');
    this.#burst = opts.burst;
    this.#refillMs = opts.refillMs;
    this.#maxKeys = opts.maxKeys ?? 100_000;
    this.#now = opts.now ?? (() => performance.now());
  }

  /** Takes one request for `key`, or throws 429 with Retry-After (`what` names the limit in the message). */
  take(key: string, what: string): void {
    const now = this.#now();
    let b = this.#buckets.get(key);
    if (!b) {
      if (this.#buckets.size >= this.#maxKeys) this.#sweep(now);
      b = { tokens: this.#burst, at: now };
      this.#buckets.set(key, b);
    } else {
      b.tokens = Math.min(this.#burst, b.tokens + (now - b.at) / this.#refillMs);
      b.at = now;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return;
    }
    this.refused++;
    const waitMs = (1 - b.tokens) * this.#refillMs;
    throw new TooManyRequestsError(`too many hand requests ${what}: try again in ${Math.ceil(waitMs / 1000)} s`, Math.max(1, Math.ceil(waitMs / 1000)));
  }

  get size(): number {
    return this.#buckets.size;
  }

  #sweep(now: number): void {
    for (const [key, b] of this.#buckets) {
      if (b.tokens + (now - b.at) / this.#refillMs >= this.#burst) this.#buckets.delete(key);
    }
    // Every key busy: forget the oldest half rather than grow without bound.
    if (this.#buckets.size >= this.#maxKeys) {
      let n = this.#buckets.size >> 1;
      for (const key of this.#buckets.keys()) {
        if (n-- <= 0) break;
        this.#buckets.delete(key);
      }
    }
  }
}

/** The two limits every node puts on hand requests: per viewer and for the whole node. */
export class HandLimits {
  readonly viewer: RateLimiter;
  readonly node: RateLimiter;

  constructor(opts: { viewerBurst: number; viewerRefillMs: number; nodeBurst: number; nodePerSecond: number; maxTrackedViewers: number; now?: () => number }) {
    this.viewer = new RateLimiter({ burst: opts.viewerBurst, refillMs: opts.viewerRefillMs, maxKeys: opts.maxTrackedViewers, now: opts.now });
    this.node = new RateLimiter({ burst: opts.nodeBurst, refillMs: 1000 / opts.nodePerSecond, maxKeys: 1, now: opts.now });
  }

  /** The viewer's own limit first (a flooding viewer does not use up the node's). */
  take(viewerKey: string): void {
    this.viewer.take(viewerKey, 'from this viewer');
    this.node.take('node', 'on this node');
  }

  get refused(): number {
    return this.viewer.refused + this.node.refused;
  }
}
