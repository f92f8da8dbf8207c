/**
 * bench:failover — the show survives its mixer. Over the local NATS (a cluster of its own):
 * three mixers (`mcu mixer`: a, b, and c whose NATS connection runs through a proxy this process
 * controls), relays (`mcu relay`), a plain-RTP presenter (440 Hz, re-registers through the API)
 * and a WHIP presenter through werift (880 Hz, re-publishes when its mix stops), 1,000 plain-RTP
 * viewers placed on the relays through a mixer's 307 (one packet in N each, spread over the
 * phases) and one full-rate probe viewer per relay that decodes the program.
 *
 *   1. SIGKILL of the holder (a): b takes the event over. programGapS = longest silence any viewer
 *      saw from the kill; presentersBackS = kill → both tones heard again at every probe.
 *   2. Planned move b → c (`POST /api/events/:id/move`): handoverGapS = longest silence any
 *      viewer saw from the move.
 *   3. Partition of c from NATS (its proxy black-holes): b takes the event over;
 *      splitBrainPackets = feed datagrams c sent after b held the lease (c's own /metrics,
 *      scraped over HTTP, which the partition does not cut).
 * viewersReconnected = viewers that re-joined (a player reconnects after `--stall-ms` of silence).
 * Baseline in the same run: the first 3 s (no failure), the viewers' longest gap.
 * Prints a table, one JSON line, and writes a report under bench/results/.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { generateSecret, NatsBus, subjects } from '@mcu/control';
import { SimViewer } from '../packages/cluster/test/simViewer.js';
import { ProbeViewer, ReRegisteringPresenter } from '../packages/cluster/test/failoverHarness.js';
import { WebRtcClient, tonePower } from '../packages/webrtc/test/client.js';

process.env.MCU_LOG_LEVEL ??= 'warn';

const { values } = parseArgs({
  options: {
    viewers: { type: 'string', default: '1000' },
    relays: { type: 'string', default: '3' },
    pps: { type: 'string', default: '10' },
    'stall-ms': { type: 'string', default: '2500' },
    nats: { type: 'string', default: 'nats://127.0.0.1:4222' },
    json: { type: 'boolean', default: false },
  },
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const TONES = { rtp: 440, whip: 880 } as const;
/** Tone power of a decoded 20 ms frame (tonePower units) above which a tone counts as heard. */
const HEARD = 1e5;
const everyNth = Math.max(1, Math.round(50 / Number(values.pps)));

interface NodeProc {
  name: string;
  id: string;
  url: string;
  child: ChildProcess;
}

/** A WHIP presenter (werift) sending a tone; re-publishes through the given mixers when its mix stops for 1.5 s. */
class WhipPresenter {
  client: WebRtcClient | null = null;
  republishes = 0;
  #lastCount = 0;
  #lastChange = performance.now();
  #busy = false;
  #closed = false;
  #timer: NodeJS.Timeout | undefined;
  #pacer: NodeJS.Timeout | undefined;

  constructor(
    readonly eventId: string,
    readonly token: string,
    /** Where to (re-)publish: the event's WHIP URL on each of these mixers in turn. */
    public mixers: () => string[],
  ) {}

  async start(): Promise<void> {
    await this.#publish();
    this.#pacer = setInterval(() => this.client?.pc.connectionState === 'connected' && this.client.sendTone(TONES.whip), 20);
    this.#timer = setInterval(() => this.#watch(), 100);
  }

  async #publish(): Promise<void> {
    let lastErr: unknown;
    for (let attempt = 0; attempt < 40 && !this.#closed; attempt++) {
      const urls = this.mixers();
      const url = `${urls[attempt % urls.length]}/whip/${this.eventId}`;
      try {
        const c = await WebRtcClient.connect('whip', url, this.token);
        await c.connected(5000);
        this.client = c;
        this.#lastChange = performance.now();
        this.#lastCount = 0;
        return;
      } catch (err) {
        lastErr = err;
        await sleep(Math.min(100 * 2 ** Math.min(attempt, 3), 800));
      }
    }
    throw new Error(`WHIP presenter could not publish: ${String(lastErr)}`);
  }

  #watch(): void {
    if (this.#busy || this.#closed || !this.client) return;
    const n = this.client.received.length;
    const failed = ['failed', 'closed', 'disconnected'].includes(this.client.pc.connectionState);
    if (n !== this.#lastCount && !failed) {
      this.#lastCount = n;
      this.#lastChange = performance.now();
      return;
    }
    if (!failed && performance.now() - this.#lastChange < 1500) return;
    this.#busy = true;
    const old = this.client;
    this.client = null;
    void (async () => {
      await old.pc.close().catch(() => undefined);
      try {
        await this.#publish();
        this.republishes++;
      } finally {
        this.#busy = false;
      }
    })();
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    clearInterval(this.#pacer);
    await this.client?.pc.close().catch(() => undefined);
  }
}

async function metric(url: string, name: string): Promise<number> {
  try {
    const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(1000) })).text();
    let sum = 0;
    for (const line of text.split('\n')) if (line.startsWith(name)) sum += Number(line.split(' ').pop());
    return sum;
  } catch {
    return Number.NaN;
  }
}

async function main(): Promise<void> {
  const viewerCount = Number(values.viewers);
  const relayCount = Number(values.relays);
  const stallMs = Number(values['stall-ms']);
  const log = (s: string) => {
    if (!values.json) process.stderr.write(s);
  };
  const cluster = `fobench${randomBytes(4).toString('hex')}`;
  // WebRTC on loopback only (the werift presenter is on this machine): ICE on 127.0.0.0/8.
  const configFile = join(mkdtempSync(join(tmpdir(), 'mcu-fobench-')), 'mcu.json');
  writeFileSync(configFile, JSON.stringify({ iceAllow: ['127.0.0.0/8'], iceHostAddresses: ['127.0.0.1'] }));
  const env = { ...process.env, MCU_TOKEN_SECRET: generateSecret(), MCU_ADMIN_TOKEN: randomBytes(24).toString('base64url'), MCU_CONFIG: configFile };
  const mcu = fileURLToPath(new URL('../packages/cli/bin/mcu.js', import.meta.url));
  const children: ChildProcess[] = [];
  const natsUrl = new URL(values.nats!);
  // The NATS proxy of mixer-c runs in a process of its own: starved here, it would make c look dead.
  const proxyChild = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), fileURLToPath(new URL('./natsProxy.ts', import.meta.url)), natsUrl.hostname, natsUrl.port || '4222'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const proxyPort = await new Promise<number>((resolve, reject) => {
    let out = '';
    proxyChild.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /port (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    proxyChild.once('exit', (code) => reject(new Error(`the NATS proxy exited ${code}`)));
  });
  const proxy = {
    url: `nats://127.0.0.1:${proxyPort}`,
    blackhole: () => proxyChild.stdin!.write('blackhole\n'),
    heal: () => proxyChild.stdin!.write('heal\n'),
    close: async () => {
      proxyChild.stdin!.end();
      proxyChild.kill('SIGKILL');
    },
  };

  const startNode = (name: string, args: string[], nats = values.nats!): Promise<NodeProc> =>
    new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [mcu, ...args, '--nats', nats, '--cluster', cluster, '--port', '0'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
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
      child.once('exit', (code) => reject(new Error(`${name} exited ${code}: ${out}`)));
    });
  const cleanups: (() => Promise<void> | void)[] = [];
  const stopAll = async () => {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => undefined);
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGINT');
    await sleep(1500);
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await proxy.close();
    try {
      const bus = await NatsBus.connect({ servers: values.nats! });
      for (const b of Object.values(subjects(cluster).buckets)) await (await bus.kv(b)).destroy().catch(() => undefined);
      await bus.close();
    } catch {
      // NATS gone: nothing to clean
    }
  };

  try {
    log(`bench:failover: 3 mixers, ${relayCount} relays, ${viewerCount} viewers at ${50 / everyNth} packets/s, cluster ${cluster}\n`);
    const [a, b] = await Promise.all([startNode('mixer-a', ['mixer', '--node-id', 'mixer-a']), startNode('mixer-b', ['mixer', '--node-id', 'mixer-b'])]);
    const c = await startNode('mixer-c', ['mixer', '--node-id', 'mixer-c'], proxy.url);
    const relays: NodeProc[] = [];
    for (let i = 0; i < relayCount; i += 3) relays.push(...(await Promise.all(Array.from({ length: Math.min(3, relayCount - i) }, (_, k) => startNode(`relay-${i + k + 1}`, ['relay'])))));
    const mixerUrls = () => [a, b, c].filter((m) => m.child.exitCode === null && m.child.signalCode === null).map((m) => m.url);
    await sleep(1500);

    const admin = { authorization: `Bearer ${env.MCU_ADMIN_TOKEN}`, 'content-type': 'application/json' };
    const created = await fetch(`${a.url}/api/events?placed=1`, { method: 'POST', headers: admin, body: JSON.stringify({ name: 'failover bench' }) });
    if (created.status !== 201) throw new Error(`create answered ${created.status}`);
    const ev = (await created.json()) as { id: string; tokens: { viewer: string; presenter: string; producer: string } };
    const holder = async (): Promise<{ holder: string | null; epoch: number }> => {
      for (const url of mixerUrls()) {
        try {
          const r = await fetch(`${url}/api/events/${ev.id}/tree`, { headers: admin, redirect: 'manual', signal: AbortSignal.timeout(1000) });
          if (r.status === 200) {
            const t = (await r.json()) as { holder?: { id: string; epoch: number } };
            if (t.holder) return { holder: t.holder.id, epoch: t.holder.epoch };
          }
        } catch {
          // next mixer
        }
      }
      return { holder: null, epoch: 0 };
    };

    const rtpPresenter = await ReRegisteringPresenter.start(TONES.rtp, ev.id, ev.tokens.presenter);
    cleanups.push(() => rtpPresenter.stop());
    await rtpPresenter.register(a.url);
    const whip = new WhipPresenter(ev.id, ev.tokens.presenter, () => [a.url]);
    cleanups.push(() => whip.close());
    await whip.start();
    // Probes: one full-rate viewer per relay, joined there directly; they decode the program.
    const probes: { rtp: ProbeViewer; whip: ProbeViewer }[] = [];
    await sleep(1500);
    for (const r of relays) {
      const p440 = await ProbeViewer.open(TONES.rtp);
      const p880 = await ProbeViewer.open(TONES.whip);
      cleanups.push(() => p440.close(), () => p880.close());
      await p440.join(`${r.url}/rtp-viewers/${ev.id}`, ev.tokens.viewer);
      await p880.join(`${r.url}/rtp-viewers/${ev.id}`, ev.tokens.viewer);
      probes.push({ rtp: p440, whip: p880 });
    }
    // Load viewers through mixer a's 307 (placement spreads them over the relays).
    const viewers = await SimViewer.openMany(viewerCount, (i) => ({ url: `${a.url}/rtp-viewers/${ev.id}`, token: ev.tokens.viewer, stallMs, everyNth, phase: i % everyNth }));
    cleanups.push(() => viewers.forEach((v) => v.close()));
    for (let i = 0; i < viewers.length; i += 50) await Promise.all(viewers.slice(i, i + 50).map((v) => v.join(60_000)));
    log(`  ${viewers.length} viewers joined; presenters on ${(await holder()).holder}\n`);
    const heardAll = (since: number) => probes.every((p) => p.rtp.toneBackAt(since, HEARD) !== null && p.whip.toneBackAt(since, HEARD) !== null);
    for (let i = 0; i < 100 && !heardAll(0); i++) await sleep(100);
    if (!heardAll(0)) throw new Error('both tones were not heard at every probe before the kill');

    // The event must be on mixer-a for the kill (a false death under load may have moved it: counted).
    const beforeKill = await holder();
    const unplannedMovesBeforeKill = beforeKill.epoch - 1;
    if (beforeKill.holder !== a.id) {
      const res = await fetch(`${b.url}/api/events/${ev.id}/move`, { method: 'POST', headers: { authorization: `Bearer ${ev.tokens.producer}`, 'content-type': 'application/json' }, body: JSON.stringify({ to: a.id }) });
      if (res.status !== 200) throw new Error(`moving the event back to mixer-a answered ${res.status}: ${await res.text()}`);
      await rtpPresenter.reRegister([a.url], 10_000);
      await sleep(2000);
    }
    // Baseline: 3 s of normal running.
    SimViewer.readAll();
    viewers.forEach((v) => v.resetGap());
    await sleep(3000);
    SimViewer.readAll();
    const baselineGapS = Math.max(...viewers.map((v) => v.maxGapMs)) / 1000;
    const joinsBefore = viewers.reduce((n, v) => n + v.joins, 0);

    // 1. SIGKILL of the holder.
    viewers.forEach((v) => v.resetGap());
    const killedAt = performance.now();
    a.child.kill('SIGKILL');
    log('  SIGKILL mixer-a\n');
    const reRegistering = rtpPresenter.reRegister([a.url, b.url, c.url], 10_000);
    whip.mixers = () => [b.url, c.url];
    let takeoverS = Number.NaN;
    for (let i = 0; i < 100; i++) {
      const h = await holder();
      if (h.holder && h.holder !== a.id) {
        takeoverS = (performance.now() - killedAt) / 1000;
        break;
      }
      await sleep(50);
    }
    await reRegistering;
    for (let i = 0; i < 150 && !heardAll(killedAt + 100); i++) await sleep(100);
    const backAt = (pick: 'rtp' | 'whip') => Math.max(...probes.map((p) => p[pick].toneBackAt(killedAt + 100, HEARD) ?? Number.POSITIVE_INFINITY));
    const presentersBackS = (Math.max(backAt('rtp'), backAt('whip')) - killedAt) / 1000;
    await sleep(1000);
    SimViewer.readAll();
    const programGapS = Math.max(...viewers.map((v) => v.maxGapMs)) / 1000;
    const probeGapS = Math.max(...probes.map((p) => p.rtp.maxGapAfter(killedAt))) / 1000;
    const afterKill = await holder();
    log(`  taken over by ${afterKill.holder} (epoch ${afterKill.epoch}) in ${takeoverS.toFixed(2)} s; program gap ${programGapS.toFixed(2)} s; presenters back ${presentersBackS.toFixed(2)} s\n`);

    // 2. Planned move to mixer c.
    await sleep(1000);
    viewers.forEach((v) => v.resetGap());
    const move = async (to: NodeProc) => {
      // Any mixer: the request is redirected to the holder. A 409 under load (the holder's registry
      // missed the target's beats for a moment) is asked again, twice.
      let res: Response;
      for (let attempt = 0; ; attempt++) {
        res = await fetch(`${b.url}/api/events/${ev.id}/move`, { method: 'POST', headers: { authorization: `Bearer ${ev.tokens.producer}`, 'content-type': 'application/json' }, body: JSON.stringify({ to: to.id }) });
        if (res.status !== 409 || attempt >= 2) break;
        await sleep(1000);
      }
      if (res.status !== 200) throw new Error(`move answered ${res.status}: ${await res.text()}`);
      const answer = (await res.json()) as { to: string; epoch: number; gapMs: number };
      await rtpPresenter.reRegister([to.url], 10_000);
      return answer;
    };
    const moveTarget = afterKill.holder === b.id ? c : b;
    const movedAt = performance.now();
    const moved = await move(moveTarget);
    for (let i = 0; i < 100 && !heardAll(movedAt + moved.gapMs + 100); i++) await sleep(100);
    const movePresentersBackS = (Math.max(...probes.flatMap((p) => [p.rtp.toneBackAt(movedAt + moved.gapMs + 100, HEARD) ?? Infinity, p.whip.toneBackAt(movedAt + moved.gapMs + 100, HEARD) ?? Infinity])) - movedAt) / 1000;
    await sleep(1000);
    SimViewer.readAll();
    const handoverGapS = Math.max(...viewers.map((v) => v.maxGapMs)) / 1000;
    log(`  moved to ${moved.to} (epoch ${moved.epoch}, lease released to taken ${moved.gapMs} ms): gap ${handoverGapS.toFixed(2)} s; presenters back ${movePresentersBackS.toFixed(2)} s\n`);

    // 3. Partition of mixer c from NATS (moved there first if b holds the event).
    await sleep(1000);
    if (moveTarget !== c) {
      await move(c);
      await sleep(1500);
    }
    viewers.forEach((v) => v.resetGap());
    const sentAt = async () => metric(c.url, 'mcu_feed_packets_out_total');
    const cutAt = performance.now();
    proxy.blackhole();
    log('  mixer-c partitioned from NATS\n');
    let partitionTakeoverS = Number.NaN;
    let cSentAtTakeover = Number.NaN;
    const cSamples: [number, number][] = [];
    for (let i = 0; i < 100; i++) {
      const [h, sent] = await Promise.all([holder(), sentAt()]);
      cSamples.push([performance.now() - cutAt, sent]);
      if (h.holder && h.holder !== c.id) {
        partitionTakeoverS = (performance.now() - cutAt) / 1000;
        cSentAtTakeover = sent;
        break;
      }
      await sleep(50);
    }
    await rtpPresenter.reRegister([b.url], 10_000);
    await sleep(2000);
    const cSentLater = await sentAt();
    const splitBrainPackets = cSentLater - cSentAtTakeover;
    // When c's sends stopped: the first sample after which its counter did not grow.
    // (An upper bound: each sample is taken after its scrape returned.)
    let stoppedAfterCutS = cSamples.length > 0 && Number.isFinite(cSamples[0][1]) ? cSamples[0][0] / 1000 : Number.NaN;
    for (let i = cSamples.length - 1; i > 0; i--) {
      if (Number.isFinite(cSamples[i][1]) && cSamples[i][1] !== cSamples[i - 1][1]) {
        stoppedAfterCutS = cSamples[i][0] / 1000;
        break;
      }
    }
    SimViewer.readAll();
    const partitionGapS = Math.max(...viewers.map((v) => v.maxGapMs)) / 1000;
    proxy.heal();
    const viewersReconnected = viewers.reduce((n, v) => n + v.joins, 0) - joinsBefore;
    const continuity = probes.map((p) => ({ ssrcs: new Set(p.rtp.packets.map((x) => x.ssrc)).size, seqJumps: p.rtp.seqJumps() }));

    const result = {
      bench: 'failover',
      viewers: viewerCount,
      relays: relayCount,
      mixers: 3,
      baselineGapS,
      unplannedMovesBeforeKill,
      takeoverS: round(takeoverS),
      programGapS: round(programGapS),
      probeGapS: round(probeGapS),
      presentersBackS: round(presentersBackS),
      viewersReconnected,
      handoverGapS: round(handoverGapS),
      handoverMs: moved.gapMs,
      movePresentersBackS: round(movePresentersBackS),
      partitionTakeoverS: round(partitionTakeoverS),
      partitionGapS: round(partitionGapS),
      oldHolderStoppedAfterCutS: round(stoppedAfterCutS),
      splitBrainPackets,
      whipRepublishes: whip.republishes,
      rtpRegistrations: rtpPresenter.registrations,
      probeSsrcs: Math.max(...continuity.map((x) => x.ssrcs)),
      probeSeqJumps: Math.max(...continuity.map((x) => x.seqJumps)),
      targets: { programGapS: 2, viewersReconnected: 0, presentersBackS: 5, splitBrainPackets: 0, handoverGapS: 0.5 },
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? '',
      date: new Date().toISOString(),
    };
    const rows: [string, string, string][] = [
      ['baseline: longest viewer gap, no failure', `${baselineGapS.toFixed(2)} s`, ''],
      ['kill: lease taken over', `${takeoverS.toFixed(2)} s`, ''],
      ['kill: programGapS (longest viewer silence)', `${programGapS.toFixed(2)} s`, '≤ 2 s (stretch 1)'],
      ['kill: presentersBackS (both tones again)', `${presentersBackS.toFixed(2)} s`, '≤ 5 s'],
      ['viewersReconnected (all phases)', String(viewersReconnected), '0'],
      ['move: handoverGapS', `${handoverGapS.toFixed(2)} s`, '≤ 0.5 s'],
      ['partition: taken over', `${partitionTakeoverS.toFixed(2)} s`, ''],
      ['partition: old holder stopped sending after', `${stoppedAfterCutS.toFixed(2)} s`, '≤ 1 s'],
      ['partition: splitBrainPackets', String(splitBrainPackets), '0'],
      ['probes: SSRCs seen / sequence jumps', `${result.probeSsrcs} / ${result.probeSeqJumps}`, '1 / few'],
    ];
    const table = rows.map(([k, v, t]) => `${k.padEnd(46)} ${v.padStart(9)}   ${t}`).join('\n');
    if (!values.json) process.stdout.write(`${table}\n`);
    process.stdout.write(`${JSON.stringify(result)}\n`);
    const dir = fileURLToPath(new URL('./results/', import.meta.url));
    mkdirSync(dir, { recursive: true });
    const stamp = result.date.replace(/[:.]/g, '-');
    writeFileSync(
      `${dir}failover-${stamp}.md`,
      `# bench:failover ${result.date}\n\n${cpus().length} × ${result.cpuModel}; 3 mixers, ${relayCount} relays, ${viewerCount} plain-RTP viewers at ${50 / everyNth} packets/s, NATS ${values.nats}\n\n\`\`\`\n${table}\n\`\`\`\n\n\`\`\`json\n${JSON.stringify(result, null, 2)}\n\`\`\`\n`,
    );
    if (!values.json) process.stdout.write(`report: bench/results/failover-${stamp}.md\n`);
  } finally {
    await stopAll();
  }
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench:failover: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
