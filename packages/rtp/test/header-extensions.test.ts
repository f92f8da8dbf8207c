import { describe, expect, it } from 'vitest';
import {
  audioLevelExtension,
  audioLevelOf,
  buildRtp,
  dBovToLinear,
  ExtensionLocation,
  findHeaderExtension,
  parseRtp,
  readAudioLevel,
  RtpHeader,
  validateHeaderExtensions,
  voiceActivityOf,
} from '../src/index.js';

/** An RTP packet with a hand-written extension block (profile + raw element bytes). */
function withExtensionBlock(profile: number, elements: number[]): { buf: Uint8Array; h: RtpHeader } {
  const words = Math.ceil(elements.length / 4);
  const buf = new Uint8Array(12 + 4 + words * 4 + 2);
  buf[0] = 0x90;
  buf[1] = 111;
  buf[12] = profile >> 8;
  buf[13] = profile & 0xff;
  buf[15] = words;
  buf.set(elements, 16);
  buf[buf.length - 2] = 0xab; // payload
  buf[buf.length - 1] = 0xcd;
  const h = new RtpHeader();
  expect(parseRtp(buf, h)).toBeNull();
  return { buf, h };
}

describe('RFC 8285 one-byte header extensions', () => {
  it('skips padding bytes between elements', () => {
    // id 1 len 1, two padding bytes, id 2 len 2
    const { buf, h } = withExtensionBlock(0xbede, [0x10, 0x55, 0, 0, 0x21, 0x66, 0x77]);
    const loc = new ExtensionLocation();
    expect(findHeaderExtension(buf, h, 1, loc)).toBe(17);
    expect(loc.length).toBe(1);
    expect(findHeaderExtension(buf, h, 2, loc)).toBe(21);
    expect(loc.length).toBe(2);
    expect([...buf.subarray(21, 23)]).toEqual([0x66, 0x77]);
    expect(validateHeaderExtensions(buf, h)).toBe(true);
  });

  it('stops at id 15: elements after it are absent', () => {
    const { buf, h } = withExtensionBlock(0xbede, [0x10, 0x55, 0xf0, 0x21, 0x66, 0x77]);
    expect(findHeaderExtension(buf, h, 1)).toBe(17);
    expect(findHeaderExtension(buf, h, 2)).toBe(-1);
    expect(validateHeaderExtensions(buf, h)).toBe(true);
  });

  it('treats an element whose length runs past the block as absent, and validation fails', () => {
    // id 1 len 1 ok, then id 2 claiming 16 bytes in a 8-byte block
    const { buf, h } = withExtensionBlock(0xbede, [0x10, 0x55, 0x2f, 1, 2, 3, 4, 5]);
    expect(findHeaderExtension(buf, h, 1)).toBe(17);
    const loc = new ExtensionLocation();
    loc.offset = 99;
    expect(findHeaderExtension(buf, h, 2, loc)).toBe(-1);
    expect(loc).toEqual({ offset: -1, length: 0 });
    expect(validateHeaderExtensions(buf, h)).toBe(false);
  });

  it('does not look up ids that the one-byte form cannot carry', () => {
    const { buf, h } = withExtensionBlock(0xbede, [0x10, 0x55, 0, 0]);
    expect(findHeaderExtension(buf, h, 0)).toBe(-1);
    expect(findHeaderExtension(buf, h, 15)).toBe(-1);
    expect(findHeaderExtension(buf, h, 16)).toBe(-1);
  });
});

describe('RFC 8285 two-byte header extensions', () => {
  it('finds elements with any appbits in the profile, including zero-length ones', () => {
    // id 200 len 0, padding, id 3 len 2
    const { buf, h } = withExtensionBlock(0x1003, [200, 0, 0, 3, 2, 0x66, 0x77]);
    const loc = new ExtensionLocation();
    expect(findHeaderExtension(buf, h, 200, loc)).toBe(18);
    expect(loc.length).toBe(0);
    expect(findHeaderExtension(buf, h, 3, loc)).toBe(21);
    expect(loc.length).toBe(2);
    expect(validateHeaderExtensions(buf, h)).toBe(true);
  });

  it('treats a truncated element as absent', () => {
    const { buf, h } = withExtensionBlock(0x1000, [3, 9, 1, 2]);
    expect(findHeaderExtension(buf, h, 3)).toBe(-1);
    expect(validateHeaderExtensions(buf, h)).toBe(false);
  });
});

describe('non-RFC 8285 extension blocks', () => {
  it('are opaque: no elements, but valid', () => {
    const { buf, h } = withExtensionBlock(0x1234, [0x10, 0x55, 0, 0]);
    expect(findHeaderExtension(buf, h, 1)).toBe(-1);
    expect(validateHeaderExtensions(buf, h)).toBe(true);
  });

  it('packets without an extension have no elements', () => {
    const buf = buildRtp({ payloadType: 111, sequenceNumber: 1, timestamp: 1, ssrc: 1 }, Uint8Array.of(1));
    const h = new RtpHeader();
    parseRtp(buf, h);
    expect(findHeaderExtension(buf, h, 1)).toBe(-1);
    expect(validateHeaderExtensions(buf, h)).toBe(true);
  });
});

describe('RFC 6464 audio level', () => {
  const header = new RtpHeader();
  const packet = (extensions?: { id: number; data: Uint8Array }[]): Buffer => {
    const buf = buildRtp({ payloadType: 111, sequenceNumber: 1, timestamp: 1, ssrc: 1, extensions }, Uint8Array.of(0xfc));
    expect(parseRtp(buf, header)).toBeNull();
    return buf;
  };

  it('reads level and voice activity from the negotiated id', () => {
    const buf = packet([{ id: 3, data: Uint8Array.of(7, 7) }, audioLevelExtension(42, true, 5)]);
    const x = readAudioLevel(buf, header, 5);
    expect(x).toBe(0x80 | 42);
    expect(audioLevelOf(x)).toBe(42);
    expect(voiceActivityOf(x)).toBe(true);
  });

  it('reads an inactive, silent level', () => {
    const buf = packet([audioLevelExtension(127, false)]);
    const x = readAudioLevel(buf, header, 1);
    expect(audioLevelOf(x)).toBe(127);
    expect(voiceActivityOf(x)).toBe(false);
  });

  it('returns -1 without the extension or with a different id', () => {
    expect(readAudioLevel(packet(), header, 1)).toBe(-1);
    expect(readAudioLevel(packet([audioLevelExtension(10, true, 2)]), header, 1)).toBe(-1);
  });

  it('works in a two-byte extension block and ignores an empty element', () => {
    const buf = packet([audioLevelExtension(30, true, 1), { id: 40, data: new Uint8Array(20) }]);
    expect(header.extensionProfile).toBe(0x1000);
    expect(readAudioLevel(buf, header, 1)).toBe(0x80 | 30);
    const empty = packet([{ id: 1, data: new Uint8Array(0) }]);
    expect(readAudioLevel(empty, header, 1)).toBe(-1);
  });

  it('clamps the level it builds to 0..127', () => {
    expect(audioLevelExtension(300, false).data[0]).toBe(127);
    expect(audioLevelExtension(-5, true).data[0]).toBe(0x80);
  });

  it('converts -dBov to linear amplitude, with 127 as silence', () => {
    expect(dBovToLinear(0)).toBe(1);
    expect(dBovToLinear(20)).toBeCloseTo(0.1, 12);
    expect(dBovToLinear(40)).toBeCloseTo(0.01, 12);
    expect(dBovToLinear(126)).toBeGreaterThan(0);
    expect(dBovToLinear(127)).toBe(0);
  });
});
