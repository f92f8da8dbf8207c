/**
 * A small relay tree on real NATS (a dedicated nats-server) and real UDP: one mixer and three
 * relays (fan-out 2, so one relay sits two hops down), a plain-RTP presenter sending a tone, 3
 * werift WHEP viewers and 47 simulated plain-RTP viewers, all placed through the mixer's 307.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MixerRole } from '../src/index.js';
import { tonePower } from '../../webrtc/test/client.js';
import { SimViewer } from './simViewer.js';
import { ClusterWorld, sleep, TonePresenter, waitFor, WhepViewer } from './harness.js';

const SECRET = 'cluster-test-secret-0123456789abcdef-xyz';
const ADMIN = 'cluster-test-admin-token-0123456789';
const CLUSTER = `ct${Date.now().toString(36)}`;

describe('relay tree: mixer + 3 relays over NATS and UDP', () => {
  let world: ClusterWorld;
  let presenter: TonePresenter | undefined;
  const sims: SimViewer[] = [];
  const wheps: WhepViewer[] = [];
  let event: { id: string; whep: string; tokens: { viewer: string } };

  beforeAll(async () => {
    world = await ClusterWorld.start({ name: 'cluster', cluster: CLUSTER, secret: SECRET, adminToken: ADMIN, relayFanOut: 2, relays: 3 });
  });

  afterAll(async () => {
    await presenter?.stop();
    for (const s of sims) s.close();
    for (const w of wheps) await w.close();
    await world?.close();
  });

  it('an event created through the API is stored in KV and its feed reaches every relay, one hop deeper for the third', async () => {
    event = await world.createEvent('keynote');
    await waitFor(async () => (await world.mixer.events.get(event.id)) !== null, 5000, 'the event definition in KV');
    expect((await world.mixer.events.get(event.id))?.mixer).toBe('mixer');
    expect(world.mixer.clusteredEvents).toEqual([event.id]);

    presenter = await TonePresenter.join(world.node.url, event.id, ADMIN);

    await waitFor(() => world.relays.every((r) => (r.feeds.get(event.id)?.forwarder.stats.packetsIn ?? 0) > 10), 8000, 'the feed at every relay');
    const depths = world.relays.map((r) => r.feeds.get(event.id)!.client.assignment?.depth).sort();
    expect(depths).toEqual([1, 1, 2]);
    for (const r of world.relays) expect(r.feeds.get(event.id)!.forwarder.stats.dropped.bad_tag).toBe(0);
  });

  it('50 viewers placed through the mixer: 3 WHEP viewers (307 to a relay) hear the tone, 47 plain-RTP viewers receive', async () => {
    for (let i = 0; i < 3; i++) {
      const w = new WhepViewer(event.whep, event.tokens.viewer);
      await w.connect();
      wheps.push(w);
    }
    const url = `${world.node.url}/rtp-viewers/${event.id}`;
    for (let i = 0; i < 47; i++) {
      const s = await SimViewer.open({ url, token: event.tokens.viewer });
      sims.push(s);
    }
    await Promise.all(sims.map((s) => s.join()));
    // Every relay serves some: placement spreads them by load.
    const perRelay = new Map<string, number>();
    for (const s of sims) perRelay.set(s.relay!, (perRelay.get(s.relay!) ?? 0) + 1);
    expect(perRelay.size).toBe(3);
    expect(world.node.edge.stats().whepSessions).toBe(0); // no viewer played on the mixer
    expect(world.relays.reduce((n, r) => n + r.edge.stats().whepSessions, 0)).toBe(3);

    await sleep(1500);
    for (const w of wheps) {
      const pcm = w.client.decodeReceived(Math.max(0, w.client.received.length - 50));
      expect(pcm.length).toBeGreaterThan(30 * 960);
      expect(tonePower(pcm, 440)).toBeGreaterThan(1000);
      expect(tonePower(pcm, 440)).toBeGreaterThan(50 * tonePower(pcm, 1250));
      const r = w.client.received.slice(-40);
      for (let i = 1; i < r.length; i++) expect((r[i].seq - r[i - 1].seq) & 0xffff).toBe(1);
    }
    await waitFor(() => sims.every((s) => s.packets > 50), 3000, 'every simulated viewer to receive');
  });

  it("the console's tree picture: the mixer at the root, three relays with their parents, depths and viewers", async () => {
    type TreeNode = { id: string; role: string; parent: string | null; depth: number; viewers: number; capacity: number; load: number };
    const tree = async () => {
      const res = await fetch(`${world.node.url}/api/events/${event.id}/tree`, { headers: { authorization: `Bearer ${ADMIN}` } });
      expect(res.status).toBe(200);
      return ((await res.json()) as { nodes: TreeNode[] }).nodes;
    };
    // Relays report their viewers in heartbeats: wait for all 50 to show.
    await waitFor(async () => (await tree()).reduce((n, t) => n + t.viewers, 0) === 50, 5000, 'the tree to show 50 viewers');
    const nodes = await tree();
    expect(nodes.map((t) => t.id).sort()).toEqual(['mixer', 'r1', 'r2', 'r3']);
    const root = nodes.find((t) => t.id === 'mixer')!;
    expect(root).toMatchObject({ role: 'mixer', parent: null, depth: 0, viewers: 0 });
    const byId = new Map(nodes.map((t) => [t.id, t]));
    for (const t of nodes.filter((n) => n.role === 'relay')) {
      expect(t.depth).toBe(byId.get(t.parent!)!.depth + 1);
      // Each relay's count is what it actually serves.
      const relay = world.relays.find((r) => r.nodeId === t.id)!;
      expect(t.viewers).toBe(sims.filter((s) => s.relay === relay.nodeId).length + relay.edge.stats().whepSessions);
      expect(t.capacity).toBeGreaterThan(0);
      expect(t.load).toBeCloseTo(t.viewers / t.capacity, 2);
    }
    expect(nodes.map((t) => t.depth).sort()).toEqual([0, 1, 1, 2]);
  });

  it('killing a relay: its viewers are re-placed and receive again within 3 s, its child relay re-parents', async () => {
    // Kill the depth-1 relay that feeds the depth-2 one.
    const victim = world.relays.find((r) => (r.feeds.get(event.id)?.client.children.length ?? 0) > 0)!;
    const child = world.relays.find((r) => r.feeds.get(event.id)?.client.parent?.id === victim.nodeId)!;
    expect(victim).toBeDefined();
    expect(child).toBeDefined();
    const onVictim = sims.filter((s) => s.relay === victim.nodeId);
    expect(onVictim.length).toBeGreaterThan(0);
    const whepOnVictim = victim.edge.stats().whepSessions;
    for (const s of sims) s.resetGap();
    const killedAt = performance.now();
    const timeline: string[] = [];
    const mark = (what: string) => timeline.push(`${what} +${Math.round(performance.now() - killedAt)}ms`);
    world.mixer.controller.registry.once('nodeDead', (id) => mark(`dead ${id}`));
    world.mixer.controller.on('removed', (_e, n) => mark(`removed ${n}`));
    world.mixer.controller.on('assigned', (a) => mark(`assigned ${a.node}->${a.parent}`));
    await victim.crash();

    // Every viewer (those of the dead relay and those below it) receives again within 3 s.
    const recovered = await waitFor(() => sims.every((s) => s.lastAt > killedAt + 200 && performance.now() - s.lastAt < 100), 6000, 'every viewer to receive again').catch((err) => {
      console.log(timeline.join('\n'), sims.map((s) => `${s.relay} ${Math.round(s.lastAt - killedAt)} j${s.joins} f${s.joinFailures}`).join('; '), world.mixer.controller.isLeader, world.mixer.controller.stats);
      throw err;
    });
    const worstGap = Math.max(...sims.map((s) => s.maxGapMs));
    console.log(`relay kill: ${onVictim.length} plain + ${whepOnVictim} WHEP viewers on it; all receiving again after ${(recovered / 1000).toFixed(2)} s; longest viewer gap ${(worstGap / 1000).toFixed(2)} s (${timeline.join(', ')})`);
    expect(worstGap).toBeLessThan(3000);
    expect(onVictim.every((s) => s.relay !== victim.nodeId)).toBe(true);
    await waitFor(() => child.feeds.get(event.id)?.client.parent?.id === 'mixer', 3000, 'the child relay to re-parent');
    // The child saw its feed stop and said so: the registry declared the victim dead two missed
    // beats after its last, not four.
    expect(child.feeds.get(event.id)!.parentSilentReports).toBeGreaterThan(0);
    expect(world.mixer.controller.registry.stats.deadBySilence).toBe(1);

    // WHEP viewers of the dead relay reconnected through the mixer and hear the tone again.
    await waitFor(() => wheps.every((w) => w.client.pc.connectionState === 'connected' && w.client.received.length > 60), 8000, 'WHEP viewers to play again');
    await sleep(600);
    for (const w of wheps) {
      const pcm = w.client.decodeReceived(Math.max(0, w.client.received.length - 25));
      expect(tonePower(pcm, 440)).toBeGreaterThan(1000);
    }
    world.relays.splice(world.relays.indexOf(victim), 1);
  });
  it('a NATS restart mid-event loses no event definition, relays re-register, media never stops', async () => {
    const deadBefore = world.mixer.controller.registry.stats.dead;
    for (const s of sims) s.resetGap();
    const regsBefore = world.relays.map((r) => r.agent.stats.registrations);
    const packetsBefore = sims.map((s) => s.packets);
    await world.server.kill('SIGKILL');
    await sleep(300);
    await world.server.restart();
    await waitFor(() => world.relays.every((r, i) => r.agent.stats.registrations > regsBefore[i]), 10_000, 'relays to re-register');
    await waitFor(() => world.relays.every((r) => world.mixer.controller.registry.has(r.nodeId)), 5000, 'the registry to see every relay');
    // JetStream may need a moment after the restart: ask until it answers (bounded).
    let stored: Awaited<ReturnType<MixerRole['events']['get']>> = null;
    await waitFor(async () => {
      try {
        stored = await world.mixer.events.get(event.id);
        return true;
      } catch {
        return false;
      }
    }, 10_000, 'JetStream to answer');
    expect(stored).not.toBeNull();
    expect(stored!.ended).not.toBe(true);
    await sleep(500);
    // Media never stopped: no viewer saw a gap longer than a few packets.
    const worst = Math.max(...sims.map((s) => s.maxGapMs));
    expect(worst).toBeLessThan(250);
    expect(sims.every((s, i) => s.packets > packetsBefore[i] + 20)).toBe(true);
    // Placement works again once the controller leads again.
    await waitFor(() => world.mixer.controller.isLeader, 10_000, 'the controller to lead again');
    const late = await SimViewer.open({ url: `${world.node.url}/rtp-viewers/${event.id}`, token: event.tokens.viewer });
    sims.push(late);
    await late.join(5000);
    await waitFor(() => late.packets > 10, 3000, 'a viewer placed after the restart to receive');
  });

  it('a plain-RTP viewer that asks for one packet in five gets exactly the multiples of five, at 10 per second; with a phase, the numbers that leave it', async () => {
    const seqs: number[] = [];
    const shifted: number[] = [];
    const thin = await SimViewer.open({
      url: `${world.node.url}/rtp-viewers/${event.id}`,
      token: event.tokens.viewer,
      everyNth: 5,
      stallMs: 2000,
      onPacket: (seq) => seqs.push(seq),
    });
    // The same thinning shifted by two ticks, on a native receiver set (as the benchmark's load viewers).
    const [shiftedViewer] = await SimViewer.openMany(1, () => ({
      url: `${world.node.url}/rtp-viewers/${event.id}`,
      token: event.tokens.viewer,
      everyNth: 5,
      phase: 2,
      stallMs: 2000,
      onPacket: (seq) => shifted.push(seq),
    }));
    sims.push(thin, shiftedViewer);
    await thin.join(5000);
    await shiftedViewer.join(5000);
    const t0 = performance.now();
    await waitFor(() => seqs.length >= 20, 5000, 'the thinned feed');
    const seconds = (performance.now() - t0) / 1000;
    expect(seqs.every((s) => s % 5 === 0)).toBe(true);
    // Consecutive multiples of five: nothing of what it asked for is missing.
    for (let i = 1; i < seqs.length; i++) expect((seqs[i] - seqs[i - 1]) & 0xffff).toBe(5);
    expect(seqs.length / Math.max(seconds, 0.5)).toBeLessThan(15);
    await waitFor(() => shifted.length >= 20, 5000, 'the shifted thinned feed');
    expect(shifted.every((s) => s % 5 === 2)).toBe(true);
    for (let i = 1; i < shifted.length; i++) expect((shifted[i] - shifted[i - 1]) & 0xffff).toBe(5);
    // A bad value is refused with the reason.
    const bad = await fetch(`${thin.relay ? world.relays.find((r) => r.nodeId === thin.relay)!.url : world.node.url}/rtp-viewers/${event.id}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${event.tokens.viewer}`, 'content-type': 'application/json' },
      body: JSON.stringify({ host: '127.0.0.1', port: 9, everyNth: 0 }),
    });
    expect(bad.status).toBe(400);
    expect(await bad.text()).toMatch(/everyNth/);
    const badPhase = await fetch(bad.url, {
      method: 'POST',
      headers: { authorization: `Bearer ${event.tokens.viewer}`, 'content-type': 'application/json' },
      body: JSON.stringify({ host: '127.0.0.1', port: 9, everyNth: 5, phase: 5 }),
    });
    expect(badPhase.status).toBe(400);
    expect(await badPhase.text()).toMatch(/phase must be below everyNth/);
  });

});
