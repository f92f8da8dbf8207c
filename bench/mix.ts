/**
 * bench:mix — the real mixing tick against the naive MCU, side by side in one process.
 *
 * For each N: N participants with pre-encoded Opus input (3 talking tones, the rest silence, all
 * with RFC 6464 levels), one packet per participant per tick pushed into the jitter buffers, then
 * the tick: selection, decode of the speakers, mix, N_speakers + 1 encodes, N RTP packets written.
 * The naive baseline in the same run decodes all N, builds a mix-minus for each of N and encodes
 * each (N encodes per tick), then writes the same N packets.
 *
 * Usage: npm run bench:mix [-- --json] [-- --n 50,100,250] [-- --ticks 500]
 */
import { parseArgs } from 'node:util';
import { JitterBuffer, writeRtp } from '@mcu/rtp';
import { OpusDecoder, OpusEncoder, opusBackend } from '@mcu/codec';
import { AudioMixer } from '@mcu/mixer';

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    n: { type: 'string', default: '50,100,150,250,500,1000' },
    ticks: { type: 'string', default: '500' },
    talkers: { type: 'string', default: '3' },
  },
});
const sizes = values.n!.split(',').map(Number);
const TICKS = Number(values.ticks);
const TALKERS = Number(values.talkers);
const FRAME = 960;
const CYCLE = 50;

function encodeCycle(freq: number): Buffer[] {
  const enc = new OpusEncoder({ bitrate: 32_000 });
  const pcm = new Int16Array(FRAME);
  const out = new Uint8Array(1500);
  const frames: Buffer[] = [];
  for (let f = 0; f < CYCLE; f++) {
    for (let i = 0; i < FRAME; i++) pcm[i] = freq ? Math.round(8000 * Math.sin((2 * Math.PI * freq * (f * FRAME + i)) / 48_000)) : 0;
    frames.push(Buffer.from(out.subarray(0, enc.encode(pcm, out))));
  }
  enc.close();
  return frames;
}

const talkerFrames = Array.from({ length: TALKERS }, (_, i) => encodeCycle(300 + 250 * i));
const silentFrames = encodeCycle(0);
const framesOf = (i: number) => (i < TALKERS ? talkerFrames[i] : silentFrames);
const levelOf = (i: number) => (i < TALKERS ? 10 + i * 3 : 127);

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

/** Our tick, as the mixer runs it. */
function runMixer(n: number, ticks: number): number[] {
  let now = 0;
  let packets = 0;
  const mixer = new AudioMixer(() => void packets++, { maxSpeakers: 3, now: () => now });
  const ps = Array.from({ length: n }, (_, i) => {
    const p = mixer.addParticipant(`p${i}`);
    p.inSsrc = i + 1;
    return p;
  });
  const times: number[] = [];
  const warmup = 50;
  for (let k = 0; k < warmup + ticks; k++) {
    now += 20;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) ps[i].jitter.push(k & 0xffff, (k * FRAME) >>> 0, framesOf(i)[k % CYCLE], now, levelOf(i));
    mixer.tick(k);
    const dt = performance.now() - t0;
    if (k >= warmup) times.push(dt);
  }
  if (mixer.speakerIds.length !== Math.min(3, TALKERS)) throw new Error(`expected ${TALKERS} speakers, got ${mixer.speakerIds.length}`);
  if (packets !== n * (warmup + ticks)) throw new Error(`expected ${n * (warmup + ticks)} packets, wrote ${packets}`);
  mixer.close();
  return times;
}

/** The naive MCU: decode everyone, mix-minus and encode for everyone. */
function runNaive(n: number, ticks: number): number[] {
  const decoders = Array.from({ length: n }, () => new OpusDecoder());
  const encoders = Array.from({ length: n }, () => new OpusEncoder({ bitrate: 32_000 }));
  const jitter = Array.from({ length: n }, () => new JitterBuffer());
  const pcm = Array.from({ length: n }, () => new Int16Array(FRAME));
  const sum = new Int32Array(FRAME);
  const mix = new Int16Array(FRAME);
  const payload = new Uint8Array(1500);
  const packet = new Uint8Array(1500);
  const fields = { payloadType: 111, sequenceNumber: 0, timestamp: 0, ssrc: 1 };
  const times: number[] = [];
  const warmup = 5;
  let now = 0;
  for (let k = 0; k < warmup + ticks; k++) {
    now += 20;
    const t0 = performance.now();
    sum.fill(0);
    for (let i = 0; i < n; i++) {
      jitter[i].push(k & 0xffff, (k * FRAME) >>> 0, framesOf(i)[k % CYCLE], now, levelOf(i));
      const kind = jitter[i].pop(now);
      if (kind === 'frame') decoders[i].decode(jitter[i].payload, pcm[i]);
      else pcm[i].fill(0);
      const x = pcm[i];
      for (let s = 0; s < FRAME; s++) sum[s] += x[s];
    }
    for (let i = 0; i < n; i++) {
      const own = pcm[i];
      for (let s = 0; s < FRAME; s++) {
        const v = sum[s] - own[s];
        mix[s] = v > 32767 ? 32767 : v < -32768 ? -32768 : v;
      }
      const len = encoders[i].encode(mix, payload);
      fields.sequenceNumber = k & 0xffff;
      fields.ssrc = i + 1;
      writeRtp(packet, fields, payload, len);
    }
    const dt = performance.now() - t0;
    if (k >= warmup) times.push(dt);
  }
  for (const d of decoders) d.close();
  for (const e of encoders) e.close();
  return times;
}

interface Row {
  n: number;
  p50Ms: number;
  p99Ms: number;
  naiveP50Ms: number;
  naiveP99Ms: number;
  speedup: number;
  cpuPerParticipantPct: number;
  naiveCpuPerParticipantPct: number;
  ticks: number;
  naiveTicks: number;
  opus: string;
}

const rows: Row[] = [];
for (const n of sizes) {
  // Fewer naive ticks at large N: each costs ~0.1 ms per participant.
  const naiveTicks = Math.max(20, Math.min(TICKS, Math.floor(3000 / n)));
  // Interleave the two so that machine noise hits both alike.
  const ours: number[] = [];
  const naive: number[] = [];
  for (let round = 0; round < 2; round++) {
    ours.push(...runMixer(n, Math.ceil(TICKS / 2)));
    naive.push(...runNaive(n, Math.ceil(naiveTicks / 2)));
  }
  const p50 = percentile(ours, 50);
  const naiveP50 = percentile(naive, 50);
  const row: Row = {
    n,
    p50Ms: +p50.toFixed(3),
    p99Ms: +percentile(ours, 99).toFixed(3),
    naiveP50Ms: +naiveP50.toFixed(3),
    naiveP99Ms: +percentile(naive, 99).toFixed(3),
    speedup: +(naiveP50 / p50).toFixed(1),
    // Share of one core per participant at 50 ticks/s.
    cpuPerParticipantPct: +(((p50 / 20) * 100) / n).toFixed(4),
    naiveCpuPerParticipantPct: +(((naiveP50 / 20) * 100) / n).toFixed(4),
    ticks: ours.length,
    naiveTicks: naive.length,
    opus: opusBackend,
  };
  rows.push(row);
  if (values.json) process.stdout.write(`${JSON.stringify(row)}\n`);
  else process.stderr.write(`  n=${n} done\n`);
}

if (!values.json) {
  const header = ['N', 'p50 ms', 'p99 ms', 'naive p50', 'naive p99', 'speedup (p50)', '% core/participant', 'naive %/participant'];
  const lines = rows.map((r) => [r.n, r.p50Ms, r.p99Ms, r.naiveP50Ms, r.naiveP99Ms, `${r.speedup}×`, r.cpuPerParticipantPct, r.naiveCpuPerParticipantPct].map(String));
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const fmt = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i])).join('  ');
  console.log(`bench:mix — 20 ms tick, ${TALKERS} talkers, opus backend: ${opusBackend}`);
  console.log(fmt(header));
  for (const l of lines) console.log(fmt(l));
  console.log('targets: N=1000 p99 < 10 ms; speedup ≥ 20× at N=250; Janus AudioBridge ≈ 1 % core/participant');
  for (const r of rows) console.log(JSON.stringify(r));
}
