import { describe, expect, it } from 'vitest';
import { SilenceReports } from '../src/SilenceReports.js';

/** The instants (ms) at which a feed silent from t = 0 is reported, checked every 100 ms up to `untilMs`. */
function reportTimes(r: SilenceReports, untilMs: number, from = 0): number[] {
  const out: number[] = [];
  for (let t = from; t <= untilMs; t += 100) if (r.due(t, t - from)) out.push(t);
  return out;
}

describe('SilenceReports', () => {
  it('reports at 300 ms of silence, 250 ms later, then ever more rarely up to every 4 s', () => {
    const r = new SilenceReports({ silentMs: 300, intervalMs: 250, maxIntervalMs: 4000 });
    // Checked every 100 ms: 300, then ≥ 250 later (600), ≥ 500 (1100), ≥ 1000 (2100), 2000 (4100), 4000 (8100), 4000 (12100).
    expect(reportTimes(r, 12_500)).toEqual([300, 600, 1100, 2100, 4100, 8100, 12_100]);
  });

  it('a packet ends the silence: the next one starts over at the short interval', () => {
    const r = new SilenceReports({ silentMs: 300, intervalMs: 250, maxIntervalMs: 4000 });
    expect(reportTimes(r, 5000)).toEqual([300, 600, 1100, 2100, 4100]);
    expect(r.due(5100, 0)).toBe(false);
    expect(reportTimes(r, 6100, 5200)).toEqual([5500, 5800]);
  });

  it('reports nothing while the feed is not silent long enough', () => {
    const r = new SilenceReports();
    for (let t = 0; t < 10_000; t += 100) expect(r.due(t, 299)).toBe(false);
  });
});
