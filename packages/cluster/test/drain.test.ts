/**
 * Operating a cluster on real NATS (a dedicated nats-server) and real UDP: a mixer (fan-out 1) and
 * two relays in a chain, plain-RTP viewers placed through the mixer. A draining relay hands its
 * viewers and its child relay over and exits; a relay process stops gracefully on SIGTERM; /readyz
 * says why a node is not ready; /metrics and the OpenAPI documents of the roles.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureLog } from '../../control/test/logCapture.js';
import { openApiPath, type RouteEntry } from '@mcu/server';
import type { RelayRole } from '../src/index.js';
import { SimViewer } from './simViewer.js';
import { ClusterWorld, sleep, TonePresenter, waitFor, WhepViewer } from './harness.js';

const SECRET = 'drain-test-secret-0123456789abcdef-xyz';
const ADMIN = 'drain-test-admin-token-0123456789';
const CLUSTER = `dr${Date.now().toString(36)}`;

async function readyz(url: string): Promise<{ status: number; body: { status: string; reason?: string } }> {
  const res = await fetch(`${url}/readyz`);
  return { status: res.status, body: (await res.json()) as { status: string; reason?: string } };
}

/** Every route documented and every documented operation routed. */
function expectDocMatches(doc: { paths: Record<string, Record<string, unknown>> }, routes: RouteEntry[]): void {
  const routed = routes.map((r) => `${r.method.toLowerCase()} ${openApiPath(r.path)}`).sort();
  const documented = Object.entries(doc.paths)
    .flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m} ${path}`))
    .sort();
  expect(documented).toEqual(routed);
}

describe('drain and readiness: mixer + 2 relays over NATS and UDP', () => {
  let world: ClusterWorld;
  let presenter: TonePresenter | undefined;
  const sims: SimViewer[] = [];
  const children: ChildProcess[] = [];
  const wheps: WhepViewer[] = [];
  const mixerLog = captureLog({ name: 'mixer' });
  const relayLog = captureLog({ name: 'relay' });
  let event: { id: string; whep: string; tokens: { viewer: string } };

  const depthOf = (r: RelayRole) => r.feeds.get(event.id)?.client.assignment?.depth;
  const viewerUrl = () => `${world.node.url}/rtp-viewers/${event.id}`;

  beforeAll(async () => {
    world = await ClusterWorld.start({
      name: 'drain',
      cluster: CLUSTER,
      secret: SECRET,
      adminToken: ADMIN,
      relayFanOut: 1,
      relay: { logger: relayLog.logger },
      mixerLogger: mixerLog.logger,
    });
    event = await world.createEvent('drain');
    presenter = await TonePresenter.join(world.node.url, event.id, ADMIN);
    // A chain: r1 under the mixer, r2 under r1 (fan-out 1).
    const r1 = await world.startRelay('r1');
    await waitFor(() => depthOf(r1) === 1, 8000, 'r1 in the tree');
    const r2 = await world.startRelay('r2');
    await waitFor(() => depthOf(r2) === 2, 8000, 'r2 under r1');
    await waitFor(() => world.relays.every((r) => (r.feeds.get(event.id)?.forwarder.stats.packetsIn ?? 0) > 10), 8000, 'the feed at both relays');
  });

  afterAll(async () => {
    await presenter?.stop();
    for (const s of sims) s.close();
    for (const w of wheps) await w.close();
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await world?.close();
  });

  it('relays and mixer: /readyz ready, /metrics with NATS, draining, process and feed metrics, OpenAPI matching the routes', async () => {
    for (const r of world.relays) expect(await readyz(r.url)).toMatchObject({ status: 200, body: { status: 'ready' } });
    expect((await readyz(world.node.url)).status).toBe(200);

    const relayText = await (await fetch(`${world.relays[0].url}/metrics`)).text();
    for (const name of ['mcu_process_cpu_seconds_total', 'mcu_process_resident_memory_bytes', 'mcu_nodejs_eventloop_lag_seconds', 'mcu_relay_viewers', 'mcu_webrtc_sessions', 'mcu_feed_packets_in_total', 'mcu_feed_nack_sent_total', 'mcu_feed_nack_received_total', 'mcu_feed_pli_forwarded_total', 'mcu_feed_retransmitted_total']) {
      expect(relayText, name).toMatch(new RegExp(`^${name}[ {]`, 'm'));
    }
    expect(relayText).toMatch(/^mcu_nats_connected 1$/m);
    expect(relayText).toMatch(/^mcu_draining 0$/m);
    expect(relayText).toMatch(/^mcu_relay_children 1$/m); // r1 feeds r2
    expect(Number(/^mcu_feed_packets_in_total (\d+)/m.exec(relayText)![1])).toBeGreaterThan(10);
    // The relay's own forward time (decrypt, send to its child and its viewers), sampled one packet
    // in 16: there once enough packets went through.
    let forwardP99 = Number.NaN;
    await waitFor(async () => {
      const text = await (await fetch(`${world.relays[0].url}/metrics`)).text();
      forwardP99 = Number(/^mcu_feed_forward_seconds\{quantile="0.99"\} (\S+)$/m.exec(text)?.[1]);
      return !Number.isNaN(forwardP99);
    }, 3000, 'forward-time samples');
    expect(forwardP99).toBeGreaterThan(0);
    expect(forwardP99).toBeLessThan(0.05);

    const mixerText = await (await fetch(`${world.node.url}/metrics`)).text();
    expect(mixerText).toMatch(/^mcu_nats_connected 1$/m);
    expect(mixerText).toMatch(/^mcu_relay_children 1$/m);
    expect(Number(/^mcu_feed_packets_out_total (\d+)/m.exec(mixerText)![1])).toBeGreaterThan(10);

    const relayDoc = (await (await fetch(`${world.relays[0].url}/api/openapi.json`)).json()) as { paths: Record<string, Record<string, unknown>> };
    expectDocMatches(relayDoc, world.relays[0].routes());
    const mixerDoc = (await (await fetch(`${world.node.url}/api/openapi.json`)).json()) as { paths: Record<string, Record<string, unknown>> };
    expectDocMatches(mixerDoc, world.node.router.routes());
    expect(mixerDoc.paths['/rtp-viewers/{id}']).toHaveProperty('post');
  });

  it('draining the relay in the middle: its viewers receive again from the other relay, its child re-parents, no new viewer lands on it, it exits within the timeout', async () => {
    const [r1, r2] = world.relays;
    // Two WHEP viewers: both relays are empty, so the first goes to r1 (the smaller id), the second to r2.
    for (let i = 0; i < 2; i++) {
      const w = new WhepViewer(event.whep, event.tokens.viewer);
      await w.connect();
      wheps.push(w);
    }
    expect(r1.edge.stats().whepSessions).toBe(1);
    expect(r2.edge.stats().whepSessions).toBe(1);
    for (let i = 0; i < 8; i++) sims.push(await SimViewer.open({ url: viewerUrl(), token: event.tokens.viewer, stallMs: 300 }));
    await Promise.all(sims.map((s) => s.join()));
    await waitFor(() => sims.every((s) => s.packets > 20), 4000, 'every viewer to receive');
    const onR1 = sims.filter((s) => s.relay === 'r1');
    expect(onR1.length).toBeGreaterThan(0);
    expect(sims.filter((s) => s.relay === 'r2').length).toBeGreaterThan(0);

    // The very first heartbeat after the drain starts says so (not the next periodic one).
    const firstBeat = r1.agent!.seq + 1;
    const beats: { seq: number; draining: boolean }[] = [];
    const onLoad = (n: { info: { id: string }; seq: number; draining: boolean }) => {
      if (n.info.id === 'r1') beats.push({ seq: n.seq, draining: n.draining });
    };
    world.mixer.controller.registry.on('load', onLoad);
    const started = performance.now();
    const drained = r1.drain({ timeoutMs: 5000 });
    expect(await readyz(r1.url)).toMatchObject({ status: 503, body: { reason: 'draining' } });
    // Once the controller has r1's draining heartbeat, every placement goes to r2.
    await waitFor(() => world.mixer.controller.registry.nodes().some((n) => n.info.id === 'r1' && n.draining), 5000, 'the registry to see r1 draining');
    world.mixer.controller.registry.off('load', onLoad);
    expect(beats.find((b) => b.seq >= firstBeat)).toEqual({ seq: firstBeat, draining: true });
    for (let i = 0; i < 10; i++) expect(world.mixer.controller.placeViewer(event.id).relay?.id).toBe('r2');
    // A viewer asking now joins r2 (r1 would refuse it with 503 anyway).
    const late = await SimViewer.open({ url: viewerUrl(), token: event.tokens.viewer });
    sims.push(late);
    await late.join(5000);
    expect(late.relay).toBe('r2');

    const result = await drained;
    const tookMs = performance.now() - started;
    expect(result.timedOut).toBe(false);
    expect(result.viewersEnded).toBe(onR1.length + 1);
    expect(tookMs).toBeLessThan(5000);
    await expect(fetch(`${r1.url}/healthz`)).rejects.toThrow();
    world.relays.splice(world.relays.indexOf(r1), 1);

    // r2 is fed by the mixer now, and every viewer (r1's too) receives from r2.
    await waitFor(() => r2.feeds.get(event.id)?.client.parent?.id === 'mixer', 3000, 'r2 to re-parent to the mixer');
    const at = performance.now();
    await waitFor(() => sims.every((s) => s.relay === 'r2' && s.lastAt > at + 100), 5000, 'every viewer to receive from r2');
    // The WHEP viewer of r1 reconnected through the mixer and plays from r2.
    await waitFor(() => r2.edge.stats().whepSessions === 2 && wheps.every((w) => w.client.pc.connectionState === 'connected'), 8000, 'the WHEP viewer to play from r2');
    const counts = wheps.map((w) => w.client.received.length);
    await waitFor(() => wheps.every((w, i) => w.client.received.length > counts[i] + 10), 3000, 'both WHEP viewers to receive');
    expect(wheps.reduce((n, w) => n + w.reconnects, 0)).toBe(1);

    // The log tells the story, one JSON line per step, with the ids.
    const r1Lines = relayLog.lines.filter((l) => l.node === 'r1');
    expect(r1Lines.find((l) => l.msg === 'relay draining')).toMatchObject({ name: 'relay', viewers: onR1.length + 1, children: 1 });
    expect(r1Lines.find((l) => l.msg === 'WHEP viewer left')).toMatchObject({ event: event.id, kind: 'whep', reason: 'draining' });
    expect(r1Lines.find((l) => l.msg === 'relay drained')).toMatchObject({ viewersEnded: onR1.length + 1 });
    expect(mixerLog.lines.find((l) => l.msg === 'relay re-parented')).toMatchObject({ node: 'mixer', event: event.id, relay: 'r2', parent: 'mixer', previousParent: 'r1' });
    expect(mixerLog.lines.find((l) => l.msg === 'node left the cluster')).toMatchObject({ relay: 'r1' });
    expect(mixerLog.lines.filter((l) => l.msg === 'relay registered').map((l) => l.relay)).toEqual(['r1', 'r2']);
    console.log(`drain: ${onR1.length} viewers moved from r1 to r2, r1 closed after ${Math.round(tookMs)} ms; longest viewer gap ${Math.round(Math.max(...onR1.map((s) => s.maxGapMs)))} ms`);
  });

  it('SIGTERM to a relay process: it drains (its viewer moves to another relay) and exits 0', async () => {
    const script = fileURLToPath(new URL('./shutdownChild.ts', import.meta.url));
    const child = spawn(process.execPath, ['--import', 'tsx', script, world.server.url, CLUSTER, 'r3', SECRET], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, VITEST: '' },
    });
    children.push(child);
    let out = '';
    let err = '';
    child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    await waitFor(() => /^ready r3 /m.test(out), 20_000, `the relay process to start (${err})`);
    await waitFor(() => world.mixer.controller.tree(event.id).some((a) => a.node === 'r3'), 8000, 'r3 in the tree');
    // r3 has no viewers and r2 has them all: the next viewer goes to r3.
    const v = await SimViewer.open({ url: viewerUrl(), token: event.tokens.viewer, stallMs: 300 });
    sims.push(v);
    await waitFor(async () => {
      if (v.relay !== 'r3') {
        if (v.location) await fetch(v.location, { method: 'DELETE', headers: { authorization: `Bearer ${event.tokens.viewer}` } });
        await v.join(5000);
      }
      return v.relay === 'r3';
    }, 8000, 'a viewer on r3');
    await waitFor(() => v.packets > 10, 4000, 'the viewer on r3 to receive');

    const signalledAt = performance.now();
    child.kill('SIGTERM');
    const code = await Promise.race([exited, sleep(10_000).then(() => 'timeout' as const)]);
    expect(code).toBe(0);
    const lines = out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg: string; node?: string; signal?: string });
    expect(lines.find((l) => l.msg === 'shutting down: draining')).toMatchObject({ signal: 'SIGTERM', node: 'r3' });
    expect(lines.find((l) => l.msg === 'relay drained')).toBeDefined();
    expect(lines.find((l) => l.msg === 'drained, exiting')).toBeDefined();
    await waitFor(() => v.relay === 'r2' && v.lastAt > signalledAt + 100, 5000, 'the viewer to receive from r2');
  });

  it('/readyz: 503 bus_disconnected while NATS is down (relay and mixer), ready again after; 503 not_registered once a relay left the cluster', async () => {
    const r2 = world.relays[0];
    await world.server.kill('SIGKILL');
    await waitFor(async () => (await readyz(r2.url)).body.reason === 'bus_disconnected', 5000, 'the relay to see NATS gone');
    expect(await readyz(world.node.url)).toMatchObject({ status: 503, body: { reason: 'bus_disconnected' } });
    expect((await fetch(`${r2.url}/healthz`)).status).toBe(200);
    expect(await (await fetch(`${r2.url}/metrics`)).text()).toMatch(/^mcu_nats_connected 0$/m);
    await world.server.restart();
    await waitFor(async () => (await readyz(r2.url)).status === 200, 10_000, 'the relay to be ready again');
    await waitFor(async () => (await readyz(world.node.url)).status === 200, 10_000, 'the mixer to be ready again');

    r2.agent.abandon();
    expect(await readyz(r2.url)).toMatchObject({ status: 503, body: { reason: 'not_registered' } });
  });
});
