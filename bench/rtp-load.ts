/**
 * bench:rtp-load — the whole node under plain-RTP load, as Janus AudioBridge is measured: N
 * participants (3 talking) each sending 50 Opus packets/s over real UDP and receiving its mix
 * every 20 ms. The mixer runs in a child process whose own CPU is reported (sockets, jitter
 * buffers, selection, decodes, encodes, sends); the load generator runs here.
 *
 * Each size runs three times in the same run: the node with a dgram socket per participant (the
 * baseline), with the native socket set (a socket per participant, one epoll set read once per
 * tick, every mix of a tick sent in one call, the shared mix gathered), and with one shared port
 * for all of them (`rtpPort`: one recvmmsg for many participants' datagrams, one sendmmsg for a
 * tick's mixes). Janus AudioBridge, measured on this class of
 * machine at about 1 % of a core per participant, is not part of the project: its figure is a
 * constant here. The load generator is the same in both runs (native sockets where the addon is
 * built, so that it costs little beside the node on a 2-core box).
 *
 * Every simulated participant also sends an RTCP receiver report about the mix it gets once a
 * second (RFC 3550 §6.4.2, from its own reception statistics), as an RTP endpoint does: the loss
 * in it is what the node sizes each speaker's in-band FEC by (ListenerLoss.ts).
 *
 * Usage: npm run bench:rtp-load [-- --n 150,1000] [-- --seconds 8] [-- --settle 10] [-- --rounds 3] [-- --complexity 5] [-- --paths dgram,native,shared]
 *        [-- --send-thread] [-- --no-reports] [-- --speech] [-- --profile] [-- --json]
 *   --send-thread: the native paths send each tick's mixes from a native sender thread (MixerEvent sendThread).
 *   --no-reports: the participants send no RTCP (a peer that sends none: every encoder keeps FEC at 10 %).
 *   --speech: the talkers' tones rise and fall four times a second, as syllables do. By default they
 *     are steady, the load Janus AudioBridge's figure was measured with; libopus's voice activity
 *     detector soon takes a steady tone for noise and codes no in-band FEC for it, so only speech
 *     shows what FEC costs the encoders (about a quarter of an encode on the frames it runs).
 *   --settle: seconds the node runs under load before its window is measured (default 10). A new
 *     Node process's V8 runs three full garbage collections about 8–9 s after it starts (its memory
 *     reducer, after the first mark-compact of start-up), which cost the node about a tenth more in
 *     a window that holds them (measured 2026-12-07: the helper threads 0.9 % of a core against
 *     0.13 %); a server that runs for hours pays them once. Each window reports the collections it held.
 *   --rounds R: every path R times, alternated; each row is the path's median round by CPU per mix,
 *     and lists every round's (a single 8 s window of a shared VM moves by 10–20 %).
 *   --complexity N: the node's encoders at libopus complexity N (0–10; the node's default, 5,
 *     unless given): what `opusComplexity` saves a node on a slow host.
 *   --profile: also writes a --cpu-prof profile of the last run of the largest size into bench/results/.
 */
import { fork } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { audioLevelExtension, buildReceiverReport, buildRtp, ipv4ToInt, nativeUdp, parseRtp, ReceiverStats, RtpHeader, UdpSendBatch, UdpSocketSet } from '@mcu/rtp';
import { OPUS_ENCODER_DEFAULTS, OpusDecoder, OpusEncoder } from '@mcu/codec';
import { syllableEnvelope } from '../packages/mixer/test/peer.js';

const { values } = parseArgs({
  options: {
    n: { type: 'string', default: '150,1000' },
    seconds: { type: 'string', default: '8' },
    settle: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '1' },
    complexity: { type: 'string', default: String(OPUS_ENCODER_DEFAULTS.complexity) },
    paths: { type: 'string', default: 'dgram,native,shared' },
    profile: { type: 'boolean', default: false },
    'send-thread': { type: 'boolean', default: false },
    'no-reports': { type: 'boolean', default: false },
    speech: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
});
const SIZES = values.n!.split(',').map(Number);
const MS = Number(values.seconds) * 1000;
const SETTLE_MS = Number(values.settle) * 1000;
const ROUNDS = Number(values.rounds);
/** libopus complexity of the node's encoders (its `opusComplexity`), and of the floor's. */
const COMPLEXITY = Number(values.complexity);
type Path = 'dgram' | 'native' | 'shared';
const PATHS = values.paths!.split(',') as Path[];
if (!SIZES.every((n) => Number.isInteger(n) && n > 3) || !(MS > 0) || !(SETTLE_MS >= 0) || !(Number.isInteger(ROUNDS) && ROUNDS >= 1) || !(Number.isInteger(COMPLEXITY) && COMPLEXITY >= 0 && COMPLEXITY <= 10) || !PATHS.every((p) => p === 'dgram' || p === 'native' || p === 'shared')) {
  process.stderr.write('bench:rtp-load: --n takes whole numbers above 3 (comma-separated), --seconds a positive number, --settle a number of seconds, --rounds a whole number from 1, --complexity 0–10, --paths dgram, native and/or shared\n');
  process.exit(2);
}
if (PATHS.some((p) => p !== 'dgram') && nativeUdp() === null) {
  process.stderr.write('bench:rtp-load: the native UDP addon is not built (Linux only; npm install builds it): run with --paths dgram\n');
  process.exit(2);
}
const JANUS_CPU_PER_PARTICIPANT_PCT = 1;
const TARGET_CPU_PER_PARTICIPANT_PCT = 0.05;
const TALKERS = 3;
const REPORTS = !values['no-reports'];
const SPEECH = values.speech === true;
/** Syllables: the envelope of a talker's tone at sample x (1 when steady). */
const envelope = (x: number) => (SPEECH ? syllableEnvelope(x) : 1);

/** One second of Opus frames of a tone (0: silence), each packet pre-built with its RFC 6464 level. */
function cycle(freq: number): Buffer[] {
  const enc = new OpusEncoder();
  const pcm = new Int16Array(960);
  const out = new Uint8Array(1500);
  const packets: Buffer[] = [];
  for (let f = 0; f < 50; f++) {
    for (let i = 0; i < 960; i++) pcm[i] = freq ? Math.round(8000 * envelope(f * 960 + i) * Math.sin((2 * Math.PI * freq * (f * 960 + i)) / 48_000)) : 0;
    const payload = Buffer.from(out.subarray(0, enc.encode(pcm, out)));
    packets.push(buildRtp({ payloadType: 111, sequenceNumber: 0, timestamp: 0, ssrc: 0, extensions: [audioLevelExtension(freq ? 10 : 127, freq > 0, 1)] }, payload));
  }
  enc.close();
  return packets;
}
const talk = [cycle(300), cycle(550), cycle(800)];
const silence = cycle(0);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

interface Measured {
  cpuPct: number;
  mainThreadCpuPct: number | null;
  helperThreadsCpuPct: number | null;
  gc: { major: number; minor: number; pauseMs: number };
  ticks: number;
  skipped: number;
  tickP99: number;
  ioTickP99: number | null;
  sent: number;
  speakers: number;
  mixMinusExpectedLossPercent: number[];
  dropped: Record<string, number>;
  native: boolean;
}

/**
 * The simulated participants: N sockets that each send one packet per 20 ms to their port on the
 * node and count the mixes that come back. Native: one UdpSocketSet, one batch per 20 ms.
 */
interface LoadGenerator {
  ports: number[];
  received: number;
  setTargets(ports: number[]): void;
  /** Sends packet k of every participant; reads what came back. */
  round(k: number): void;
  /** Reads what came back since the last round. */
  drain(): void;
  close(): void;
}

/**
 * Each participant's reception of its mix (RFC 3550 A.1/A.3 statistics) and its receiver report,
 * once a second, participant i in round k when (k + i) % 50 is 0: spread over the second, as
 * endpoints that joined at different times send them.
 */
class Receptions {
  private readonly stats: (ReceiverStats | null)[];
  private readonly h = new RtpHeader();

  constructor(n: number) {
    this.stats = Array.from({ length: n }, () => null);
  }

  onPacket(i: number, packet: Uint8Array, length: number, atMs: number): void {
    if (parseRtp(packet, this.h, length) !== null) return;
    let s = this.stats[i];
    if (s === null || s.ssrc !== this.h.ssrc) s = this.stats[i] = new ReceiverStats({ ssrc: this.h.ssrc, clockRate: 48_000 });
    s.onPacket(this.h.sequenceNumber, this.h.timestamp, atMs);
  }

  /** Participant i's receiver report this round, or null (not its turn, nothing received yet). */
  reportOf(i: number, k: number): Buffer | null {
    const s = this.stats[i];
    if (!REPORTS || s === null || (k + i) % 50 !== 0) return null;
    return buildReceiverReport({ ssrc: i + 1000, reports: [s.reportBlock(performance.now())] });
  }
}

function packetOf(i: number, k: number, scratch: Buffer): Buffer {
  const template = (i < TALKERS ? talk[i] : silence)[k % 50];
  template.copy(scratch);
  scratch.writeUInt16BE(k & 0xffff, 2);
  scratch.writeUInt32BE((k * 960) >>> 0, 4);
  scratch.writeUInt32BE(i + 1000, 8);
  return scratch;
}

async function nativeGenerator(n: number): Promise<LoadGenerator> {
  const set = UdpSocketSet.open({ bufferBytes: 1 << 20 })!;
  const batch = UdpSendBatch.create({ capacity: n })!;
  const socks = Array.from({ length: n }, () => set.add('127.0.0.1'));
  const scratch = Buffer.alloc(1500);
  const lo = ipv4ToInt('127.0.0.1');
  let targets: number[] = [];
  const receptions = new Receptions(n);
  const indexOfSlot = new Map(socks.map((s, i) => [s.slot, i]));
  const visit = (slot: number, packet: Uint8Array, length: number, _ip: number, _port: number, atMs: number) => receptions.onPacket(indexOfSlot.get(slot)!, packet, length, atMs);
  const g: LoadGenerator = {
    ports: socks.map((s) => s.port),
    received: 0,
    setTargets: (ports) => (targets = ports),
    round(k) {
      g.received += set.read(visit);
      for (let i = 0; i < n; i++) {
        const p = packetOf(i, k, scratch);
        const len = (i < TALKERS ? talk[i] : silence)[k % 50].length;
        batch.add(i, socks[i].fd, lo, targets[i], p, len, false);
        const rr = receptions.reportOf(i, k);
        if (rr) batch.add(i, socks[i].fd, lo, targets[i], rr, rr.length, false);
      }
      batch.flush();
    },
    drain: () => void (g.received += set.read(visit)),
    close: () => set.close(),
  };
  return g;
}

async function dgramGenerator(n: number): Promise<LoadGenerator> {
  const sockets: dgram.Socket[] = [];
  const receptions = new Receptions(n);
  const g: LoadGenerator = {
    ports: [],
    received: 0,
    setTargets: (ports) => (targets = ports),
    round(k) {
      for (let i = 0; i < n; i++) {
        const p = Buffer.from(packetOf(i, k, Buffer.alloc(1500)).subarray(0, (i < TALKERS ? talk[i] : silence)[k % 50].length));
        sockets[i].send(p, targets[i], '127.0.0.1');
        const rr = receptions.reportOf(i, k);
        if (rr) sockets[i].send(rr, targets[i], '127.0.0.1');
      }
    },
    drain: () => {},
    close: () => sockets.forEach((s) => s.close()),
  };
  let targets: number[] = [];
  for (let i = 0; i < n; i++) {
    const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 1 << 20 });
    s.on('message', (m) => {
      g.received++;
      receptions.onPacket(i, m, m.length, performance.now());
    });
    s.bind(0, '127.0.0.1');
    await once(s, 'listening');
    sockets.push(s);
  }
  g.ports = sockets.map((s) => s.address().port);
  return g;
}

async function run(n: number, path: Path, profileDir: string | null) {
  const child = fork(fileURLToPath(new URL('./rtp-load-node.ts', import.meta.url)), [], {
    execArgv: ['--import', 'tsx', ...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [])],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
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
  const gen = nativeUdp() !== null ? await nativeGenerator(n) : await dgramGenerator(n);
  const { ports } = await ask<{ ports: number[] }>({ cmd: 'add', complexity: COMPLEXITY, native: path !== 'dgram', shared: path === 'shared', sendThread: values['send-thread'], peers: gen.ports.map((port) => ({ port })) }, 'added');
  gen.setTargets(ports);

  // Every participant sends one packet per 20 ms, on absolute deadlines.
  let k = 0;
  const start = performance.now();
  let stop = false;
  const loop = async () => {
    while (!stop) {
      gen.round(k++);
      await sleep(Math.max(0, start + k * 20 - performance.now()));
    }
  };
  const looping = loop();
  await sleep(SETTLE_MS);
  const gen0 = cpuMs();
  const t0 = performance.now();
  const m = await ask<Measured>({ cmd: 'measure', ms: MS }, 'measured');
  const genCpuPct = ((cpuMs() - gen0) / (performance.now() - t0)) * 100;
  stop = true;
  await looping;
  // Every mix the node sent since the first participant joined, against every one that came back.
  const { packetsOut } = await ask<{ packetsOut: number }>({ cmd: 'stop' }, 'stopped');
  await sleep(200);
  gen.drain();
  const received = gen.received;
  child.send({ cmd: 'close' });
  await once(child, 'exit');
  gen.close();
  return {
    n,
    path,
    native: m.native,
    nodeCpuPct: +m.cpuPct.toFixed(1),
    /** Of it, the node's main thread (JavaScript, libopus, system calls) and V8's and libuv's helper threads (concurrent GC, compilation); null off Linux. */
    mainThreadCpuPct: m.mainThreadCpuPct === null ? null : +m.mainThreadCpuPct.toFixed(2),
    helperThreadsCpuPct: m.helperThreadsCpuPct === null ? null : +m.helperThreadsCpuPct.toFixed(2),
    /** Garbage collections in the window, and the main thread's pauses for them. */
    gc: m.gc,
    cpuPerParticipantPct: +(m.cpuPct / n).toFixed(4),
    /** CPU per mix actually sent (one participant's tick: its packet in, its mix out): holds when a starved node skips ticks. */
    cpuUsPerMix: +(((m.cpuPct / 100) * MS * 1000) / Math.max(1, m.sent)).toFixed(2),
    /** The same as % of a core per participant had every tick run (50 mixes a second): what the targets are checked on. */
    cpuPerParticipantAtFullRatePct: +((((m.cpuPct / 100) * MS * 1000) / Math.max(1, m.sent)) * 50 / 1e4).toFixed(4),
    lessThanJanus: +(JANUS_CPU_PER_PARTICIPANT_PCT / (m.cpuPct / n)).toFixed(1),
    mixesSent: packetsOut,
    mixesReturned: received,
    returnedPct: +((received / Math.max(1, packetsOut)) * 100).toFixed(2),
    tickP99Ms: +m.tickP99.toFixed(2),
    ioTickP99Ms: m.ioTickP99 === null ? null : +m.ioTickP99.toFixed(2),
    skippedTicks: m.skipped,
    speakers: m.speakers,
    mixMinusExpectedLossPercent: m.mixMinusExpectedLossPercent,
    dropped: m.dropped,
    loadGeneratorCpuPct: +genCpuPct.toFixed(1),
  };
}

/**
 * The floor of a mix on this machine, measured here in the same run: what no socket layout or
 * JavaScript can take away. Per tick the node encodes TALKERS + 1 mixes (a mix-minus per speaker,
 * one shared) and decodes TALKERS frames, whatever N; per participant the kernel takes one
 * datagram in (recvmmsg, many on one socket) and sends one (sendmmsg from one socket to N
 * receivers, the receiving side's loopback work included, as the node pays it). And a process
 * that wakes every 20 ms pays for each wake-up (the timer, the event loop, the VM's interrupts).
 */
async function measureFloor(n: number) {
  const cpuUs = () => {
    const u = process.cpuUsage();
    return u.user + u.system;
  };
  const dec = new OpusDecoder({ sampleRate: 48_000, channels: 1 });
  const pcm = new Int16Array(960);
  const out = new Uint8Array(1500);
  const back = new Int16Array(960);
  const FRAMES = 400;
  // A mix of two talkers, encoded as the node's encoders are: at the default expected loss (the
  // shared mix; FEC where the VAD finds voice) and at 0 % (a mix-minus whose listener reports none).
  const encodeAt = (expectedLossPercent: number) => {
    const enc = new OpusEncoder({ sampleRate: 48_000, channels: 1, expectedLossPercent, complexity: COMPLEXITY });
    const begin = cpuUs();
    for (let f = 0; f < FRAMES; f++) {
      for (let i = 0; i < 960; i++) {
        const x = f * 960 + i;
        pcm[i] = Math.round(4000 * (envelope(x) * Math.sin((2 * Math.PI * 300 * x) / 48_000) + envelope(x + 12_000) * Math.sin((2 * Math.PI * 550 * x) / 48_000)));
      }
      enc.encode(pcm, out);
    }
    const us = (cpuUs() - begin) / FRAMES;
    enc.close();
    return us;
  };
  const encodeUs = encodeAt(OPUS_ENCODER_DEFAULTS.expectedLossPercent);
  const encodeNoFecUs = encodeAt(0);
  const h = new RtpHeader();
  const payloads = talk[0].map((p) => (parseRtp(p, h), p.subarray(h.payloadOffset, h.payloadOffset + h.payloadLength)));
  let t0 = cpuUs();
  for (let f = 0; f < FRAMES; f++) dec.decode(payloads[f % 50], back);
  const decodeUs = (cpuUs() - t0) / FRAMES;
  dec.close();
  // One socket to n receivers and back to one socket: the shared port's system calls.
  const one = UdpSocketSet.open({ bufferBytes: 4 << 20 })!;
  const many = UdpSocketSet.open({ bufferBytes: 1 << 20 })!;
  const port = one.add('127.0.0.1');
  const peers = Array.from({ length: n }, () => many.add('127.0.0.1'));
  const batch = UdpSendBatch.create({ capacity: n })!;
  const lo = ipv4ToInt('127.0.0.1');
  const packet = silence[0];
  const ROUNDS = Math.max(20, Math.round(20_000 / n));
  let sendUs = 0;
  let readUs = 0;
  let read = 0;
  for (let r = 0; r < ROUNDS; r++) {
    for (let i = 0; i < n; i++) batch.add(i, port.fd, lo, peers[i].port, packet, packet.length, false);
    t0 = cpuUs();
    batch.flush();
    sendUs += cpuUs() - t0;
    many.read(() => {});
    for (let i = 0; i < n; i++) batch.add(i, peers[i].fd, lo, port.port, packet, packet.length, false);
    batch.flush();
    t0 = cpuUs();
    read += one.read(() => {});
    readUs += cpuUs() - t0;
  }
  one.close();
  many.close();
  const perDatagram = { sendUs: sendUs / (ROUNDS * n), readUs: readUs / Math.max(1, read) };
  // An empty 50 Hz timer loop on absolute deadlines, as the mixing clock runs: CPU per wake-up.
  const WAKES = 100;
  t0 = cpuUs();
  const start = performance.now();
  for (let k = 1; k <= WAKES; k++) await sleep(Math.max(0, start + k * 20 - performance.now()));
  const wakeUs = (cpuUs() - t0) / WAKES;
  // The mix-minus encoders expect what their listeners report: 0 % on loopback, once reports come.
  const mixMinusEncodeUs = REPORTS ? encodeNoFecUs : encodeUs;
  const perMixUs = (encodeUs + TALKERS * mixMinusEncodeUs + TALKERS * decodeUs + wakeUs) / n + perDatagram.sendUs + perDatagram.readUs;
  return {
    encodeUs: +encodeUs.toFixed(1),
    mixMinusEncodeUs: +mixMinusEncodeUs.toFixed(1),
    decodeUs: +decodeUs.toFixed(1),
    wakeUs: +wakeUs.toFixed(1),
    sendUs: +perDatagram.sendUs.toFixed(2),
    readUs: +perDatagram.readUs.toFixed(2),
    perMixUs: +perMixUs.toFixed(2),
    perParticipantPct: +((perMixUs * 50) / 1e4).toFixed(4),
  };
}

type Row = Awaited<ReturnType<typeof run>> & { roundsCpuUsPerMix?: number[] };
const rows: Row[] = [];
const floors = new Map<number, Awaited<ReturnType<typeof measureFloor>>>();
for (const n of SIZES) floors.set(n, await measureFloor(n));
const profileTmp = values.profile ? join(tmpdir(), `rtp-load-prof-${process.pid}`) : null;
for (const n of SIZES) {
  // Every path once per round, the paths alternated so that a slow minute of the machine hits all of them.
  const byPath = new Map<Path, Row[]>(PATHS.map((p) => [p, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const path of PATHS) {
      const last = n === SIZES[SIZES.length - 1] && path === PATHS[PATHS.length - 1] && round === ROUNDS - 1;
      const row = await run(n, path, last ? profileTmp : null);
      byPath.get(path)!.push(row);
      if (!values.json) console.error(`  ${n} participants, ${path}${ROUNDS > 1 ? ` (round ${round + 1})` : ''}: ${row.nodeCpuPct} % of a core, ${row.returnedPct} % of mixes back`);
    }
  }
  // Each path's row is its median round by CPU per mix (of an even number, the upper of the middle two), with every round's figure beside it.
  for (const path of PATHS) {
    const runs = byPath.get(path)!;
    const sorted = [...runs].sort((a, b) => a.cpuUsPerMix - b.cpuUsPerMix);
    rows.push({ ...sorted[Math.floor(sorted.length / 2)], roundsCpuUsPerMix: runs.map((r) => r.cpuUsPerMix) });
  }
}
let profile: string | null = null;
if (profileTmp) {
  const file = readdirSync(profileTmp).find((f) => f.endsWith('.cpuprofile'));
  if (file) {
    const dir = fileURLToPath(new URL('./results/', import.meta.url));
    mkdirSync(dir, { recursive: true });
    profile = join(dir, `rtp-load-${SIZES[SIZES.length - 1]}-${PATHS[PATHS.length - 1]}-${new Date().toISOString().replace(/[:.]/g, '-')}.cpuprofile`);
    renameSync(join(profileTmp, file), profile);
  }
  rmSync(profileTmp, { recursive: true, force: true });
}

const date = new Date().toISOString();
const lines = SIZES.map((n) => {
  const base = rows.find((r) => r.n === n && r.path === 'dgram');
  const nat = rows.find((r) => r.n === n && r.path === 'native');
  const shared = rows.find((r) => r.n === n && r.path === 'shared');
  // The targets are checked on the shared port where it ran, else the native set.
  const best = shared ?? nat ?? base!;
  return {
    bench: 'rtp-load',
    date,
    participants: n,
    talking: TALKERS,
    seconds: MS / 1000,
    settleSeconds: SETTLE_MS / 1000,
    /** Runs of every path, alternated; each row is its path's median round (roundsCpuUsPerMix: every round's µs per mix). */
    rounds: ROUNDS,
    /** libopus complexity of the node's encoders and of the floor's. */
    complexity: COMPLEXITY,
    sendThread: values['send-thread'],
    /** Participants send RTCP receiver reports (the mix-minus FEC follows them). */
    reports: REPORTS,
    /** Talkers rise and fall as syllables do (else steady tones). */
    speech: SPEECH,
    native: nat ?? null,
    shared: shared ?? null,
    dgram: base ?? null,
    /** The baseline's CPU over the native path's (a socket per participant), same run. */
    cpuRatioVsDgram: nat && base ? +(base.nodeCpuPct / nat.nodeCpuPct).toFixed(2) : null,
    /** The same per mix sent (a starved node sends fewer). */
    cpuPerMixRatioVsDgram: nat && base ? +(base.cpuUsPerMix / nat.cpuUsPerMix).toFixed(2) : null,
    /** The baseline's CPU per mix over the shared port's, same run. */
    sharedCpuPerMixRatioVsDgram: shared && base ? +(base.cpuUsPerMix / shared.cpuUsPerMix).toFixed(2) : null,
    /** The targets below are checked on this path. */
    checkedPath: best.path,
    /** Codec work and kernel per datagram measured in this run: the floor of µs per mix and % per participant. */
    floor: floors.get(n)!,
    /** The load average over the last minute when the report was written (2 cores: above 2, the node waits for a core). */
    loadAverage1m: +loadavg()[0].toFixed(1),
    cpuPerParticipantPct: best.cpuPerParticipantPct,
    cpuPerParticipantAtFullRatePct: best.cpuPerParticipantAtFullRatePct,
    /** Janus's ~1 % over the full-rate figure (a starved node's measured % hides the ticks it skipped). */
    lessThanJanus: +(JANUS_CPU_PER_PARTICIPANT_PCT / best.cpuPerParticipantAtFullRatePct).toFixed(1),
    targetCpuPerParticipantPct: TARGET_CPU_PER_PARTICIPANT_PCT,
    meetsCpuTarget: best.cpuPerParticipantAtFullRatePct <= TARGET_CPU_PER_PARTICIPANT_PCT,
    skippedTicks: best.skippedTicks,
    allMixesReturned: best.mixesReturned >= best.mixesSent,
    tickP99Under10Ms: Math.max(best.tickP99Ms, best.ioTickP99Ms ?? 0) < 10,
    profile,
  };
});
if (values.json) for (const l of lines) console.log(JSON.stringify(l));
else {
  console.log(`bench:rtp-load — plain-RTP participants (3 talking), 50 packets/s each way, Opus complexity ${COMPLEXITY}, ${MS / 1000} s each after ${SETTLE_MS / 1000} s under load; Janus AudioBridge ≈ ${JANUS_CPU_PER_PARTICIPANT_PCT} % of a core per participant`);
  console.log('participants  path    node CPU %  helper threads %  GCs major/minor  % per participant  µs per mix  × less than Janus  mixes back %  tick p99 ms  io tick p99 ms  skipped  load gen CPU %');
  for (const r of rows) {
    console.log(
      `${String(r.n).padStart(12)}  ${r.path.padEnd(6)}  ${String(r.nodeCpuPct).padStart(10)}  ${String(r.helperThreadsCpuPct ?? '-').padStart(16)}  ${`${r.gc.major}/${r.gc.minor}`.padStart(15)}  ${String(r.cpuPerParticipantPct).padStart(17)}  ${String(r.cpuUsPerMix).padStart(10)}  ${String(r.lessThanJanus).padStart(17)}  ${String(r.returnedPct).padStart(12)}  ${String(r.tickP99Ms).padStart(11)}  ${String(r.ioTickP99Ms ?? '-').padStart(14)}  ${String(r.skippedTicks).padStart(7)}  ${String(r.loadGeneratorCpuPct).padStart(14)}`,
    );
  }
  for (const l of lines) {
    const f = l.floor;
    console.log(
      `floor at ${l.participants}: encode ${f.encodeUs} µs (shared) + ${f.mixMinusEncodeUs} µs × ${TALKERS} (mix-minus) and decode ${f.decodeUs} µs × ${TALKERS} per tick, a wake-up ${f.wakeUs} µs per tick, kernel ${f.sendUs} µs out + ${f.readUs} µs in per datagram = ${f.perMixUs} µs per mix, ${f.perParticipantPct} % per participant`,
    );
  }
  for (const l of lines) console.log(JSON.stringify(l));
  if (profile) console.log(`profile: ${profile}`);
}
process.exit(0);
