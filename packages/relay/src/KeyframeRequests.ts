/**
 * Aggregation of keyframe requests (PLI, RFC 4585 §6.3.1; FIR, RFC 5104 §4.3.1) per stream: the
 * first request goes upstream at once, later ones within `intervalMs` are absorbed. If some were
 * absorbed and no keyframe has passed since, one more request goes up when the interval ends, so
 * a receiver that asked just after a keyframe is not left waiting for the next natural one.
 * Result: at most one upstream request per stream per interval, however many viewers ask.
 */
export interface KeyframeRequestLimiterOptions {
  intervalMs: number;
  /** Sends one request upstream for `ssrc`. */
  forward: (ssrc: number) => void;
  now?: () => number;
}

interface StreamRequests {
  lastForwardMs: number;
  /** Requests absorbed since the last forward and not yet answered by a keyframe. */
  pending: boolean;
  timer: NodeJS.Timeout | null;
}

export class KeyframeRequestLimiter {
  /** Requests sent upstream. */
  forwarded = 0;
  /** Requests absorbed by an earlier one. */
  suppressed = 0;
  readonly #intervalMs: number;
  readonly #forward: (ssrc: number) => void;
  readonly #now: () => number;
  readonly #streams = new Map<number, StreamRequests>();
  #closed = false;

  constructor(opts: KeyframeRequestLimiterOptions) {
    this.#intervalMs = opts.intervalMs;
    this.#forward = opts.forward;
    this.#now = opts.now ?? (() => performance.now());
  }

  /** A receiver asks for a keyframe of `ssrc`. Returns true when the request went upstream now. */
  request(ssrc: number): boolean {
    if (this.#closed) return false;
    const now = this.#now();
    let s = this.#streams.get(ssrc);
    if (s === undefined) {
      s = { lastForwardMs: -Infinity, pending: false, timer: null };
      this.#streams.set(ssrc, s);
    }
    if (now - s.lastForwardMs >= this.#intervalMs) {
      this.#send(ssrc, s, now);
      return true;
    }
    this.suppressed++;
    s.pending = true;
    if (s.timer === null) {
      s.timer = setTimeout(this.#onIntervalEnd, s.lastForwardMs + this.#intervalMs - now, ssrc);
    }
    return false;
  }

  /** A keyframe of `ssrc` went by: the requests absorbed so far are answered. */
  onKeyframe(ssrc: number): void {
    const s = this.#streams.get(ssrc);
    if (s !== undefined) s.pending = false;
  }

  #send(ssrc: number, s: StreamRequests, now: number): void {
    s.lastForwardMs = now;
    s.pending = false;
    this.forwarded++;
    this.#forward(ssrc);
  }

  readonly #onIntervalEnd = (ssrc: number): void => {
    const s = this.#streams.get(ssrc);
    if (s === undefined || this.#closed) return;
    s.timer = null;
    if (!s.pending) return;
    const now = this.#now();
    const wait = s.lastForwardMs + this.#intervalMs - now;
    if (wait > 0) {
      // Timers may fire a little early; never break the one-per-interval promise.
      s.timer = setTimeout(this.#onIntervalEnd, wait, ssrc);
      return;
    }
    this.#send(ssrc, s, now);
  };

  /** Stops all timers; idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of this.#streams.values()) {
      if (s.timer !== null) clearTimeout(s.timer);
      s.timer = null;
    }
    this.#streams.clear();
  }
}
