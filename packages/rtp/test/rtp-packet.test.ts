import { describe, expect, it } from 'vitest';
import {
  buildRtp,
  findHeaderExtension,
  ExtensionLocation,
  isRtcpPacket,
  parseRtp,
  readAudioLevel,
  rewriteRtpHeader,
  RtpHeader,
  rtpPacketLength,
  validateHeaderExtensions,
  writeRtp,
  writeRtpHeader,
  buildSenderReport,
} from '../src/index.js';
import type { RtpDropReason } from '../src/index.js';
import { mulberry32 } from './random.js';

const payload = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]);

function parsed(buf: Uint8Array, length?: number): RtpHeader {
  const h = new RtpHeader();
  expect(parseRtp(buf, h, length)).toBeNull();
  return h;
}

describe('RTP build → parse round trip', () => {
  it('keeps every fixed-header field, CSRCs, marker, one-byte extensions and padding', () => {
    const ext1 = Uint8Array.from([0xaa]);
    const ext14 = Uint8Array.from({ length: 16 }, (_, i) => i + 100);
    const buf = buildRtp(
      {
        payloadType: 111,
        sequenceNumber: 65535,
        timestamp: 0xffffffff,
        ssrc: 0xdeadbeef,
        marker: true,
        csrcs: [1, 0xffffffff, 42],
        extensions: [
          { id: 1, data: ext1 },
          { id: 14, data: ext14 },
        ],
        paddingLength: 7,
      },
      payload,
    );
    const h = parsed(buf);
    expect(h.marker).toBe(true);
    expect(h.payloadType).toBe(111);
    expect(h.sequenceNumber).toBe(65535);
    expect(h.timestamp).toBe(0xffffffff);
    expect(h.ssrc).toBe(0xdeadbeef);
    expect(h.csrcCount).toBe(3);
    expect([...h.csrcs.subarray(0, 3)]).toEqual([1, 0xffffffff, 42]);
    expect(h.hasExtension).toBe(true);
    expect(h.extensionProfile).toBe(0xbede);
    expect(h.padding).toBe(true);
    expect(h.paddingLength).toBe(7);
    expect(buf[buf.length - 1]).toBe(7);
    expect([...buf.subarray(h.payloadOffset, h.payloadOffset + h.payloadLength)]).toEqual([...payload]);
    expect(h.payloadOffset + h.payloadLength + h.paddingLength).toBe(buf.length);

    const loc = new ExtensionLocation();
    const at1 = findHeaderExtension(buf, h, 1, loc);
    expect(loc).toEqual({ offset: at1, length: 1 });
    expect(buf[at1]).toBe(0xaa);
    const at14 = findHeaderExtension(buf, h, 14, loc);
    expect(loc.length).toBe(16);
    expect([...buf.subarray(at14, at14 + 16)]).toEqual([...ext14]);
    expect(findHeaderExtension(buf, h, 2)).toBe(-1);
    expect(validateHeaderExtensions(buf, h)).toBe(true);
  });

  it('writes a minimal packet with marker off, no CSRC, no extension and no padding', () => {
    const buf = buildRtp({ payloadType: 0, sequenceNumber: 0, timestamp: 0, ssrc: 0 }, payload);
    expect(buf.length).toBe(12 + payload.length);
    expect(buf[0]).toBe(0x80);
    const h = parsed(buf);
    expect(h.marker).toBe(false);
    expect(h.hasExtension).toBe(false);
    expect(h.padding).toBe(false);
    expect(h.csrcCount).toBe(0);
    expect(h.payloadOffset).toBe(12);
    expect(h.payloadLength).toBe(payload.length);
  });

  it('switches to the two-byte form for ids above 14, empty data or data over 16 bytes', () => {
    for (const ext of [
      { id: 15, data: Uint8Array.of(9) },
      { id: 3, data: new Uint8Array(0) },
      { id: 3, data: new Uint8Array(17).fill(5) },
    ]) {
      const buf = buildRtp({ payloadType: 96, sequenceNumber: 1, timestamp: 2, ssrc: 3, extensions: [{ id: 2, data: Uint8Array.of(7) }, ext] }, payload);
      const h = parsed(buf);
      expect(h.extensionProfile).toBe(0x1000);
      const loc = new ExtensionLocation();
      expect(findHeaderExtension(buf, h, ext.id, loc)).toBeGreaterThan(0);
      expect(loc.length).toBe(ext.data.length);
      expect([...buf.subarray(loc.offset, loc.offset + loc.length)]).toEqual([...ext.data]);
      expect(buf[findHeaderExtension(buf, h, 2)]).toBe(7);
      expect([...buf.subarray(h.payloadOffset, h.payloadOffset + h.payloadLength)]).toEqual([...payload]);
    }
  });

  it('writes only csrcCount of the CSRCs and reports the bytes written into a larger buffer', () => {
    const out = new Uint8Array(1500).fill(0xee);
    const fields = { payloadType: 8, sequenceNumber: 70000, timestamp: -1, ssrc: 5, csrcs: [10, 20, 30, 40], csrcCount: 2 };
    const n = writeRtp(out, fields, payload, 4);
    expect(n).toBe(12 + 8 + 4);
    expect(n).toBe(rtpPacketLength(fields, 4));
    expect(out[n]).toBe(0xee);
    const h = parsed(out, n);
    expect(h.sequenceNumber).toBe(70000 & 0xffff);
    expect(h.timestamp).toBe(0xffffffff);
    expect([...h.csrcs.subarray(0, h.csrcCount)]).toEqual([10, 20]);
    expect(h.payloadLength).toBe(4);
  });

  it('writes the same header as writeRtp with writeRtpHeader (the payload left to the caller)', () => {
    const a = new Uint8Array(100).fill(0xee);
    const b = new Uint8Array(100).fill(0xee);
    const fields = { payloadType: 111, sequenceNumber: 65537, timestamp: 2 ** 32 + 7, ssrc: 0xfedcba98, marker: true, csrcs: Uint32Array.of(1, 0xffffffff, 3), csrcCount: 3 };
    const n = writeRtpHeader(b, 111, true, 65537, 2 ** 32 + 7, 0xfedcba98, fields.csrcs, 3);
    expect(n).toBe(24);
    expect(writeRtp(a, fields, payload, 4)).toBe(n + 4);
    expect([...b.subarray(0, n)]).toEqual([...a.subarray(0, n)]);
    expect(b[n]).toBe(0xee);
    const h = parsed(a, n + 4);
    expect([h.marker, h.payloadType, h.sequenceNumber, h.timestamp, h.ssrc]).toEqual([true, 111, 1, 7, 0xfedcba98]);
  });

  it('throws RangeError for an output buffer that is too small or fields out of range', () => {
    expect(() => writeRtp(new Uint8Array(20), { payloadType: 1, sequenceNumber: 1, timestamp: 1, ssrc: 1 }, payload)).toThrow(RangeError);
    expect(() => buildRtp({ payloadType: 128, sequenceNumber: 1, timestamp: 1, ssrc: 1 }, payload)).toThrow(RangeError);
    expect(() => buildRtp({ payloadType: 1, sequenceNumber: 1, timestamp: 1, ssrc: 1, csrcs: new Array(16).fill(1) }, payload)).toThrow(RangeError);
    expect(() => buildRtp({ payloadType: 1, sequenceNumber: 1, timestamp: 1, ssrc: 1, extensions: [{ id: 0, data: Uint8Array.of(1) }] }, payload)).toThrow(RangeError);
  });

  it('parses a view into a larger buffer using view indices (byteOffset is respected)', () => {
    const packet = buildRtp({ payloadType: 111, sequenceNumber: 4242, timestamp: 77, ssrc: 99, csrcs: [5] }, payload);
    const big = new Uint8Array(100).fill(0x11);
    big.set(packet, 37);
    const view = big.subarray(37, 37 + packet.length);
    const h = parsed(view);
    expect(h.sequenceNumber).toBe(4242);
    expect(h.csrcs[0]).toBe(5);
    expect([...view.subarray(h.payloadOffset, h.payloadOffset + h.payloadLength)]).toEqual([...payload]);
  });

  it('honours an explicit length shorter than the buffer (receive into a reused datagram buffer)', () => {
    const packet = buildRtp({ payloadType: 111, sequenceNumber: 1, timestamp: 1, ssrc: 1, paddingLength: 3 }, payload);
    const datagram = new Uint8Array(2048).fill(0xff);
    datagram.set(packet);
    const h = parsed(datagram, packet.length);
    expect(h.paddingLength).toBe(3);
    expect(h.payloadLength).toBe(payload.length);
  });
});

describe('RTP drop reasons', () => {
  const good = (): Buffer => buildRtp({ payloadType: 111, sequenceNumber: 1, timestamp: 1, ssrc: 1 }, payload);

  const cases: [string, () => Uint8Array, RtpDropReason][] = [
    ['11 bytes', () => good().subarray(0, 11), 'too_short'],
    ['an empty buffer', () => new Uint8Array(0), 'too_short'],
    ['version 1', () => { const b = good(); b[0] = 0x40; return b; }, 'bad_version'],
    ['version 0 (e.g. a STUN message)', () => { const b = good(); b[0] = 0x00; return b; }, 'bad_version'],
    ['15 CSRCs in a 21-byte packet', () => { const b = good(); b[0] = 0x8f; return b; }, 'bad_csrc_count'],
    ['X set but no room for the extension header', () => { const b = good().subarray(0, 14); b[0] = 0x90; return b; }, 'bad_extension'],
    ['an extension length beyond the packet', () => {
      const b = Buffer.alloc(24); b[0] = 0x90; b[12] = 0xbe; b[13] = 0xde; b[15] = 3; return b;
    }, 'bad_extension'],
    ['a padding count of 0', () => { const b = good(); b[0] |= 0x20; b[b.length - 1] = 0; return b; }, 'bad_padding'],
    ['a padding count larger than the payload', () => { const b = good(); b[0] |= 0x20; b[b.length - 1] = payload.length + 1; return b; }, 'bad_padding'],
    ['P set with nothing after the header', () => { const b = Buffer.alloc(12); b[0] = 0xa0; return b; }, 'bad_padding'],
  ];

  for (const [name, make, reason] of cases) {
    it(`drops ${name} as ${reason} and leaves the header untouched`, () => {
      const h = new RtpHeader();
      h.sequenceNumber = 12345;
      expect(parseRtp(make(), h)).toBe(reason);
      expect(h.sequenceNumber).toBe(12345);
    });
  }

  it('accepts padding that takes the whole payload', () => {
    const b = good();
    b[0] |= 0x20;
    b[b.length - 1] = payload.length;
    const h = parsed(b);
    expect(h.payloadLength).toBe(0);
  });
});

describe('RTP fuzzing', () => {
  it('never throws on 100,000 random and mutated packets, and in-bounds results are consistent', () => {
    const random = mulberry32(0x5eed);
    const header = new RtpHeader();
    const loc = new ExtensionLocation();
    const reasons = new Set(['too_short', 'bad_version', 'bad_csrc_count', 'bad_extension', 'bad_padding']);
    const seen = new Map<string, number>();
    const problems: string[] = [];
    const templates = [
      buildRtp({ payloadType: 111, sequenceNumber: 1, timestamp: 2, ssrc: 3, marker: true, csrcs: [4, 5], extensions: [{ id: 1, data: Uint8Array.of(0x85) }, { id: 3, data: new Uint8Array(5) }], paddingLength: 4 }, payload),
      buildRtp({ payloadType: 96, sequenceNumber: 1, timestamp: 2, ssrc: 3, extensions: [{ id: 1, data: Uint8Array.of(0x85) }, { id: 200, data: new Uint8Array(30) }] }, payload),
      buildRtp({ payloadType: 0, sequenceNumber: 1, timestamp: 2, ssrc: 3 }, new Uint8Array(160)),
    ];
    for (let n = 0; n < 100_000; n++) {
      let buf: Uint8Array;
      if (n % 2 === 0) {
        buf = new Uint8Array(Math.floor(random() * 80));
        for (let i = 0; i < buf.length; i++) buf[i] = Math.floor(random() * 256);
        if (buf.length > 0 && random() < 0.7) buf[0] = 0x80 | (buf[0] & 0x3f); // mostly version 2
      } else {
        const t = templates[n % templates.length];
        buf = Uint8Array.from(t.subarray(0, Math.max(0, t.length - Math.floor(random() * 8 * (random() < 0.3 ? 1 : 0)))));
        const flips = 1 + Math.floor(random() * 4);
        for (let k = 0; k < flips && buf.length > 0; k++) buf[Math.floor(random() * buf.length)] = Math.floor(random() * 256);
      }
      const length = random() < 0.1 ? Math.floor(random() * (buf.length + 5)) : buf.length;
      const result = parseRtp(buf, header, length);
      seen.set(result ?? 'ok', (seen.get(result ?? 'ok') ?? 0) + 1);
      // Plain checks in the loop (expect() per iteration is slow); the first failure is kept.
      if (result === null) {
        const end = Math.min(length, buf.length);
        if (
          header.payloadOffset < 12 ||
          header.payloadLength < 0 ||
          header.payloadOffset + header.payloadLength > end ||
          header.payloadOffset + header.payloadLength + header.paddingLength !== end
        ) {
          problems.push(`payload bounds for ${Buffer.from(buf).toString('hex')} length ${length}`);
        }
        // The extension helpers must stay inside the extension block too.
        validateHeaderExtensions(buf, header);
        for (const id of [1, 3, 200]) {
          const at = findHeaderExtension(buf, header, id, loc);
          if (at >= 0 && (at < header.extensionOffset || at + loc.length > header.extensionOffset + header.extensionLength)) {
            problems.push(`extension ${id} out of block in ${Buffer.from(buf).toString('hex')}`);
          }
        }
        const level = readAudioLevel(buf, header, 1);
        if (!(level >= -1 && level <= 255)) problems.push(`audio level ${level}`);
      } else if (!reasons.has(result)) {
        problems.push(`unknown reason ${String(result)}`);
      }
    }
    expect(problems.slice(0, 3)).toEqual([]);
    // Make sure the corpus exercised both outcomes and every reason.
    for (const r of [...reasons, 'ok']) expect(seen.get(r) ?? 0, r).toBeGreaterThan(0);
  });
});

describe('RTP/RTCP demultiplexing (RFC 5761)', () => {
  it('tells RTCP from RTP by the second byte', () => {
    expect(isRtcpPacket(buildSenderReport({ ssrc: 1, ntpSec: 1, ntpFrac: 1, rtpTimestamp: 1, packetCount: 1, octetCount: 1 }))).toBe(true);
    expect(isRtcpPacket(buildRtp({ payloadType: 111, sequenceNumber: 1, timestamp: 1, ssrc: 1, marker: true }, payload))).toBe(false);
    expect(isRtcpPacket(buildRtp({ payloadType: 96, sequenceNumber: 1, timestamp: 1, ssrc: 1, marker: true }, payload))).toBe(false);
    // Marker + PT 72 is byte 200 = SR: why RFC 5761 forbids PT 64-95 for RTP.
    expect(isRtcpPacket(buildRtp({ payloadType: 72, sequenceNumber: 1, timestamp: 1, ssrc: 1, marker: true }, payload))).toBe(true);
    expect(isRtcpPacket(Uint8Array.of(0x80))).toBe(false);
  });
});

describe('in-place header rewrite for forwarding', () => {
  it('changes only the requested fields and leaves extensions and payload intact', () => {
    const buf = buildRtp(
      { payloadType: 111, sequenceNumber: 10, timestamp: 1000, ssrc: 1, marker: false, extensions: [{ id: 1, data: Uint8Array.of(0x8a) }] },
      payload,
    );
    const before = Uint8Array.from(buf);
    const fields = { sequenceNumber: 65536 + 5, timestamp: -2, ssrc: 0xcafebabe };
    expect(rewriteRtpHeader(buf, fields)).toBe(true);
    let h = parsed(buf);
    expect(h.sequenceNumber).toBe(5);
    expect(h.timestamp).toBe(0xfffffffe);
    expect(h.ssrc).toBe(0xcafebabe);
    expect(h.payloadType).toBe(111);
    expect(h.marker).toBe(false);
    expect(readAudioLevel(buf, h, 1)).toBe(0x8a);
    expect([...buf.subarray(12)]).toEqual([...before.subarray(12)]);

    rewriteRtpHeader(buf, { marker: true });
    h = parsed(buf);
    expect(h.marker).toBe(true);
    expect(h.payloadType).toBe(111);
    rewriteRtpHeader(buf, { payloadType: 100 });
    h = parsed(buf);
    expect(h.marker).toBe(true);
    expect(h.payloadType).toBe(100);
  });

  it('refuses a buffer shorter than the fixed header', () => {
    const short = new Uint8Array(11);
    expect(rewriteRtpHeader(short, { sequenceNumber: 1 })).toBe(false);
    expect([...short]).toEqual(new Array(11).fill(0));
  });
});
