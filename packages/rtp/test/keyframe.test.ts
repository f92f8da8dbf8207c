import { describe, expect, it } from 'vitest';
import { isH264Keyframe, isKeyframePacket, isVp8Keyframe } from '../src/index.js';
import { mulberry32 } from './random.js';

/** VP8 payload header byte 0 (RFC 7741 §4.3): Size0 = 0, H = 1, VER = 0, P as given. */
const vp8Header = (interframe: boolean) => (interframe ? 0x11 : 0x10);

describe('isVp8Keyframe (RFC 7741)', () => {
  it('a minimal descriptor (S = 1, PID = 0) followed by P = 0 starts a keyframe; P = 1 does not', () => {
    expect(isVp8Keyframe(Uint8Array.of(0x10, vp8Header(false), 0x9d, 0x01, 0x2a))).toBe(true);
    expect(isVp8Keyframe(Uint8Array.of(0x10, vp8Header(true), 0, 0))).toBe(false);
  });

  it('skips the X byte, a 7-bit and a 15-bit PictureID, TL0PICIDX and the TID/KEYIDX byte', () => {
    // X | S; I; 7-bit PictureID 0x12
    expect(isVp8Keyframe(Uint8Array.of(0x90, 0x80, 0x12, vp8Header(false)))).toBe(true);
    expect(isVp8Keyframe(Uint8Array.of(0x90, 0x80, 0x12, vp8Header(true)))).toBe(false);
    // X | S; I L T K; 15-bit PictureID (M = 1) 0x81 0x23; TL0PICIDX; TID|Y|KEYIDX
    expect(isVp8Keyframe(Uint8Array.of(0x90, 0xf0, 0x81, 0x23, 0x07, 0x40, vp8Header(false)))).toBe(true);
    expect(isVp8Keyframe(Uint8Array.of(0x90, 0xf0, 0x81, 0x23, 0x07, 0x40, vp8Header(true)))).toBe(false);
    // Only K set still adds the TID/Y/KEYIDX byte (its first bit would otherwise read as P = 0).
    expect(isVp8Keyframe(Uint8Array.of(0x90, 0x10, 0x00, vp8Header(true)))).toBe(false);
    // Only L set.
    expect(isVp8Keyframe(Uint8Array.of(0x90, 0x40, 0x01, vp8Header(false)))).toBe(true);
  });

  it('is false for a continuation packet (S = 0) or a partition other than 0, even if the next byte looks like P = 0', () => {
    expect(isVp8Keyframe(Uint8Array.of(0x00, vp8Header(false)))).toBe(false);
    expect(isVp8Keyframe(Uint8Array.of(0x11, vp8Header(false)))).toBe(false); // S, PID 1
  });

  it('is false when the descriptor announces more bytes than the payload has', () => {
    expect(isVp8Keyframe(new Uint8Array(0))).toBe(false);
    expect(isVp8Keyframe(Uint8Array.of(0x10))).toBe(false);
    expect(isVp8Keyframe(Uint8Array.of(0x90))).toBe(false);
    expect(isVp8Keyframe(Uint8Array.of(0x90, 0x80))).toBe(false);
    expect(isVp8Keyframe(Uint8Array.of(0x90, 0x80, 0x81, 0x23))).toBe(false);
    // `length` shorter than the buffer is honoured.
    expect(isVp8Keyframe(Uint8Array.of(0x10, vp8Header(false)), 0, 1)).toBe(false);
  });
});

describe('isH264Keyframe (RFC 6184)', () => {
  const nal = (type: number, nri = 3) => (nri << 5) | type;

  it('single NAL units: IDR (5) and SPS (7) are keyframes, a non-IDR slice (1), PPS (8) and SEI (6) are not', () => {
    expect(isH264Keyframe(Uint8Array.of(nal(5), 0x88, 0x84))).toBe(true);
    expect(isH264Keyframe(Uint8Array.of(nal(7), 0x42, 0xc0, 0x1e))).toBe(true);
    expect(isH264Keyframe(Uint8Array.of(nal(1), 0x9a))).toBe(false);
    expect(isH264Keyframe(Uint8Array.of(nal(8), 0xce))).toBe(false);
    expect(isH264Keyframe(Uint8Array.of(nal(6), 0x05))).toBe(false);
  });

  it('STAP-A (24) is a keyframe when any aggregated NAL is SPS or IDR', () => {
    // STAP-A [SPS(3 bytes), PPS(2 bytes)]
    expect(isH264Keyframe(Uint8Array.of(nal(24), 0, 3, nal(7), 0x42, 0xc0, 0, 2, nal(8), 0xce))).toBe(true);
    // STAP-A [SEI, IDR]
    expect(isH264Keyframe(Uint8Array.of(nal(24), 0, 2, nal(6), 0x05, 0, 2, nal(5), 0x88))).toBe(true);
    // STAP-A [PPS, non-IDR]
    expect(isH264Keyframe(Uint8Array.of(nal(24), 0, 2, nal(8), 0xce, 0, 2, nal(1), 0x9a))).toBe(false);
    // A size running past the end stops the walk.
    expect(isH264Keyframe(Uint8Array.of(nal(24), 0, 9, nal(8), 0xce, 0, 2, nal(5), 0x88))).toBe(false);
    expect(isH264Keyframe(Uint8Array.of(nal(24), 0))).toBe(false);
  });

  it('FU-A (28): only the start fragment of an IDR or SPS counts', () => {
    expect(isH264Keyframe(Uint8Array.of(nal(28), 0x80 | 5, 0xaa))).toBe(true); // S, type 5
    expect(isH264Keyframe(Uint8Array.of(nal(28), 0x00 | 5, 0xaa))).toBe(false); // middle fragment
    expect(isH264Keyframe(Uint8Array.of(nal(28), 0x40 | 5, 0xaa))).toBe(false); // end fragment
    expect(isH264Keyframe(Uint8Array.of(nal(28), 0x80 | 1, 0xaa))).toBe(false); // start of a P slice
    expect(isH264Keyframe(Uint8Array.of(nal(28)))).toBe(false);
  });

  it('other packetizations and empty payloads are not keyframes', () => {
    expect(isH264Keyframe(new Uint8Array(0))).toBe(false);
    expect(isH264Keyframe(Uint8Array.of(nal(0)))).toBe(false);
    expect(isH264Keyframe(Uint8Array.of(nal(25), 0, 0, 0, 2, nal(5), 0))).toBe(false); // STAP-B: not used
  });
});

describe('isKeyframePacket', () => {
  it('dispatches on the codec', () => {
    const vp8Key = Uint8Array.of(0x10, 0x10);
    expect(isKeyframePacket(vp8Key, 'vp8')).toBe(true);
    expect(isKeyframePacket(Uint8Array.of(0x65, 0x88), 'h264')).toBe(true);
    expect(isKeyframePacket(Uint8Array.of(0x41, 0x9a), 'h264')).toBe(false);
  });

  it('never throws on random bytes', () => {
    const rnd = mulberry32(7);
    for (let i = 0; i < 20_000; i++) {
      const b = new Uint8Array(Math.floor(rnd() * 12));
      for (let j = 0; j < b.length; j++) b[j] = Math.floor(rnd() * 256);
      expect(typeof isKeyframePacket(b, i % 2 === 0 ? 'vp8' : 'h264')).toBe('boolean');
    }
  });
});

describe('payload offsets', () => {
  it('reads the payload at an offset inside a larger buffer (a whole RTP packet)', () => {
    const packet = new Uint8Array(20).fill(0xff);
    packet.set([0x10, 0x10], 12); // VP8 keyframe start right after a 12-byte header
    expect(isKeyframePacket(packet, 'vp8', 12, 2)).toBe(true);
    expect(isKeyframePacket(packet, 'vp8', 12, 1)).toBe(false); // the payload header is past `length`
    packet.set([0x7c, 0x85], 12); // FU-A start of an IDR
    expect(isKeyframePacket(packet, 'h264', 12, 8)).toBe(true);
    expect(isKeyframePacket(packet, 'h264', 19, 5)).toBe(false); // clamped to the buffer
    expect(isKeyframePacket(packet, 'h264', 20)).toBe(false);
  });
});
