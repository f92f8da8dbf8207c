/**
 * bench:video — the video half of the MCU, against ffmpeg's own compositor in the same run.
 *
 * 1. Compositor alone: a 3×3 grid of 426×240 tiles (16:9 sources) composed into a 1280×720 I420
 *    canvas, in a tight loop: frames per second on this one thread (target ≥ 500).
 * 2. Pipeline: 9 VP8 sources (640×360, pre-encoded by ffmpeg, looped, packetized into RTP and pushed
 *    at 30 fps) into a VideoMixer in grid layout: 9 ffmpeg decodes at tile size, compose in
 *    TypeScript, 720p and 360p VP8 encodes, RTP out. CPU over `--seconds`: this process
 *    (process.cpuUsage, including the RTP senders) plus every ffmpeg child (/proc/<pid>/stat).
 *    Target: within one core.
 * 3. Baseline: one ffmpeg doing the same from the same 9 clips (`-re -stream_loop -1`): decode,
 *    scale each to 426×240, `xstack` 3×3, pad to 1280×720, split, encode 720p and 360p with the
 *    same libvpx settings. Its CPU over the same window.
 *
 * Usage: npx tsx bench/video.ts [--json] [--seconds 10] [--source 640x360] [--skip-pipeline]
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Vp8Packetizer, buildRtp } from '@mcu/rtp';
import { processCpuTimeMs, readIvfFile, resolveFfmpeg } from '@mcu/codec';
import type { I420Frame } from '@mcu/codec';
import { Compositor, VideoMixer, computeLayout } from '@mcu/mixer';

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    seconds: { type: 'string', default: '10' },
    source: { type: 'string', default: '640x360' },
    'skip-pipeline': { type: 'boolean', default: false },
  },
});
const SECONDS = Number(values.seconds);
const [SRC_W, SRC_H] = values.source!.split('x').map(Number);
const ffmpeg = resolveFfmpeg();
const rows: Record<string, unknown>[] = [];

function emit(row: Record<string, unknown>): void {
  rows.push(row);
  if (values.json) process.stdout.write(`${JSON.stringify(row)}\n`);
  else process.stderr.write(`  ${row.measurement} done\n`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const cores = (cpuMs: number, wallMs: number) => +(cpuMs / wallMs).toFixed(3);

// ---------------------------------------------------------------------------------------------
// 1. Compositor alone.
function benchCompositor(): void {
  const W = 1280;
  const H = 720;
  const ids = Array.from({ length: 9 }, (_, i) => `s${i}`);
  const regions = computeLayout({ kind: 'grid' }, ids, { width: W, height: H });
  const frames: I420Frame[] = regions.map((r, i) => {
    const data = new Uint8Array(r.width * r.height * 1.5);
    for (let p = 0; p < r.width * r.height; p++) data[p] = (p * (i + 1)) & 0xff;
    data.fill(128 + i, r.width * r.height);
    return { data, width: r.width, height: r.height };
  });
  for (const labels of [false, true]) {
    const c = new Compositor(W, H, { labels });
    const canvas = new Uint8Array(c.frameBytes);
    const tiles = regions.map((region, i) => ({ region, frame: frames[i], highlight: i === 4, label: labels ? `Speaker ${i + 1}` : undefined }));
    for (let i = 0; i < 200; i++) c.compose(canvas, tiles); // warm up the JIT
    let n = 0;
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    while (performance.now() - t0 < 2000) {
      c.compose(canvas, tiles);
      n++;
    }
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    emit({
      bench: 'video',
      measurement: labels ? 'compositor+labels' : 'compositor',
      layout: 'grid 3x3',
      canvas: `${W}x${H}`,
      tile: `${regions[0].width}x${regions[0].height}`,
      fps: Math.round((n * 1000) / ms),
      msPerFrame: +(ms / n).toFixed(3),
      cores: cores((cpu.user + cpu.system) / 1000, ms),
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Inputs for 2 and 3: nine 2-second VP8 clips (different hues, moving test pattern).
function makeClips(dir: string): { path: string; frames: Uint8Array[] }[] {
  const clips: { path: string; frames: Uint8Array[] }[] = [];
  for (let i = 0; i < 9; i++) {
    const path = join(dir, `source${i}.ivf`);
    const r = spawnSync(
      ffmpeg.path,
      [
        ...['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', `testsrc2=size=${SRC_W}x${SRC_H}:rate=30`, '-frames:v', '60'],
        ...['-vf', `hue=h=${i * 40}`, '-pix_fmt', 'yuv420p', '-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', '8'],
        ...['-b:v', '600k', '-g', '60', '-keyint_min', '60', '-f', 'ivf', '-y', path],
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    if (r.status !== 0) throw new Error(`encoding clip ${i} failed: ${r.stderr.toString()}`);
    clips.push({ path, frames: readIvfFile(readFileSync(path)).frames.map((f) => f.data) });
  }
  return clips;
}

/** CPU (ms) of a set of pids right now; pids that are gone count 0. */
function childCpuMs(pids: number[]): number {
  let sum = 0;
  for (const pid of pids) {
    const ms = processCpuTimeMs(pid);
    if (Number.isFinite(ms)) sum += ms;
  }
  return sum;
}

// ---------------------------------------------------------------------------------------------
// 2. Our pipeline.
async function benchPipeline(clips: { frames: Uint8Array[] }[]): Promise<void> {
  let packetsOut = 0;
  let bytesOut = 0;
  const mixer = new VideoMixer(
    (_r, _p, length) => {
      packetsOut++;
      bytesOut += length;
    },
    { layout: { kind: 'grid' }, ffmpegNiceness: 0 },
  );
  const senders = clips.map((clip, i) => {
    const id = `s${i}`;
    mixer.addSource(id, { codec: 'vp8', name: `Source ${i + 1}` });
    const packetizer = new Vp8Packetizer();
    let k = 0;
    let seq = 0;
    let ts = 0;
    let jump = false;
    const sendFrame = () => {
      if (jump) {
        jump = false;
        k = 0; // frame 0 is the clip's keyframe
      }
      const f = clip.frames[k];
      k = (k + 1) % clip.frames.length;
      packetizer.packetize(f, f.length, (payload, length, last) => {
        const packet = buildRtp({ payloadType: 96, sequenceNumber: seq, timestamp: ts, ssrc: 1000 + i, marker: last }, payload.subarray(0, length));
        seq = (seq + 1) & 0xffff;
        mixer.pushRtp(id, packet, packet.length);
      });
      ts = (ts + 3000) >>> 0;
    };
    return { id, sendFrame, pli: () => (jump = true) };
  });
  mixer.on('keyframeRequest', (id) => senders.find((s) => s.id === id)?.pli());
  const t0 = performance.now();
  let sent = 0;
  const timer = setInterval(() => {
    const due = Math.floor((performance.now() - t0) / (1000 / 30)) + 1;
    for (; sent < due; sent++) for (const s of senders) s.sendFrame();
  }, 5);

  // Warm up until every tile decodes and both encoders deliver.
  const warmEnd = performance.now() + 15_000;
  while (performance.now() < warmEnd) {
    const st = mixer.stats();
    if (Object.values(st.sources).every((s) => s.framesDecoded > 30) && Object.values(st.renditions).every((r) => r.framesEncoded > 30)) break;
    await sleep(100);
  }
  await sleep(1000);
  const pidsOf = () => {
    const ids = mixer.processIds();
    return [...Object.values(ids.decoders), ...Object.values(ids.encoders)].filter((p): p is number => p !== null);
  };
  const pids = pidsOf();
  const ids0 = mixer.processIds();
  const decoderPids = Object.values(ids0.decoders).filter((p): p is number => p !== null);
  const encoderPids = Object.fromEntries(Object.entries(ids0.encoders).map(([id, p]) => [id, p ?? -1]));
  const s0 = mixer.stats();
  const child0 = childCpuMs(pids);
  const dec0 = childCpuMs(decoderPids);
  const enc0 = Object.fromEntries(Object.entries(encoderPids).map(([id, p]) => [id, childCpuMs([p])]));
  const cpu0 = process.cpuUsage();
  const w0 = performance.now();
  const p0 = packetsOut;
  const b0 = bytesOut;
  await sleep(SECONDS * 1000);
  const wall = performance.now() - w0;
  const cpu = process.cpuUsage(cpu0);
  const child = childCpuMs(pids) - child0;
  const decodersMs = childCpuMs(decoderPids) - dec0;
  const encodersMs = Object.fromEntries(Object.entries(encoderPids).map(([id, p]) => [id, cores(childCpuMs([p]) - enc0[id], wall)]));
  const s1 = mixer.stats();
  const samePids = pidsOf().join() === pids.join();
  clearInterval(timer);
  const nodeMs = (cpu.user + cpu.system) / 1000;
  const perRendition = Object.fromEntries(
    Object.entries(s1.renditions).map(([id, r]) => [
      id,
      {
        fps: +(((r.framesEncoded - s0.renditions[id].framesEncoded) * 1000) / wall).toFixed(1),
        kbps: Math.round(((r.bytesOut - s0.renditions[id].bytesOut) * 8) / wall),
        encodeLatencyMs: +r.encodeLatencyAvgMs.toFixed(1),
        dropped: r.dropped - s0.renditions[id].dropped,
      },
    ]),
  );
  const decoded = Object.entries(s1.sources).reduce((sum, [id, s]) => sum + s.framesDecoded - s0.sources[id].framesDecoded, 0);
  emit({
    bench: 'video',
    measurement: 'pipeline',
    sources: `9 × VP8 ${SRC_W}x${SRC_H}@30`,
    layout: 'grid 3x3',
    renditions: '1280x720@30 1500k + 640x360@30 500k VP8',
    seconds: +(wall / 1000).toFixed(1),
    cores: cores(nodeMs + child, wall),
    nodeCores: cores(nodeMs, wall),
    ffmpegCores: cores(child, wall),
    decodersCores: cores(decodersMs, wall),
    encoderCores: encodersMs,
    composedFps: +(((s1.framesComposed - s0.framesComposed) * 1000) / wall).toFixed(1),
    decodedFps: +((decoded * 1000) / wall).toFixed(1),
    composeP50Ms: +s1.composeMs.p50.toFixed(3),
    composeP99Ms: +s1.composeMs.p99.toFixed(3),
    renditionStats: perRendition,
    packetsPerSecond: Math.round(((packetsOut - p0) * 1000) / wall),
    outputKbps: Math.round(((bytesOut - b0) * 8) / wall),
    restarts: s1.restarts,
    processesStable: samePids,
    ffmpeg: `${ffmpeg.source} ${ffmpeg.version.split(' ')[2]}`,
  });
  mixer.close();
}

// ---------------------------------------------------------------------------------------------
// 3. ffmpeg's xstack doing the same job in one process.
async function benchXstack(clips: { path: string }[]): Promise<void> {
  const inputs = clips.flatMap((c) => ['-re', '-stream_loop', '-1', '-i', c.path]);
  const scale = clips.map((_, i) => `[${i}:v]scale=426:240:force_original_aspect_ratio=decrease,pad=426:240:(ow-iw)/2:(oh-ih)/2,setsar=1[v${i}]`).join(';');
  const grid = '0_0|w0_0|w0+w1_0|0_h0|w0_h0|w0+w1_h0|0_h0+h3|w0_h0+h3|w0+w1_h0+h3';
  const filter = `${scale};${clips.map((_, i) => `[v${i}]`).join('')}xstack=inputs=9:layout=${grid},pad=1280:720:1:0,split=2[hd][s];[s]scale=640:360:flags=area[sd]`;
  const vp8 = (kbps: number) => ['-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', '8', '-lag-in-frames', '0', '-error-resilient', '1', '-auto-alt-ref', '0', '-threads', '1', '-g', '90', '-b:v', `${kbps}k`, '-minrate', `${kbps}k`, '-maxrate', `${kbps}k`, '-bufsize', `${kbps}k`];
  const args = [
    ...['-hide_banner', '-loglevel', 'error', '-nostats'],
    ...inputs,
    '-filter_complex',
    filter,
    ...['-map', '[hd]', ...vp8(1500), '-f', 'ivf', '-y', '/dev/null'],
    ...['-map', '[sd]', ...vp8(500), '-f', 'ivf', '-y', '/dev/null'],
  ];
  const child = spawn(ffmpeg.path, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  await sleep(3000); // start-up and the first frames
  const pid = child.pid!;
  const c0 = processCpuTimeMs(pid);
  const w0 = performance.now();
  await sleep(SECONDS * 1000);
  const wall = performance.now() - w0;
  const used = processCpuTimeMs(pid) - c0;
  child.kill('SIGKILL');
  if (!Number.isFinite(used)) throw new Error(`xstack baseline died: ${stderr}`);
  emit({
    bench: 'video',
    measurement: 'baseline-xstack',
    sources: `9 × VP8 ${SRC_W}x${SRC_H}@30`,
    layout: 'xstack 3x3',
    renditions: '1280x720@30 1500k + 640x360@30 500k VP8',
    seconds: +(wall / 1000).toFixed(1),
    cores: cores(used, wall),
    ffmpeg: `${ffmpeg.source} ${ffmpeg.version.split(' ')[2]}`,
  });
}

benchCompositor();
if (!values['skip-pipeline']) {
  const dir = mkdtempSync(join(tmpdir(), 'bench-video-'));
  try {
    const clips = makeClips(dir);
    await benchPipeline(clips);
    await benchXstack(clips);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (!values.json) {
  console.log(`bench:video — ffmpeg: ${ffmpeg.source} (${ffmpeg.path}), ${ffmpeg.version.split(' ').slice(0, 3).join(' ')}`);
  const table = rows.map((r) => ({
    measurement: String(r.measurement),
    what: String(r.measurement).startsWith('compositor') ? `${r.layout} → ${r.canvas}` : `${r.sources} → ${r.renditions}`,
    result: String(r.measurement).startsWith('compositor') ? `${r.fps} fps (${r.msPerFrame} ms/frame)` : `${r.cores} cores`,
    detail: String(r.measurement) === 'pipeline' ? `node ${r.nodeCores} + ffmpeg ${r.ffmpegCores}; composed ${r.composedFps} fps, compose p99 ${r.composeP99Ms} ms` : '',
  }));
  const header = { measurement: 'measurement', what: 'what', result: 'result', detail: 'detail' };
  const keys = Object.keys(header) as (keyof typeof header)[];
  const widths = keys.map((k) => Math.max(header[k].length, ...table.map((t) => t[k].length)));
  const fmt = (row: Record<string, string>) => keys.map((k, i) => row[k].padEnd(widths[i])).join('  ');
  console.log(fmt(header));
  for (const t of table) console.log(fmt(t));
  console.log('targets: compositor ≥ 500 fps on one core; pipeline within one core');
  for (const r of rows) console.log(JSON.stringify(r));
}
