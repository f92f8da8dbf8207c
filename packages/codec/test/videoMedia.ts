/** Test media made by ffmpeg itself (lavfi sources), and ffmpeg as the reference decoder. */
import { spawnSync } from 'node:child_process';
import { passthroughTimingArgs, resolveFfmpeg, readIvfFile } from '../src/index.js';
import { splitAnnexBAccessUnits } from '@mcu/rtp';

export interface EncodedClip {
  frames: Uint8Array[];
  keyframes: boolean[];
}

/** `frames` frames of a lavfi source (e.g. "color=red" or "testsrc2"), encoded by ffmpeg to VP8 (IVF) or H.264 (Annex-B). */
export function lavfiClip(opts: { source: string; width: number; height: number; frames: number; codec: 'vp8' | 'h264'; gop: number }): EncodedClip {
  const ffmpeg = resolveFfmpeg().path;
  const input = ['-f', 'lavfi', '-i', `${opts.source}:size=${opts.width}x${opts.height}:rate=30`, '-frames:v', String(opts.frames)];
  const enc =
    opts.codec === 'vp8'
      ? ['-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', '8', '-b:v', '300k', '-g', String(opts.gop), '-keyint_min', String(opts.gop), '-f', 'ivf']
      : ['-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-profile:v', 'baseline', '-b:v', '300k', '-g', String(opts.gop), '-bsf:v', 'h264_mp4toannexb', '-f', 'h264'];
  const r = spawnSync(ffmpeg, ['-hide_banner', '-loglevel', 'error', ...input, '-pix_fmt', 'yuv420p', ...enc, 'pipe:1'], { maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`ffmpeg failed: ${r.stderr.toString()}`);
  if (opts.codec === 'vp8') {
    const frames = readIvfFile(r.stdout).frames.map((f) => f.data);
    return { frames, keyframes: frames.map((f) => (f[0] & 1) === 0) };
  }
  const frames = splitAnnexBAccessUnits(r.stdout);
  return { frames, keyframes: frames.map(hasIdr) };
}

export function hasIdr(au: Uint8Array): boolean {
  for (let i = 3; i < au.length; i++) if (au[i - 1] === 1 && au[i - 2] === 0 && au[i - 3] === 0 && (au[i] & 0x1f) === 5) return true;
  return false;
}

/** Decodes a whole VP8 IVF file or H.264 Annex-B stream with ffmpeg into I420 frames of the stream's size. */
export function referenceDecode(data: Uint8Array, format: 'ivf' | 'h264', width: number, height: number): Uint8Array[] {
  const bin = resolveFfmpeg();
  const r = spawnSync(
    bin.path,
    // One picture out per frame in: without passthrough an older ffmpeg (the bundled 2018 build)
    // drops or duplicates frames to a constant rate it guesses.
    ['-hide_banner', '-loglevel', 'error', '-f', format, '-i', 'pipe:0', ...passthroughTimingArgs(bin), '-f', 'rawvideo', '-pix_fmt', 'yuv420p', 'pipe:1'],
    { input: data, maxBuffer: 1 << 28 },
  );
  if (r.status !== 0) throw new Error(`ffmpeg failed: ${r.stderr.toString()}`);
  const size = (width * height * 3) / 2;
  const frames: Uint8Array[] = [];
  for (let o = 0; o + size <= r.stdout.length; o += size) frames.push(r.stdout.subarray(o, o + size));
  return frames;
}

/** Mean Y, U, V over a rectangle (even coordinates) of an I420 picture. */
export function meanYuv(data: Uint8Array, width: number, height: number, rect = { x: 0, y: 0, w: width, h: height }): { y: number; u: number; v: number } {
  let y = 0;
  let u = 0;
  let v = 0;
  for (let r = rect.y; r < rect.y + rect.h; r++) for (let c = rect.x; c < rect.x + rect.w; c++) y += data[r * width + c];
  const cw = width / 2;
  const uo = width * height;
  const vo = uo + cw * (height / 2);
  for (let r = rect.y / 2; r < (rect.y + rect.h) / 2; r++) {
    for (let c = rect.x / 2; c < (rect.x + rect.w) / 2; c++) {
      u += data[uo + r * cw + c];
      v += data[vo + r * cw + c];
    }
  }
  const n = rect.w * rect.h;
  return { y: y / n, u: (u * 4) / n, v: (v * 4) / n };
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until `cond` holds or `timeoutMs` passes. */
export async function until(cond: () => boolean, timeoutMs = 5000, stepMs = 20): Promise<boolean> {
  const end = performance.now() + timeoutMs;
  while (performance.now() < end) {
    if (cond()) return true;
    await sleep(stepMs);
  }
  return cond();
}
