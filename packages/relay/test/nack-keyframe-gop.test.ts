import { afterEach, describe, expect, it } from 'vitest';
import { GopCache, KeyframeRequestLimiter, NackGenerator, PacketArrival } from '../src/index.js';
import { sleep } from './helpers.js';

describe('NackGenerator', () => {
  it('waits the reordering delay, then NACKs each gap once per retry interval, at most N times', () => {
    const g = new NackGenerator({ nackDelayMs: 5, nackRetryIntervalMs: 30, nackMaxAttempts: 3 });
    g.onPacket(100, 0);
    g.onPacket(103, 1); // 101, 102 missing
    const out: number[] = [];
    expect(g.collect(3, out)).toBe(0); // still within the reordering delay
    expect(g.collect(6, out)).toBe(2);
    expect(out).toEqual([101, 102]);
    out.length = 0;
    expect(g.collect(20, out)).toBe(0); // de-duplicated until the retry interval
    expect(g.collect(36, out)).toBe(2);
    expect(g.collect(66, out)).toBe(2);
    expect(g.collect(96, out)).toBe(0); // three attempts made: given up
    expect(g.pending).toBe(0);
    expect(g.gaveUp).toBe(2);
  });

  it('a reordered packet within the delay is never NACKed; a NACKed one that arrives counts as recovered', () => {
    const g = new NackGenerator({ nackDelayMs: 5 });
    g.onPacket(1, 0);
    g.onPacket(3, 0);
    g.onPacket(5, 0);
    expect(g.onPacket(2, 2)).toBe(PacketArrival.InOrder);
    const out: number[] = [];
    g.collect(10, out);
    expect(out).toEqual([4]);
    expect(g.onPacket(4, 12)).toBe(PacketArrival.Recovered);
    expect(g.onPacket(4, 13)).toBe(PacketArrival.Duplicate);
    expect(g.pending).toBe(0);
  });

  it('gaps across 65535 → 0 are found; a huge jump is a restart, not 30 000 NACKs', () => {
    const g = new NackGenerator({ nackDelayMs: 0 });
    g.onPacket(65534, 0);
    g.onPacket(1, 0); // 65535 and 0 missing
    const out: number[] = [];
    g.collect(1, out);
    expect(out).toEqual([65535, 0]);
    g.onPacket(30_000, 2);
    expect(g.pending).toBe(0);
  });

  it('requestMissing: asks upstream for what this stream lacks too, not for what it had', () => {
    const g = new NackGenerator({ nackDelayMs: 50, nackMaxAttempts: 1 });
    for (const s of [10, 11, 13]) g.onPacket(s, 0);
    expect(g.requestMissing(11, 1)).toBe(false); // had it
    expect(g.requestMissing(14, 1)).toBe(false); // not sent yet
    expect(g.requestMissing(12, 1)).toBe(true); // missing here too: due at once, despite the delay
    const out: number[] = [];
    g.collect(1, out);
    expect(out).toEqual([12]);
    g.collect(100, out); // gives up after one attempt
    expect(g.pending).toBe(0);
    expect(g.requestMissing(12, 101)).toBe(true); // a child asks again: asked again upstream
  });
});

describe('KeyframeRequestLimiter', () => {
  let limiter: KeyframeRequestLimiter | null = null;
  afterEach(() => limiter?.close());

  it('forwards the first request, absorbs the rest of the interval, and sends one trailing request if no keyframe answered them', async () => {
    const sent: number[] = [];
    const t0 = performance.now();
    limiter = new KeyframeRequestLimiter({ intervalMs: 100, forward: () => sent.push(performance.now() - t0) });
    expect(limiter.request(5)).toBe(true);
    for (let i = 0; i < 20; i++) expect(limiter.request(5)).toBe(false);
    expect(limiter.request(6)).toBe(true); // another stream has its own budget
    expect(sent.length).toBe(2);
    await sleep(160);
    expect(sent.length).toBe(3);
    expect(sent[2]).toBeGreaterThanOrEqual(99);
    expect(limiter.forwarded).toBe(3);
    expect(limiter.suppressed).toBe(20);
  });

  it('a keyframe passing by answers the absorbed requests: no trailing request', async () => {
    let sent = 0;
    limiter = new KeyframeRequestLimiter({ intervalMs: 50, forward: () => sent++ });
    limiter.request(1);
    limiter.request(1);
    limiter.onKeyframe(1);
    await sleep(80);
    expect(sent).toBe(1);
  });

  it('close() clears the pending timers and is idempotent', () => {
    let sent = 0;
    limiter = new KeyframeRequestLimiter({ intervalMs: 10_000, forward: () => sent++ });
    limiter.request(1);
    limiter.request(1);
    const before = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    limiter.close();
    limiter.close();
    expect(process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length).toBe(before - 1);
    expect(limiter.request(1)).toBe(false);
  });
});

describe('GopCache', () => {
  it('keeps the packets since the last keyframe, rewinds at the next one, and stops caching a group that outgrows it', () => {
    const gop = new GopCache(100);
    gop.append(Uint8Array.of(9), 1); // before any keyframe: ignored
    expect(gop.packetCount).toBe(0);
    gop.startKeyframe(new Uint8Array(40).fill(1), 40);
    gop.append(new Uint8Array(30).fill(2), 30);
    expect(gop.packetCount).toBe(2);
    expect(gop.bytes).toBe(70);
    expect([...gop.packet(1)]).toEqual(new Array(30).fill(2));
    gop.append(new Uint8Array(40).fill(3), 40); // 110 > 100
    expect(gop.packetCount).toBe(0);
    expect(gop.overflows).toBe(1);
    gop.append(new Uint8Array(10), 10); // still no group
    expect(gop.packetCount).toBe(0);
    gop.startKeyframe(new Uint8Array(50).fill(4), 20); // only `length` bytes are kept
    expect(gop.bytes).toBe(20);
    expect(gop.packet(0).length).toBe(20);
  });
});
