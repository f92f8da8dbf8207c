/**
 * bench:record — what a recording costs: CPU per concurrent recording of one event's program,
 * against a recorder that decodes and re-encodes the program into a file, in the same run.
 *
 * One event (a presenter whose camera flashes over grain and whose microphone beeps, composed and
 * encoded by the mixer: one VP8 rendition, the Opus mix) runs for `--capture` seconds and its
 * program is captured from its ProgramTap; the event is then closed and the captured frames are
 * played again in real time, looped, through a ProgramTap (ReplayTap), so that nothing else runs
 * in this process while it is measured (the mixer's compositing alone varies by more than a
 * recording costs on a shared machine). After a warm-up recording (JIT of the muxer and cipher):
 *   1. N = 1, 5, 20 recordings (ProgramTap → mediabunny remux → age encryption → files), in
 *      `--rounds` rounds: N recordings start, run 1.5 s, one `--seconds` window of this process's
 *      CPU is measured, they stop, and a window of the replay alone follows (the reference, right
 *      after: the machine's load drifts). A round's cost is the difference of its two windows; the
 *      figure is the median over the rounds, divided by N. Frames dropped (queue overflow) and
 *      written are counted;
 *   2. baseline: one re-encoding recorder on the same program: VP8 decoded and encoded again by an
 *      ffmpeg child (libvpx realtime, the rendition's size and bitrate, to a WebM file) and the Opus
 *      mix decoded and encoded again in this process; per window, the child's CPU plus this
 *      process's above the median reference of phase 1; the median over `--rounds` windows.
 *
 * Usage: npx tsx bench/record.ts [--json] [--seconds 6] [--rounds 5] [--counts 1,5,20] [--size 1280x720] [--kbps 1500] [--capture 10] [--cpu-prof FILE]
 *   --cpu-prof: a CPU profile of the first window with recordings (Chrome DevTools format).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { OpusDecoder, OpusEncoder, ivfFileHeader, processCpuTimeMs, resolveFfmpeg } from '@mcu/codec';
import { MixerEvent, programTapOf } from '@mcu/mixer';
import type { ProgramTap, ProgramTapSink } from '@mcu/mixer';
import { DirectoryStore, Recording } from '@mcu/recording';
import { BeepFlashPresenter, flashClip } from '../packages/recording/test/beepFlash.js';

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    seconds: { type: 'string', default: '6' },
    rounds: { type: 'string', default: '5' },
    counts: { type: 'string', default: '1,5,20' },
    size: { type: 'string', default: '1280x720' },
    kbps: { type: 'string', default: '1500' },
    capture: { type: 'string', default: '10' },
    'cpu-prof': { type: 'string' },
  },
});
const LOAD_AT_START = loadavg().map((x) => +x.toFixed(2));
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const COUNTS = values.counts!.split(',').map(Number);
const [W, H] = values.size!.split('x').map(Number);
const KBPS = Number(values.kbps);
interface ReplayFrame {
  video: boolean;
  data: Uint8Array;
  mediaMs: number;
  keyframe: boolean;
  width: number;
  height: number;
}

/**
 * A ProgramTap that plays captured program frames again in real time, looped (media times keep
 * growing), so that the process does nothing else while recordings are measured: the mixer's
 * compositing varies by more than a recording costs on a shared machine.
 */
class ReplayTap implements ProgramTap {
  readonly eventId = 'bench-record';
  private readonly sinks = new Map<ProgramTapSink, boolean>();
  private readonly timer: NodeJS.Timeout;
  private next = 0;
  private loop = 0;
  private readonly t0 = performance.now();
  private readonly spanMs: number;
  private readonly audioFrame = { data: new Uint8Array(0) as Uint8Array, mediaMs: 0, durationMs: 20 };
  private readonly videoFrame = { data: new Uint8Array(0) as Uint8Array, mediaMs: 0, keyframe: false, codec: 'vp8' as const, rendition: '', width: 0, height: 0 };

  constructor(
    private readonly frames: ReplayFrame[],
    private readonly rendition: string,
    private readonly kbps: number,
  ) {
    this.spanMs = frames[frames.length - 1].mediaMs - frames[0].mediaMs + 20;
    this.videoFrame.rendition = rendition;
    this.timer = setInterval(() => this.play(), 5);
  }

  renditions() {
    return [{ id: this.rendition, codec: 'vp8' as const, bitrateKbps: this.kbps }];
  }

  subscribe(sink: ProgramTapSink, opts: { rendition?: string | false } = {}): () => void {
    this.sinks.set(sink, opts.rendition !== false);
    return () => this.sinks.delete(sink);
  }

  requestKeyframe(): void {}

  stats() {
    return { audioFrames: 0, videoFrames: {}, videoDropped: {} };
  }

  private play(): void {
    const due = this.frames[0].mediaMs + (performance.now() - this.t0);
    for (;;) {
      const f = this.frames[this.next];
      const at = f.mediaMs + this.loop * this.spanMs;
      if (at > due) return;
      if (f.video) {
        const v = this.videoFrame;
        Object.assign(v, { data: f.data, mediaMs: at, keyframe: f.keyframe, width: f.width, height: f.height });
        for (const [s, video] of this.sinks) if (video) s.video?.(v);
      } else {
        const a = this.audioFrame;
        a.data = f.data;
        a.mediaMs = at;
        for (const s of this.sinks.keys()) s.audio?.(a);
      }
      if (++this.next === this.frames.length) {
        this.next = 0;
        this.loop++;
      }
    }
  }

  close(): void {
    clearInterval(this.timer);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const selfCpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

const dir = mkdtempSync(join(tmpdir(), 'mcu-bench-record-'));
const recipient = (() => {
  const key = join(dir, 'key.txt');
  const r = spawnSync('age-keygen', ['-o', key]);
  if (r.status !== 0) throw new Error('age-keygen not found: apt-get install age');
  return spawnSync('age-keygen', ['-y', key]).stdout.toString().trim();
})();

// The event's program, captured from its ProgramTap as the mixer makes it, then replayed.
const CAPTURE_S = Number(values.capture);
const event = new MixerEvent({ id: 'bench-record', video: { renditions: [{ id: 'main', width: W, height: H, bitrateKbps: KBPS }], fps: 30, keyframeIntervalMs: 2000 } });
const presenter = new BeepFlashPresenter(event, 'p1', flashClip(W, H)).start();
await sleep(2000);
const captured: ReplayFrame[] = [];
let captureStart = NaN;
const stopCapture = programTapOf(event).subscribe(
  {
    audio: (f) => {
      if (!Number.isNaN(captureStart)) captured.push({ video: false, data: new Uint8Array(f.data), mediaMs: f.mediaMs, keyframe: true, width: 0, height: 0 });
    },
    video: (f) => {
      if (Number.isNaN(captureStart) && !f.keyframe) return;
      if (Number.isNaN(captureStart)) captureStart = f.mediaMs;
      captured.push({ video: true, data: new Uint8Array(f.data), mediaMs: f.mediaMs, keyframe: f.keyframe, width: f.width, height: f.height });
    },
  },
  { rendition: 'main' },
);
await sleep(CAPTURE_S * 1000);
stopCapture();
presenter.stop();
event.close();
const tap = new ReplayTap(captured, 'main', KBPS);
// A mixer starved by the machine's load makes a lighter program (fewer frames, fewer bytes): the
// figures of such a run are not those of the nominal program, and the run says so.
const capturedVideo = captured.filter((f) => f.video);
const capturedSpanS = (captured[captured.length - 1].mediaMs - captured[0].mediaMs) / 1000;
const capturedVideoFps = capturedVideo.length / capturedSpanS;
const capturedKbps = (capturedVideo.reduce((n, f) => n + f.data.length, 0) * 8) / 1000 / capturedSpanS;
const captureNominal = capturedVideoFps >= 25 && capturedKbps >= 0.7 * KBPS;
const store = new DirectoryStore(join(dir, 'store'));

/** `--cpu-prof FILE`: a CPU profile of the first window with recordings (Chrome DevTools format). */
async function startProfile(): Promise<{ stop(file: string): Promise<void> }> {
  const s = new Session();
  s.connect();
  await s.post('Profiler.enable');
  await s.post('Profiler.setSamplingInterval', { interval: 200 });
  await s.post('Profiler.start');
  return {
    async stop(file) {
      const { profile } = await s.post('Profiler.stop');
      writeFileSync(file, JSON.stringify(profile));
      s.disconnect();
    },
  };
}

/** Wall ms, this process's CPU ms, and extra CPU ms (children) over one window. */
async function window(extraCpu: () => number = () => 0): Promise<{ wallMs: number; cpuMs: number; extraMs: number; cores: number }> {
  const c0 = selfCpuMs();
  const e0 = extraCpu();
  const t0 = performance.now();
  await sleep(SECONDS * 1000);
  const wallMs = performance.now() - t0;
  const cpuMs = selfCpuMs() - c0;
  return { wallMs, cpuMs, extraMs: extraCpu() - e0, cores: cpuMs / wallMs };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const newRecording = (segmentMs: number) => new Recording({ tap, store, recipients: [recipient], rendition: 'main', videoCodec: 'vp8', segmentMs });

const rows: Record<string, unknown>[] = [];
process.stderr.write(`bench:record — ${W}x${H} VP8 at ${KBPS} kbps + Opus (${captured.length} frames captured over ${CAPTURE_S} s), ${ROUNDS} rounds of ${SECONDS} s windows per phase, ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}\n`);
await sleep(1000);

// Warm-up: one recording for a few seconds, discarded (JIT of the muxer and the cipher).
{
  const warm = newRecording(2000);
  await warm.start();
  await sleep(6000);
  await warm.stop();
}

// 1. N recordings. Each round: N recordings start, run `SETTLE_MS`, one window is measured, they
//    stop, and one window of the replay alone (the reference) follows; the round's cost is the
//    difference of the two windows' process CPU. Reported: the median over the rounds, divided by N.
const SETTLE_MS = 1500;
const references: number[] = [];
for (const n of COUNTS) {
  const extras: number[] = [];
  const refs: number[] = [];
  let dropped = 0;
  let writeErrors = 0;
  let bytes = 0;
  const videoFps: number[] = [];
  const audioFps: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const recs: Recording[] = [];
    for (let i = 0; i < n; i++) {
      const r = newRecording(60_000);
      await r.start();
      recs.push(r);
    }
    await sleep(SETTLE_MS);
    const before = recs.map((r) => r.summary().frames);
    const prof = values['cpu-prof'] && n === COUNTS[0] && round === 0 ? await startProfile() : null;
    const w = await window();
    if (prof) await prof.stop(values['cpu-prof']!);
    const after = recs.map((r) => r.summary());
    for (const r of recs) await r.stop();
    await sleep(500);
    const ref = await window();
    extras.push(w.cores - ref.cores);
    refs.push(ref.cores);
    dropped += after.reduce((s, r) => s + r.dropped.queueFull, 0);
    writeErrors += after.reduce((s, r) => s + r.writeErrors, 0);
    bytes += after.reduce((s, r) => s + r.size, 0) / n;
    videoFps.push((Math.min(...after.map((r, i) => r.frames.video - before[i].video)) * 1000) / w.wallMs);
    audioFps.push((Math.min(...after.map((r, i) => r.frames.audio - before[i].audio)) * 1000) / w.wallMs);
  }
  references.push(...refs);
  const perRecording = median(extras) / n;
  rows.push({
    measurement: 'recordings',
    recordings: n,
    coresPerRecording: +perRecording.toFixed(4),
    percentCorePerRecording: +(100 * perRecording).toFixed(2),
    roundsPercentCorePerRecording: extras.map((x) => +((100 * x) / n).toFixed(2)),
    droppedFrames: dropped,
    writeErrors,
    videoFpsMin: +Math.min(...videoFps).toFixed(1),
    audioFpsMin: +Math.min(...audioFps).toFixed(1),
    bytesPerRecording: Math.round(bytes / ROUNDS),
    referenceCores: +median(refs).toFixed(4),
  });
  process.stderr.write(`  ${n} recording(s): ${(100 * perRecording).toFixed(2)} % of a core each (rounds ${extras.map((x) => ((100 * x) / n).toFixed(2)).join(' ')})\n`);
}
const referenceCores = median(references);
rows.unshift({ measurement: 'replay', recordings: 0, processCores: +referenceCores.toFixed(4), capturedFrames: captured.length, capturedSeconds: CAPTURE_S, capturedVideoFps: +capturedVideoFps.toFixed(1), capturedKbps: Math.round(capturedKbps) });

// 2. Baseline: decode and re-encode, running through ROUNDS windows; its cost per window is the
//    ffmpeg child's CPU plus this process's CPU above the median reference of phase 1.
const ffmpeg = resolveFfmpeg().path;
const child = spawn(ffmpeg, ['-hide_banner', '-loglevel', 'error', '-f', 'ivf', '-i', 'pipe:0', '-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', '8', '-b:v', `${KBPS}k`, '-threads', '1', '-y', join(dir, 'reencoded.webm')], { stdio: ['pipe', 'ignore', 'inherit'] });
child.stdin.on('error', () => undefined);
child.stdin.write(ivfFileHeader('VP80', W, H, 1000));
const decoder = new OpusDecoder({ sampleRate: 48_000, channels: 1 });
const encoder = new OpusEncoder({ sampleRate: 48_000, channels: 1 });
const pcm = new Int16Array(5760);
const opusOut = new Uint8Array(1500);
let t0 = NaN;
let baselineFrames = 0;
const stopBaseline = tap.subscribe(
  {
    audio: (f) => {
      const n = decoder.decode(f.data, pcm);
      if (n > 0) encoder.encode(pcm.subarray(0, n), opusOut);
    },
    video: (f) => {
      if (Number.isNaN(t0)) {
        if (!f.keyframe) return;
        t0 = f.mediaMs;
      }
      const h = Buffer.alloc(12);
      h.writeUInt32LE(f.data.length, 0);
      h.writeUInt32LE(Math.round(f.mediaMs - t0), 4);
      child.stdin.write(h);
      child.stdin.write(Buffer.from(f.data));
      baselineFrames++;
    },
  },
  { rendition: 'main' },
);
await sleep(SETTLE_MS);
const baselineWindows: { total: number; ffmpeg: number }[] = [];
for (let round = 0; round < ROUNDS; round++) {
  const b = await window(() => processCpuTimeMs(child.pid!));
  const ffmpegCores = b.extraMs / b.wallMs;
  baselineWindows.push({ total: b.cores - referenceCores + ffmpegCores, ffmpeg: ffmpegCores });
}
stopBaseline();
child.stdin.end();
await new Promise((r) => child.once('exit', r));
decoder.close();
encoder.close();
const baselineCores = median(baselineWindows.map((b) => b.total));
rows.push({
  measurement: 'reencode-baseline',
  recordings: 1,
  coresPerRecording: +baselineCores.toFixed(4),
  percentCorePerRecording: +(100 * baselineCores).toFixed(2),
  roundsPercentCore: baselineWindows.map((b) => +(100 * b.total).toFixed(2)),
  ffmpegCores: +median(baselineWindows.map((b) => b.ffmpeg)).toFixed(4),
  frames: baselineFrames,
});

tap.close();
await store.close();
rmSync(dir, { recursive: true, force: true });

for (const r of rows) if (r.measurement === 'recordings') r.reencodeRatio = +(baselineCores / Math.max(r.coresPerRecording as number, 1e-4)).toFixed(1);
const one = rows.find((r) => r.measurement === 'recordings' && r.recordings === 1) as { coresPerRecording: number } | undefined;
const worst = Math.max(...rows.filter((r) => r.measurement === 'recordings').map((r) => r.coresPerRecording as number));
const most = rows.filter((r) => r.measurement === 'recordings').at(-1) as { recordings: number; droppedFrames: number } | undefined;
const summary = {
  bench: 'record',
  date: new Date().toISOString(),
  machine: `${cpus().length} × ${cpus()[0]?.model ?? '?'}`,
  program: `${W}x${H} VP8 ${KBPS} kbps + Opus`,
  seconds: SECONDS,
  rounds: ROUNDS,
  loadAverage: { atStart: LOAD_AT_START, atEnd: loadavg().map((x) => +x.toFixed(2)) },
  method: 'per recording = median over rounds of (process CPU with N recordings − process CPU of the replay alone in the window right after) ÷ N; re-encode = ffmpeg child CPU + this process above the median replay-alone window, median over rounds',
  rows,
  coresPerRecording: one?.coresPerRecording ?? null,
  worstCoresPerRecording: +worst.toFixed(4),
  reencodeCores: +baselineCores.toFixed(4),
  /** False when the captured program fell short of 25 fps or 70 % of its bitrate (a starved mixer): the run does not measure the nominal program. */
  captureNominal,
  ratio: one && one.coresPerRecording > 0 ? +(baselineCores / Math.max(worst, 1e-4)).toFixed(1) : null,
  targets: {
    recordingAtMost2PercentOfACore: worst <= 0.02,
    atLeast20xCheaperThanReencode: baselineCores / Math.max(worst, 1e-4) >= 20,
    mostRecordingsWithoutDrops: most ? most.droppedFrames === 0 : null,
  },
};
if (values.json) {
  console.log(JSON.stringify(summary));
} else {
  console.log(JSON.stringify(summary));
  console.log('');
  console.log('| phase | recordings | % of a core per recording | re-encode ÷ recording | dropped | min video fps | min audio fps |');
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  for (const r of rows) {
    if (r.measurement === 'replay') console.log(`| program replay alone (reference) | 0 | (process ${(100 * (r.processCores as number)).toFixed(1)} %) | | | | |`);
    else if (r.measurement === 'recordings') console.log(`| remux + age | ${r.recordings} | ${r.percentCorePerRecording} | ${r.reencodeRatio}× | ${r.droppedFrames} | ${r.videoFpsMin} | ${r.audioFpsMin} |`);
    else console.log(`| decode + re-encode baseline | 1 | ${r.percentCorePerRecording} (ffmpeg ${(100 * (r.ffmpegCores as number)).toFixed(1)}) | | | | |`);
  }
  console.log(`\nre-encoding costs ${summary.ratio}× the worst recording; targets: ${JSON.stringify(summary.targets)}`);
  if (!captureNominal) console.log(`\nthe captured program is ${capturedVideoFps.toFixed(1)} fps, ${Math.round(capturedKbps)} kbps (nominal 30 fps, ${KBPS} kbps): the mixer was starved by the machine's load; these figures are not the nominal program's`);
}
