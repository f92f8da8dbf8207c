import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Vp8Packetizer, buildRtp, ntpFromUnixMs } from '@mcu/rtp';
import { ivfFile, OpusDecoder, OpusEncoder } from '@mcu/codec';
import { MixerEvent, rtpTimestampAt, systemMediaClock } from '../src/index.js';
import { Viewer, isAlive, lavfiClip, referenceDecode, sleep, until } from './videoMedia.js';
import type { Clip } from './videoMedia.js';

/**
 * A presenter whose camera shows a white frame and whose microphone beeps at the same sender
 * instants, once a second, with sender reports for both streams; its video reaches the mixer
 * `videoLateMs` later than its audio. The program's beeps and flashes are found by decoding the
 * program audio (Opus) and video (VP8) and put on the media clock by their RTP timestamps.
 */
const W = 320;
const H = 180;
const FPS = 30;
const VIDEO_LATE_MS = 150;

let clip: Clip;
beforeAll(() => {
  // One second of black with a white first frame (a keyframe), looped by the presenter.
  clip = lavfiClip({ source: 'color=c=black', width: W, height: H, frames: FPS, codec: 'vp8', gop: FPS, filter: "geq=lum='if(eq(N,0),235,16)':cb=128:cr=128" });
});

/** Sender clock: wall time in ms (what a browser's NTP timestamps say). */
const senderNow = () => performance.timeOrigin + performance.now();

class Presenter {
  private timer: NodeJS.Timeout | null = null;
  private readonly encoder = new OpusEncoder({ sampleRate: 48_000, channels: 1 });
  private readonly packetizer = new Vp8Packetizer();
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
    private readonly videoLateMs: number,
  ) {}

  start(): void {
    this.t0 = senderNow();
    this.timer = setInterval(() => this.step(), 4);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.encoder.close();
  }

  private step(): void {
    const elapsed = senderNow() - this.t0;
    while (this.audioNext * 20 <= elapsed) this.sendAudio(this.audioNext++);
    while ((this.videoNext * 1000) / FPS + this.videoLateMs <= elapsed) this.sendVideo(this.videoNext++);
    if (elapsed >= this.srNext) {
      // RFC 3550 §6.4.1: the NTP and RTP times of the same sender instant, for each stream.
      const ntp = ntpFromUnixMs(this.t0 + elapsed);
      this.event.senderReport(this.id, 'audio', { rtpTimestamp: (this.a0 + Math.round(elapsed * 48)) >>> 0, ntpSec: ntp.sec, ntpFrac: ntp.frac });
      this.event.senderReport(this.id, 'video', { rtpTimestamp: (this.v0 + Math.round(elapsed * 90)) >>> 0, ntpSec: ntp.sec, ntpFrac: ntp.frac });
      this.srNext += 500;
    }
  }

  /** Frame i was captured at sender time t0 + 20·i; every 50th (once a second) is a beep. */
  private sendAudio(i: number): void {
    const n = this.encoder.encode(i % 50 === 0 ? this.beep : this.quiet, this.out);
    const p = this.event.mixer.participant(this.id)!;
    p.jitter.push(this.audioSeq, (this.a0 + i * 960) >>> 0, this.out, performance.now(), -1, 0, n);
    this.audioSeq = (this.audioSeq + 1) & 0xffff;
  }

  /** Frame j was captured at sender time t0 + j/30 s; every 30th (once a second) is white. */
  private sendVideo(j: number): void {
    const frame = clip.frames[j % clip.frames.length];
    this.packetizer.packetize(frame, frame.length, (payload, length, last) => {
      const packet = buildRtp({ payloadType: 96, sequenceNumber: this.videoSeq, timestamp: (this.v0 + j * 3000) >>> 0, ssrc: 0x1234, marker: last }, payload.subarray(0, length));
      this.videoSeq = (this.videoSeq + 1) & 0xffff;
      this.event.pushVideoRtp(this.id, packet, packet.length);
    });
  }
}

/** 20 ms of a sine that fits the frame exactly (so consecutive frames join without a click). */
function tone(hz: number, amplitude: number): Int16Array {
  const pcm = new Int16Array(960);
  for (let i = 0; i < pcm.length; i++) pcm[i] = Math.round(amplitude * Math.sin((2 * Math.PI * hz * i) / 48_000));
  return pcm;
}

/** Media time of an RTP timestamp of a stream on the media clock, for times after `refMs`. */
function mediaOf(ts: number, clockRate: number, base: number, refMs: number): number {
  return refMs + ((((ts - rtpTimestampAt(refMs, clockRate, base)) >>> 0) * 1000) / clockRate);
}

/** Media times at which the program audio turns loud after at least 300 ms of quiet. */
function beepOnsets(packets: Buffer[], base: number, refMs: number): number[] {
  const decoder = new OpusDecoder({ sampleRate: 48_000, channels: 1 });
  const pcm = new Int16Array(5760);
  const onsets: number[] = [];
  let lastLoud = -Infinity;
  for (const packet of packets) {
    const ts = packet.readUInt32BE(4);
    const payload = packet.subarray(12 + 4 * (packet[0] & 0x0f));
    const n = decoder.decode(payload, pcm);
    const at = mediaOf(ts, 48_000, base, refMs);
    for (let k = 0; k < n; k++) {
      if (Math.abs(pcm[k]) < 8000) continue;
      const t = at + k / 48;
      if (t - lastLoud > 300) onsets.push(t);
      lastLoud = t;
    }
  }
  decoder.close();
  return onsets;
}

/** Media times of the first bright program picture of each flash. */
function flashOnsets(viewer: Viewer, base: number, refMs: number): number[] {
  const first = viewer.frames.findIndex((f) => f.keyframe);
  const frames = viewer.frames.slice(first);
  // One picture per frame (passthrough), so picture k is frame k.
  const pictures = referenceDecode(ivfFile('VP80', W, H, frames.map((f) => f.data), FPS), 'ivf', W, H);
  expect(pictures.length).toBe(frames.length);
  const luma = pictures.map((p) => {
    let sum = 0;
    for (let i = 0; i < W * H; i++) sum += p[i];
    return sum / (W * H);
  });
  const mid = (Math.min(...luma) + Math.max(...luma)) / 2;
  const onsets: number[] = [];
  for (let k = 1; k < luma.length; k++) if (luma[k] > mid && luma[k - 1] <= mid) onsets.push(mediaOf(frames[k].timestamp, 90_000, base, refMs));
  return onsets;
}

interface Run {
  /** Flash minus nearest beep, ms, for flashes in the measured window (> 0: video late). */
  skews: number[];
  avSync: Record<string, unknown> | null;
  stretched: number;
  /** What the audio waits in its jitter buffer (its target or its depth, whichever is more; lip-sync delay left out), ms, every 50 ms over the measured window. */
  audioWaitMs: number[];
}

const events: MixerEvent[] = [];
afterEach(async () => {
  for (const e of events.splice(0)) {
    const ids = e.videoMixer?.processIds();
    e.close();
    const pids = ids ? [...Object.values(ids.decoders), ...Object.values(ids.encoders)].filter((p): p is number => p !== null) : [];
    expect(await until(() => pids.every((pid) => !isAlive(pid)))).toBe(true);
  }
});

/** Runs a presenter for `warmupMs + measureMs` and measures the program's skew over the last `measureMs`. */
async function run(maxLipSyncDelayMs: number, warmupMs: number, measureMs: number): Promise<Run> {
  const event = new MixerEvent({
    id: 'lip-sync',
    maxLipSyncDelayMs,
    video: { renditions: [{ id: 'main', width: W, height: H, bitrateKbps: 600 }], fps: FPS },
  });
  events.push(event);
  const refMs = systemMediaClock.nowMs() - 1000;
  const audio: Buffer[] = [];
  event.mixer.addProgramSink((p) => audio.push(p));
  const viewer = new Viewer();
  event.addVideoProgramSink(undefined, (packet, length) => viewer.push(packet, length));
  const id = 'presenter';
  event.attachParticipant(id, { kind: 'test', close: () => undefined, describe: () => ({}) });
  event.addVideoSource(id, 'vp8');
  const presenter = new Presenter(event, id, VIDEO_LATE_MS);
  presenter.start();
  await sleep(warmupMs);
  const measureFrom = systemMediaClock.nowMs();
  // What the audio waits in its jitter buffer over the measured window (lip-sync delay left out).
  const jitter = event.mixer.participant(id)!.jitter;
  const waits: number[] = [];
  const sampler = setInterval(() => waits.push(Math.max(jitter.targetDelayMs, jitter.depthMs) - jitter.syncDelayAppliedMs), 50);
  await sleep(measureMs);
  clearInterval(sampler);
  presenter.stop();
  const summary = event.participantSummary(id)!;
  const video = event.videoMixer!;
  const flashes = flashOnsets(viewer, video.renditions[0].rtpTimestampBase, refMs);
  const beeps = beepOnsets(audio, event.mixer.programTimestampBase, refMs);
  const skews: number[] = [];
  for (const f of flashes) {
    if (f < measureFrom) continue;
    const b = beeps.reduce((best, t) => (Math.abs(t - f) < Math.abs(best - f) ? t : best), -Infinity);
    if (Math.abs(f - b) < 500) skews.push(f - b);
  }
  return { skews, avSync: summary.avSync as Record<string, unknown> | null, stretched: summary.stats.jitter.stretched, audioWaitMs: waits };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

describe('lip sync from the presenters’ sender reports', () => {
  it('without compensation, video that arrives 150 ms late is about that late in the program', async () => {
    const r = await run(0, 2500, 5000);
    expect(r.skews.length).toBeGreaterThanOrEqual(4);
    const skew = median(r.skews);
    console.log(`uncompensated program skew (flash − beep): ${r.skews.map((s) => s.toFixed(0)).join(', ')} ms; stats ${JSON.stringify(r.avSync)}; audio jitter wait median ${median(r.audioWaitMs)} ms, max ${Math.max(...r.audioWaitMs)} ms`);
    // Video 150 ms late, less what the audio waits in its jitter buffer (20 ms on a quiet machine,
    // more on a loaded one, where the presenter's own timer is late too), less a tick or two.
    expect(skew).toBeGreaterThan(VIDEO_LATE_MS - median(r.audioWaitMs) - 40);
    expect(skew).toBeLessThan(220);
    // The mixer's own measurement agrees with what a viewer sees.
    expect(r.avSync).not.toBeNull();
    expect(Math.abs((r.avSync!.avSkewMs as number) - skew)).toBeLessThan(20);
    expect(r.avSync!.videoHoldMs).toBe(0);
    expect(r.avSync!.audioDelayMs).toBe(0);
  }, 30_000);

  it('with compensation, the presenter’s audio is delayed to meet its video', async () => {
    const r = await run(200, 7000, 6000);
    expect(r.skews.length).toBeGreaterThanOrEqual(5);
    console.log(`compensated program skew (flash − beep): ${r.skews.map((s) => s.toFixed(0)).join(', ')} ms; stats ${JSON.stringify(r.avSync)}`);
    expect(Math.abs(median(r.skews))).toBeLessThan(45);
    for (const s of r.skews) expect(Math.abs(s)).toBeLessThan(70);
    expect(r.avSync!.avSkewUncompensatedMs as number).toBeGreaterThan(90);
    expect(r.avSync!.audioDelayMs as number).toBeGreaterThan(60);
    expect(r.stretched).toBeGreaterThan(0);
  }, 35_000);
});
