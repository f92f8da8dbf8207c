import { describe, expect, it } from 'vitest';
import {
  buildBye,
  buildCompound,
  buildFir,
  buildNack,
  buildPli,
  buildReceiverReport,
  buildRemb,
  buildSdes,
  buildSenderReport,
  middleNtp32,
  ntpFromUnixMs,
  parseRtcp,
  roundTripTimeMs,
  unixMsFromNtp,
} from '../src/index.js';
import type { RtcpPacket, ReportBlock } from '../src/index.js';
import { mulberry32 } from './random.js';

const blockA: ReportBlock = { ssrc: 0x11111111, fractionLost: 25, cumulativeLost: 1234, highestSeq: 0x0001_0005, jitter: 480, lsr: 0xabcd1234, dlsr: 32768 };
const blockB: ReportBlock = { ssrc: 0xffffffff, fractionLost: 0, cumulativeLost: -3, highestSeq: 7, jitter: 0, lsr: 0, dlsr: 0 };

function only<T extends RtcpPacket['type']>(buf: Uint8Array, type: T): Extract<RtcpPacket, { type: T }> {
  const { packets, error } = parseRtcp(buf);
  expect(error).toBeNull();
  expect(packets).toHaveLength(1);
  expect(packets[0].type).toBe(type);
  return packets[0] as Extract<RtcpPacket, { type: T }>;
}

describe('RTCP compound round trips', () => {
  it('SR with report blocks + SDES CNAME', () => {
    const sr = { ssrc: 0xdeadbeef, ntpSec: 0xe8000000, ntpFrac: 0x80000000, rtpTimestamp: 0xfffffff0, packetCount: 5000, octetCount: 600000, reports: [blockA, blockB] };
    const compound = buildCompound([buildSenderReport(sr), buildSdes(0xdeadbeef, 'mixer-1@mcu.example')]);
    const { packets, error } = parseRtcp(compound);
    expect(error).toBeNull();
    expect(packets).toEqual([
      { type: 'sr', ...sr },
      { type: 'sdes', chunks: [{ ssrc: 0xdeadbeef, cname: 'mixer-1@mcu.example' }] },
    ]);
  });

  it('SDES CNAMEs of every length keep 32-bit alignment and a terminating null', () => {
    for (let len = 0; len <= 9; len++) {
      const cname = 'x'.repeat(len) + 'é';
      const buf = buildSdes(7, cname);
      expect(buf.length % 4).toBe(0);
      expect(only(buf, 'sdes').chunks).toEqual([{ ssrc: 7, cname }]);
    }
  });

  it('RR with and without report blocks', () => {
    expect(only(buildReceiverReport({ ssrc: 42, reports: [blockB, blockA] }), 'rr')).toEqual({ type: 'rr', ssrc: 42, reports: [blockB, blockA] });
    expect(only(buildReceiverReport({ ssrc: 43 }), 'rr')).toEqual({ type: 'rr', ssrc: 43, reports: [] });
  });

  it('NACK of more than 17 sequence numbers across the 65535 → 0 wrap, unordered and repeated', () => {
    const lost: number[] = [];
    for (let s = 65530; s < 65536; s++) lost.push(s);
    for (let s = 0; s <= 20; s++) lost.push(s);
    const shuffled = [...lost].reverse();
    shuffled.push(3, 65533);
    const buf = buildNack(1, 2, shuffled);
    // 27 consecutive numbers need two PID/BLP pairs (17 + 10): 12 + 2 × 4 bytes.
    expect(buf.length).toBe(20);
    const nack = only(buf, 'nack');
    expect(nack.senderSsrc).toBe(1);
    expect(nack.mediaSsrc).toBe(2);
    expect(nack.lost).toEqual(lost);
  });

  it('NACK of sparse sequence numbers uses one pair each', () => {
    const buf = buildNack(0xffffffff, 9, [1000, 5, 100]);
    expect(buf.length).toBe(12 + 3 * 4);
    expect(only(buf, 'nack').lost).toEqual([5, 100, 1000]);
  });

  it('PLI', () => {
    expect(only(buildPli(10, 20), 'pli')).toEqual({ type: 'pli', senderSsrc: 10, mediaSsrc: 20 });
  });

  it('FIR with several entries', () => {
    const entries = [{ ssrc: 0xaaaaaaaa, seqNr: 255 }, { ssrc: 3, seqNr: 0 }];
    expect(only(buildFir(10, entries), 'fir')).toEqual({ type: 'fir', senderSsrc: 10, entries });
  });

  it('REMB, exact when the bitrate fits 18 bits of mantissa and rounded down otherwise', () => {
    expect(only(buildRemb(5, 1_500_000, [1, 2, 3]), 'remb')).toEqual({ type: 'remb', senderSsrc: 5, bitrate: 1_500_000, ssrcs: [1, 2, 3] });
    const odd = 123_456_789;
    const { bitrate } = only(buildRemb(5, odd, []), 'remb');
    expect(bitrate).toBeLessThanOrEqual(odd);
    expect(bitrate).toBeGreaterThan(odd * (1 - 2 ** -17));
  });

  it('BYE with and without a reason', () => {
    expect(only(buildBye([1, 2], 'event ended'), 'bye')).toEqual({ type: 'bye', ssrcs: [1, 2], reason: 'event ended' });
    expect(only(buildBye([0xffffffff]), 'bye')).toEqual({ type: 'bye', ssrcs: [0xffffffff], reason: null });
  });

  it('a compound of everything comes back in order', () => {
    const parts = [
      buildReceiverReport({ ssrc: 1, reports: [blockA] }),
      buildSdes(1, 'c'),
      buildNack(1, 2, [7]),
      buildPli(1, 2),
      buildFir(1, [{ ssrc: 2, seqNr: 1 }]),
      buildRemb(1, 300_000, [2]),
      buildBye([1]),
    ];
    const { packets, error } = parseRtcp(buildCompound(parts));
    expect(error).toBeNull();
    expect(packets.map((p) => p.type)).toEqual(['rr', 'sdes', 'nack', 'pli', 'fir', 'remb', 'bye']);
  });
});

describe('RTCP packets we do not decode', () => {
  it('APP, transport-cc and non-REMB application feedback are reported as unknown with their bytes', () => {
    const app = Buffer.from([0x81, 204, 0, 2, 0, 0, 0, 1, 0x41, 0x42, 0x43, 0x44]);
    const twcc = Buffer.from([0x8f, 205, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]);
    const afb = Buffer.from([0x8f, 206, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0, 0x58, 0x59, 0x5a, 0x5b]);
    const { packets, error } = parseRtcp(buildCompound([app, twcc, afb, buildPli(1, 2)]));
    expect(error).toBeNull();
    expect(packets.map((p) => (p.type === 'unknown' ? [p.packetType, p.fmt, p.bytes.length] : p.type))).toEqual([
      [204, 1, 12],
      [205, 15, 12],
      [206, 15, 16],
      'pli',
    ]);
  });
});

describe('malformed RTCP', () => {
  it('reports too_short, bad_version and bad_length', () => {
    expect(parseRtcp(Uint8Array.of(0x80, 200, 0))).toEqual({ packets: [], error: 'too_short' });
    const badVersion = buildPli(1, 2);
    badVersion[0] = 0x41;
    expect(parseRtcp(badVersion).error).toBe('bad_version');
    const tooLong = buildPli(1, 2);
    tooLong[3] = 9;
    expect(parseRtcp(tooLong).error).toBe('bad_length');
  });

  it('keeps the packets before the damage', () => {
    const compound = buildCompound([buildNack(1, 2, [5]), Buffer.from([0x80, 201])]);
    const { packets, error } = parseRtcp(compound);
    expect(error).toBe('bad_length');
    expect(packets.map((p) => p.type)).toEqual(['nack']);
  });

  it('rejects an SR whose report count does not fit its length', () => {
    const sr = buildSenderReport({ ssrc: 1, ntpSec: 1, ntpFrac: 1, rtpTimestamp: 1, packetCount: 1, octetCount: 1, reports: [blockA] });
    sr[0] = 0x82; // claims two report blocks
    expect(parseRtcp(sr).error).toBe('bad_length');
  });

  it('removes valid padding and rejects impossible padding', () => {
    const rr = buildReceiverReport({ ssrc: 9 });
    const padded = Buffer.concat([rr, Buffer.from([0, 0, 0, 4])]);
    padded[0] |= 0x20;
    padded.writeUInt16BE(padded.length / 4 - 1, 2);
    expect(parseRtcp(padded)).toEqual({ packets: [{ type: 'rr', ssrc: 9, reports: [] }], error: null });
    padded[padded.length - 1] = 0;
    expect(parseRtcp(padded).error).toBe('bad_length');
    padded[padded.length - 1] = 200;
    expect(parseRtcp(padded).error).toBe('bad_length');
  });

  it('never throws on 50,000 random or mutated buffers', () => {
    const random = mulberry32(7);
    const valid = buildCompound([
      buildSenderReport({ ssrc: 1, ntpSec: 2, ntpFrac: 3, rtpTimestamp: 4, packetCount: 5, octetCount: 6, reports: [blockA] }),
      buildSdes(1, 'cname'),
      buildNack(1, 2, [1, 2, 40]),
      buildRemb(1, 1e6, [2]),
      buildFir(1, [{ ssrc: 2, seqNr: 1 }]),
      buildBye([1], 'bye'),
    ]);
    const outcomes = new Set<string>();
    for (let n = 0; n < 50_000; n++) {
      let buf: Uint8Array;
      if (n % 2 === 0) {
        buf = new Uint8Array(Math.floor(random() * 64));
        for (let i = 0; i < buf.length; i++) buf[i] = Math.floor(random() * 256);
        if (buf.length > 0 && random() < 0.7) buf[0] = 0x80 | (buf[0] & 0x3f);
      } else {
        buf = Uint8Array.from(valid.subarray(0, valid.length - (random() < 0.2 ? Math.floor(random() * 40) : 0)));
        for (let k = 0; k < 3; k++) buf[Math.floor(random() * buf.length)] = Math.floor(random() * 256);
      }
      const { packets, error } = parseRtcp(buf);
      outcomes.add(error ?? 'ok');
      if (!Array.isArray(packets)) throw new Error('packets must be an array');
    }
    expect([...outcomes].sort()).toEqual(['bad_length', 'bad_version', 'ok', 'too_short']);
  });
});

describe('NTP time', () => {
  it('maps the Unix epoch to NTP seconds 2208988800', () => {
    expect(ntpFromUnixMs(0)).toEqual({ sec: 2_208_988_800, frac: 0 });
    expect(ntpFromUnixMs(500)).toEqual({ sec: 2_208_988_800, frac: 0x80000000 });
  });

  it('round-trips today and a time after the 2036 NTP era rollover', () => {
    for (const ms of [Date.UTC(2025, 5, 1, 12, 0, 0, 123), Date.UTC(2040, 0, 1, 0, 0, 0, 999)]) {
      const { sec, frac } = ntpFromUnixMs(ms);
      expect(sec).toBeLessThan(2 ** 32);
      expect(unixMsFromNtp(sec, frac)).toBeCloseTo(ms, 3);
    }
    expect(ntpFromUnixMs(Date.UTC(2040, 0, 1)).sec).toBeLessThan(0x80000000);
  });

  it('takes the middle 32 bits for LSR', () => {
    expect(middleNtp32(0x1234abcd, 0xef015678)).toBe(0xabcdef01);
  });

  it('computes round-trip time from LSR and DLSR', () => {
    const sentAt = Date.UTC(2025, 0, 1);
    const ntp = ntpFromUnixMs(sentAt);
    // The receiver held our SR for 100 ms; its report reaches us 150 ms after we sent the SR.
    const block = { ...blockB, lsr: middleNtp32(ntp.sec, ntp.frac), dlsr: (100 / 1000) * 65536 };
    expect(roundTripTimeMs(block, sentAt + 150)).toBeCloseTo(50, 0);
    expect(roundTripTimeMs({ ...block, lsr: 0 }, sentAt + 150)).toBe(-1);
  });
});
