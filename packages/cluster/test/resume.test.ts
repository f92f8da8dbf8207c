/**
 * The producer's mutes and kicks survive a failover (dedicated nats-server): presenter P and
 * presenter K publish over WHIP (werift) to mixer m1 (a child process) and keep their resume
 * grants; the producer mutes P and kicks K; m1 is SIGKILLed and m2 takes the event over from the
 * stored definition. P re-publishes to m2 with its grant: same participant id, muted there (its
 * tone absent from another presenter's mix, present once unmuted). K's grant is refused with 403
 * `participant_kicked`, on m1 right after the kick and on m2 after the failover. Then a planned
 * move to a third mixer (m3 prepares the event from the store): P muted again, K refused there.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NatsBus, type Bus } from '@mcu/control';
import { McuNode } from '@mcu/server';
import { MixerRole } from '../src/index.js';
import { NatsServerProcess } from '../../control/test/natsServer.js';
import { LOOPBACK, paceClients, tonePower, WebRtcClient } from '../../webrtc/test/client.js';
import { sleep, waitFor } from './harness.js';

const SECRET = 'resume-test-secret-0123456789abcdef-xyz';
const ADMIN = 'resume-test-admin-token-0123456789';
const TONE_HZ = 660;

interface Published {
  client: WebRtcClient;
  pid: string;
  grant: string;
}

async function publish(url: string, token: string): Promise<Published> {
  let headers: Headers | undefined;
  const client = await WebRtcClient.connect('whip', url, token, {
    fetch: async (u, init) => {
      const res = await fetch(u, init);
      headers = res.headers;
      return res;
    },
  });
  await client.connected();
  return { client, pid: client.location!.split('/').pop()!, grant: headers!.get('x-mcu-resume-token')! };
}

/** Power of the tone in what `listener` received over the last `ms` (its mix-minus). */
async function tonePowerHeard(listener: Published, talker: Published, ms: number): Promise<number> {
  await paceClients([{ client: talker.client, freq: TONE_HZ }, { client: listener.client, freq: 0 }], 500);
  const from = listener.client.received.length;
  await paceClients([{ client: talker.client, freq: TONE_HZ }, { client: listener.client, freq: 0 }], ms);
  const pcm = listener.client.decodeReceived(from);
  // The mix kept coming (silent or not): a power of 0 is not an empty measurement.
  expect(pcm.length).toBeGreaterThan((ms / 20 / 2) * 960);
  return tonePower(pcm, TONE_HZ);
}

describe('mutes and kicks across a failover', () => {
  let server: NatsServerProcess;
  let storeDir: string;
  const buses: Bus[] = [];
  const clients: WebRtcClient[] = [];
  let child: ChildProcess | undefined;
  let node2: McuNode | undefined;
  let m2: MixerRole | undefined;
  let node3: McuNode | undefined;
  let m3: MixerRole | undefined;

  beforeAll(async () => {
    storeDir = await mkdtemp(join(tmpdir(), 'mcu-resume-'));
    server = await NatsServerProcess.start(['-js', '-sd', storeDir]);
  });

  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const c of clients) await c.pc.close().catch(() => undefined);
    await m3?.close();
    await node3?.close();
    await m2?.close();
    await node2?.close();
    for (const b of buses) await b.close().catch(() => undefined);
    await server?.kill();
    if (storeDir) await rm(storeDir, { recursive: true, force: true });
  });

  it("a muted presenter comes back muted on the new holder under its id; a kicked one's resume grant is refused (403)", async () => {
    const cluster = `rs${Date.now().toString(36)}`;
    const bus = await NatsBus.connect({ servers: server.url, name: 'resume-test', reconnectTimeWaitMs: 100 });
    buses.push(bus);
    node2 = new McuNode({ port: 0, adminToken: ADMIN, tokenSecret: SECRET, iceAllow: LOOPBACK.iceAllow, iceHostAddresses: LOOPBACK.additionalHostAddresses });
    await node2.listen();
    m2 = await MixerRole.start({ node: node2, bus, cluster, nodeId: 'm2', tokenSecret: SECRET, relayFanOut: 4 });
    const script = fileURLToPath(new URL('./mixerChild.ts', import.meta.url));
    const m1 = spawn(process.execPath, ['--import', 'tsx', script, server.url, cluster, 'm1', SECRET, ADMIN], { stdio: ['ignore', 'pipe', 'inherit'] });
    child = m1;
    const m1Url = await new Promise<string>((resolve, reject) => {
      let out = '';
      m1.stdout!.on('data', (b: Buffer) => {
        out += b.toString();
        const m = /ready m1 (\S+)/.exec(out);
        if (m) resolve(m[1]);
      });
      m1.once('exit', (code) => reject(new Error(`mixer child exited ${code}`)));
    });
    const role = m2;
    await waitFor(() => role.controller.registry.has('m1'), 5000, 'm1 registered');

    const created = await fetch(`${m1Url}/api/events?placed=1`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'resume-after-failover' }),
    });
    expect(created.status).toBe(201);
    const event = (await created.json()) as { id: string; tokens: { presenter: string; producer: string } };
    await waitFor(async () => (await role.events.get(event.id))?.mixer === 'm1', 5000, 'the event held by m1');
    const producer = (base: string, method: string, path: string, body?: unknown) =>
      fetch(`${base}/api/events/${event.id}${path}`, {
        method,
        headers: { authorization: `Bearer ${event.tokens.producer}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      });

    const p = await publish(`${m1Url}/whip/${event.id}?name=Presenter%20P`, event.tokens.presenter);
    const k = await publish(`${m1Url}/whip/${event.id}`, event.tokens.presenter);
    clients.push(p.client, k.client);
    expect(p.grant).toBeTruthy();
    expect(k.grant).toBeTruthy();
    expect((await producer(m1Url, 'PATCH', `/participants/${p.pid}`, { muted: true, stage: 'backstage' })).status).toBe(200);
    expect((await producer(m1Url, 'DELETE', `/participants/${k.pid}`)).status).toBe(204);
    // The current holder refuses the kicked presenter's grant at once.
    await expect(WebRtcClient.connect('whip', `${m1Url}/whip/${event.id}`, k.grant)).rejects.toThrow(/403.*participant_kicked/);
    // The holder writes them into the event's definition.
    await waitFor(async () => {
      const def = await role.events.get(event.id);
      return (def?.muted ?? []).includes(p.pid) && (def?.kicked ?? []).includes(k.pid) && def?.stages?.[p.pid] === 'backstage';
    }, 5000, 'mutes, kicks and stages stored');

    const killedAt = performance.now();
    m1.kill('SIGKILL');
    await new Promise<void>((resolve) => role.once('tookOver', () => resolve()));
    const tookOverMs = performance.now() - killedAt;
    expect(role.leases.held(event.id)).toBe(true);
    await p.client.pc.close();

    // P comes back with its resume grant: the same participant, muted on the new holder.
    const whip2 = `${node2.url}/whip/${event.id}`;
    const p2 = await publish(whip2, p.grant);
    const q = await publish(whip2, event.tokens.presenter);
    clients.push(p2.client, q.client);
    expect(p2.pid).toBe(p.pid);
    const listed = (await (await producer(node2.url, 'GET', '/participants')).json()) as { participants: { id: string; muted: boolean; name?: string; stage?: string }[] };
    // Back muted and backstage (the producer's moves, not the grant's stage), under its name.
    expect(listed.participants.find((x) => x.id === p.pid)).toMatchObject({ muted: true, stage: 'backstage', name: 'Presenter P' });
    expect((await producer(node2.url, 'PATCH', `/participants/${p.pid}`, { stage: 'live' })).status).toBe(200);
    const mutedPower = await tonePowerHeard(q, p2, 1000);
    // Unmuted, its tone is in the mix: the muted figure is a real absence.
    expect((await producer(node2.url, 'PATCH', `/participants/${p.pid}`, { muted: false })).status).toBe(200);
    const unmutedPower = await tonePowerHeard(q, p2, 1000);
    console.log(JSON.stringify({ test: 'resume', tookOverMs: Math.round(tookOverMs), mutedPower: Math.round(mutedPower), unmutedPower: Math.round(unmutedPower) }));
    expect(unmutedPower).toBeGreaterThan(1e7);
    expect(mutedPower).toBeLessThan(unmutedPower / 1000);
    await waitFor(async () => !((await role.events.get(event.id))?.muted ?? []).includes(p.pid), 5000, 'the unmute stored');

    // The kicked presenter's grant is refused on the new holder too.
    await expect(WebRtcClient.connect('whip', whip2, k.grant)).rejects.toThrow(/403.*participant_kicked/);

    // A planned move (the target prepares the event from the store) carries them as well.
    expect((await producer(node2.url, 'PATCH', `/participants/${p.pid}`, { muted: true })).status).toBe(200);
    await waitFor(async () => ((await role.events.get(event.id))?.muted ?? []).includes(p.pid), 5000, 'the mute stored again');
    const bus3 = await NatsBus.connect({ servers: server.url, name: 'resume-test-3', reconnectTimeWaitMs: 100 });
    buses.push(bus3);
    node3 = new McuNode({ port: 0, adminToken: ADMIN, tokenSecret: SECRET, iceAllow: LOOPBACK.iceAllow, iceHostAddresses: LOOPBACK.additionalHostAddresses });
    await node3.listen();
    m3 = await MixerRole.start({ node: node3, bus: bus3, cluster, nodeId: 'm3', tokenSecret: SECRET, relayFanOut: 4 });
    await waitFor(() => role.controller.registry.has('m3'), 5000, 'm3 registered');
    const moved = await producer(node2.url, 'POST', '/move', { to: 'm3' });
    expect(moved.status, await moved.clone().text()).toBe(200);
    expect(m3.leases.held(event.id)).toBe(true);
    const whip3 = `${node3.url}/whip/${event.id}`;
    await p2.client.pc.close();
    const p3 = await publish(whip3, p2.grant);
    clients.push(p3.client);
    expect(p3.pid).toBe(p.pid);
    expect(node3.registry.get(event.id).mixer.participantSummary(p.pid)).toMatchObject({ muted: true, name: 'Presenter P' });
    await expect(WebRtcClient.connect('whip', whip3, k.grant)).rejects.toThrow(/403.*participant_kicked/);
    await sleep(50);
  }, 60_000);
});
