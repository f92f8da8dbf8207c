/**
 * The mixing clock: one 20 ms tick per event, scheduled against absolute deadlines on a monotonic
 * clock so that it never drifts (tick k is due at start + k × tickMs, whatever happened before).
 *
 * When the event loop stalls, the clock catches up by at most `maxCatchUpTicks` extra ticks per
 * timer firing; older missed ticks are skipped and counted. Receivers would rather conceal a short
 * gap than get a burst of frames that overflows their jitter buffers; the tick index still follows
 * wall time, so RTP timestamps stay aligned with real time across the gap.
 */
export interface Timer {
  /** Monotonic milliseconds (performance.now() in production). */
  now(): number;
  setTimeout(fn: () => void, delayMs: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemTimer: Timer = {
  now: () => performance.now(),
  setTimeout: (fn, delayMs) => setTimeout(fn, delayMs),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export interface MixingClockOptions {
  tickMs?: number;
  /** Extra ticks run back to back in one firing when late; beyond that ticks are skipped. */
  maxCatchUpTicks?: number;
  timer?: Timer;
}

/** How early a timer firing may run its tick (see `fire`). */
const EARLY_MS = 2;

/** Called once per executed tick; `tickIndex` counts wall-clock ticks since start (skipped ones included). */
export type TickHandler = (tickIndex: number) => void;

export class MixingClock {
  readonly tickMs: number;
  private readonly maxCatchUpTicks: number;
  private readonly timer: Timer;
  private startMs = 0;
  private nextTick = 0;
  private handle: unknown = null;
  private running = false;
  /** Ticks executed. */
  executedTicks = 0;
  /** Ticks skipped because the loop was too late to run them without a burst. */
  skippedTicks = 0;
  /** Ticks that ran after their deadline had already passed by at least one tick. */
  lateTicks = 0;

  constructor(
    private readonly onTick: TickHandler,
    opts: MixingClockOptions = {},
  ) {
    this.tickMs = opts.tickMs ?? 20;
    this.maxCatchUpTicks = opts.maxCatchUpTicks ?? 1;
    this.timer = opts.timer ?? systemTimer;
  }

  get isRunning(): boolean {
    return this.running;
  }

  /** Index of the next tick to run; equals elapsed wall time / tickMs once it has caught up. */
  get tickIndex(): number {
    return this.nextTick;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.startMs = this.timer.now();
    this.nextTick = 0;
    this.schedule();
  }

  stop(): void {
    if (!this.running) return;
    this.running = false;
    if (this.handle !== null) this.timer.clearTimeout(this.handle);
    this.handle = null;
  }

  private readonly fire = (): void => {
    this.handle = null;
    if (!this.running) return;
    const now = this.timer.now();
    // The tick whose deadline has most recently passed, or is at most EARLY_MS away: Node's timers
    // count whole milliseconds from the loop's cached time, so they often fire a little before a
    // fractional deadline. Waiting again for that last fraction was a second wake-up for two ticks
    // in three (each about 0.2 ms of CPU on a VM); a tick run that little early mixes the same.
    const dueTick = Math.floor((now - this.startMs + EARLY_MS) / this.tickMs);
    if (dueTick - this.nextTick > this.maxCatchUpTicks) {
      const skip = dueTick - this.nextTick - this.maxCatchUpTicks;
      this.skippedTicks += skip;
      this.nextTick += skip;
    }
    let ran = 0;
    while (this.running && this.nextTick <= dueTick && ran <= this.maxCatchUpTicks) {
      if (dueTick - this.nextTick >= 1) this.lateTicks++;
      const index = this.nextTick++;
      ran++;
      this.executedTicks++;
      try {
        this.onTick(index);
      } catch {
        // A tick handler must never stop the clock; the handler counts its own failures.
      }
    }
    if (this.running) this.schedule();
  };

  private schedule(): void {
    const deadline = this.startMs + this.nextTick * this.tickMs;
    const delay = Math.max(0, deadline - this.timer.now());
    this.handle = this.timer.setTimeout(this.fire, delay);
  }
}

/** A manual timer for tests and simulations: time moves only when `advance` is called. */
export class ManualTimer implements Timer {
  private time = 0;
  private seq = 0;
  private readonly pending = new Map<number, { at: number; fn: () => void }>();

  now(): number {
    return this.time;
  }

  setTimeout(fn: () => void, delayMs: number): unknown {
    const id = ++this.seq;
    this.pending.set(id, { at: this.time + Math.max(0, delayMs), fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.pending.delete(handle as number);
  }

  /** Moves time forward, firing due timers in order; `jitterMs` adds lateness to each firing. */
  advance(ms: number, jitterMs: () => number = () => 0): void {
    const end = this.time + ms;
    for (;;) {
      let nextId = -1;
      let nextAt = Infinity;
      for (const [id, t] of this.pending) {
        if (t.at < nextAt) {
          nextAt = t.at;
          nextId = id;
        }
      }
      if (nextId < 0) break;
      const at = nextAt + jitterMs();
      if (at > end) break;
      const t = this.pending.get(nextId)!;
      this.pending.delete(nextId);
      this.time = Math.max(this.time, at);
      t.fn();
    }
    this.time = end;
  }

  /** Jumps time forward without firing anything (an event-loop stall). */
  stall(ms: number): void {
    this.time += ms;
  }
}
