import { describe, expect, it } from 'vitest';
import { RenditionChooser, summarizeOffer } from '../src/index.js';

const RENDITIONS = [
  { id: '360p', bitrateKbps: 500 },
  { id: '720p', bitrateKbps: 1500 },
  { id: '180p', bitrateKbps: 150 },
];
const OPTS = { headroom: 1.25, settleMs: 3000, downAfterMs: 2000, upAfterMs: 6000, lossDown: 0.1, probeAfterMs: 20_000 };

/** Feeds the chooser one report per second from `from` to `to` (ms); returns the switches made. */
function run(c: RenditionChooser, from: number, to: number, estimate: number | undefined, loss?: number): { at: number; to: string }[] {
  const out: { at: number; to: string }[] = [];
  for (let t = from; t <= to; t += 1000) {
    const next = c.update(t, estimate, loss);
    if (next !== null) out.push({ at: t, to: next });
  }
  return out;
}

describe('rendition chosen by the viewer’s bandwidth', () => {
  it('starts at the highest rendition, or the highest the offer’s bandwidth holds', () => {
    expect(new RenditionChooser(RENDITIONS, 0).current).toBe('720p');
    expect(new RenditionChooser(RENDITIONS, 0, 1000).current).toBe('360p');
    expect(new RenditionChooser(RENDITIONS, 0, 100).current).toBe('180p');
    expect(new RenditionChooser(RENDITIONS, 0, 1875).current).toBe('720p');
  });

  it('ignores estimates while the estimator settles, then moves down once a falling estimate holds below', () => {
    const c = new RenditionChooser(RENDITIONS, 0, undefined, OPTS);
    expect(run(c, 0, 2000, 300)).toEqual([]);
    expect(run(c, 3000, 4000, 2500)).toEqual([]);
    // Falls below 720p at 5 s; down after 2 s more, straight to what fits.
    expect(run(c, 5000, 9000, 300)).toEqual([{ at: 7000, to: '180p' }]);
    expect(c.current).toBe('180p');
    expect(c.switches).toBe(1);
  });

  it('leaves a viewer alone while its estimate is below what we send but rising (catching up)', () => {
    const c = new RenditionChooser(RENDITIONS, 0, undefined, OPTS);
    const out: string[] = [];
    for (let t = 0, est = 400; t <= 30_000; t += 1000, est *= 1.08) {
      const next = c.update(t, est, 0);
      if (next) out.push(next);
    }
    expect(out).toEqual([]);
    expect(c.current).toBe('720p');
  });

  it('compares renditions by what they actually send when that is measured', () => {
    const c = new RenditionChooser(RENDITIONS, 0, undefined, OPTS);
    // A still composite: 720p sends 300 kbps, not its 1500 target; an estimate of 450 holds it.
    c.setSending([
      { id: '720p', bitrateKbps: 1500, sendingKbps: 300 },
      { id: '360p', bitrateKbps: 500, sendingKbps: 120 },
      { id: '180p', bitrateKbps: 150, sendingKbps: null },
    ]);
    expect(run(c, 0, 2000, 800)).toEqual([]);
    expect(run(c, 3000, 30_000, 450, 0)).toEqual([]);
    expect(c.current).toBe('720p');
    // Once 720p really sends 1500, the same (now falling) estimate no longer holds it.
    c.setSending([{ id: '720p', bitrateKbps: 1500, sendingKbps: 1500 }]);
    expect(run(c, 31_000, 31_000, 1700)).toEqual([]);
    expect(run(c, 32_000, 35_000, 450, 0)).toEqual([{ at: 34_000, to: '360p' }]); // 360p still sends 120
  });

  it('does not move on a short dip', () => {
    const c = new RenditionChooser(RENDITIONS, 0, undefined, OPTS);
    expect(run(c, 3000, 4000, 300)).toEqual([]);
    expect(run(c, 5000, 30_000, 5000)).toEqual([]);
    expect(c.current).toBe('720p');
  });

  it('moves up one step at a time after the estimate has fitted the next one for a while', () => {
    const c = new RenditionChooser(RENDITIONS, 0, 100, OPTS);
    expect(c.current).toBe('180p');
    const ups = run(c, 0, 30_000, 5000, 0.05); // some loss (below the 10 % that moves down) keeps the probe out of it
    expect(ups.map((u) => u.to)).toEqual(['360p', '720p']);
    expect(ups[0].at).toBe(9000); // settled at 3 s, above since 3 s, 6 s more
  });

  it('moves down one step on sustained loss even without an estimate', () => {
    const c = new RenditionChooser(RENDITIONS, 0, undefined, OPTS);
    expect(run(c, 0, 10_000, undefined, 0.15)).toEqual([
      { at: 5000, to: '360p' },
      { at: 10_000, to: '180p' },
    ]);
  });

  it('probes one step up after a clean spell, and waits twice as long after a failed probe', () => {
    const c = new RenditionChooser(RENDITIONS, 0, 800, OPTS);
    expect(c.current).toBe('360p');
    // The estimate never fits 720p (a receive-side estimate stays near what it gets), loss is 0.
    const first = run(c, 0, 20_000, 800, 0);
    expect(first).toEqual([{ at: 20_000, to: '720p' }]);
    // On 720p the estimate falls to 700: back down, and the next probe waits 40 s.
    expect(run(c, 21_000, 23_000, 900, 0)).toEqual([]);
    const down = run(c, 24_000, 30_000, 700, 0);
    expect(down).toEqual([{ at: 26_000, to: '360p' }]);
    expect(run(c, 27_000, 65_000, 700, 0)).toEqual([]);
    expect(run(c, 66_000, 66_000, 700, 0)).toEqual([{ at: 66_000, to: '720p' }]);
  });

  it('never chooses outside the list and needs at least one rendition', () => {
    expect(() => new RenditionChooser([], 0)).toThrow(/at least one/);
    const c = new RenditionChooser([{ id: 'only', bitrateKbps: 1000 }], 0, undefined, OPTS);
    expect(run(c, 0, 60_000, 10, 0.5)).toEqual([]);
    expect(c.current).toBe('only');
  });
});

describe('bandwidth in a WHEP offer', () => {
  const offer = (extra: { session?: string[]; video?: string[] }) =>
    [
      'v=0',
      'o=- 1 1 IN IP4 127.0.0.1',
      's=-',
      't=0 0',
      ...(extra.session ?? []),
      'a=ice-ufrag:abcd',
      'a=ice-pwd:abcdefghijklmnopqrstuvwx',
      'a=fingerprint:sha-256 00:11',
      'm=audio 9 UDP/TLS/RTP/SAVPF 111',
      'a=mid:0',
      'a=recvonly',
      'm=video 9 UDP/TLS/RTP/SAVPF 96',
      'a=mid:1',
      ...(extra.video ?? []),
      'a=recvonly',
      '',
    ].join('\r\n');

  it('reads b=AS (kbps) and b=TIAS (bps) per section and for the session; TIAS wins', () => {
    expect(summarizeOffer(offer({ video: ['b=AS:800'] })).media[1].bandwidthKbps).toBe(800);
    expect(summarizeOffer(offer({ video: ['b=TIAS:640000', 'b=AS:900'] })).media[1].bandwidthKbps).toBe(640);
    const s = summarizeOffer(offer({ session: ['b=AS:2000'] }));
    expect(s.bandwidthKbps).toBe(2000);
    expect(s.media[1].bandwidthKbps).toBeUndefined();
    expect(summarizeOffer(offer({ video: ['b=AS:0', 'b=CT:99', 'b=AS:abc'] })).media[1].bandwidthKbps).toBeUndefined();
  });
});
