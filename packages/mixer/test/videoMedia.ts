/** Video test media: clips encoded by ffmpeg (lavfi), RTP senders that play them, receivers that decode the mixer's output. */
import { spawnSync } from 'node:child_process';
import { H264Packetizer, VideoFrameAssembler, Vp8Packetizer, buildRtp, splitAnnexBAccessUnits } from '@mcu/rtp';
import type { VideoCodec } from '@mcu/rtp';
import { ivfFile, readIvfFile, resolveFfmpeg } from '@mcu/codec';
import { referenceDecode } from '../../codec/test/videoMedia.js';

export interface Clip {
  codec: VideoCodec;
  frames: Uint8Array[];
  keyframes: boolean[];
}

/** `filter`: an ffmpeg video filter applied to the source (e.g. `geq` to vary pictures by frame number N). */
export function lavfiClip(opts: { source: string; width: number; height: number; frames: number; codec: VideoCodec; gop: number; filter?: string; bitrateKbps?: number }): Clip {
  const filter = opts.filter === undefined ? [] : ['-vf', opts.filter];
  const input = ['-f', 'lavfi', '-i', `${opts.source}:size=${opts.width}x${opts.height}:rate=30`, ...filter, '-frames:v', String(opts.frames), '-pix_fmt', 'yuv420p'];
  const bitrate = `${opts.bitrateKbps ?? 400}k`;
  const enc =
    opts.codec === 'vp8'
      ? ['-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', '8', '-b:v', bitrate, '-g', String(opts.gop), '-keyint_min', String(opts.gop), '-f', 'ivf']
      : ['-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-profile:v', 'baseline', '-b:v', bitrate, '-g', String(opts.gop), '-bsf:v', 'h264_mp4toannexb', '-f', 'h264'];
  const r = spawnSync(resolveFfmpeg().path, ['-hide_banner', '-loglevel', 'error', ...input, ...enc, 'pipe:1'], { maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`ffmpeg failed: ${r.stderr.toString()}`);
  const frames = opts.codec === 'vp8' ? readIvfFile(r.stdout).frames.map((f) => f.data) : splitAnnexBAccessUnits(r.stdout);
  return { codec: opts.codec, frames, keyframes: frames.map((f) => (opts.codec === 'vp8' ? (f[0] & 1) === 0 : hasIdr(f))) };
}

function hasIdr(au: Uint8Array): boolean {
  for (let i = 3; i < au.length; i++) if (au[i - 1] === 1 && au[i - 2] === 0 && au[i - 3] === 0 && (au[i] & 0x1f) === 5) return true;
  return false;
}

/**
 * Plays a clip as an RTP sender would, looping it, 30 frames per second of wall time: each frame
 * packetized by our packetizer and handed to `send`. Answers a keyframe request (PLI) by jumping
 * to the clip's next keyframe, as an encoder forcing one would.
 */
export class ClipSender {
  private k = 0;
  private seq = Math.floor(Math.random() * 0x10000);
  private ts = Math.floor(Math.random() * 0x1_0000_0000);
  private timer: NodeJS.Timeout | null = null;
  private jump = false;
  framesSent = 0;
  keyframeRequests = 0;
  private readonly packetizer: Vp8Packetizer | H264Packetizer;
  private readonly ssrc = Math.floor(Math.random() * 0x1_0000_0000);

  constructor(
    private readonly clip: Clip,
    private readonly send: (packet: Buffer) => void,
  ) {
    this.packetizer = clip.codec === 'vp8' ? new Vp8Packetizer() : new H264Packetizer();
  }

  start(): this {
    const t0 = performance.now();
    let sent = 0;
    this.timer = setInterval(() => {
      const due = Math.floor((performance.now() - t0) / (1000 / 30)) + 1;
      // A live source that fell behind (a starved event loop) skips what it could not send in time
      // instead of sending seconds of frames in one burst.
      if (due - sent > 3) sent = due - 3;
      while (sent < due) {
        this.sendFrame();
        sent++;
      }
    }, 10);
    return this;
  }

  requestKeyframe(): void {
    this.keyframeRequests++;
    this.jump = true;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private sendFrame(): void {
    const n = this.clip.frames.length;
    if (this.jump) {
      this.jump = false;
      let j = this.k % n;
      while (!this.clip.keyframes[j]) j = (j + 1) % n;
      this.k = j;
    }
    const frame = this.clip.frames[this.k % n];
    this.k = (this.k + 1) % n;
    this.packetizer.packetize(frame, frame.length, (payload, length, last) => {
      this.send(buildRtp({ payloadType: 96, sequenceNumber: this.seq, timestamp: this.ts, ssrc: this.ssrc, marker: last }, payload.subarray(0, length)));
      this.seq = (this.seq + 1) & 0xffff;
    });
    this.ts = (this.ts + 3000) >>> 0;
    this.framesSent++;
  }
}

export interface ReceivedFrame {
  timestamp: number;
  keyframe: boolean;
  arrivalMs: number;
  data: Uint8Array;
}

/** A viewer of one rendition: reassembles the mixer's VP8 RTP into frames and decodes them with ffmpeg. */
export class Viewer {
  readonly frames: ReceivedFrame[] = [];
  readonly assembler: VideoFrameAssembler;

  push(packet: Uint8Array, length: number): void {
    this.assembler.push(packet, length);
  }

  constructor(private readonly codec: VideoCodec = 'vp8') {
    this.assembler = new VideoFrameAssembler({ codec });
    this.assembler.onFrame = (f) =>
      this.frames.push({ timestamp: f.timestamp, keyframe: f.keyframe, arrivalMs: performance.now(), data: f.data.slice(0, f.length) });
  }

  /** Decodes frames [from, to) (from must be a keyframe) with ffmpeg into I420 pictures. */
  decode(width: number, height: number, from = 0, to = this.frames.length): Uint8Array[] {
    if (this.codec === 'h264') return referenceDecode(Buffer.concat(this.frames.slice(from, to).map((f) => f.data)), 'h264', width, height);
    return referenceDecode(ivfFile('VP80', width, height, this.frames.slice(from, to).map((f) => f.data)), 'ivf', width, height);
  }
}

// Picture checks and polling helpers are shared with the codec's tests.
export { isAlive, meanYuv, referenceDecode, sleep, until } from '../../codec/test/videoMedia.js';
