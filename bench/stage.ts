/**
 * bench:stage — what backstage costs the mixing tick, against the same event all live, in one run.
 *
 * Every configuration has N participants with pre-encoded Opus input and RFC 6464 levels, 3 live
 * talkers, one packet per participant per tick:
 *   - `all-live`   (the baseline): nobody backstage;
 *   - `backstage-quiet`: B more presenters backstage, silent (the room costs nothing: no encode);
 *   - `backstage-talking`: the same, 2 of them talking (one room encode + one mix-minus per talker);
 *   - `moving`: as `backstage-talking`, and one backstage talker goes live and back every 10 ticks.
 * Reported per configuration: tick p50/p99 and Opus encodes per tick; and the garbage collections
 * seen while ticking (a tick that allocated would show up as more of them than the baseline).
 *
 * Usage: npm run bench:stage [-- --json] [-- --n 100] [-- --backstage 8] [-- --ticks 1000]
 */
import { parseArgs } from 'node:util';
import { PerformanceObserver } from 'node:perf_hooks';
import { OpusEncoder, opusBackend } from '@mcu/codec';
import { AudioMixer } from '@mcu/mixer';

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    n: { type: 'string', default: '100' },
    backstage: { type: 'string', default: '8' },
    ticks: { type: 'string', default: '1000' },
  },
});
const N = Number(values.n);
const B = Number(values.backstage);
const TICKS = Number(values.ticks);
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

const tones = [300, 550, 800, 1250, 1700].map(encodeCycle);
const silence = encodeCycle(0);

type Config = 'all-live' | 'backstage-quiet' | 'backstage-talking' | 'moving';
const configs: Config[] = ['all-live', 'backstage-quiet', 'backstage-talking', 'moving'];

let gcs = 0;
new PerformanceObserver((list) => (gcs += list.getEntries().length)).observe({ entryTypes: ['gc'] });

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

function run(config: Config, ticks: number): { times: number[]; encodesPerTick: number; gcs: number } {
  let now = 0;
  const mixer = new AudioMixer(() => undefined, { maxSpeakers: 3, now: () => now });
  const inputs: { p: ReturnType<AudioMixer['addParticipant']>; frames: Buffer[]; level: number }[] = [];
  for (let i = 0; i < N; i++) {
    const talking = i < 3;
    inputs.push({ p: mixer.addParticipant(`live${i}`), frames: talking ? tones[i] : silence, level: talking ? 10 + i * 3 : 127 });
  }
  if (config !== 'all-live') {
    for (let i = 0; i < B; i++) {
      const talking = config !== 'backstage-quiet' && i < 2;
      inputs.push({ p: mixer.addParticipant(`back${i}`, { stage: 'backstage' }), frames: talking ? tones[3 + i] : silence, level: talking ? 12 + i * 3 : 127 });
    }
  } else {
    // The same number of participants, all live and silent.
    for (let i = 0; i < B; i++) inputs.push({ p: mixer.addParticipant(`extra${i}`), frames: silence, level: 127 });
  }
  inputs.forEach((x, i) => (x.p.inSsrc = i + 1));
  const times: number[] = [];
  const warmup = 50;
  let encodes0 = 0;
  let gcs0 = 0;
  for (let k = 0; k < warmup + ticks; k++) {
    if (k === warmup) {
      encodes0 = mixer.stats.encodes;
      gcs0 = gcs;
    }
    if (config === 'moving' && k % 10 === 0) mixer.setStage('back0', (k / 10) % 2 === 0 ? 'live' : 'backstage');
    now += 20;
    const t0 = performance.now();
    for (const x of inputs) x.p.jitter.push(k & 0xffff, (k * FRAME) >>> 0, x.frames[k % CYCLE], now, x.level);
    mixer.tick(k);
    const dt = performance.now() - t0;
    if (k >= warmup) times.push(dt);
  }
  const encodesPerTick = (mixer.stats.encodes - encodes0) / ticks;
  const seenGcs = gcs - gcs0;
  if (mixer.stats.tickErrors > 0) throw new Error(`${config}: ${mixer.stats.tickErrors} tick errors`);
  mixer.close();
  return { times, encodesPerTick, gcs: seenGcs };
}

interface Row {
  config: Config;
  n: number;
  backstage: number;
  p50Ms: number;
  p99Ms: number;
  encodesPerTick: number;
  gcsPer1000Ticks: number;
  p50VsBaseline: number;
  ticks: number;
  opus: string;
}

// Interleaved rounds, so that machine noise hits every configuration alike.
const results = new Map<Config, { times: number[]; encodes: number[]; gcs: number }>();
for (let round = 0; round < 2; round++) {
  for (const c of configs) {
    const r = run(c, Math.ceil(TICKS / 2));
    const acc = results.get(c) ?? { times: [], encodes: [], gcs: 0 };
    acc.times.push(...r.times);
    acc.encodes.push(r.encodesPerTick);
    acc.gcs += r.gcs;
    results.set(c, acc);
  }
}
const baseline = percentile(results.get('all-live')!.times, 50);
const rows: Row[] = configs.map((c) => {
  const r = results.get(c)!;
  const p50 = percentile(r.times, 50);
  return {
    config: c,
    n: N + B,
    backstage: c === 'all-live' ? 0 : B,
    p50Ms: +p50.toFixed(3),
    p99Ms: +percentile(r.times, 99).toFixed(3),
    encodesPerTick: +(r.encodes.reduce((a, b) => a + b, 0) / r.encodes.length).toFixed(2),
    gcsPer1000Ticks: +((r.gcs * 1000) / r.times.length).toFixed(2),
    p50VsBaseline: +(p50 / baseline).toFixed(2),
    ticks: r.times.length,
    opus: opusBackend,
  };
});

if (values.json) {
  for (const r of rows) process.stdout.write(`${JSON.stringify(r)}\n`);
} else {
  const header = ['config', 'participants', 'backstage', 'p50 ms', 'p99 ms', 'encodes/tick', 'GCs/1000 ticks', 'p50 vs all-live'];
  const lines = rows.map((r) => [r.config, r.n, r.backstage, r.p50Ms, r.p99Ms, r.encodesPerTick, r.gcsPer1000Ticks, `${r.p50VsBaseline}×`].map(String));
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const fmt = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i])).join('  ');
  console.log(`bench:stage — 20 ms tick, 3 live talkers, opus backend: ${opusBackend}`);
  console.log(fmt(header));
  for (const l of lines) console.log(fmt(l));
  console.log('expected: backstage-quiet ≈ all-live (no extra encode); backstage-talking = +1 room encode + 1 mix-minus per backstage talker');
  for (const r of rows) console.log(JSON.stringify(r));
}
