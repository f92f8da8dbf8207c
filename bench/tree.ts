/**
 * bench:tree — the relay tree end to end: a mixer and N relay processes (`mcu mixer`/`mcu relay`,
 * real NATS on 127.0.0.1:4222 under a cluster name of its own, real UDP), simulated viewers (real
 * UDP sockets in a few viewer processes, each placed through the mixer's 307 exactly as a player
 * is), one loaded relay SIGKILLed mid-run.
 *
 * The probe is the program feed itself: the mixer sends one RTP packet per 20 ms tick, and relays
 * keep its sequence numbers (StreamContinuity keeps the first source's numbers), so every viewer's
 * received sequence numbers give its delivery. `--pps` (default 10) thins it per viewer: each
 * simulated viewer asks its relay for one packet in N (`everyNth`, N = 50 / pps), so 10,000
 * viewers are 100,000 packets/s instead of 500,000 and the run fits two cores; delivery counts only
 * the packets a viewer asked for. Viewers are spread over the N phases (viewer i asks for the
 * numbers that leave i mod N), so every tick carries the same share of the load; `--aligned` gives
 * every viewer the same phase (all of it on one tick in N).
 *
 * The load generator must not be what is measured: the viewers of a process share one native
 * UdpReceivers set (epoll + recvmmsg, `--dgram-viewers`: Node's sockets instead), every packet
 * with its kernel arrival time, and the report gives the viewer processes' own CPU and event-loop
 * delay beside the nodes'. Per-hop latency: for a relay at depth d+1 and its parent at depth d,
 * the kernel arrival time of the same packet at a probe viewer of each, p99 over packets. The probe
 * viewers (one per relay, the whole feed, joined at each relay directly) live in a process of
 * their own (the same measure at the load viewers is `loadViewerHopP99Ms`). Recovery: the longest
 * silence of any viewer that began after the kill, up to its first packet again; for the killed
 * relay's viewers the report splits it into stall detection, re-placement and first packet.
 *
 * Usage: npm run bench:tree -- [--viewers 500] [--relays 6] [--fan-out 3] [--seconds 12] [--pps 10] [--viewer-procs 2] [--aligned] [--dgram-viewers] [--json]
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { generateSecret, NatsBus, subjects } from '@mcu/control';
import { monotonicToPerformanceMs, SequenceUnwrapper, UdpReceivers, type DatagramVisitor } from '@mcu/rtp';
import { SimViewer, simViewerHttpStats } from '../packages/cluster/test/simViewer.js';

// Nodes log lifecycle events at info by default; a benchmark reports its own figures.
process.env.MCU_LOG_LEVEL ??= 'warn';

const { values } = parseArgs({
  options: {
    role: { type: 'string', default: 'main' },
    viewers: { type: 'string', default: '500' },
    relays: { type: 'string', default: '6' },
    'fan-out': { type: 'string', default: '3' },
    seconds: { type: 'string', default: '12' },
    pps: { type: 'string', default: '10' },
    'viewer-procs': { type: 'string', default: '2' },
    // Every viewer asks for the same one packet in N (all on one tick in N) instead of spreading over the N phases.
    aligned: { type: 'boolean', default: false },
    // The load viewers on Node's own dgram sockets instead of the native receiver sets (the load generator's baseline).
    'dgram-viewers': { type: 'boolean', default: false },
    nats: { type: 'string', default: 'nats://127.0.0.1:4222' },
    json: { type: 'boolean', default: false },
  },
});

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
/** The program feed's rate: one packet per 20 ms mixing tick. */
const FEED_PPS = 50;
const pps = Number(values.pps);
if (!(Number.isInteger(pps) && pps >= 1 && pps <= FEED_PPS)) {
  process.stderr.write(`bench:tree: --pps must be an integer 1-${FEED_PPS}, got "${values.pps}"\n`);
  process.exit(2);
}
/** Each viewer gets the packets whose sequence number is a multiple of this. */
const everyNth = Math.max(1, Math.round(FEED_PPS / pps));
const viewerPps = FEED_PPS / everyNth;
/** Viewer `i` (over all viewer processes) asks for the packets that leave this divided by everyNth. */
const phaseOf = (i: number) => (values.aligned ? 0 : i % everyNth);
const wanted = (ext: number, phase: number) => (ext & 0xffff) % everyNth === phase;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------------------------ viewers

interface ViewerReport {
  relay: string;
  /** The relay it was first placed on. */
  firstRelay: string;
  joinMs: number;
  joins: number;
  phase: number;
  /** Extended sequence numbers received. */
  seqs: number[];
  /** Longest silence (ms) that began after `since`, and when it ended. */
  gapMs: number;
  gapEndAt: number;
  /** The first stall it called after the kill (nowMs() time, NaN: none), and how long that rejoin took (ms). */
  stallAt: number;
  rejoinMs: number;
  /** Join attempts that failed over the whole run, by reason (refused, timed out, 503). */
  joinFailures: Record<string, number>;
}
interface ProcReport {
  viewers: ViewerReport[];
  /** relay → [extended seq, arrival ms] at the first phase-0 viewer of that relay in this process. */
  probes: Record<string, Array<[number, number]>>;
  /** The process's CPU time (ms) at each of the main process's marks (run start, kill, end), and its event loop's longest delay (ms) up to each. */
  cpuMs: number[];
  lagMaxMs: number[];
}

/** Milliseconds to add to a performance.now() time to get nowMs()'s (process.hrtime's clock). */
const perfToNow = () => -monotonicToPerformanceMs();

const cpuMsNow = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/**
 * One receiver per relay, joined at that relay directly, full feed: arrival times for the per-hop
 * latency. Native receivers (where built) give each packet its kernel arrival time, so the figure
 * does not include when this process got a core to read it.
 */
async function probeProcess(): Promise<void> {
  const offset = perfToNow();
  const cpuMs: number[] = [];
  let receivers: UdpReceivers | undefined;
  let timer: NodeJS.Timeout | undefined;
  let visit: DatagramVisitor = () => undefined;
  let probes: Record<string, Array<[number, number]>> = {};
  process.on('message', async (m: { type: string; relays?: Array<{ id: string; url: string }>; event?: string; token?: string }) => {
    if (m.type === 'start') {
      const relays = m.relays!;
      const r = (receivers = await UdpReceivers.open({ count: relays.length, bufferBytes: 1 << 20 }));
      const lists = relays.map(() => [] as Array<[number, number]>);
      const unwrap = relays.map(() => new SequenceUnwrapper());
      visit = (i: number, _len: number, seq: number, _ts: number, at: number) => {
        if (seq >= 0) lists[i].push([unwrap[i].unwrap(seq), at + offset]);
      };
      timer = setInterval(() => r.read(visit), 20);
      for (const [i, relay] of relays.entries()) {
        const res = await fetch(`${relay.url}/rtp-viewers/${m.event}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${m.token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ host: '127.0.0.1', port: r.ports[i] }),
        });
        if (res.status !== 201) throw new Error(`probe viewer on ${relay.id}: HTTP ${res.status} ${await res.text()}`);
        await res.body?.cancel();
      }
      probes = Object.fromEntries(relays.map((relay, i) => [relay.id, lists[i]]));
      process.send!({ type: 'joined', native: r.native });
    } else if (m.type === 'mark') {
      cpuMs.push(cpuMsNow());
    } else if (m.type === 'report') {
      clearInterval(timer);
      receivers?.read(visit);
      receivers?.close();
      process.send!({ type: 'report', probes, cpuMs }, () => process.exit(0));
    }
  });
}

async function viewerProcess(): Promise<void> {
  let gapSince = Infinity;
  const offset = perfToNow();
  const cpuMs: number[] = [];
  const lagMaxMs: number[] = [];
  const { monitorEventLoopDelay } = await import('node:perf_hooks');
  const lag = monitorEventLoopDelay({ resolution: 10 });
  lag.enable();
  const state: Array<{ v: SimViewer; firstRelay: string; phase: number; seqs: number[]; unwrap: SequenceUnwrapper; lastAt: number; gapMs: number; gapEndAt: number }> = [];
  const probes = new Map<string, Array<[number, number]>>();
  const probeOwner = new Map<string, number>();
  process.on('message', async (m: { type: string; url?: string; token?: string; count?: number; first?: number; since?: number; dgram?: boolean }) => {
    if (m.type === 'start') {
      const onPacketOf = (index: number) => (seq: number, perfAt: number) => {
        const s = state[index];
        const at = perfAt + offset;
        const ext = s.unwrap.unwrap(seq);
        s.seqs.push(ext);
        if (s.lastAt > 0 && at > gapSince && at - s.lastAt > s.gapMs) {
          s.gapMs = at - s.lastAt;
          s.gapEndAt = at;
        }
        s.lastAt = Math.max(s.lastAt, at);
        const relay = s.v.relay;
        if (relay !== null && s.phase === 0) {
          if (!probeOwner.has(relay)) probeOwner.set(relay, index);
          if (probeOwner.get(relay) === index) {
            let list = probes.get(relay);
            if (!list) probes.set(relay, (list = []));
            list.push([ext, at]);
          }
        }
      };
      const optsOf = (i: number) => ({
        url: m.url!,
        token: m.token!,
        // Four missed packets, at least 700 ms: a dead relay, not the thinned feed's spacing.
        stallMs: Math.max(700, 4000 / viewerPps),
        everyNth,
        phase: phaseOf(m.first! + i),
        onPacket: onPacketOf(i),
      });
      const viewers = m.dgram ? await Promise.all(Array.from({ length: m.count! }, (_, i) => SimViewer.open(optsOf(i)))) : await SimViewer.openMany(m.count!, optsOf);
      for (const v of viewers) state.push({ v, firstRelay: '', phase: v.opts.phase ?? 0, seqs: [], unwrap: new SequenceUnwrapper(), lastAt: 0, gapMs: 0, gapEndAt: 0 });
      let next = 0;
      const worker = async () => {
        while (next < state.length) {
          const s = state[next++];
          await s.v.join(20_000).catch(() => undefined);
          s.firstRelay = s.v.relay ?? '';
          process.send!({ type: 'progress' });
        }
      };
      // What the process is doing while it joins, every 5 s (the main process prints it).
      const diag = setInterval(() => {
        const joinedNow = state.filter((x) => x.v.joins > 0).length;
        const failures = state.reduce((n, x) => n + x.v.joinFailures, 0);
        const stalls = state.reduce((n, x) => n + x.v.stallRejoins, 0);
        process.send!({ type: 'diag', text: `pid ${process.pid}: ${joinedNow}/${state.length} joined, ${failures} failed attempts, ${stalls} stall rejoins, http ${JSON.stringify(simViewerHttpStats())}` });
      }, 5000);
      await Promise.all(Array.from({ length: 16 }, worker));
      clearInterval(diag);
      process.send!({ type: 'joined' });
    } else if (m.type === 'mark') {
      cpuMs.push(cpuMsNow());
      lagMaxMs.push(lag.max / 1e6);
      lag.reset();
    } else if (m.type === 'kill') {
      gapSince = m.since!;
    } else if (m.type === 'report') {
      // What arrived since the watchdog's last read.
      SimViewer.readAll();
      const report: ProcReport = {
        viewers: state.map((s) => {
          const k = s.v.stallAt.findIndex((t) => t + offset > gapSince);
          return {
            relay: s.v.relay ?? '',
            firstRelay: s.firstRelay,
            joinMs: s.v.joinMs[0] ?? NaN,
            joins: s.v.joins,
            phase: s.phase,
            seqs: s.seqs,
            gapMs: s.gapMs,
            gapEndAt: s.gapEndAt,
            // Joins: the first, then one per stall (the stalls before the kill come first).
            stallAt: k < 0 ? NaN : s.v.stallAt[k] + offset,
            rejoinMs: k < 0 ? NaN : (s.v.joinMs[k + 1] ?? NaN),
            joinFailures: s.v.joinFailureReasons,
          };
        }),
        probes: Object.fromEntries(probes),
        cpuMs,
        lagMaxMs,
      };
      for (const s of state) s.v.close();
      process.send!({ type: 'report', report }, () => process.exit(0));
    }
  });
}

// ------------------------------------------------------------------------------------ main

interface NodeProc {
  name: string;
  id: string;
  url: string;
  child: ChildProcess;
}

function p99(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(0.99 * s.length))];
}

async function main(): Promise<void> {
  const viewers = Number(values.viewers);
  const relayCount = Number(values.relays);
  const seconds = Number(values.seconds);
  const procs = Math.max(1, Number(values['viewer-procs']));
  const quiet = values.json;
  const log = (s: string) => {
    if (!quiet) process.stderr.write(s);
  };
  const cluster = `bench${randomBytes(4).toString('hex')}`;
  const env = { ...process.env, MCU_TOKEN_SECRET: generateSecret(), MCU_ADMIN_TOKEN: randomBytes(24).toString('base64url') };
  const mcu = fileURLToPath(new URL('../packages/cli/bin/mcu.js', import.meta.url));
  const children: ChildProcess[] = [];

  const startNode = (name: string, args: string[]): Promise<NodeProc> =>
    new Promise((resolve, reject) => {
      const prof = process.env.BENCH_TREE_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_TREE_CPU_PROF] : [];
      const child = spawn(process.execPath, [...prof, mcu, ...args, '--nats', values.nats!, '--cluster', cluster, '--port', '0'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(child);
      let out = '';
      const timer = setTimeout(() => reject(new Error(`${name} did not start within 60 s: ${out}`)), 60_000);
      child.stdout!.on('data', (b: Buffer) => {
        out += b.toString();
        const m = /(mixer|relay) (\S+) up at (http\S+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve({ name, id: m[2], url: m[3], child });
        }
      });
      child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
    });

  const stopAll = async () => {
    // SIGINT: stop now (SIGTERM would drain first); exiting writes the CPU profiles if asked for.
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGINT');
    await sleep(1500);
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    try {
      const bus = await NatsBus.connect({ servers: values.nats! });
      for (const b of Object.values(subjects(cluster).buckets)) await (await bus.kv(b)).destroy().catch(() => undefined);
      await bus.close();
    } catch {
      // NATS gone: nothing to clean
    }
  };

  try {
    log(`bench:tree: ${viewers} viewers at ${viewerPps} packets/s each, ${relayCount} relays (fan-out ${values["fan-out"]}), ${seconds} s, cluster ${cluster}\n`);
    const mixer = await startNode('mixer', ['mixer', '--fan-out', values['fan-out']!]);
    // A few at a time: twenty processes compiling TypeScript at once on two cores take minutes.
    const relays: NodeProc[] = [];
    for (let i = 0; i < relayCount; i += 4) {
      relays.push(...(await Promise.all(Array.from({ length: Math.min(4, relayCount - i) }, (_, k) => startNode(`relay-${i + k + 1}`, ['relay'])))));
    }
    const admin = { authorization: `Bearer ${env.MCU_ADMIN_TOKEN}` };
    const ev = (await (await fetch(`${mixer.url}/api/events`, { method: 'POST', headers: admin })).json()) as { id: string; tokens: { viewer: string } };
    type RelayInfo = { id: string; viewers: number; feeds: Array<{ parent: { id: string } | null; children: string[]; depth: number | null; forwarder: { packetsIn: number } }> };
    const info = async (r: NodeProc): Promise<RelayInfo | null> => {
      try {
        return (await (await fetch(`${r.url}/api/relay`, { signal: AbortSignal.timeout(1000) })).json()) as RelayInfo;
      } catch {
        return null;
      }
    };
    for (let i = 0; i < 200; i++) {
      const all = await Promise.all(relays.map(info));
      if (all.every((x) => (x?.feeds[0]?.forwarder.packetsIn ?? 0) > 5)) break;
      if (i === 199) throw new Error('the feed did not reach every relay within 20 s');
      await sleep(100);
    }
    const before = await Promise.all(relays.map(info));
    const depthOf = new Map(before.map((x) => [x!.id, x!.feeds[0].depth ?? 0]));
    const parentOf = new Map(before.map((x) => [x!.id, x!.feeds[0].parent?.id ?? null]));
    const depth = Math.max(...depthOf.values());

    // The probe process: one viewer per relay, joined there directly.
    const self = fileURLToPath(import.meta.url);
    // BENCH_TREE_CPU_PROF=dir: a V8 CPU profile of every process (nodes too), written when it exits.
    const execArgv = ['--import', import.meta.resolve('tsx'), ...(process.env.BENCH_TREE_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_TREE_CPU_PROF] : [])];
    const probeProc = fork(self, ['--role', 'probe'], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    children.push(probeProc);
    let probeNative = false;
    await new Promise<void>((resolve, reject) => {
      probeProc.on('message', (m: { type: string; native?: boolean }) => {
        if (m.type !== 'joined') return;
        probeNative = m.native === true;
        resolve();
      });
      probeProc.once('exit', (code) => reject(new Error(`the probe process exited (${code})`)));
      probeProc.send({ type: 'start', relays: relays.map((r) => ({ id: r.id, url: r.url })), event: ev.id, token: ev.tokens.viewer });
    });
    probeProc.removeAllListeners('exit');

    // Viewers join through the mixer, in `procs` processes.
    let joined = 0;
    const viewerProcs = Array.from({ length: procs }, () => fork(self, ['--role', 'viewers'], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
    children.push(...viewerProcs);
    const joinedAll = Promise.all(
      viewerProcs.map(
        (p, i) =>
          new Promise<void>((resolve) => {
            p.on('message', (m: { type: string; text?: string }) => {
              if (m.type === 'progress') joined++;
              if (m.type === 'diag') log(`\n  ${m.text}\n`);
              if (m.type === 'joined') resolve();
            });
            const count = Math.floor(viewers / procs) + (i < viewers % procs ? 1 : 0);
            // Viewers are numbered over all processes (their phase follows the number).
            const first = i * Math.floor(viewers / procs) + Math.min(i, viewers % procs);
            p.send({ type: 'start', url: `${mixer.url}/rtp-viewers/${ev.id}`, token: ev.tokens.viewer, count, first, dgram: values['dgram-viewers'] });
          }),
      ),
    );
    const bar = setInterval(() => log(`\r  joining  [${'#'.repeat(Math.round((30 * joined) / viewers)).padEnd(30)}] ${joined}/${viewers}`), 250);
    await joinedAll;
    clearInterval(bar);
    log(`\r  joined   [${'#'.repeat(30)}] ${joined}/${viewers}\n`);

    // Run; SIGKILL the most loaded relay (preferring one with child relays) at 40 % of the run.
    // The nodes' own view of the run, before and after the kill: CPU used, event-loop delay (p99,
    // max; prom-client resets its histogram at each scrape, so each scrape opens a window) and GC.
    type Scrape = { cpuS: number; lagP99Ms: number; lagMaxMs: number; gcMs: number } | null;
    const nodes = [mixer, ...relays];
    const scrapeAll = async (): Promise<{ at: number; s: Scrape[] }> => ({
      at: nowMs(),
      s: await Promise.all(
        nodes.map(async (n): Promise<Scrape> => {
          try {
            const text = await (await fetch(`${n.url}/metrics`, { signal: AbortSignal.timeout(3000) })).text();
            const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
            const gc = [...text.matchAll(/^mcu_nodejs_gc_duration_seconds_sum\{[^}]*\} (\S+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
            return { cpuS: value('mcu_process_cpu_seconds_total'), lagP99Ms: value('mcu_nodejs_eventloop_lag_p99_seconds') * 1000, lagMaxMs: value('mcu_nodejs_eventloop_lag_max_seconds') * 1000, gcMs: gc * 1000 };
          } catch {
            return null;
          }
        }),
      ),
    });
    const round = (x: number) => Number(x.toFixed(1));
    const windowOf = (a: { at: number; s: Scrape[] }, b: { at: number; s: Scrape[] }) => {
      const per = b.s.map((x, k) => {
        const y = a.s[k];
        return x && y ? { cpuPct: (100 * (x.cpuS - y.cpuS) * 1000) / (b.at - a.at), lagP99Ms: x.lagP99Ms, lagMaxMs: x.lagMaxMs, gcMs: x.gcMs - y.gcMs } : null;
      });
      const relayWins = per.slice(1).filter((x): x is NonNullable<typeof x> => x !== null);
      const cpus = relayWins.map((x) => x.cpuPct).sort((p, q) => p - q);
      return {
        seconds: round((b.at - a.at) / 1000),
        mixer: per[0] && { cpuPct: round(per[0].cpuPct), lagP99Ms: round(per[0].lagP99Ms), lagMaxMs: round(per[0].lagMaxMs) },
        relays: {
          cpuPctMedian: round(cpus[Math.floor(cpus.length / 2)] ?? NaN),
          cpuPctSum: round(cpus.reduce((sum, c) => sum + c, 0)),
          lagP99MsMax: round(Math.max(...relayWins.map((x) => x.lagP99Ms))),
          lagMaxMsMax: round(Math.max(...relayWins.map((x) => x.lagMaxMs))),
          gcMsMax: Math.round(Math.max(...relayWins.map((x) => x.gcMs))),
        },
      };
    };
    // The load generator's own CPU over the same windows: each viewer process and the probe process
    // note theirs at every mark.
    const mark = () => {
      for (const p of [...viewerProcs, probeProc]) p.send({ type: 'mark' });
    };
    mark();
    const atStart = await scrapeAll();
    const runStart = nowMs();
    await sleep(seconds * 400);
    // Steady state ends here: the scrape of every node and the relays' load below cost each node a
    // few milliseconds of its event loop at the same moment (a /metrics render is 2-4 ms).
    const steadyUntil = nowMs();
    mark();
    const atKill = await scrapeAll();
    const loads = (await Promise.all(relays.map(info))).filter((x): x is RelayInfo => x !== null);
    loads.sort((a, b) => b.feeds[0].children.length - a.feeds[0].children.length || b.viewers - a.viewers);
    const victim = relays.find((r) => r.id === loads[0].id)!;
    const killAt = nowMs();
    for (const p of viewerProcs) p.send({ type: 'kill', since: killAt });
    victim.child.kill('SIGKILL');
    log(`  killed ${victim.id} (${loads[0].viewers} viewers, ${loads[0].feeds[0].children.length} child relays) at ${((killAt - runStart) / 1000).toFixed(1)} s\n`);
    let runEnd = nowMs();
    while ((runEnd = nowMs()) - runStart < seconds * 1000) {
      log(`\r  running  [${'#'.repeat(Math.round((30 * (nowMs() - runStart)) / (seconds * 1000))).padEnd(30)}]`);
      await sleep(250);
    }
    log('\n');
    mark();
    const atEnd = await scrapeAll();

    const reports = await Promise.all(
      viewerProcs.map((p) => new Promise<ProcReport>((resolve) => p.on('message', (m: { type: string; report: ProcReport }) => m.type === 'report' && resolve(m.report)).send({ type: 'report' }))),
    );
    const all = reports.flatMap((r) => r.viewers);
    const probeReport = await new Promise<{ probes: Record<string, Array<[number, number]>>; cpuMs: number[] }>((resolve) =>
      probeProc.on('message', (m: { type: string; probes: Record<string, Array<[number, number]>>; cpuMs: number[] }) => m.type === 'report' && resolve(m)).send({ type: 'report' }),
    );
    const probeArrivals = probeReport.probes;
    // CPU (% of one core) of the viewer processes together and of the probe process, between marks k and k + 1.
    const loadGenerator = (k: number, a: { at: number }, b: { at: number }) => ({
      viewersCpuPct: round(reports.reduce((sum, r) => sum + (r.cpuMs[k + 1] - r.cpuMs[k]), 0) * 100 / (b.at - a.at)),
      probeCpuPct: round(((probeReport.cpuMs[k + 1] - probeReport.cpuMs[k]) * 100) / (b.at - a.at)),
      viewersLagMaxMs: Math.round(Math.max(...reports.map((r) => r.lagMaxMs[k + 1]))),
    });

    // The recovery window opens at the first packet the killed relay did not forward before the
    // kill (its probe viewer has the whole feed).
    const killSeq = 1 + Math.max(...(probeArrivals[victim.id] ?? []).filter(([, at]) => at < killAt).map(([s]) => s));
    // Recovery: the longest silence that began after the kill, up to the packet that ended it; a
    // viewer that received nothing after the kill by the end of the run is silent to the end.
    const notBack = all.filter((v) => !v.seqs.some((s) => s >= killSeq));
    const recoveries = all.filter((v) => v.gapEndAt > killAt && v.gapMs > 500).map((v) => v.gapEndAt - killAt);
    for (const _ of notBack) recoveries.push(runEnd - killAt);
    const recoveryMs = Math.max(0, ...recoveries);
    // Delivery outside the recovery window, over the packets every viewer could have received.
    const windowEnd = killSeq + Math.ceil(recoveryMs / 20) + 10;
    // Over the run: from the first packet the probes saw after it started (every viewer had joined)
    // to the last one they saw 100 ms before it ended (in flight to the viewers at the end).
    const probed = Object.values(probeArrivals).flat();
    const from = Math.min(...probed.filter(([, at]) => at >= runStart).map(([s]) => s));
    const to = Math.max(...probed.filter(([, at]) => at <= runEnd - 100).map(([s]) => s));
    let expected = 0;
    let got = 0;
    /** Per sequence number: viewers that received it, and viewers that asked for it. */
    const perSeq = new Map<number, number>();
    const askedFor = new Map<number, number>();
    /** Packets lost outside the recovery window, by the relay the viewer was first placed on, and by when (ticks from the kill, in 50-tick steps). */
    const lostByRelay: Record<string, number> = {};
    const lostByTime: Record<string, number> = {};
    for (const v of all) {
      const set = new Set(v.seqs);
      for (let s = from; s <= to; s++) {
        if (!wanted(s, v.phase)) continue;
        askedFor.set(s, (askedFor.get(s) ?? 0) + 1);
        if (set.has(s)) perSeq.set(s, (perSeq.get(s) ?? 0) + 1);
        if (s >= killSeq && s <= windowEnd) continue;
        expected++;
        if (set.has(s)) got++;
        else {
          const relay = v.firstRelay.slice(-6);
          lostByRelay[relay] = (lostByRelay[relay] ?? 0) + 1;
          const step = String(50 * Math.floor((s - killSeq) / 50));
          lostByTime[step] = (lostByTime[step] ?? 0) + 1;
        }
      }
    }
    const deliveryRatio = expected > 0 ? got / expected : NaN;
    // Per hop: arrival at a viewer of a relay minus arrival at a viewer of its parent relay, in
    // steady state (from 1 s into the run, joins settled, to the scrape before the kill).
    const hopsOf = (probes: Record<string, Array<[number, number]>>): number[] => {
      const out: number[] = [];
      for (const [relay, list] of Object.entries(probes)) {
        const parent = parentOf.get(relay);
        const parentList = parent ? probes[parent] : undefined;
        if (!parentList) continue;
        const at = new Map(parentList);
        for (const [s, t] of list) if (t > runStart + 1000 && t < steadyUntil && at.has(s)) out.push(t - at.get(s)!);
      }
      return out;
    };
    const hop = hopsOf(probeArrivals);
    const loadHop = reports.flatMap((r) => hopsOf(r.probes));
    const result = {
      viewers,
      relays: relayCount,
      depth,
      pps: viewerPps,
      deliveryRatio: Number(deliveryRatio.toFixed(5)),
      hopLatencyP99Ms: hop.length ? Number(p99(hop).toFixed(2)) : null,
      joinP99Ms: Number(p99(all.map((v) => v.joinMs).filter(Number.isFinite)).toFixed(0)),
      recoverySeconds: Number((recoveryMs / 1000).toFixed(2)),
      // Viewers that received nothing after the kill by the end of the run (recovery is then a lower bound).
      ...(notBack.length > 0 && { notBack: notBack.length }),
    };
    // Where the stalls after the kill come from: for the probe viewer of each relay in each viewer
    // process, its longest silence after the kill (start after the kill, length). Silences shared by
    // every relay and process at once point upstream (the mixer); ones that differ by process point
    // at the viewer processes themselves.
    const probeGaps = reports.map((r) =>
      Object.fromEntries(
        Object.entries(r.probes).map(([relay, list]) => {
          let best: [number, number] = [0, 0];
          for (let i = 1; i < list.length; i++) {
            const gap = list[i][1] - list[i - 1][1];
            if (list[i - 1][1] > killAt && gap > best[1]) best = [Math.round(list[i - 1][1] - killAt), Math.round(gap)];
          }
          return [relay.slice(-6), best];
        }),
      ),
    );
    // Who joined again after the kill: the killed relay's viewers must; anyone else rejoining took a
    // stall of its own (or of its relay's re-parenting) for a dead relay.
    const rejoined = all.filter((v) => v.joins > 1);
    const detail = {
      probeGapsAfterKill: probeGaps,
      victimViewers: all.filter((v) => v.firstRelay === victim.id).length,
      rejoinedFromVictim: rejoined.filter((v) => v.firstRelay === victim.id).length,
      rejoinedFromOthers: rejoined.filter((v) => v.firstRelay !== victim.id).length,
      // Longest silence after the kill (ms) of the viewers first placed on each relay: p50 and max.
      gapAfterKillByRelay: Object.fromEntries(
        [...new Set(all.map((v) => v.firstRelay))].sort().map((relay) => {
          const gaps = all.filter((v) => v.firstRelay === relay).map((v) => (v.gapEndAt > killAt ? Math.round(v.gapMs) : 0)).sort((a, b) => a - b);
          return [`${relay.slice(-6)}${relay === victim.id ? ' (killed)' : parentOf.get(relay) === victim.id ? ' (child)' : ''}`, [gaps[Math.floor(gaps.length / 2)], gaps[gaps.length - 1]]];
        }),
      ),
      lost: { byFirstRelay: lostByRelay, byTicksFromKill: lostByTime, recoveryWindowTicks: [0, windowEnd - killSeq] },
      affectedViewers: recoveries.length,
      // The killed relay's viewers, medians and max (ms after the kill): when they called the stall,
      // how long re-placement took (the mixer's 307 and the relay's 201), and the first packet again.
      victimRecoveryMs: (() => {
        const vs = all.filter((v) => v.firstRelay === victim.id && Number.isFinite(v.stallAt));
        const stat = (xs: number[]) => {
          const sorted = xs.filter(Number.isFinite).sort((a, b) => a - b);
          return sorted.length ? [Math.round(sorted[Math.floor(sorted.length / 2)]), Math.round(sorted[sorted.length - 1])] : null;
        };
        return {
          viewers: vs.length,
          failedAttempts: vs.reduce((sum: Record<string, number>, v) => {
            for (const [reason, n] of Object.entries(v.joinFailures)) sum[reason] = (sum[reason] ?? 0) + n;
            return sum;
          }, {}),
          stallCalled: stat(vs.map((v) => v.stallAt - killAt)),
          replacedIn: stat(vs.map((v) => v.rejoinMs)),
          joinedAt: stat(vs.map((v) => v.stallAt + v.rejoinMs - killAt)),
          firstPacketAt: stat(vs.map((v) => v.gapEndAt - killAt)),
        };
      })(),
      recoveryP50Seconds: recoveries.length ? Number((recoveries.sort((a, b) => a - b)[Math.floor(recoveries.length / 2)] / 1000).toFixed(2)) : 0,
      hopLatencyP50Ms: hop.length ? Number(hop.sort((a, b) => a - b)[Math.floor(hop.length / 2)].toFixed(2)) : null,
      hopSamples: hop.length,
      nodesBeforeKill: { ...windowOf(atStart, atKill), loadGenerator: loadGenerator(0, atStart, atKill) },
      nodesAfterKill: { ...windowOf(atKill, atEnd), loadGenerator: loadGenerator(1, atKill, atEnd) },
      receivers: { viewers: values['dgram-viewers'] ? 'dgram' : 'native', probe: probeNative ? 'native (kernel timestamps)' : 'dgram', phases: values.aligned ? 'aligned' : 'spread' },
      // The same measure at the load viewers (their process's queueing included).
      loadViewerHopP99Ms: loadHop.length ? Number(p99(loadHop).toFixed(2)) : null,
    };
    if (!quiet) process.stderr.write(`  ${JSON.stringify(detail)}\n`);
    process.stdout.write(`${JSON.stringify(result)}\n`);
    if (!quiet) {
      const rows: Array<[string, string, string]> = [
        ['viewers / relays / depth', `${viewers} / ${relayCount} / ${depth}`, ''],
        ['probe packets per viewer', `${viewerPps} per second (one in ${everyNth} of the feed${everyNth > 1 ? (values.aligned ? ', all viewers on the same one' : `, viewers spread over the ${everyNth} phases`) : ''})`, ''],
        ['load generator CPU (viewer processes + probe), before / after the kill', `${detail.nodesBeforeKill.loadGenerator.viewersCpuPct} + ${detail.nodesBeforeKill.loadGenerator.probeCpuPct} / ${detail.nodesAfterKill.loadGenerator.viewersCpuPct} + ${detail.nodesAfterKill.loadGenerator.probeCpuPct} % of a core (${detail.receivers.viewers} receivers)`, ''],
        ['delivery outside the recovery window', `${(deliveryRatio * 100).toFixed(3)} %`, '≥ 99.9 %'],
        ['per-hop latency p99', result.hopLatencyP99Ms === null ? 'n/a (depth 1)' : `${result.hopLatencyP99Ms} ms`, '≤ 5 ms'],
        ['join p99 (through the 307)', `${result.joinP99Ms} ms`, ''],
        ['recovery after SIGKILL of a relay', `${result.recoverySeconds} s${notBack.length > 0 ? ` or more: ${notBack.length} viewers not back by the end` : ''}`, '≤ 3 s'],
      ];
      const table = ['| measure | value | target |', '| --- | ---: | ---: |', ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
      process.stdout.write(`${table}\n`);
      // Report with an SVG plot: share of viewers that received each packet, over the run.
      const seqs = [...perSeq.keys()].sort((a, b) => a - b);
      const w = 800;
      const h = 200;
      const points = seqs.map((s, i) => `${((i / Math.max(1, seqs.length - 1)) * w).toFixed(1)},${(h - (perSeq.get(s)! / askedFor.get(s)!) * h).toFixed(1)}`).join(' ');
      const killX = ((seqs.indexOf(killSeq) / Math.max(1, seqs.length - 1)) * w).toFixed(1);
      const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h + 20}" font-family="sans-serif" font-size="11"><rect width="${w}" height="${h}" fill="#fafafa"/><line x1="${killX}" y1="0" x2="${killX}" y2="${h}" stroke="#c00" stroke-dasharray="4"/><polyline fill="none" stroke="#06c" points="${points}"/><text x="4" y="${h + 14}">share of the viewers asking for each probe packet that received it (${viewerPps} per second per viewer); red: relay SIGKILLed</text></svg>`;
      const dir = fileURLToPath(new URL('./results/', import.meta.url));
      mkdirSync(dir, { recursive: true });
      const stamp = new Date().toISOString().replace(/[:.]/g, '-');
      writeFileSync(`${dir}tree-${stamp}.svg`, svg);
      writeFileSync(
        `${dir}tree-${stamp}.md`,
        `# bench:tree ${new Date().toISOString()}\n\n\`${JSON.stringify(result)}\`\n\n${table}\n\nKilled ${victim.id} (${loads[0].viewers} viewers, ${loads[0].feeds[0].children.length} child relays) at ${((killAt - runStart) / 1000).toFixed(1)} s.\n\n![delivery](tree-${stamp}.svg)\n\nDetail:\n\n\`\`\`json\n${JSON.stringify({ ...detail, probeGapsAfterKill: undefined })}\n\`\`\`\n`,
      );
      process.stdout.write(`report: bench/results/tree-${stamp}.md\n`);
    }
  } finally {
    await stopAll();
  }
}

if (values.role === 'viewers') await viewerProcess();
else if (values.role === 'probe') await probeProcess();
else await main();
