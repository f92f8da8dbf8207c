import { describe, expect, it } from 'vitest';
import { BitrateMeter } from '../src/index.js';

describe('BitrateMeter', () => {
  it('is unknown until a full window has passed, then gives the window’s rate in kbps', () => {
    const m = new BitrateMeter();
    m.measure(0, 0);
    expect(m.kbps).toBeNull();
    m.measure(999, 40_000);
    expect(m.kbps).toBeNull();
    m.measure(1000, 50_000); // 50 kB in 1 s = 400 kbps
    expect(m.kbps).toBeCloseTo(400, 6);
  });

  it('moves half way to each new window’s rate (a still picture’s drop shows within seconds)', () => {
    const m = new BitrateMeter();
    m.measure(0, 0);
    m.measure(1000, 50_000); // 400 kbps
    m.measure(2000, 50_000 + 12_500); // 100 kbps this second → (400 + 100) / 2
    expect(m.kbps).toBeCloseTo(250, 6);
    m.measure(4000, 62_500); // nothing for 2 s → (250 + 0) / 2
    expect(m.kbps).toBeCloseTo(125, 6);
  });
});
