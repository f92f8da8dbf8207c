import { describe, expect, it } from 'vitest';
import { buildSenderReport, middleNtp32, ntpFromUnixMs, parseRtcp, ReceiverStats } from '../src/index.js';
import type { SenderReport } from '../src/index.js';

const CLOCK = 48_000;
const FRAME_TS = 960; // 20 ms of Opus

describe('ReceiverStats loss accounting (RFC 3550 A.3)', () => {
  it('reports fraction lost per interval and cumulative loss across the sequence wrap', () => {
    const stats = new ReceiverStats({ ssrc: 77, clockRate: CLOCK });
    const first = 65500;
    const dropped = new Set([3, 10, 11, 12, 40, 41, 60, 70, 80, 90]);
    for (let i = 0; i < 100; i++) {
      if (dropped.has(i)) continue;
      expect(stats.onPacket((first + i) & 0xffff, i * FRAME_TS, i * 20)).toBe(true);
    }
    expect(stats.expected).toBe(100);
    expect(stats.received).toBe(90);
    expect(stats.cumulativeLost).toBe(10);
    // 65500 + 99 = 65599 → cycle 1, seq 63
    expect(stats.extendedHighestSeq).toBe(65536 + 63);

    const r1 = stats.reportBlock(2000);
    expect(r1.ssrc).toBe(77);
    expect(r1.fractionLost).toBe(Math.floor((10 * 256) / 100));
    expect(r1.cumulativeLost).toBe(10);
    expect(r1.highestSeq).toBe(65536 + 63);

    // Next interval: 50 more, none lost.
    for (let i = 100; i < 150; i++) stats.onPacket((first + i) & 0xffff, i * FRAME_TS, i * 20);
    const r2 = stats.reportBlock(3000);
    expect(r2.fractionLost).toBe(0);
    expect(r2.cumulativeLost).toBe(10);

    // Then half of 20 lost.
    for (let i = 150; i < 170; i += 2) stats.onPacket((first + i) & 0xffff, i * FRAME_TS, i * 20);
    const r3 = stats.reportBlock(4000);
    // highest is i=168, so 19 expected in the interval, 10 received
    expect(r3.fractionLost).toBe(Math.floor((9 * 256) / 19));
    expect(r3.cumulativeLost).toBe(19);
  });

  it('counts duplicates as received, so cumulative loss can go negative, and fraction stays 0', () => {
    const stats = new ReceiverStats({ ssrc: 1, clockRate: CLOCK });
    for (let i = 0; i < 10; i++) stats.onPacket(i, i * FRAME_TS, i * 20);
    stats.onPacket(5, 5 * FRAME_TS, 300);
    expect(stats.cumulativeLost).toBe(-1);
    const block = stats.reportBlock(400);
    expect(block.cumulativeLost).toBe(-1);
    expect(block.fractionLost).toBe(0);
  });

  it('with minSequential 2 (the RFC default) ignores a source until two packets come in order', () => {
    const stats = new ReceiverStats({ ssrc: 1, clockRate: CLOCK, minSequential: 2 });
    expect(stats.onPacket(100, 0, 0)).toBe(false);
    expect(stats.onPacket(101, FRAME_TS, 20)).toBe(true);
    expect(stats.received).toBe(1);
    expect(stats.expected).toBe(1);
  });

  it('believes a large jump only when the next packet follows it (restarted sender)', () => {
    const stats = new ReceiverStats({ ssrc: 1, clockRate: CLOCK });
    for (let i = 0; i < 10; i++) stats.onPacket(1000 + i, i * FRAME_TS, i * 20);
    expect(stats.onPacket(40000, 0, 300)).toBe(false);
    expect(stats.onPacket(40001, FRAME_TS, 320)).toBe(true);
    expect(stats.extendedHighestSeq).toBe(40001);
    expect(stats.expected).toBe(1);
    expect(stats.cumulativeLost).toBe(0);
  });
});

describe('ReceiverStats interarrival jitter (RFC 3550 A.8)', () => {
  it('is zero for perfectly paced arrivals, even across the timestamp wrap', () => {
    const stats = new ReceiverStats({ ssrc: 1, clockRate: CLOCK });
    const ts0 = 0xffffffff - 10 * FRAME_TS;
    for (let i = 0; i < 50; i++) stats.onPacket(i, (ts0 + i * FRAME_TS) >>> 0, 1000 + i * 20);
    expect(stats.jitter).toBe(0);
    expect(stats.reportBlock(2000).jitter).toBe(0);
  });

  it('converges to the mean transit-time difference for alternating ±5 ms arrivals', () => {
    const stats = new ReceiverStats({ ssrc: 1, clockRate: CLOCK });
    for (let i = 0; i < 400; i++) stats.onPacket(i, i * FRAME_TS, i * 20 + (i % 2 === 0 ? 5 : -5));
    // |D| = 10 ms = 480 timestamp units on every packet after the first.
    expect(stats.jitter).toBeCloseTo(480, 0);
    expect(stats.jitterMs).toBeCloseTo(10, 1);
    expect(stats.reportBlock(9000).jitter).toBe(479); // truncated, still converging from below
  });
});

describe('ReceiverStats LSR/DLSR', () => {
  it('reports the middle NTP bits of the last SR and the delay since it in 1/65536 s', () => {
    const stats = new ReceiverStats({ ssrc: 5, clockRate: CLOCK });
    stats.onPacket(1, 0, 0);
    expect(stats.reportBlock(100)).toMatchObject({ lsr: 0, dlsr: 0 });
    const ntp = ntpFromUnixMs(Date.UTC(2025, 0, 1));
    const wire = buildSenderReport({ ssrc: 5, ntpSec: ntp.sec, ntpFrac: ntp.frac, rtpTimestamp: 0, packetCount: 1, octetCount: 100 });
    const sr = parseRtcp(wire).packets[0] as SenderReport;
    stats.onSenderReport(sr, 1000);
    const block = stats.reportBlock(1500);
    expect(block.lsr).toBe(middleNtp32(ntp.sec, ntp.frac));
    expect(block.dlsr).toBe(32768);
  });
});
