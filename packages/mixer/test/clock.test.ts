import { describe, expect, it } from 'vitest';
import { ManualTimer, MixingClock } from '../src/index.js';

describe('MixingClock', () => {
  it('runs exactly 180,000 ticks in one simulated hour even when every firing is late', () => {
    const timer = new ManualTimer();
    let count = 0;
    let lastIndex = -1;
    let outOfOrder = 0;
    const clock = new MixingClock(
      (i) => {
        if (i !== lastIndex + 1) outOfOrder++;
        lastIndex = i;
        count++;
      },
      { timer },
    );
    clock.start();
    // setTimeout fires 0–4 ms late, as Node's timers do under load; the deadline stays absolute.
    let seed = 42;
    const jitter = () => {
      seed = (seed * 1_103_515_245 + 12_345) & 0x7fffffff;
      return (seed % 4000) / 1000;
    };
    for (let minute = 0; minute < 60; minute++) timer.advance(60_000, jitter);
    clock.stop();
    expect(count + clock.skippedTicks).toBeGreaterThanOrEqual(179_999);
    expect(count + clock.skippedTicks).toBeLessThanOrEqual(180_000);
    expect(clock.skippedTicks).toBe(0);
    expect(outOfOrder).toBe(0);
  });

  it('a timer that fires up to a millisecond early still runs its tick in that one firing (no second wake-up)', () => {
    const manual = new ManualTimer();
    let arms = 0;
    // Node's timers count whole milliseconds from a cached loop time: they fire a little before a fractional deadline.
    const early = { now: () => manual.now(), setTimeout: (fn: () => void, ms: number) => (arms++, manual.setTimeout(fn, ms > 1 ? ms - 0.9 : ms)), clearTimeout: (h: unknown) => manual.clearTimeout(h) };
    let count = 0;
    const clock = new MixingClock(() => void count++, { timer: early });
    clock.start();
    manual.advance(10_000);
    clock.stop();
    expect(count).toBeGreaterThanOrEqual(500);
    expect(arms).toBeLessThanOrEqual(count + 1);
    expect(clock.skippedTicks).toBe(0);
  });

  it('catches up a stall with at most one extra frame per firing and skips the rest', () => {
    const timer = new ManualTimer();
    // Ticks that run at the same instant ran in one timer firing: a burst.
    const byInstant = new Map<number, number[]>();
    const clock = new MixingClock(
      (i) => {
        const at = timer.now();
        byInstant.set(at, [...(byInstant.get(at) ?? []), i]);
      },
      { timer, maxCatchUpTicks: 1 },
    );
    clock.start();
    timer.advance(200);
    timer.stall(200); // the event loop was blocked for ten ticks
    timer.advance(200);
    clock.stop();
    const bursts = [...byInstant.values()];
    expect(Math.max(...bursts.map((b) => b.length))).toBe(2);
    expect(clock.skippedTicks).toBe(8);
    // The tick index follows wall time across the gap: 600 ms → ticks 0..30 are behind us.
    expect(clock.tickIndex).toBe(31);
    const all = bursts.flat();
    for (let i = 1; i < all.length; i++) expect(all[i]).toBeGreaterThan(all[i - 1]);
  });

  it('keeps ticking when a tick handler throws, and stops when stopped', () => {
    const timer = new ManualTimer();
    let n = 0;
    const clock = new MixingClock(() => {
      n++;
      throw new Error('boom');
    }, { timer });
    clock.start();
    timer.advance(100);
    expect(n).toBe(6);
    clock.stop();
    timer.advance(100);
    expect(n).toBe(6);
    expect(clock.isRunning).toBe(false);
  });

  it('holds a 20 ms cadence on the real timer', async () => {
    const stamps: number[] = [];
    const clock = new MixingClock(() => stamps.push(performance.now()));
    clock.start();
    await new Promise((r) => setTimeout(r, 1000));
    clock.stop();
    // Generous sanity bounds only (2-core CI box): about 50 ticks in one second.
    expect(stamps.length).toBeGreaterThanOrEqual(44);
    expect(stamps.length).toBeLessThanOrEqual(52);
    const span = stamps[stamps.length - 1] - stamps[0];
    expect(span / (stamps.length - 1)).toBeGreaterThan(17);
    expect(span / (stamps.length - 1)).toBeLessThan(23);
  });
});
