/**
 * Test media for recordings: a presenter whose camera flashes white and whose microphone beeps at
 * the same sender instants, once a second (as in the mixer's lip-sync test), and the tools that
 * find beeps and flashes in a decoded file with ffmpeg (astats / signalstats per frame, on the
 * file's own timeline).
 */
import { spawnSync } from 'node:child_process';
import { H264Packetizer, Vp8Packetizer, buildRtp, ntpFromUnixMs } from '@mcu/rtp';
import type { VideoCodec } from '@mcu/rtp';
import { OpusEncoder } from '@mcu/codec';
import type { MixerEvent } from '@mcu/mixer';
import { lavfiClip } from '../../mixer/test/videoMedia.js';
import type { Clip } from '../../mixer/test/videoMedia.js';

export const FPS = 30;
const senderNow = () => performance.timeOrigin + performance.now();

/**
 * One second of dark grain with a white first frame (a keyframe), looped. The grain keeps the
 * program's bitrate near its target, as a camera's picture would (black compresses to nothing).
 */
export function flashClip(width: number, height: number, codec: VideoCodec = 'vp8'): Clip {
  return lavfiClip({ source: 'color=c=black', width, height, frames: FPS, codec, gop: FPS, filter: "geq=lum='if(eq(N,0),235,16+40*random(1))':cb=128:cr=128" });
}

function tone(hz: number, amplitude: number): Int16Array {
  const pcm = new Int16Array(960);
  for (let i = 0; i < pcm.length; i++) pcm[i] = Math.round(amplitude * Math.sin((2 * Math.PI * hz * i) / 48_000));
  return pcm;
}

export class BeepFlashPresenter {
  private timer: NodeJS.Timeout | null = null;
  private readonly encoder = new OpusEncoder({ sampleRate: 48_000, channels: 1 });
  private readonly packetizer: Vp8Packetizer | H264Packetizer;
  private readonly a0 = Math.floor(Math.random() * 0x1_0000_0000);
  private readonly v0 = Math.floor(Math.random() * 0x1_0000_0000);
  private audioSeq = Math.floor(Math.random() * 0x10000);
  private videoSeq = Math.floor(Math.random() * 0x10000);
  private audioNext = 0;
  private videoNext = 0;
  private srNext = 0;
  private t0 = 0;
  private readonly quiet = tone(200, 800);
  private readonly beep = tone(1000, 16_000);
  private readonly out = new Uint8Array(1500);

  constructor(
    private readonly event: MixerEvent,
    private readonly id: string,
    private readonly clip: Clip,
  ) {
    this.packetizer = clip.codec === 'vp8' ? new Vp8Packetizer() : new H264Packetizer();
  }

  /** Joins the event (audio participant and video source) and starts sending. */
  start(): this {
    this.event.attachParticipant(this.id, { kind: 'test', close: () => undefined, describe: () => ({}) });
    this.event.addVideoSource(this.id, this.clip.codec);
    this.t0 = senderNow();
    this.timer = setInterval(() => this.step(), 4);
    return this;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.encoder.close();
  }

  private step(): void {
    const elapsed = senderNow() - this.t0;
    while (this.audioNext * 20 <= elapsed) this.sendAudio(this.audioNext++);
    while ((this.videoNext * 1000) / FPS <= elapsed) this.sendVideo(this.videoNext++);
    if (elapsed >= this.srNext) {
      const ntp = ntpFromUnixMs(this.t0 + elapsed);
      this.event.senderReport(this.id, 'audio', { rtpTimestamp: (this.a0 + Math.round(elapsed * 48)) >>> 0, ntpSec: ntp.sec, ntpFrac: ntp.frac });
      this.event.senderReport(this.id, 'video', { rtpTimestamp: (this.v0 + Math.round(elapsed * 90)) >>> 0, ntpSec: ntp.sec, ntpFrac: ntp.frac });
      this.srNext += 500;
    }
  }

  private sendAudio(i: number): void {
    const n = this.encoder.encode(i % 50 === 0 ? this.beep : this.quiet, this.out);
    const p = this.event.mixer.participant(this.id);
    if (!p) return;
    p.jitter.push(this.audioSeq, (this.a0 + i * 960) >>> 0, this.out, performance.now(), -1, 0, n);
    this.audioSeq = (this.audioSeq + 1) & 0xffff;
  }

  private sendVideo(j: number): void {
    const frame = this.clip.frames[j % this.clip.frames.length];
    this.packetizer.packetize(frame, frame.length, (payload, length, last) => {
      const packet = buildRtp({ payloadType: 96, sequenceNumber: this.videoSeq, timestamp: (this.v0 + j * 3000) >>> 0, ssrc: 0x1234, marker: last }, payload.subarray(0, length));
      this.videoSeq = (this.videoSeq + 1) & 0xffff;
      this.event.pushVideoRtp(this.id, packet, packet.length);
    });
  }
}

function ffmpegLines(args: string[]): string[] {
  const r = spawnSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', ...args], { maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`ffmpeg ${args.join(' ')}: ${r.stderr.toString()}`);
  return r.stdout.toString().split('\n');
}

/** [pts seconds, value] per metadata frame printed by ametadata/metadata print to stdout. */
function metadataSeries(lines: string[], key: string): [number, number][] {
  const out: [number, number][] = [];
  let t = NaN;
  for (const line of lines) {
    const m = /pts_time:([-\d.]+)/.exec(line);
    if (m) t = Number(m[1]);
    else if (line.startsWith(`${key}=`)) {
      const v = Number(line.slice(key.length + 1));
      out.push([t, Number.isFinite(v) ? v : -200]);
    }
  }
  return out;
}

/** Peak level (dBFS) of each millisecond of the file's audio, on the file's timeline (s). */
export function audioPeaks(file: string): [number, number][] {
  const key = 'lavfi.astats.Overall.Peak_level';
  return metadataSeries(ffmpegLines(['-i', file, '-map', '0:a', '-af', `aresample=48000,asetnsamples=n=48,astats=metadata=1:reset=1,ametadata=print:key=${key}:file=-`, '-f', 'null', '-']), key);
}

/** Mean luma of each video frame, on the file's timeline (s). */
export function videoLuma(file: string): [number, number][] {
  const key = 'lavfi.signalstats.YAVG';
  return metadataSeries(ffmpegLines(['-i', file, '-map', '0:v', '-vf', `signalstats,metadata=print:key=${key}:file=-`, '-f', 'null', '-']), key);
}

/** Times (s) at which the level rises above `threshold` after at least 300 ms below it. */
export function onsets(series: [number, number][], threshold: number): number[] {
  const out: number[] = [];
  let lastAbove = -Infinity;
  for (const [t, v] of series) {
    if (v < threshold) continue;
    if (t - lastAbove > 0.3) out.push(t);
    lastAbove = t;
  }
  return out;
}

/** Flash minus nearest beep (ms) for each flash with a beep within 500 ms. */
export function skewsMs(flashes: number[], beeps: number[]): number[] {
  const out: number[] = [];
  for (const f of flashes) {
    let best = Infinity;
    for (const b of beeps) if (Math.abs(b - f) < Math.abs(best - f)) best = b;
    if (Math.abs(best - f) < 0.5) out.push((f - best) * 1000);
  }
  return out;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}
