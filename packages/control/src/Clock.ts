/**
 * Time for the control plane: a wall clock plus timers, injectable so that
 * heartbeats, dead-node detection and leases run on a manual clock in tests
 * (deterministic, no sleeping). Production code uses `systemClock`.
 */

export interface TimerHandle {
  /** Idempotent. */
  cancel(): void;
}

export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  setInterval(fn: () => void, ms: number): TimerHandle;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    return { cancel: () => clearTimeout(t) };
  },
  setInterval(fn, ms) {
    const t = setInterval(fn, ms);
    return { cancel: () => clearInterval(t) };
  },
};

interface ManualTimer {
  at: number;
  seq: number;
  fn: () => void;
  every: number | undefined;
  cancelled: boolean;
}

/**
 * A clock that moves only when told to. `advance()` fires due timers in time
 * order and lets promise chains settle after each one, so async work started
 * by a timer (a bus publish, a KV write on the InProcessBus) has finished
 * before the next timer fires. Pass `() => clock.now()` as the InProcessBus
 * clock so KV ttl follows the same time.
 */
export class ManualClock implements Clock {
  #now: number;
  #seq = 0;
  #timers: ManualTimer[] = [];

  constructor(startMs = 1_700_000_000_000) {
    this.#now = startMs;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    return this.#add(fn, ms, undefined);
  }

  setInterval(fn: () => void, ms: number): TimerHandle {
    return this.#add(fn, ms, Math.max(1, ms));
  }

  /** Timers scheduled and not cancelled (intervals count until cancelled). */
  get pendingTimers(): number {
    return this.#timers.filter((t) => !t.cancelled).length;
  }

  /** Moves time forward by `ms`, firing every timer that falls due on the way. */
  async advance(ms: number): Promise<void> {
    const target = this.#now + Math.max(0, ms);
    await settle();
    // Bounded: each pass fires one timer; an interval of at least 1 ms cannot fire more than `ms` times.
    for (let fired = 0; fired < 1_000_000; fired++) {
      const next = this.#nextDue(target);
      if (!next) break;
      this.#now = next.at;
      if (next.every !== undefined) next.at += next.every;
      else next.cancelled = true;
      this.#timers = this.#timers.filter((t) => !t.cancelled);
      next.fn();
      await settle();
    }
    this.#now = target;
    await settle();
  }

  #nextDue(target: number): ManualTimer | undefined {
    let best: ManualTimer | undefined;
    for (const t of this.#timers) {
      if (t.cancelled || t.at > target) continue;
      if (!best || t.at < best.at || (t.at === best.at && t.seq < best.seq)) best = t;
    }
    return best;
  }

  #add(fn: () => void, ms: number, every: number | undefined): TimerHandle {
    const timer: ManualTimer = { at: this.#now + Math.max(0, ms), seq: this.#seq++, fn, every, cancelled: false };
    this.#timers.push(timer);
    return {
      cancel: () => {
        timer.cancelled = true;
      },
    };
  }
}

/** Lets pending promise chains run to completion (two macrotask turns). */
export async function settle(): Promise<void> {
  await new Promise<void>((r) => setImmediate(r));
  await new Promise<void>((r) => setImmediate(r));
}

/** Resolves after `ms` on `clock`, or at once when `signal` aborts (its timer is then cancelled). */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    const done = () => {
      timer.cancel();
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = clock.setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
