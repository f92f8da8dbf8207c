import { describe, expect, it } from 'vitest';
import { TickStats } from '../src/TickStats.js';

describe('TickStats', () => {
  it('percentileOfLast reads only the last N ticks (one phase of a benchmark), across the ring wrap', () => {
    const t = new TickStats(100);
    for (let i = 0; i < 150; i++) t.record(1);
    for (let i = 0; i < 20; i++) t.record(10 + i);
    expect(t.percentileOfLast(99, 20)).toBe(29);
    expect(t.percentileOfLast(50, 20)).toBe(19);
    // The 20 slow ticks are 20 % of the last 100 (all the ring holds, whatever N asks).
    expect(t.percentileOfLast(50, 1000)).toBe(1);
    expect(t.percentileOfLast(99, 1000)).toBe(t.percentile(99));
    expect(t.percentileOfLast(99, 0)).toBe(0);
  });
});
