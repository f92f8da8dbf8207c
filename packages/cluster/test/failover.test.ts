/**
 * Mixer failover on a dedicated nats-server: two mixers (one a child process), two relays, a
 * plain-RTP presenter and viewers on the relays.
 *   - SIGKILL of the holding mixer: the other takes the event over, the relays re-parent, the
 *     viewers keep their sessions (one SSRC, sequence numbers going on by one) and hear the
 *     presenter again once it has re-registered through the API.
 *   - A NATS partition of the holder (its connection black-holed through a proxy): it stops
 *     sending within its lease's ttl, the other mixer takes over, and nothing the old holder sends
 *     after the takeover reaches a viewer. Then a planned move back (`POST …/move`), and a drain
 *     (SIGTERM's path) that hands the event over again before the mixer closes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NatsBus, type Bus } from '@mcu/control';
import { McuNode } from '@mcu/server';
import { MixerRole, RelayRole } from '../src/index.js';
import { NatsServerProcess } from '../../control/test/natsServer.js';
import { ProbeViewer, ReRegisteringPresenter } from './failoverHarness.js';
import { TcpProxy } from './tcpProxy.js';
import { sleep, waitFor } from './harness.js';

const SECRET = 'failover-test-secret-0123456789abcdef-xyz';
const ADMIN = 'failover-test-admin-token-0123456789';
const TONE_HZ = 660;
/** Tone power of a decoded frame well above the silent mix's. */
const TONE_THRESHOLD = 1e5;

interface Event {
  id: string;
  whip: string;
  tokens: { viewer: string; presenter: string; producer: string };
}

async function createEvent(mixerUrl: string, name: string, placed = true): Promise<Event> {
  const res = await fetch(`${mixerUrl}/api/events${placed ? '?placed=1' : ''}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name }),
  });
  if (res.status !== 201) throw new Error(`create answered ${res.status}: ${await res.text()}`);
  return (await res.json()) as Event;
}

describe('mixer failover', () => {
  let server: NatsServerProcess;
  let storeDir: string;
  const buses: Bus[] = [];
  const relays: RelayRole[] = [];
  const cleanups: (() => Promise<void> | void)[] = [];
  let node2: McuNode;
  let m2: MixerRole;

  const bus = async (url = server.url) => {
    const b = await NatsBus.connect({ servers: url, name: 'failover-test', reconnectTimeWaitMs: 100 });
    buses.push(b);
    return b;
  };

  beforeAll(async () => {
    storeDir = await mkdtemp(join(tmpdir(), 'mcu-failover-'));
    server = await NatsServerProcess.start(['-js', '-sd', storeDir]);
  });

  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
    for (const r of relays) await r.close();
    await m2?.close();
    await node2?.close();
    for (const b of buses) await b.close().catch(() => undefined);
    await server?.kill();
    if (storeDir) await rm(storeDir, { recursive: true, force: true });
  });

  async function startCluster(cluster: string): Promise<void> {
    node2 = new McuNode({ port: 0, adminToken: ADMIN, tokenSecret: SECRET });
    await node2.listen();
    m2 = await MixerRole.start({ node: node2, bus: await bus(), cluster, nodeId: 'm2', tokenSecret: SECRET, relayFanOut: 4 });
    for (const id of ['r1', 'r2']) relays.push(await RelayRole.start({ bus: await bus(), cluster, nodeId: id, tokenSecret: SECRET, adminToken: ADMIN }));
  }

  it('SIGKILL of the holding mixer: the other takes the event over, relay viewers keep one continuous stream and hear the presenter again', async () => {
    const cluster = `fk${Date.now().toString(36)}`;
    await startCluster(cluster);
    const script = fileURLToPath(new URL('./mixerChild.ts', import.meta.url));
    const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', script, server.url, cluster, 'm1', SECRET, ADMIN], { stdio: ['ignore', 'pipe', 'inherit'] });
    cleanups.push(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    const m1Url = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (b: Buffer) => {
        out += b.toString();
        const m = /ready m1 (\S+)/.exec(out);
        if (m) resolve(m[1]);
      });
      child.once('exit', (code) => reject(new Error(`mixer child exited ${code}`)));
    });
    await waitFor(() => m2.controller.registry.has('m1') && relays.every((r) => m2.controller.registry.has(r.nodeId)), 5000, 'both mixers and the relays registered');

    const event = await createEvent(m1Url, 'failover-kill');
    await waitFor(async () => (await m2.events.get(event.id))?.mixer === 'm1', 5000, 'the event stored with m1 as holder');
    expect(m2.leases.holderOf(event.id)).toEqual({ holder: 'm1', epoch: 1 });

    const presenter = await ReRegisteringPresenter.start(TONE_HZ, event.id, event.tokens.presenter);
    cleanups.push(() => presenter.stop());
    await presenter.register(m1Url);
    const probes: ProbeViewer[] = [];
    for (const r of relays) {
      await waitFor(() => (r.feeds.get(event.id)?.forwarder.stats.packetsIn ?? 0) > 10, 8000, `the feed at ${r.nodeId}`);
      const p = await ProbeViewer.open(TONE_HZ);
      cleanups.push(() => p.close());
      await p.join(`${r.url}/rtp-viewers/${event.id}`, event.tokens.viewer);
      probes.push(p);
    }
    await waitFor(() => probes.every((p) => p.toneBackAt(0, TONE_THRESHOLD) !== null), 5000, 'the tone at every probe');

    const killedAt = performance.now();
    child.kill('SIGKILL');
    const takenOver = new Promise<number>((resolve) => m2.once('tookOver', () => resolve(performance.now())));
    const tookOverAt = await Promise.race([takenOver, sleep(5000).then(() => Number.NaN)]);
    expect(tookOverAt - killedAt).toBeLessThan(2500);
    expect(m2.leases.held(event.id)).toBe(true);
    expect(m2.leases.epochOf(event.id)).toBe(2);

    // The presenter comes back through any mixer's API (the dead one refuses, the next answers).
    const backMs = await presenter.reRegister([m1Url, node2.url], 5000);
    await waitFor(() => probes.every((p) => p.toneBackAt(tookOverAt, TONE_THRESHOLD) !== null), 5000, 'the tone again at every probe');
    await sleep(300);

    const def = await m2.events.get(event.id);
    expect(def?.mixer).toBe('m2');
    expect(def?.epoch).toBe(2);
    for (const p of probes) {
      const after = p.packets.filter((x) => x.at > tookOverAt);
      expect(after.length).toBeGreaterThan(10);
      // One stream: one SSRC, sequence numbers by +1 across the change of mixer.
      expect(new Set(p.packets.map((x) => x.ssrc)).size).toBe(1);
      expect(p.seqJumps()).toBeLessThanOrEqual(2);
      expect(p.joins).toBe(1);
      const gap = p.maxGapAfter(killedAt - 100);
      // Generous: the bench measures; the target is ≤ 2 s on this box.
      expect(gap).toBeLessThan(3000);
    }
    for (const r of relays) expect(r.feeds.get(event.id)!.client.parent?.id === 'm2' || r.feeds.get(event.id)!.client.assignment?.depth === 2).toBe(true);
    console.log(JSON.stringify({ test: 'kill', takeoverMs: Math.round(tookOverAt - killedAt), presenterBackMs: Math.round(backMs), gapsMs: probes.map((p) => Math.round(p.maxGapAfter(killedAt - 100))) }));
  }, 60_000);

  it('a holder partitioned from NATS stops sending within its lease ttl; the other mixer takes over; nothing from the old holder reaches a viewer after', async () => {
    const cluster = `fp${Date.now().toString(36)}`;
    for (const r of relays.splice(0)) await r.close();
    await m2.close();
    await node2.close();
    await startCluster(cluster);
    const proxy = await TcpProxy.start({ host: '127.0.0.1', port: server.port });
    cleanups.push(() => proxy.close());
    const node1 = new McuNode({ port: 0, adminToken: ADMIN, tokenSecret: SECRET });
    await node1.listen();
    const m1 = await MixerRole.start({ node: node1, bus: await bus(proxy.url), cluster, nodeId: 'm1', tokenSecret: SECRET, relayFanOut: 4 });
    cleanups.push(async () => {
      await m1.close();
      await node1.close();
    });
    await waitFor(() => m2.controller.registry.has('m1') && m1.controller.registry.has('m2'), 5000, 'both mixers registered');

    const event = await createEvent(node1.url, 'failover-partition');
    await waitFor(async () => (await m2.events.get(event.id))?.mixer === 'm1', 5000, 'the event held by m1');
    const presenter = await ReRegisteringPresenter.start(TONE_HZ, event.id, event.tokens.presenter);
    cleanups.push(() => presenter.stop());
    await presenter.register(node1.url);
    const probes: ProbeViewer[] = [];
    for (const r of relays) {
      await waitFor(() => (r.feeds.get(event.id)?.forwarder.stats.packetsIn ?? 0) > 10, 8000, `the feed at ${r.nodeId}`);
      const p = await ProbeViewer.open(TONE_HZ);
      cleanups.push(() => p.close());
      await p.join(`${r.url}/rtp-viewers/${event.id}`, event.tokens.viewer);
      probes.push(p);
    }
    await sleep(500);

    // Count what m1 sends from now on, and when.
    const oldSender = m1.feedSender(event.id)!;
    let lastOldSendAt = 0;
    const stopCount = node1.registry.get(event.id).mixer.mixer.addProgramSink(() => {
      if (m1.leases.held(event.id)) lastOldSendAt = performance.now();
    });
    cleanups.push(stopCount);
    const sentBefore = oldSender.stats.packetsOut;

    const cutAt = performance.now();
    proxy.blackhole();
    const tookOverAt = await new Promise<number>((resolve) => m2.once('tookOver', () => resolve(performance.now())));
    const lostAt = performance.now();
    await waitFor(() => !m1.leases.held(event.id), 2000, 'm1 to see its lease lost');
    // m1 stopped sending within 1 s of its last renewal, before m2 took over.
    expect(lastOldSendAt - cutAt).toBeLessThan(1000);
    expect(lastOldSendAt).toBeLessThan(tookOverAt);
    expect(tookOverAt - cutAt).toBeLessThan(3000);
    const sentAtTakeover = oldSender.stats.packetsOut;
    await presenter.reRegister([node2.url], 5000);
    await waitFor(() => probes.every((p) => p.toneBackAt(tookOverAt, TONE_THRESHOLD) !== null), 5000, 'the tone again at every probe');
    await sleep(500);
    // Nothing more left m1 for the event after the takeover, and the viewers got one stream.
    expect(oldSender.stats.packetsOut - sentAtTakeover).toBe(0);
    for (const p of probes) {
      expect(new Set(p.packets.map((x) => x.ssrc)).size).toBe(1);
      expect(p.seqJumps()).toBeLessThanOrEqual(2);
      // No packet arrived twice in one 20 ms slot (two programs interleaved) after the cut.
      const after = p.packets.filter((x) => x.at > cutAt);
      const seqs = new Set(after.map((x) => x.seq));
      expect(seqs.size).toBe(after.length);
    }
    console.log(JSON.stringify({ test: 'partition', stoppedAfterCutMs: Math.round(lastOldSendAt - cutAt), takeoverMs: Math.round(tookOverAt - cutAt), sentBeforeCut: sentAtTakeover - sentBefore, lostSeenMs: Math.round(lostAt - cutAt) }));
    proxy.heal();
    // Healed: m1 sees m2 holds the event and ends its own copy.
    await waitFor(() => !node1.registry.has(event.id), 10_000, 'm1 to give the event up');

    // Planned move back to m1 (make-before-break): the relay viewers see a short gap, one stream.
    await waitFor(() => m2.controller.registry.has('m1') && m1.controller.registry.has('m2'), 10_000, 'm1 back in the cluster');
    await sleep(500);
    const movedAt = performance.now();
    const res = await fetch(`${node1.url}/api/events/${event.id}/move`, {
      method: 'POST',
      headers: { authorization: `Bearer ${event.tokens.producer}`, 'content-type': 'application/json' },
      body: JSON.stringify({ to: 'm1' }),
    });
    expect(res.status, await res.clone().text()).toBe(200);
    const moved = (await res.json()) as { from: string; to: string; epoch: number; gapMs: number };
    expect(moved).toMatchObject({ from: 'm2', to: 'm1' });
    expect(moved.epoch).toBeGreaterThan(2);
    expect(m1.leases.held(event.id)).toBe(true);
    await presenter.reRegister([node1.url], 5000);
    await waitFor(() => probes.every((p) => p.toneBackAt(performance.now() - 50, TONE_THRESHOLD) !== null), 5000, 'the tone after the move');
    const moveGaps = probes.map((p) => Math.round(p.maxGapAfter(movedAt)));
    for (const p of probes) {
      expect(new Set(p.packets.map((x) => x.ssrc)).size).toBe(1);
      expect(p.joins).toBe(1);
    }
    const firstAfter = probes.map((p) => Math.round((p.packets.find((x) => x.at > movedAt + moved.gapMs)?.at ?? 0) - movedAt));
    console.log(JSON.stringify({ test: 'move', handoverMs: moved.gapMs, moveGapsMs: moveGaps, firstAfter }));
    // Generous here (the bench measures against the 500 ms target).
    expect(Math.max(...moveGaps)).toBeLessThan(1500);

    // SIGTERM's path: draining m1 hands the event to m2 before m1 closes.
    const drainAt = performance.now();
    await m1.drain({ timeoutMs: 5000 });
    expect(m2.leases.held(event.id)).toBe(true);
    expect(node1.registry.has(event.id)).toBe(false);
    await presenter.reRegister([node2.url], 5000);
    await waitFor(() => probes.every((p) => p.toneBackAt(performance.now() - 50, TONE_THRESHOLD) !== null), 5000, 'the tone after the drain');
    const drainGaps = probes.map((p) => Math.round(p.maxGapAfter(drainAt)));
    for (const p of probes) expect(p.joins).toBe(1);
    expect(Math.max(...drainGaps)).toBeLessThan(1500);
    console.log(JSON.stringify({ test: 'drain', drainGapsMs: drainGaps }));
  }, 60_000);
});
