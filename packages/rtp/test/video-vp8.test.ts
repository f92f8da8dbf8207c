import { describe, expect, it } from 'vitest';
import {
  AssembledFrame,
  RtpHeader,
  Vp8Descriptor,
  Vp8Packetizer,
  VideoFrameAssembler,
  buildRtp,
  isVp8Keyframe,
  parseRtp,
  parseVp8Descriptor,
  readVp8Dimensions,
} from '../src/index.js';
import { mulberry32 } from './random.js';

/** A VP8 frame whose first bytes are a valid frame tag (and, for keyframes, the start code and size). */
function vp8Frame(size: number, keyframe: boolean, seed: number, width = 640, height = 360): Uint8Array {
  const rnd = mulberry32(seed);
  const f = new Uint8Array(size);
  for (let i = 0; i < size; i++) f[i] = Math.floor(rnd() * 256);
  f[0] = (f[0] & 0xfe) | (keyframe ? 0 : 1);
  if (keyframe) {
    f.set([0x9d, 0x01, 0x2a, width & 0xff, width >> 8, height & 0xff, height >> 8], 3);
  }
  return f;
}

interface Packet {
  seq: number;
  buf: Buffer;
}

/** Packetizes frames into RTP packets: 3000 ticks per frame, marker on each frame's last packet. */
function packetize(frames: Uint8Array[], opts: { firstSeq?: number; maxPayloadBytes?: number } = {}): Packet[][] {
  const p = new Vp8Packetizer({ maxPayloadBytes: opts.maxPayloadBytes ?? 1188, initialPictureId: 100 });
  let seq = opts.firstSeq ?? 1000;
  return frames.map((frame, k) => {
    const packets: Packet[] = [];
    p.packetize(frame, frame.length, (payload, length, last) => {
      packets.push({
        seq: seq & 0xffff,
        buf: buildRtp({ payloadType: 96, sequenceNumber: seq, timestamp: 90_000 + k * 3000, ssrc: 0x1234, marker: last }, payload.slice(0, length)),
      });
      seq++;
    });
    return packets;
  });
}

function collect(a: VideoFrameAssembler): { frames: { data: Uint8Array; keyframe: boolean; width: number; timestamp: number }[]; keyframeRequests: number } {
  const out = { frames: [] as { data: Uint8Array; keyframe: boolean; width: number; timestamp: number }[], keyframeRequests: 0 };
  a.onFrame = (f: AssembledFrame) => out.frames.push({ data: f.data.slice(0, f.length), keyframe: f.keyframe, width: f.width, timestamp: f.timestamp });
  a.onKeyframeNeeded = () => out.keyframeRequests++;
  return out;
}

describe('VP8 payload descriptor (RFC 7741 §4.2)', () => {
  it('reads the minimal descriptor, 7- and 15-bit PictureIDs, TL0PICIDX, TID/Y and KEYIDX', () => {
    const d = new Vp8Descriptor();
    expect(parseVp8Descriptor(Uint8Array.of(0x10, 0xaa), 0, 2, d)).toBe(1);
    expect(d.startsFrame).toBe(true);
    expect(d.pictureId).toBe(-1);

    expect(parseVp8Descriptor(Uint8Array.of(0x90, 0x80, 0x12, 0xaa), 0, 4, d)).toBe(3);
    expect([d.pictureId, d.pictureIdBits]).toEqual([0x12, 7]);

    expect(parseVp8Descriptor(Uint8Array.of(0xb1, 0xf0, 0x81, 0x23, 0x07, 0x65, 0xaa), 0, 7, d)).toBe(6);
    expect(d.nonReference).toBe(true);
    expect(d.partitionId).toBe(1);
    expect(d.startsFrame).toBe(false);
    expect([d.pictureId, d.pictureIdBits, d.tl0PicIdx, d.temporalId, d.layerSync, d.keyIdx]).toEqual([0x0123, 15, 7, 1, true, 5]);
  });

  it('rejects descriptors that run past the payload or leave no VP8 data', () => {
    const d = new Vp8Descriptor();
    expect(parseVp8Descriptor(Uint8Array.of(0x10), 0, 1, d)).toBe(-1);
    expect(parseVp8Descriptor(Uint8Array.of(0x90, 0x80, 0x81), 0, 3, d)).toBe(-1);
    expect(parseVp8Descriptor(Uint8Array.of(0x90, 0x80, 0x81, 0x23, 0xaa), 0, 4, d)).toBe(-1); // length honoured
    expect(parseVp8Descriptor(new Uint8Array(0), 0, 0, d)).toBe(-1);
  });

  it('reads the size of a keyframe from its header (RFC 6386 §9.1)', () => {
    const dims = [0, 0];
    expect(readVp8Dimensions(vp8Frame(20, true, 1, 1280, 720), 0, 20, dims)).toBe(true);
    expect(dims).toEqual([1280, 720]);
    expect(readVp8Dimensions(vp8Frame(20, false, 1), 0, 20, dims)).toBe(false);
  });
});

describe('Vp8Packetizer', () => {
  it('spreads a frame evenly over the fewest packets within the limit, one PictureID per frame', () => {
    const frames = [vp8Frame(5000, true, 1), vp8Frame(300, false, 2)];
    const packets = packetize(frames);
    expect(packets[0].length).toBe(5); // ceil(5000 / 1184)
    const h = new RtpHeader();
    const d = new Vp8Descriptor();
    const sizes: number[] = [];
    for (const [i, pkt] of packets[0].entries()) {
      expect(parseRtp(pkt.buf, h)).toBeNull();
      expect(h.payloadLength).toBeLessThanOrEqual(1188);
      expect(parseVp8Descriptor(pkt.buf, h.payloadOffset, h.payloadLength, d)).toBe(4);
      expect(d.start).toBe(i === 0);
      expect([d.pictureId, d.pictureIdBits]).toEqual([100, 15]);
      expect(h.marker).toBe(i === 4);
      sizes.push(h.payloadLength - 4);
    }
    expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
    expect(isVp8Keyframe(packets[0][0].buf, h.payloadOffset)).toBe(true);
    expect(packets[1].length).toBe(1);
    parseRtp(packets[1][0].buf, h);
    parseVp8Descriptor(packets[1][0].buf, h.payloadOffset, h.payloadLength, d);
    expect(d.pictureId).toBe(101);
  });
});

describe('VideoFrameAssembler (VP8)', () => {
  const gop = () => [
    vp8Frame(3000, true, 10),
    vp8Frame(1500, false, 11),
    vp8Frame(2500, false, 12),
    vp8Frame(900, false, 13),
    vp8Frame(4000, true, 14),
    vp8Frame(1200, false, 15),
  ];

  it('round-trips frames, bytes intact, with keyframe flag and size', () => {
    const frames = gop();
    const a = new VideoFrameAssembler({ codec: 'vp8' });
    const out = collect(a);
    for (const f of packetize(frames)) for (const p of f) a.push(p.buf, p.buf.length, 0);
    expect(out.frames.map((f) => f.data)).toEqual(frames);
    expect(out.frames.map((f) => f.keyframe)).toEqual([true, false, false, false, true, false]);
    expect(out.frames[0].width).toBe(640);
    expect(a.needKeyframe).toBe(false);
    expect(a.stats.lost).toBe(0);
  });

  it('reorders within the window, across the sequence number wrap, and ignores duplicates', () => {
    const frames = gop();
    const packets = packetize(frames, { firstSeq: 65530 }).flat();
    const rnd = mulberry32(7);
    // Shuffle within blocks of 4 packets, then duplicate a few.
    for (let i = 0; i + 4 <= packets.length; i += 4) {
      const block = packets.slice(i, i + 4).sort(() => rnd() - 0.5);
      packets.splice(i, 4, ...block);
    }
    packets.splice(5, 0, packets[2]);
    packets.splice(9, 0, packets[9]);
    const a = new VideoFrameAssembler({ codec: 'vp8' });
    const out = collect(a);
    for (const p of packets) a.push(p.buf, p.buf.length, 0);
    expect(out.frames.map((f) => f.data)).toEqual(frames);
    expect(a.stats.duplicates + a.stats.late).toBe(2);
    expect(a.stats.lost).toBe(0);
  });

  it('a lost packet drops its frame and every frame until the next keyframe, and asks for one', () => {
    const frames = gop();
    const packets = packetize(frames);
    packets[2].splice(1, 1); // frame 2 (3 packets) loses its middle packet
    const a = new VideoFrameAssembler({ codec: 'vp8', maxReorderPackets: 2 });
    const out = collect(a);
    let requestsBeforeLoss = -1;
    for (const [k, f] of packets.entries()) {
      if (k === 2) requestsBeforeLoss = out.keyframeRequests;
      for (const p of f) a.push(p.buf, p.buf.length, 0);
      if (k === 3) expect(a.needKeyframe).toBe(true);
    }
    expect(requestsBeforeLoss).toBe(0);
    expect(out.keyframeRequests).toBeGreaterThan(0);
    expect(out.frames.map((f) => f.data)).toEqual([frames[0], frames[1], frames[4], frames[5]]);
    expect(a.stats.lost).toBe(1);
    expect(a.needKeyframe).toBe(false);
  });

  it('declares a gap lost after maxReorderMs even when few packets follow', () => {
    const frames = [vp8Frame(800, true, 1), vp8Frame(800, false, 2), vp8Frame(800, false, 3), vp8Frame(800, true, 4)];
    const packets = packetize(frames).flat(); // one packet per frame
    const a = new VideoFrameAssembler({ codec: 'vp8', maxReorderMs: 50 });
    const out = collect(a);
    a.push(packets[0].buf, packets[0].buf.length, 0);
    a.push(packets[2].buf, packets[2].buf.length, 10); // packet 1 missing
    expect(out.frames.length).toBe(1);
    a.poll(40);
    expect(a.needKeyframe).toBe(false); // still only reordered, as far as we know
    a.poll(61);
    expect(a.needKeyframe).toBe(true);
    expect(out.keyframeRequests).toBeGreaterThan(0);
    a.push(packets[3].buf, packets[3].buf.length, 70);
    expect(out.frames.map((f) => f.data)).toEqual([frames[0], frames[3]]);
  });

  it('starts at a keyframe: a stream joined mid-frame or mid-GOP yields nothing until then', () => {
    const frames = gop();
    const packets = packetize(frames);
    const a = new VideoFrameAssembler({ codec: 'vp8' });
    const out = collect(a);
    let now = 0;
    for (const f of packets) for (const p of f.slice(f === packets[0] ? 1 : 0)) a.push(p.buf, p.buf.length, (now += 10));
    expect(out.frames.map((f) => f.data)).toEqual([frames[4], frames[5]]);
  });

  it('a lost marker packet drops the frame when the next timestamp begins', () => {
    const frames = gop();
    const packets = packetize(frames);
    packets[1].pop(); // frame 1 loses its last packet (the marker)
    const a = new VideoFrameAssembler({ codec: 'vp8', maxReorderPackets: 2 });
    const out = collect(a);
    for (const f of packets) for (const p of f) a.push(p.buf, p.buf.length, 0);
    expect(out.frames.map((f) => f.data)).toEqual([frames[0], frames[4], frames[5]]);
    expect(a.stats.dropped.incomplete).toBe(1);
  });

  it('counts malformed packets and never throws on garbage', () => {
    const a = new VideoFrameAssembler({ codec: 'vp8' });
    const rnd = mulberry32(3);
    for (let i = 0; i < 2000; i++) {
      const n = Math.floor(rnd() * 60);
      const b = new Uint8Array(n);
      for (let j = 0; j < n; j++) b[j] = Math.floor(rnd() * 256);
      if (n > 0 && rnd() < 0.5) b[0] = 0x80;
      a.push(b, n, i);
    }
    expect(a.stats.packets).toBe(2000);
  });
});
