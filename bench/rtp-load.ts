/**
 * bench:rtp-load — the whole node under plain-RTP load, as Janus AudioBridge is measured: N
 * participants (3 talking) each sending 50 Opus packets/s over real UDP and receiving their mix.
 * The mixer runs in a child process whose own CPU is reported (sockets, jitter buffers, mixing,
 * encodes, sends); the load generator runs here. Compared with the ~1 % of a core per participant
 * measured for Janus AudioBridge on this class of machine.
 *
 * Usage: npm run bench:rtp-load [-- --n 150] [-- --seconds 10] [-- --json]
 */
import { fork } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { audioLevelExtension, buildRtp } from '@mcu/rtp';
import { OpusEncoder } from '@mcu/codec';

const { values } = parseArgs({ options: { n: { type: 'string', default: '150' }, seconds: { type: 'string', default: '10' }, json: { type: 'boolean', default: false } } });
const N = Number(values.n);
const MS = Number(values.seconds) * 1000;

function cycle(freq: number): Buffer[] {
  const enc = new OpusEncoder();
  const pcm = new Int16Array(960);
  const out = new Uint8Array(1500);
  const frames: Buffer[] = [];
  for (let f = 0; f < 50; f++) {
    for (let i = 0; i < 960; i++) pcm[i] = freq ? Math.round(8000 * Math.sin((2 * Math.PI * freq * (f * 960 + i)) / 48_000)) : 0;
    frames.push(Buffer.from(out.subarray(0, enc.encode(pcm, out))));
  }
  enc.close();
  return frames;
}
const talk = [cycle(300), cycle(550), cycle(800)];
const silence = cycle(0);

const child = fork(fileURLToPath(new URL('./rtp-load-node.ts', import.meta.url)), [], { execArgv: ['--import', 'tsx', ...(process.env.MCU_BENCH_PROF ? ['--cpu-prof', '--cpu-prof-dir=' + process.env.MCU_BENCH_PROF] : [])], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
await once(child, 'message');
const ask = <T>(msg: object, reply: string) =>
  new Promise<T>((resolve) => {
    const on = (m: { cmd: string }) => {
      if (m.cmd === reply) {
        child.off('message', on);
        resolve(m as T);
      }
    };
    child.on('message', on);
    child.send(msg);
  });

const sockets: dgram.Socket[] = [];
let received = 0;
for (let i = 0; i < N; i++) {
  const s = dgram.createSocket('udp4');
  s.on('message', () => void received++);
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  sockets.push(s);
}
const { ports } = await ask<{ ports: number[] }>({ cmd: 'add', peers: sockets.map((s) => ({ port: s.address().port })) }, 'added');

// Pre-built packets: every participant sends one per 20 ms, with its RFC 6464 level.
let k = 0;
const ssrcs = sockets.map((_, i) => i + 1000);
const timer = setInterval(() => {
  for (let i = 0; i < N; i++) {
    const talking = i < 3;
    const frames = talking ? talk[i] : silence;
    const packet = buildRtp(
      { payloadType: 111, sequenceNumber: k & 0xffff, timestamp: (k * 960) >>> 0, ssrc: ssrcs[i], extensions: [audioLevelExtension(talking ? 10 : 127, talking, 1)] },
      frames[k % 50],
    );
    sockets[i].send(packet, ports[i], '127.0.0.1');
  }
  k++;
}, 20);

await new Promise((r) => setTimeout(r, 2000));
received = 0;
const m = await ask<{ cpuPct: number; ticks: number; skipped: number; tickP99: number; speakers: number; dropped: Record<string, number> }>({ cmd: 'measure', ms: MS }, 'measured');
const expected = (N * MS) / 20;
clearInterval(timer);
child.send({ cmd: 'close' });
await once(child, 'exit');
for (const s of sockets) s.close();

const row = {
  n: N,
  nodeCpuPct: +m.cpuPct.toFixed(1),
  cpuPerParticipantPct: +(m.cpuPct / N).toFixed(4),
  janusCpuPerParticipantPct: 1,
  lessThanJanus: +(1 / (m.cpuPct / N)).toFixed(1),
  deliveryPct: +((received / expected) * 100).toFixed(2),
  tickP99Ms: +m.tickP99.toFixed(2),
  skippedTicks: m.skipped,
  speakers: m.speakers,
};
if (values.json) console.log(JSON.stringify(row));
else {
  console.log(`bench:rtp-load — ${N} plain-RTP participants (3 talking), 50 packets/s each way, ${MS / 1000} s`);
  console.log(`  node CPU ${row.nodeCpuPct} % of a core → ${row.cpuPerParticipantPct} % per participant (Janus AudioBridge ≈ 1 %: ${row.lessThanJanus}× less)`);
  console.log(`  mixes delivered ${row.deliveryPct} %, tick p99 ${row.tickP99Ms} ms, skipped ticks ${row.skippedTicks}, speakers ${row.speakers}`);
  console.log(JSON.stringify(row));
}
process.exit(0);
