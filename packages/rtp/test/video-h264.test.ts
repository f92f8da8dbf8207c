import { describe, expect, it } from 'vitest';
import {
  AnnexBNalUnits,
  H264Packetizer,
  RtpHeader,
  VideoFrameAssembler,
  buildRtp,
  isH264Keyframe,
  parseRtp,
  readH264SpsDimensions,
  splitAnnexBAccessUnits,
} from '../src/index.js';
import { mulberry32 } from './random.js';

/** Writes an RBSP bit by bit, then escapes it (00 00 0x → 00 00 03 0x, H.264 §7.4.1). */
class BitWriter {
  private bits: number[] = [];
  u(n: number, v: number): this {
    for (let i = n - 1; i >= 0; i--) this.bits.push(Math.floor(v / 2 ** i) % 2);
    return this;
  }
  ue(v: number): this {
    const len = Math.floor(Math.log2(v + 1));
    this.u(len, 0);
    return this.u(len + 1, v + 1);
  }
  nal(header: number): Uint8Array {
    this.bits.push(1); // rbsp_stop_one_bit
    while (this.bits.length % 8 !== 0) this.bits.push(0);
    const raw: number[] = [];
    for (let i = 0; i < this.bits.length; i += 8) raw.push(parseInt(this.bits.slice(i, i + 8).join(''), 2));
    const out = [header];
    let zeros = 0;
    for (const b of raw) {
      if (zeros >= 2 && b <= 3) {
        out.push(3);
        zeros = 0;
      }
      out.push(b);
      zeros = b === 0 ? zeros + 1 : 0;
    }
    return Uint8Array.from(out);
  }
}

function sps(opts: { profile: number; widthMbs: number; heightMbs: number; crop?: [number, number, number, number]; frameMbsOnly?: boolean }): Uint8Array {
  const w = new BitWriter().u(8, opts.profile).u(8, 0).u(8, 31).ue(0);
  if (opts.profile === 100) w.ue(1).ue(0).ue(0).u(1, 0).u(1, 0); // 4:2:0, 8 bit, no scaling matrix
  w.ue(0).ue(0).ue(0); // log2_max_frame_num_minus4, poc type 0, log2_max_poc_lsb_minus4
  w.ue(1).u(1, 0).ue(opts.widthMbs - 1).ue(opts.heightMbs - 1);
  const frameMbsOnly = opts.frameMbsOnly ?? true;
  w.u(1, frameMbsOnly ? 1 : 0);
  if (!frameMbsOnly) w.u(1, 0);
  w.u(1, 1);
  if (opts.crop) {
    w.u(1, 1);
    for (const c of opts.crop) w.ue(c);
  } else {
    w.u(1, 0);
  }
  w.u(1, 0); // vui_parameters_present_flag
  return w.nal(0x67);
}

function randomBytes(n: number, seed: number): Uint8Array {
  const rnd = mulberry32(seed);
  const b = new Uint8Array(n);
  // Avoid accidental start codes inside NAL units, as an encoder's emulation prevention does.
  for (let i = 0; i < n; i++) b[i] = 4 + Math.floor(rnd() * 250);
  return b;
}

/** An Annex-B access unit of the given NAL units. */
function accessUnit(...nals: Uint8Array[]): Uint8Array {
  const size = nals.reduce((s, n) => s + 4 + n.length, 0);
  const au = new Uint8Array(size);
  let o = 0;
  for (const n of nals) {
    au.set([0, 0, 0, 1], o);
    au.set(n, o + 4);
    o += 4 + n.length;
  }
  return au;
}

/** A slice NAL unit: header, then first_mb_in_slice = 0 (bit "1") and random data. */
function slice(type: 1 | 5, size: number, seed: number): Uint8Array {
  const n = randomBytes(size, seed);
  n[0] = (3 << 5) | type;
  n[1] = 0x80 | (n[1] & 0x7f);
  return n;
}

const SPS_720P = sps({ profile: 66, widthMbs: 80, heightMbs: 45 });
const PPS = Uint8Array.of(0x68, 0xce, 0x3c, 0x80);
const AUD = Uint8Array.of(0x09, 0xf0);

function packetize(units: Uint8Array[], firstSeq = 500, maxPayloadBytes = 1188): { seq: number; buf: Buffer }[][] {
  const p = new H264Packetizer({ maxPayloadBytes });
  let seq = firstSeq;
  return units.map((au, k) => {
    const packets: { seq: number; buf: Buffer }[] = [];
    p.packetize(au, au.length, (payload, length, last) => {
      packets.push({
        seq: seq & 0xffff,
        buf: buildRtp({ payloadType: 102, sequenceNumber: seq, timestamp: k * 3000, ssrc: 77, marker: last }, payload.slice(0, length)),
      });
      seq++;
    });
    return packets;
  });
}

describe('H.264 SPS (H.264 §7.3.2.1.1)', () => {
  it('reads the picture size: baseline 720p, high profile 1080p with cropping, field coding', () => {
    const dims = [0, 0];
    expect(readH264SpsDimensions(SPS_720P, 0, SPS_720P.length, dims)).toBe(true);
    expect(dims).toEqual([1280, 720]);
    const hd = sps({ profile: 100, widthMbs: 120, heightMbs: 68, crop: [0, 0, 0, 4] });
    expect(readH264SpsDimensions(hd, 0, hd.length, dims)).toBe(true);
    expect(dims).toEqual([1920, 1080]);
    const interlaced = sps({ profile: 66, widthMbs: 45, heightMbs: 18, frameMbsOnly: false });
    expect(readH264SpsDimensions(interlaced, 0, interlaced.length, dims)).toBe(true);
    expect(dims).toEqual([720, 576]);
  });

  it('undoes emulation prevention and rejects what is not a plausible SPS', () => {
    // 16x16 gives width_in_mbs_minus1 = 0 and height = 0: runs of zero bits that need escaping.
    const tiny = sps({ profile: 66, widthMbs: 1, heightMbs: 1 });
    const dims = [0, 0];
    expect(readH264SpsDimensions(tiny, 0, tiny.length, dims)).toBe(true);
    expect(dims).toEqual([16, 16]);
    expect(readH264SpsDimensions(PPS, 0, PPS.length, dims)).toBe(false);
    expect(readH264SpsDimensions(SPS_720P, 0, 5, dims)).toBe(false);
  });
});

describe('H264Packetizer (RFC 6184, packetization-mode 1)', () => {
  it('aggregates SPS + PPS into a STAP-A, fragments a large IDR into even FU-As, drops the AUD', () => {
    const idr = slice(5, 5000, 1);
    const [packets] = packetize([accessUnit(AUD, SPS_720P, PPS, idr)]);
    const h = new RtpHeader();
    const types = packets.map((p) => {
      parseRtp(p.buf, h);
      return p.buf[h.payloadOffset] & 0x1f;
    });
    expect(types).toEqual([24, 28, 28, 28, 28, 28]);
    parseRtp(packets[0].buf, h);
    expect(isH264Keyframe(packets[0].buf, h.payloadOffset, h.payloadLength)).toBe(true);
    const fuSizes = packets.slice(1).map((p) => p.buf.length);
    expect(Math.max(...fuSizes) - Math.min(...fuSizes)).toBeLessThanOrEqual(1);
    expect(packets.every((p) => p.buf.length - 12 <= 1188)).toBe(true);
    expect(packets.map((p) => (p.buf[1] & 0x80) !== 0)).toEqual([false, false, false, false, false, true]);
    // FU headers: S on the first, E on the last, original type 5 and NRI kept.
    expect(packets[1].buf[12]).toBe((3 << 5) | 28);
    expect(packets[1].buf[13]).toBe(0x80 | 5);
    expect(packets[5].buf[13]).toBe(0x40 | 5);
  });

  it('sends a NAL unit that fits alone as a single NAL unit packet', () => {
    const [packets] = packetize([accessUnit(slice(1, 700, 2))]);
    expect(packets.length).toBe(1);
    expect(packets[0].buf[12] & 0x1f).toBe(1);
  });
});

describe('VideoFrameAssembler (H.264)', () => {
  const units = () => [
    accessUnit(SPS_720P, PPS, slice(5, 4000, 10)),
    accessUnit(slice(1, 600, 11)),
    accessUnit(slice(1, 300, 12), slice(1, 200, 13)),
    accessUnit(slice(1, 2500, 14)),
    accessUnit(SPS_720P, PPS, slice(5, 3000, 15), slice(5, 900, 16)),
    accessUnit(slice(1, 1300, 17)),
  ];

  function run(packets: { buf: Buffer }[], opts: { maxReorderPackets?: number } = {}) {
    const a = new VideoFrameAssembler({ codec: 'h264', ...opts });
    const frames: { data: Uint8Array; keyframe: boolean; width: number; height: number }[] = [];
    let requests = 0;
    a.onFrame = (f) => frames.push({ data: f.data.slice(0, f.length), keyframe: f.keyframe, width: f.width, height: f.height });
    a.onKeyframeNeeded = () => requests++;
    for (const p of packets) a.push(p.buf, p.buf.length, 0);
    return { a, frames, requests };
  }

  it('round-trips access units through STAP-A, FU-A and single NAL packets to the same Annex-B bytes', () => {
    const aus = units();
    const { frames, a } = run(packetize(aus).flat());
    expect(frames.map((f) => f.data)).toEqual(aus);
    expect(frames.map((f) => f.keyframe)).toEqual([true, false, false, false, true, false]);
    expect([frames[0].width, frames[0].height]).toEqual([1280, 720]);
    expect(a.stats.lost).toBe(0);
  });

  it('reassembles across the sequence wrap with packets reordered within the window', () => {
    const aus = units();
    const packets = packetize(aus, 65525).flat();
    const rnd = mulberry32(5);
    for (let i = 0; i + 3 <= packets.length; i += 3) packets.splice(i, 3, ...packets.slice(i, i + 3).sort(() => rnd() - 0.5));
    const { frames } = run(packets);
    expect(frames.map((f) => f.data)).toEqual(aus);
  });

  it('a lost FU-A fragment drops the access unit and everything up to the next IDR, with keyframe requests', () => {
    const aus = units();
    const packets = packetize(aus);
    packets[3].splice(1, 1); // the 2500-byte slice: 3 FU-As, the middle one lost
    const { frames, requests, a } = run(packets.flat(), { maxReorderPackets: 2 });
    expect(frames.map((f) => f.data)).toEqual([aus[0], aus[1], aus[2], aus[4], aus[5]]);
    expect(requests).toBeGreaterThan(0);
    expect(a.stats.lost).toBe(1);
  });

  it('an IDR whose STAP-A (SPS + PPS) was lost still starts at its first slice; deltas before it are dropped', () => {
    const aus = units();
    const packets = packetize(aus);
    packets[3].splice(1, 1); // a loss in a delta frame...
    packets[4].shift(); // ...and the next IDR's parameter sets lost too
    const { frames } = run(packets.flat(), { maxReorderPackets: 2 });
    // The decoder keeps the parameter sets it saw with the first IDR.
    expect(frames.map((f) => f.data)).toEqual([aus[0], aus[1], aus[2], aus[4].subarray(4 + SPS_720P.length + 4 + PPS.length), aus[5]]);
    expect(frames[3].keyframe).toBe(true);
  });
});

describe('Annex-B helpers', () => {
  it('finds NAL units behind 3- and 4-byte start codes, trimming trailing zeros', () => {
    const stream = Uint8Array.of(0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 0, 1, 0x65, 4, 5);
    const n = new AnnexBNalUnits();
    expect(n.scan(stream, 0, stream.length)).toBe(3);
    expect([...n.starts.subarray(0, 3)]).toEqual([4, 10, 17]);
    expect([...n.ends.subarray(0, 3)]).toEqual([7, 12, 20]);
  });

  it('splits a byte stream into access units at parameter sets and first slices', () => {
    const aus = units();
    const stream = new Uint8Array(aus.reduce((s, a) => s + a.length, 0));
    let o = 0;
    for (const au of aus) {
      stream.set(au, o);
      o += au.length;
    }
    expect(splitAnnexBAccessUnits(stream)).toEqual(aus);
  });

  function units() {
    return [
      accessUnit(AUD, SPS_720P, PPS, slice(5, 100, 1)),
      accessUnit(AUD, slice(1, 50, 2), Uint8Array.of(0x21, 0x12, 0x34)), // second slice: first_mb != 0
      accessUnit(AUD, slice(1, 70, 3)),
    ];
  }
});
