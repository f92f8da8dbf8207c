import { existsSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { FlvH264Reader, ivfFile, IvfReader, VideoDecoderProcess, VideoEncoderProcess, resolveFfmpeg } from '../src/index.js';
import type { I420Frame } from '../src/index.js';
import { hasIdr, isAlive, lavfiClip, meanYuv, referenceDecode, sleep, until } from './videoMedia.js';

const RED = { y: 81, u: 90, v: 240 };
const BLUE = { y: 41, u: 240, v: 110 };

const open: { close(): void }[] = [];
afterEach(() => {
  for (const p of open.splice(0)) p.close();
});

function track<T extends { close(): void }>(p: T): T {
  open.push(p);
  return p;
}

function expectColour(actual: { y: number; u: number; v: number }, expected: { y: number; u: number; v: number }, tolerance = 4): void {
  expect(Math.abs(actual.y - expected.y)).toBeLessThanOrEqual(tolerance);
  expect(Math.abs(actual.u - expected.u)).toBeLessThanOrEqual(tolerance);
  expect(Math.abs(actual.v - expected.v)).toBeLessThanOrEqual(tolerance);
}

async function feed(dec: VideoDecoderProcess, clip: { frames: Uint8Array[]; keyframes: boolean[] }, from = 0, to = clip.frames.length): Promise<void> {
  for (let i = from; i < to; i++) {
    dec.decode(clip.frames[i], clip.frames[i].length, clip.keyframes[i]);
    await sleep(5);
  }
}

describe('ffmpeg binary', () => {
  it('prefers the system ffmpeg and says which one it uses', () => {
    const bin = resolveFfmpeg();
    // MCU_FFMPEG_PATH wins (the bundled-ffmpeg test project runs these tests on the fallback).
    expect(bin.source).toBe(process.env.MCU_FFMPEG_PATH ? 'env' : process.env.PATH?.split(':').some((d) => existsSync(`${d}/ffmpeg`)) ? 'system' : 'ffmpeg-installer');
    expect(bin.path.length).toBeGreaterThan(0);
    expect(bin.version).toMatch(/ffmpeg version/);
  });
});

describe('VideoDecoderProcess', () => {
  it('decodes VP8 into I420 frames of the tile size, a frame out for every frame in', async () => {
    const clip = lavfiClip({ source: 'color=red', width: 320, height: 240, frames: 20, codec: 'vp8', gop: 10 });
    const dec = track(new VideoDecoderProcess({ niceness: 10, codec: 'vp8', width: 160, height: 120 }));
    const frames: I420Frame[] = [];
    dec.on('frame', (f) => frames.push(f));
    await feed(dec, clip);
    expect(await until(() => dec.stats.framesOut === 20)).toBe(true);
    const last = dec.latest!;
    expect([last.width, last.height]).toEqual([160, 120]);
    expectColour(meanYuv(last.data, 160, 120), RED);
    expect(dec.stats.dropped).toBe(0);
    // Pooled: a handful of buffers for 20 frames.
    expect(new Set(frames.map((f) => f.data)).size).toBeLessThanOrEqual(3);
  });

  it('decodes H.264 access units; in fit mode ffmpeg pads to the box with black', async () => {
    const clip = lavfiClip({ source: 'color=blue', width: 320, height: 240, frames: 10, codec: 'h264', gop: 10 });
    const dec = track(new VideoDecoderProcess({ niceness: 10, codec: 'h264', width: 160, height: 160, fit: 'fit' }));
    await feed(dec, clip);
    expect(await until(() => dec.stats.framesOut === 10)).toBe(true);
    const f = dec.latest!;
    expectColour(meanYuv(f.data, 160, 160, { x: 0, y: 40, w: 160, h: 80 }), BLUE);
    expectColour(meanYuv(f.data, 160, 160, { x: 0, y: 0, w: 160, h: 18 }), { y: 16, u: 128, v: 128 });
  });

  it('drops delta frames until a keyframe, and after resize() needs a new one', async () => {
    const clip = lavfiClip({ source: 'color=red', width: 320, height: 240, frames: 20, codec: 'vp8', gop: 10 });
    const dec = track(new VideoDecoderProcess({ niceness: 10, codec: 'vp8', width: 160, height: 120 }));
    let needed = 0;
    dec.on('keyframeNeeded', () => needed++);
    await feed(dec, clip, 1, 10); // starts after the keyframe
    expect(dec.stats.dropped).toBe(9);
    await feed(dec, clip, 10, 12);
    expect(await until(() => dec.stats.framesOut === 2)).toBe(true);
    dec.resize(80, 60);
    expect(dec.needsKeyframe).toBe(true);
    expect(needed).toBe(1);
    await feed(dec, clip, 12, 14); // deltas: dropped
    expect(dec.stats.framesOut).toBe(2);
    await feed(dec, clip, 0, 4);
    expect(await until(() => dec.latest?.width === 80)).toBe(true);
    expect(dec.stats.reconfigures).toBe(1);
    expect(dec.stats.restarts).toBe(0);
  });

  it('a killed ffmpeg is restarted, counted, logged, and decodes again from the next keyframe', async () => {
    const clip = lavfiClip({ source: 'color=red', width: 320, height: 240, frames: 20, codec: 'vp8', gop: 10 });
    const logged: { level: string; fields: Record<string, unknown>; msg: string }[] = [];
    const log = {
      info: (fields: object, msg: string) => logged.push({ level: 'info', fields: fields as Record<string, unknown>, msg }),
      warn: (fields: object, msg: string) => logged.push({ level: 'warn', fields: fields as Record<string, unknown>, msg }),
    };
    const dec = track(new VideoDecoderProcess({ niceness: 10, codec: 'vp8', width: 160, height: 120, name: 'decoder p1', log }));
    await feed(dec, clip, 0, 5);
    expect(await until(() => dec.stats.framesOut === 5)).toBe(true);
    const pid = dec.pid!;
    process.kill(pid, 'SIGKILL');
    expect(await until(() => dec.restarts === 1 && dec.pid !== null && dec.pid !== pid)).toBe(true);
    expect(dec.needsKeyframe).toBe(true);
    expect(logged.map((l) => `${l.level} ${l.msg}`)).toEqual(['warn ffmpeg process died', 'info ffmpeg process restarted']);
    expect(logged[0].fields).toMatchObject({ process: 'decoder p1' });
    expect(logged[1].fields).toMatchObject({ process: 'decoder p1', restarts: 1 });
    await feed(dec, clip, 5, 20);
    expect(await until(() => dec.stats.framesOut === 15)).toBe(true); // 5 before, 10 from the keyframe at 10
    expect(dec.stderrTail).toBeTypeOf('function');
  });

  it('close() kills the child', async () => {
    const dec = new VideoDecoderProcess({ niceness: 10, codec: 'vp8', width: 64, height: 64 });
    expect(await until(() => dec.pid !== null)).toBe(true);
    const pid = dec.pid!;
    dec.close();
    dec.close();
    expect(await until(() => !isAlive(pid))).toBe(true);
  });
});

describe('VideoEncoderProcess', () => {
  const W = 160;
  const H = 96;

  function picture(k: number): Uint8Array {
    const f = new Uint8Array((W * H * 3) / 2);
    for (let i = 0; i < W * H; i++) f[i] = 16 + ((i % W) + k * 3) % 200;
    f.fill(128, W * H);
    return f;
  }

  /** Mean absolute luma difference between a decoded picture and the picture k that was encoded. */
  function lumaError(decoded: Uint8Array, k: number): number {
    const want = picture(k);
    let sum = 0;
    for (let i = 0; i < W * H; i++) sum += Math.abs(decoded[i] - want[i]);
    return sum / (W * H);
  }

  /** Encodes n frames 33 ms apart in media time; `request(k)` before frame k may ask for a keyframe. */
  async function run(enc: VideoEncoderProcess, n: number, request: (k: number) => boolean) {
    const out: { media: number; keyframe: boolean; data: Uint8Array }[] = [];
    enc.onFrame = (data, length, keyframe, media) => out.push({ media, keyframe, data: data.slice(0, length) });
    expect(await until(() => enc.isRunning)).toBe(true);
    for (let k = 0; k < n; k++) {
      const now = k * 33;
      if (request(k)) enc.requestKeyframe(now);
      // Keep at most one frame in flight: the encoder's input queue is short on purpose.
      await until(() => out.length >= k - 1, 2000, 2);
      expect(enc.encode(picture(k), 1000 + k * 33, undefined, now)).toBe(true);
    }
    expect(await until(() => out.length === n)).toBe(true);
    return out;
  }

  it('VP8: a keyframe on demand comes out on the next frame; requests are rate-limited and coalesced', async () => {
    const enc = track(new VideoEncoderProcess({ niceness: 10, codec: 'vp8', width: W, height: H, bitrateKbps: 200, keyframeIntervalMs: 60_000, minKeyframeIntervalMs: 300 }));
    // Requests before frames 20, 21 (too soon: served at 300 ms after 20, frame 30) and 40 (served at once).
    const out = await run(enc, 50, (k) => k === 20 || k === 21 || k === 40);
    const keyframes = out.flatMap((f, k) => (f.keyframe ? [k] : []));
    expect(keyframes).toEqual([0, 20, 30, 40]);
    expect(out.map((f) => f.media)).toEqual(out.map((_, k) => 1000 + k * 33));
    expect(enc.stats.forcedKeyframes).toBe(3);
    // The stream decodes.
    expect(referenceDecode(ivfFile('VP80', W, H, out.map((f) => f.data)), 'ivf', W, H).length).toBe(50);
  });

  it('H.264: IDR on demand, SPS/PPS in every keyframe access unit, decodable Annex-B', async () => {
    const enc = track(new VideoEncoderProcess({ niceness: 10, codec: 'h264', width: W, height: H, bitrateKbps: 200, keyframeIntervalMs: 60_000, minKeyframeIntervalMs: 300 }));
    const out = await run(enc, 30, (k) => k === 15);
    expect(out.flatMap((f, k) => (f.keyframe ? [k] : []))).toEqual([0, 15]);
    for (const f of out) expect(hasIdr(f.data)).toBe(f.keyframe);
    const stream = Buffer.concat(out.map((f) => f.data));
    const pictures = referenceDecode(stream, 'h264', W, H);
    expect(pictures.length).toBe(30);
    // The pictures are the ones sent, at the bitrate asked for (not starved by a wrong frame rate).
    for (const k of [0, 14, 29]) expect(lumaError(pictures[k], k), `frame ${k}`).toBeLessThan(10);
    // A viewer starting at the second keyframe can decode too.
    expect(referenceDecode(Buffer.concat(out.slice(15).map((f) => f.data)), 'h264', W, H).length).toBe(15);
  });

  it('scales input frames to the rendition size inside ffmpeg', async () => {
    const enc = track(new VideoEncoderProcess({ niceness: 10, codec: 'vp8', width: 80, height: 48, inputWidth: W, inputHeight: H, bitrateKbps: 100 }));
    const out = await run(enc, 3, () => false);
    expect(out[0].keyframe).toBe(true);
    // VP8 keyframe header: 14-bit width and height at bytes 6..9.
    expect([out[0].data[6] | ((out[0].data[7] & 0x3f) << 8), out[0].data[8] | ((out[0].data[9] & 0x3f) << 8)]).toEqual([80, 48]);
  });
});

describe('container readers', () => {
  it('IvfReader reassembles frames split across arbitrary chunks', () => {
    const frames: number[][] = [];
    const r = new IvfReader((d, n, pts) => frames.push([n, pts, d[0]]));
    const file = Buffer.alloc(32 + 12 + 3 + 12 + 1);
    file.write('DKIF', 0);
    file.writeUInt16LE(32, 6);
    file.write('VP80', 8);
    file.writeUInt32LE(3, 32);
    file.writeUInt32LE(7, 36);
    file.set([9, 9, 9], 44);
    file.writeUInt32LE(1, 47);
    file.writeUInt32LE(0, 51);
    file.writeUInt32LE(1, 55); // pts 2^32
    file[59] = 5;
    for (let i = 0; i < file.length; i += 5) r.push(file.subarray(i, i + 5));
    expect(frames).toEqual([
      [3, 7, 9],
      [1, 0x1_0000_0000, 5],
    ]);
  });

  it('FlvH264Reader turns AVCC tags into Annex-B and prepends SPS/PPS to IDRs', () => {
    const out: { data: number[]; keyframe: boolean; ms: number }[] = [];
    const r = new FlvH264Reader((d, n, keyframe, ms) => out.push({ data: [...d.subarray(0, n)], keyframe, ms }));
    const tag = (type: number, ts: number, body: number[]) => [type, body.length >> 16, (body.length >> 8) & 0xff, body.length & 0xff, (ts >> 16) & 0xff, (ts >> 8) & 0xff, ts & 0xff, 0, 0, 0, 0, ...body, 0, 0, 0, 0];
    const config = [0x17, 0, 0, 0, 0, 1, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0, 3, 0x67, 0x42, 0xc0, 1, 0, 2, 0x68, 0xce];
    const idr = [0x17, 1, 0, 0, 0, 0, 0, 0, 2, 0x65, 0x88];
    const delta = [0x27, 1, 0, 0, 0, 0, 0, 0, 2, 0x41, 0x9a];
    const stream = Uint8Array.from([0x46, 0x4c, 0x56, 1, 1, 0, 0, 0, 9, 0, 0, 0, 0, ...tag(18, 0, [2, 0, 0]), ...tag(9, 0, config), ...tag(9, 0, idr), ...tag(9, 33, delta)]);
    r.push(stream.subarray(0, 20));
    r.push(stream.subarray(20));
    expect(out).toEqual([
      { data: [0, 0, 0, 1, 0x67, 0x42, 0xc0, 0, 0, 0, 1, 0x68, 0xce, 0, 0, 0, 1, 0x65, 0x88], keyframe: true, ms: 0 },
      { data: [0, 0, 0, 1, 0x41, 0x9a], keyframe: false, ms: 33 },
    ]);
  });
});
