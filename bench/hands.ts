/**
 * bench:hands — raised hands and invitations at scale, on the control plane only: a mixer and N
 * relay processes (`mcu mixer` / `mcu relay`, real NATS on 127.0.0.1:4222 under a cluster name of
 * its own), an event with plain-RTP presenters talking (the mixer ticks real work), simulated
 * viewers in a few processes, each with its event stream (SSE) open on a relay, as a watch page's
 * is. Then:
 *   1. before: nothing but the open streams, `--before-seconds`;
 *   2. during: `--hands` viewers raise their hand on their relay within `--raise-seconds` (uniformly
 *      spread), plus `--flooders` viewers that send 10 raises at once (their 429s are counted apart
 *      from losses), while the producer's stream (on the mixer) notes when each hand reaches the
 *      queue; then the producer invites every hand it got within `--invite-seconds`, and the
 *      viewers' streams note when each invitation reaches the page.
 * The mixer's tick p99 (its own tick durations over exactly each phase's ticks) and event-loop delay
 * p99 are compared between the phases of the same run, with a third phase after (as long as the
 * first) so that the spread of before and after shows the noise of the machine.
 *
 * Targets (issue 14): every hand delivered, raise → queue p99 ≤ 1 s, invite → page p99 ≤ 1 s, tick
 * p99 unchanged within noise. The issue's size is `--full` (10,000 viewers, 20 relays, 1,000 hands
 * in 10 s).
 *
 * Usage: npm run bench:hands -- [--viewers 2000] [--relays 4] [--hands 1000] [--raise-seconds 10] [--invite-seconds 10]
 *          [--before-seconds 10] [--flooders 20] [--presenters 3] [--viewer-procs 2] [--connect-rate 500] [--full] [--json]
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { generateSecret, handIdFor, NatsBus, subjects, TokenIssuer, viewerKeyOf, type TokenClaims } from '@mcu/control';
import { TonePresenter } from '../packages/cluster/test/harness.js';

process.env.MCU_LOG_LEVEL ??= 'warn';

const { values } = parseArgs({
  options: {
    role: { type: 'string', default: 'main' },
    viewers: { type: 'string' },
    relays: { type: 'string' },
    hands: { type: 'string', default: '1000' },
    'raise-seconds': { type: 'string', default: '10' },
    'invite-seconds': { type: 'string', default: '10' },
    'before-seconds': { type: 'string', default: '10' },
    flooders: { type: 'string', default: '20' },
    presenters: { type: 'string', default: '3' },
    'viewer-procs': { type: 'string', default: '2' },
    'connect-rate': { type: 'string', default: '500' },
    full: { type: 'boolean', default: false },
    nats: { type: 'string', default: 'nats://127.0.0.1:4222' },
    json: { type: 'boolean', default: false },
  },
});

/** Milliseconds since the epoch with sub-millisecond resolution: comparable across the bench's processes. */
const epochMs = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function percentile(xs: number[], p: number): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return Number(s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))].toFixed(1));
}

// ------------------------------------------------------------------------------------ SSE

type SseHandler = (event: string, data: any) => void;

/** One event stream over its own connection; `onEvent` per event; resolves with the status once the headers are in. */
function openStream(url: string, onEvent: SseHandler, onEnd: () => void): Promise<{ status: number; close: () => void }> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, headers: { accept: 'text/event-stream' } }, (res) => {
      res.setEncoding('utf8');
      let buffer = '';
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = '';
          let data = '';
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) event = line.slice(7);
            else if (line.startsWith('data: ')) data += line.slice(6);
          }
          if (event && data) onEvent(event, JSON.parse(data));
        }
      });
      res.on('end', onEnd);
      res.on('error', onEnd);
      resolve({ status: res.statusCode ?? 0, close: () => req.destroy() });
    });
    req.on('error', () => {
      onEnd();
      resolve({ status: 0, close: () => undefined });
    });
  });
}

// ------------------------------------------------------------------------------------ viewers

interface ConnectMsg {
  type: 'connect';
  event: string;
  relays: string[];
  from: number;
  to: number;
  ratePerSecond: number;
}
interface RaiseMsg {
  type: 'raise';
  startAt: number;
  seconds: number;
  raisers: number[];
  flooders: number[];
}
interface RaiseResult {
  i: number;
  /** The viewer's hand id (known from its token, whatever the answer). */
  hand: string;
  sentAt: number;
  /** When its answer came back. */
  answeredAt: number;
  status: number;
}

async function viewerProcess(): Promise<void> {
  const issuer = new TokenIssuer({ secret: process.env.MCU_TOKEN_SECRET! });
  const viewers = new Map<number, { token: string; hand: string; relay: string; close: () => void }>();
  const invitedAt = new Map<string, number>();
  /** When the node wrote each invitation to the page (its clock): the last hop apart from the load generator's own delay. */
  const invitationSentAt = new Map<string, number>();
  const counts = { open: 0, failed: 0, ended: 0, handEvents: 0, invited: 0 };
  let event = '';
  const send = (m: unknown) => process.send!(m);

  process.on('message', async (m: ConnectMsg | RaiseMsg | { type: 'report' } | { type: 'exit' }) => {
    if (m.type === 'connect') {
      event = m.event;
      const start = performance.now();
      const pending: Promise<void>[] = [];
      for (let i = m.from; i < m.to; i++) {
        const token = issuer.issue({ event, role: 'viewer', name: `Viewer ${i}`, ttlSeconds: 3600 });
        const relay = m.relays[i % m.relays.length];
        const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8')) as TokenClaims;
        const hand = handIdFor(event, viewerKeyOf(claims));
        pending.push(
          openStream(
            `${relay}/api/events/${event}/stream?token=${encodeURIComponent(token)}`,
            (name, data) => {
              if (name === 'hand') counts.handEvents++;
              else if (name === 'invited' && !invitedAt.has(data.hand)) {
                invitedAt.set(data.hand, epochMs());
                invitationSentAt.set(data.hand, data.sentAt);
                counts.invited++;
              }
            },
            () => counts.ended++,
          ).then(({ status, close }) => {
            if (status === 200) counts.open++;
            else counts.failed++;
            viewers.set(i, { token, hand, relay, close });
          }),
        );
        // Paced: each stream's opening asks the mixer for the viewer's hand over NATS.
        const due = start + ((i - m.from + 1) * 1000) / m.ratePerSecond;
        if (due > performance.now()) await sleep(due - performance.now());
      }
      await Promise.all(pending);
      send({ type: 'connected', ...counts });
    } else if (m.type === 'raise') {
      const results: RaiseResult[] = [];
      const flood: Record<string, number> = {};
      // Plain http.request on kept-alive connections: far less of the load generator's CPU per request than fetch.
      const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
      let retried = 0;
      const post = (url: string, token: string) =>
        new Promise<{ status: number; body: string }>((resolve, reject) => {
          const req = http.request(url, { method: 'POST', agent, headers: { authorization: `Bearer ${token}`, 'content-length': 0 } }, (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (c: string) => (body += c));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
            res.on('error', reject);
          });
          req.on('error', reject);
          req.end();
        });
      const raise = async (i: number): Promise<RaiseResult> => {
        const v = viewers.get(i)!;
        const sentAt = epochMs();
        try {
          // A raise is idempotent: a kept-alive connection the relay closed as it was reused
          // (ECONNRESET) is retried once on a new one, as a browser does.
          const res = await post(`${v.relay}/api/events/${event}/hands`, v.token).catch(() => {
            retried++;
            return post(`${v.relay}/api/events/${event}/hands`, v.token);
          });
          const body = JSON.parse(res.body) as { id?: string };
          if (body.id !== undefined && body.id !== v.hand) throw new Error(`hand ${body.id} is not viewer ${i}'s`);
          return { i, hand: v.hand, sentAt, answeredAt: epochMs(), status: res.status };
        } catch {
          return { i, hand: v.hand, sentAt, answeredAt: epochMs(), status: 0 };
        }
      };
      const jobs: Promise<void>[] = [];
      await sleep(Math.max(0, m.startAt - epochMs()));
      const t0 = performance.now();
      // Flooders: 10 raises at once each, at the start.
      // A flooder counts once in the results: its first request's time, its best answer.
      for (const i of m.flooders) {
        jobs.push(
          Promise.all(Array.from({ length: 10 }, () => raise(i))).then((rs) => {
            for (const r of rs) flood[r.status] = (flood[r.status] ?? 0) + 1;
            const ok = rs.find((r) => r.status === 201) ?? rs.find((r) => r.status === 200) ?? rs[0];
            results.push({ ...ok, sentAt: Math.min(...rs.map((r) => r.sentAt)) });
          }),
        );
      }
      for (let k = 0; k < m.raisers.length; k++) {
        const due = t0 + (k * m.seconds * 1000) / m.raisers.length;
        if (due > performance.now()) await sleep(due - performance.now());
        jobs.push(raise(m.raisers[k]).then((r) => void results.push(r)));
      }
      await Promise.all(jobs);
      agent.destroy();
      send({ type: 'raised', results, flood, retried });
    } else if (m.type === 'report') {
      send({ type: 'report', invited: [...invitedAt], invitationSentAt: [...invitationSentAt], counts: { ...counts }, cpuMs: (process.cpuUsage().user + process.cpuUsage().system) / 1000 });
    } else if (m.type === 'exit') {
      for (const v of viewers.values()) v.close();
      process.exit(0);
    }
  });
  send({ type: 'ready' });
}

// ------------------------------------------------------------------------------------ main

interface NodeProc {
  name: string;
  url: string;
  child: ChildProcess;
}

function request<T>(child: ChildProcess, msg: unknown, reply: string): Promise<T> {
  return new Promise((resolve) => {
    const on = (m: { type: string }) => {
      if (m.type !== reply) return;
      child.off('message', on);
      resolve(m as T);
    };
    child.on('message', on);
    child.send(msg as object);
  });
}

/** The mixer's figures now: executed ticks, and from /metrics its event-loop delay p99 (reset by each scrape) and CPU seconds. */
async function mixerSample(mixer: string, event: string, admin: Record<string, string>) {
  const stats = (await (await fetch(`${mixer}/api/events/${event}`, { headers: admin })).json()) as { stats: { ticks: { executed: number } } };
  const metrics = await (await fetch(`${mixer}/metrics`)).text();
  const metric = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics)?.[1] ?? NaN);
  return { ticks: stats.stats.ticks.executed, lagP99Ms: metric('mcu_nodejs_eventloop_lag_p99_seconds') * 1000, cpuS: metric('mcu_process_cpu_seconds_total'), at: performance.now() };
}

async function tickWindow(mixer: string, event: string, admin: Record<string, string>, ticks: number, skipLast: number) {
  // The window is counted back from now: read it at once, and keep the phase's ticks only.
  const res = (await (await fetch(`${mixer}/api/events/${event}?tickWindow=${ticks + skipLast}`, { headers: admin })).json()) as { stats: { tickWindow: { p50: number; p99: number } } };
  return res.stats.tickWindow;
}

async function main(): Promise<void> {
  const full = values.full;
  const viewers = Number(values.viewers ?? (full ? 10_000 : 2_000));
  const relayCount = Number(values.relays ?? (full ? 20 : 4));
  const hands = Math.min(viewers, Number(values.hands));
  const flooders = Math.min(Number(values.flooders), viewers - hands);
  const raiseSeconds = Number(values['raise-seconds']);
  const inviteSeconds = Number(values['invite-seconds']);
  const beforeSeconds = Number(values['before-seconds']);
  const procs = Math.max(1, Number(values['viewer-procs']));
  const quiet = values.json;
  const log = (s: string) => {
    if (!quiet) process.stderr.write(`${s}\n`);
  };
  const cluster = `hands${randomBytes(4).toString('hex')}`;
  const env = { ...process.env, MCU_TOKEN_SECRET: generateSecret(), MCU_ADMIN_TOKEN: randomBytes(24).toString('base64url') };
  const admin = { authorization: `Bearer ${env.MCU_ADMIN_TOKEN}` };
  const mcu = fileURLToPath(new URL('../packages/cli/bin/mcu.js', import.meta.url));
  const children: ChildProcess[] = [];
  const presenters: TonePresenter[] = [];

  const startNode = (name: string, args: string[]): Promise<NodeProc> =>
    new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [mcu, ...args, '--nats', values.nats!, '--cluster', cluster, '--port', '0'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(child);
      let out = '';
      const timer = setTimeout(() => reject(new Error(`${name} did not start within 60 s: ${out}`)), 60_000);
      child.stdout!.on('data', (b: Buffer) => {
        out += b.toString();
        const m = /(mixer|relay) (\S+) up at (http\S+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve({ name, url: m[3], child });
        }
      });
      child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
    });

  const stopAll = async () => {
    for (const p of presenters) await p.stop().catch(() => undefined);
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
    log(`bench:hands: ${viewers} viewers with event streams on ${relayCount} relays, ${hands} hands in ${raiseSeconds} s (+ ${flooders} flooders), cluster ${cluster}`);
    const mixer = await startNode('mixer', ['mixer', '--fan-out', String(Math.min(8, relayCount))]);
    const relays: NodeProc[] = [];
    for (let i = 0; i < relayCount; i += 4) {
      relays.push(...(await Promise.all(Array.from({ length: Math.min(4, relayCount - i) }, (_, k) => startNode(`relay-${i + k + 1}`, ['relay'])))));
    }
    const ev = (await (await fetch(`${mixer.url}/api/events`, { method: 'POST', headers: admin })).json()) as { id: string; tokens: { producer: string } };
    for (let i = 0; i < Number(values.presenters); i++) presenters.push(await TonePresenter.join(mixer.url, ev.id, env.MCU_ADMIN_TOKEN));
    for (let i = 0; ; i++) {
      const carried = await Promise.all(
        relays.map(async (r) => {
          try {
            const info = (await (await fetch(`${r.url}/api/relay`)).json()) as { feeds: Array<{ event: string }> };
            return info.feeds.some((f) => f.event === ev.id);
          } catch {
            return false;
          }
        }),
      );
      if (carried.every(Boolean)) break;
      if (i === 200) throw new Error('the event did not reach every relay within 20 s');
      await sleep(100);
    }

    // The producer's stream on the mixer: when each hand reaches the queue.
    const seenAt = new Map<string, number>();
    /** When the mixer queued each hand (its raisedAt, the mixer's clock): splits raise → queue in two. */
    const queuedAt = new Map<string, number>();
    const producer = await openStream(
      `${mixer.url}/api/events/${ev.id}/stream?token=${encodeURIComponent(ev.tokens.producer)}`,
      (name, data) => {
        if (name === 'hand-update' && data.hand && !seenAt.has(data.id)) {
          seenAt.set(data.id, epochMs());
          queuedAt.set(data.id, data.hand.raisedAt);
        }
      },
      () => undefined,
    );
    if (producer.status !== 200) throw new Error(`producer stream answered ${producer.status}`);

    const self = fileURLToPath(import.meta.url);
    const execArgv = ['--import', import.meta.resolve('tsx')];
    const viewerProcs = Array.from({ length: procs }, () => fork(self, ['--role', 'viewers'], { execArgv, env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
    children.push(...viewerProcs);
    // The load generator yields to the nodes measured (a shared two-core box: every core is contended).
    for (const c of viewerProcs) if (c.pid !== undefined) os.setPriority(c.pid, 10);
    await Promise.all(viewerProcs.map((c) => new Promise<void>((r) => c.once('message', () => r()))));
    const per = Math.ceil(viewers / procs);
    const tConnect = performance.now();
    const connected = await Promise.all(
      viewerProcs.map((c, k) =>
        request<{ open: number; failed: number; handEvents: number }>(
          c,
          { type: 'connect', event: ev.id, relays: relays.map((r) => r.url), from: k * per, to: Math.min(viewers, (k + 1) * per), ratePerSecond: Number(values['connect-rate']) / procs } satisfies ConnectMsg,
          'connected',
        ),
      ),
    );
    const open = connected.reduce((s, c) => s + c.open, 0);
    log(`  ${open} streams open (${connected.reduce((s, c) => s + c.failed, 0)} failed) in ${((performance.now() - tConnect) / 1000).toFixed(1)} s`);
    await sleep(2000);

    // Phase 1: before.
    const b0 = await mixerSample(mixer.url, ev.id, admin);
    await sleep(beforeSeconds * 1000);
    const b1 = await mixerSample(mixer.url, ev.id, admin);
    const tickBefore = await tickWindow(mixer.url, ev.id, admin, b1.ticks - b0.ticks, 0);
    log(`  before: tick p99 ${tickBefore.p99.toFixed(3)} ms over ${b1.ticks - b0.ticks} ticks`);

    // Phase 2: during. Raisers are spread over the viewers (so over the relays and processes).
    const raisers = Array.from({ length: hands }, (_, k) => Math.floor((k * viewers) / hands));
    const raiserSet = new Set(raisers);
    const flooderIdx: number[] = [];
    for (let i = 0; i < viewers && flooderIdx.length < flooders; i++) if (!raiserSet.has(i)) flooderIdx.push(i);
    const d0 = await mixerSample(mixer.url, ev.id, admin);
    const startAt = epochMs() + 200;
    const raised = await Promise.all(
      viewerProcs.map((c, k) => {
        const mine = (i: number) => i >= k * per && i < (k + 1) * per;
        return request<{ results: RaiseResult[]; flood: Record<string, number>; retried: number }>(c, { type: 'raise', startAt, seconds: raiseSeconds, raisers: raisers.filter(mine), flooders: flooderIdx.filter(mine) } satisfies RaiseMsg, 'raised');
      }),
    );
    const results = raised.flatMap((r) => r.results);
    const statusCounts: Record<string, number> = {};
    for (const r of results) statusCounts[r.status] = (statusCounts[r.status] ?? 0) + 1;
    const flood: Record<string, number> = {};
    for (const r of raised) for (const [s, n] of Object.entries(r.flood)) flood[s] = (flood[s] ?? 0) + n;
    // Every viewer that raised (a flooder once: its first request), whatever its answer: did its
    // hand reach the producer's queue, and when (from its first request)?
    const raisedBy = new Map<string, number>();
    for (const r of results) raisedBy.set(r.hand, Math.min(raisedBy.get(r.hand) ?? Infinity, r.sentAt));
    const accepted = new Set(results.filter((r) => r.status === 201 || r.status === 200).map((r) => r.hand));
    await sleep(2000);
    const raiseToQueue = [...raisedBy].filter(([h]) => seenAt.has(h)).map(([h, sent]) => seenAt.get(h)! - sent);
    const delivered = [...raisedBy.keys()].filter((h) => seenAt.has(h)).length;
    const raiseAnswer = results.map((r) => r.answeredAt - r.sentAt);
    // Viewer → relay → NATS → the mixer's queue (its clock, ms), and from there to the producer's stream.
    const toMixer = [...raisedBy].filter(([h]) => queuedAt.has(h)).map(([h, sent]) => queuedAt.get(h)! - sent);
    const mixerToProducer = [...queuedAt].map(([h, at]) => seenAt.get(h)! - at);
    log(`  raised: ${raisedBy.size} viewers, ${accepted.size} answered 201/200, ${delivered} hands in the producer's queue, statuses ${JSON.stringify(statusCounts)}, flooders ${JSON.stringify(flood)}`);

    // The producer invites every hand it got, uniformly over --invite-seconds.
    const toInvite = [...seenAt.keys()];
    const inviteSentAt = new Map<string, number>();
    const inviteStatus: Record<string, number> = {};
    const inviteAgent = new http.Agent({ keepAlive: true, maxSockets: 32 });
    const jobs: Promise<void>[] = [];
    const ti = performance.now();
    for (let k = 0; k < toInvite.length; k++) {
      const due = ti + (k * inviteSeconds * 1000) / toInvite.length;
      if (due > performance.now()) await sleep(due - performance.now());
      const hand = toInvite[k];
      inviteSentAt.set(hand, epochMs());
      jobs.push(
        new Promise<void>((resolve) => {
          const req = http.request(
            `${mixer.url}/api/events/${ev.id}/hands/${hand}/invite`,
            { method: 'POST', agent: inviteAgent, headers: { authorization: `Bearer ${ev.tokens.producer}`, 'content-type': 'application/json', 'content-length': 16 } },
            (res) => {
              res.resume();
              res.on('end', () => {
                inviteStatus[res.statusCode ?? 0] = (inviteStatus[res.statusCode ?? 0] ?? 0) + 1;
                resolve();
              });
            },
          );
          req.on('error', () => {
            inviteStatus['0'] = (inviteStatus['0'] ?? 0) + 1;
            resolve();
          });
          req.end('{"stage":"live"}');
        }),
      );
    }
    await Promise.all(jobs);
    inviteAgent.destroy();
    await sleep(1000);
    const d1 = await mixerSample(mixer.url, ev.id, admin);
    const tickDuring = await tickWindow(mixer.url, ev.id, admin, d1.ticks - d0.ticks, 0);

    // Phase 3: after, as long as before: the spread of before and after is the run's noise.
    const a0 = await mixerSample(mixer.url, ev.id, admin);
    await sleep(beforeSeconds * 1000);
    const a1 = await mixerSample(mixer.url, ev.id, admin);
    const tickAfter = await tickWindow(mixer.url, ev.id, admin, a1.ticks - a0.ticks, 0);

    const reports = await Promise.all(viewerProcs.map((c) => request<{ invited: Array<[string, number]>; invitationSentAt: Array<[string, number]>; counts: Record<string, number>; cpuMs: number }>(c, { type: 'report' }, 'report')));
    const invitedAt = new Map(reports.flatMap((r) => r.invited));
    const inviteToPage = [...inviteSentAt].filter(([h]) => invitedAt.has(h)).map(([h, sent]) => invitedAt.get(h)! - sent);
    const nodeSentAt = new Map(reports.flatMap((r) => r.invitationSentAt));
    const inviteToNode = [...inviteSentAt].filter(([h]) => nodeSentAt.has(h)).map(([h, sent]) => nodeSentAt.get(h)! - sent);
    const streamsEnded = reports.reduce((s, r) => s + r.counts.ended, 0);
    for (const c of viewerProcs) c.send({ type: 'exit' });
    producer.close();

    const phaseCpu = (a: typeof b0, b: typeof b0) => Number((((b.cpuS - a.cpuS) / ((b.at - a.at) / 1000)) * 100).toFixed(1));
    const result = {
      bench: 'hands',
      viewers,
      streamsOpen: open,
      relays: relayCount,
      handsRequested: hands + flooders,
      raiseSeconds,
      handsRaised: raisedBy.size,
      handsAnswered2xx: accepted.size,
      handsDelivered: delivered,
      handsLost: raisedBy.size - delivered,
      raiseErrors: Object.fromEntries(Object.entries(statusCounts).filter(([s]) => s !== '201' && s !== '200')),
      rateLimited429: flood['429'] ?? 0,
      raisesRetriedAfterConnectionReset: raised.reduce((n, r) => n + r.retried, 0),
      raiseToQueueP50Ms: percentile(raiseToQueue, 50),
      raiseToQueueP99Ms: percentile(raiseToQueue, 99),
      raiseToMixerP50Ms: percentile(toMixer, 50),
      raiseToMixerP99Ms: percentile(toMixer, 99),
      mixerToProducerP50Ms: percentile(mixerToProducer, 50),
      mixerToProducerP99Ms: percentile(mixerToProducer, 99),
      raiseAnswerP50Ms: percentile(raiseAnswer, 50),
      raiseAnswerP99Ms: percentile(raiseAnswer, 99),
      invitesSent: inviteSentAt.size,
      inviteStatuses: inviteStatus,
      invitesDelivered: inviteToPage.length,
      inviteToPageP50Ms: percentile(inviteToPage, 50),
      inviteToPageP99Ms: percentile(inviteToPage, 99),
      inviteToRelayWriteP50Ms: percentile(inviteToNode, 50),
      inviteToRelayWriteP99Ms: percentile(inviteToNode, 99),
      tickP99MsBefore: Number(tickBefore.p99.toFixed(3)),
      tickP99MsDuring: Number(tickDuring.p99.toFixed(3)),
      tickP99MsAfter: Number(tickAfter.p99.toFixed(3)),
      tickP50MsBefore: Number(tickBefore.p50.toFixed(3)),
      tickP50MsDuring: Number(tickDuring.p50.toFixed(3)),
      tickP50MsAfter: Number(tickAfter.p50.toFixed(3)),
      mixerEventLoopP99MsBefore: Number(b1.lagP99Ms.toFixed(2)),
      mixerEventLoopP99MsDuring: Number(d1.lagP99Ms.toFixed(2)),
      mixerEventLoopP99MsAfter: Number(a1.lagP99Ms.toFixed(2)),
      mixerCpuPctBefore: phaseCpu(b0, b1),
      mixerCpuPctDuring: phaseCpu(d0, d1),
      mixerCpuPctAfter: phaseCpu(a0, a1),
      loadAverage1m: Number(os.loadavg()[0].toFixed(1)),
      streamsEndedEarly: streamsEnded,
      machine: `${os.cpus().length}× ${os.cpus()[0]?.model ?? 'cpu'}`,
      date: new Date().toISOString(),
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
    if (!quiet) {
      const ok = (b: boolean) => (b ? 'met' : 'NOT met');
      const rows: Array<[string, string, string]> = [
        ['viewers (streams open) / relays', `${viewers} (${open}) / ${relayCount}`, ''],
        ['viewers raising → hands in the producer queue (answered 201/200)', `${raisedBy.size} → ${delivered} (${accepted.size})`, `every hand: ${ok(delivered === raisedBy.size)}`],
        ['raises answered with an error (503: the mixer did not answer in 2 s)', JSON.stringify(result.raiseErrors), ''],
        ['flooders\' extra raises answered 429 (not losses)', `${result.rateLimited429}`, ''],
        ['raise → producer queue p50 / p99', `${result.raiseToQueueP50Ms} / ${result.raiseToQueueP99Ms} ms`, `p99 ≤ 1000 ms: ${ok((result.raiseToQueueP99Ms ?? Infinity) <= 1000)}`],
        ['  of which viewer → relay → NATS → mixer p50 / p99', `${result.raiseToMixerP50Ms} / ${result.raiseToMixerP99Ms} ms`, ''],
        ['  of which mixer → producer stream p50 / p99', `${result.mixerToProducerP50Ms} / ${result.mixerToProducerP99Ms} ms`, ''],
        ['raise answered (HTTP round trip via relay and NATS) p50 / p99', `${result.raiseAnswerP50Ms} / ${result.raiseAnswerP99Ms} ms`, ''],
        ['invite → viewer page p50 / p99', `${result.inviteToPageP50Ms} / ${result.inviteToPageP99Ms} ms (${inviteToPage.length}/${inviteSentAt.size})`, `p99 ≤ 1000 ms: ${ok((result.inviteToPageP99Ms ?? Infinity) <= 1000)}`],
        ['  of which invite → the relay writes it to the page (ms clock) p50 / p99', `${result.inviteToRelayWriteP50Ms} / ${result.inviteToRelayWriteP99Ms} ms`, ''],
        ['mixer tick p99 before / during / after', `${result.tickP99MsBefore} / ${result.tickP99MsDuring} / ${result.tickP99MsAfter} ms`, 'during within before…after'],
        ['mixer tick p50 before / during / after', `${result.tickP50MsBefore} / ${result.tickP50MsDuring} / ${result.tickP50MsAfter} ms`, ''],
        ['mixer event-loop delay p99 before / during / after', `${result.mixerEventLoopP99MsBefore} / ${result.mixerEventLoopP99MsDuring} / ${result.mixerEventLoopP99MsAfter} ms`, ''],
        ['mixer CPU before / during / after', `${result.mixerCpuPctBefore} / ${result.mixerCpuPctDuring} / ${result.mixerCpuPctAfter} % of a core`, ''],
        ['machine load average (1 min) at the end', `${result.loadAverage1m} on ${os.cpus().length} cores`, ''],
      ];
      process.stdout.write(`${['| measure | value | target |', '| --- | ---: | ---: |', ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n')}\n`);
    }
  } finally {
    await stopAll();
  }
}

if (values.role === 'viewers') await viewerProcess();
else await main();
