/**
 * The tree controller on a manual clock over the InProcessBus: exact timing
 * of healing, how placements count against a relay, and that close() leaves
 * no timer behind.
 */
import { describe, expect, it } from 'vitest';
import {
  ClusterClient,
  EventStore,
  InProcessBus,
  ManualClock,
  NodeAgent,
  TreeController,
  controlDefaults,
  placementReplySchema,
  subjects,
  type TreeChange,
} from '../src/index.js';
import { Collector } from './helpers.js';

const cluster = 'ctl';
const s = subjects(cluster);

async function setup(opts: { relays: number; fanOut: number; capacity?: number }) {
  const clock = new ManualClock();
  const bus = new InProcessBus({ clock: () => clock.now() });
  const arrived = new Map<string, number>();
  const agent = async (id: string, role: 'mixer' | 'relay', children: number) => {
    const a = new NodeAgent({
      bus,
      cluster,
      clock,
      node: { id, role, http: `http://127.0.0.1:9000/${id}`, media: { host: '127.0.0.1', port: 30_000 + arrived.size }, capacity: { viewers: opts.capacity ?? 10, children } },
      load: () => ({ viewers: arrived.get(id) ?? 0, children: 0 }),
    });
    await a.start();
    return a;
  };
  const mixer = await agent('mixer', 'mixer', opts.fanOut);
  const relays: NodeAgent[] = [];
  for (let i = 1; i <= opts.relays; i++) relays.push(await agent(`r${i}`, 'relay', 8));
  const controller = new TreeController({ bus, cluster, nodeId: 'mixer', clock, relayFanOut: opts.fanOut });
  await controller.start();
  const store = await EventStore.open(bus, cluster);
  await store.put({ v: 1, id: 'e1', name: 'Keynote', mixer: 'mixer', createdAt: clock.now(), maxSpeakers: 4 });
  await clock.advance(0);
  const place = async () => {
    const reply = placementReplySchema.parse((await bus.request(s.event('e1').place, { v: 1 })).json());
    return reply.relay?.id ?? null;
  };
  return { clock, bus, arrived, mixer, relays, controller, store, place };
}

describe('TreeController on a manual clock', () => {
  it('re-parents a dead relay’s children deadAfterMs after its last heartbeat, publishing each change', async () => {
    const t = await setup({ relays: 3, fanOut: 2 });
    expect(t.controller.isLeader).toBe(true);
    expect(t.controller.tree('e1').map((a) => [a.node, a.parent, a.depth])).toEqual([
      ['mixer', null, 0],
      ['r1', 'mixer', 1],
      ['r2', 'mixer', 1],
      ['r3', 'r1', 2],
    ]);
    const changes = new Collector(t.bus.subscribe(s.event('e1').tree));
    const client = new ClusterClient({ bus: t.bus, cluster, event: 'e1', nodeId: 'r3', clock: t.clock });
    await client.start();
    expect(client.parent?.id).toBe('r1');

    await t.clock.advance(1_000);
    t.relays[0].abandon();
    const lastBeat = t.clock.now(); // beats fire on multiples of 250 ms; the last one just went out
    let healedAt: number | undefined;
    t.controller.on('removed', (_e, node) => {
      if (node === 'r1') healedAt = t.clock.now();
    });
    await t.clock.advance(controlDefaults.deadAfterMs - controlDefaults.livenessCheckIntervalMs);
    expect(healedAt).toBeUndefined();
    expect(t.controller.tree('e1').find((a) => a.node === 'r3')?.parent).toBe('r1');
    await t.clock.advance(2 * controlDefaults.livenessCheckIntervalMs);
    expect(healedAt! - lastBeat).toBeGreaterThanOrEqual(controlDefaults.deadAfterMs);
    expect(healedAt! - lastBeat).toBeLessThanOrEqual(controlDefaults.deadAfterMs + controlDefaults.livenessCheckIntervalMs);
    expect(t.controller.tree('e1').map((a) => [a.node, a.parent, a.depth])).toEqual([
      ['mixer', null, 0],
      ['r2', 'mixer', 1],
      ['r3', 'mixer', 1],
    ]);
    expect(client.parent?.id).toBe('mixer');
    const published = changes.items.map((m) => m.json<TreeChange>());
    expect(published.map((c) => ('removed' in c ? `-${c.node}` : `${c.node}<${c.parent}`))).toEqual(['r3<mixer', '-r1']);
    // epochs increase with every change
    const epochs = published.map((c) => c.epoch);
    expect(epochs[1]).toBe(epochs[0] + 1);

    await client.close();
    await t.controller.close();
    await t.controller.close();
    for (const a of [t.mixer, ...t.relays]) await a.close();
    expect(t.clock.pendingTimers).toBe(0);
    await t.bus.close();
  });

  it('a placement counts against its relay until a heartbeat shows the viewer, or for placementHoldMs', async () => {
    const t = await setup({ relays: 2, fanOut: 4, capacity: 5 });
    // Ten viewers at once: five each, then the cluster is full.
    const first = [];
    for (let i = 0; i < 10; i++) first.push(await t.place());
    expect(first.filter((r) => r === 'r1').length).toBe(5);
    expect(first.filter((r) => r === 'r2').length).toBe(5);
    expect(await t.place()).toBeNull();

    // Three of r1's viewers arrive; heartbeats settle exactly those, so r1 stays full and r2 too.
    t.arrived.set('r1', 3);
    await t.clock.advance(controlDefaults.heartbeatIntervalMs);
    expect(await t.place()).toBeNull();

    // The rest never arrive: after the hold, their seats are free again (3 of 10 used, all on r1).
    await t.clock.advance(controlDefaults.placementHoldMs);
    const again = [];
    for (let i = 0; i < 7; i++) again.push(await t.place());
    expect(again.every((r) => r !== null)).toBe(true);
    expect(again.filter((r) => r === 'r1').length).toBe(2);
    expect(again.filter((r) => r === 'r2').length).toBe(5);
    expect(await t.place()).toBeNull();
    expect(t.controller.stats.placements).toBe(17);

    // An ended event and an unknown one get no relay.
    await t.store.end('e1');
    await t.clock.advance(0);
    expect(t.controller.placeViewer('e1')).toEqual({ v: 1, relay: null, reason: 'event_ended' });
    expect(t.controller.placeViewer('nope')).toEqual({ v: 1, relay: null, reason: 'unknown_event' });
    // An ended event's tree is removed from KV.
    expect(await (await t.bus.kv(s.buckets.tree)).keys()).toEqual([]);

    await t.controller.close();
    for (const a of [t.mixer, ...t.relays]) await a.close();
    expect(t.clock.pendingTimers).toBe(0);
    await t.bus.close();
  });

  it('a relay that finds no parent with room waits, and joins once a slot frees up', async () => {
    // Fan-out 1 and relays that take no children: only one relay fits.
    const t = await setup({ relays: 0, fanOut: 1 });
    const mk = async (id: string) => {
      const a = new NodeAgent({
        bus: t.bus,
        cluster,
        clock: t.clock,
        node: { id, role: 'relay', http: `http://127.0.0.1:9000/${id}`, media: { host: '127.0.0.1', port: 31_000 }, capacity: { viewers: 10, children: 0 } },
      });
      await a.start();
      return a;
    };
    const a = await mk('ra');
    const b = await mk('rb');
    await t.clock.advance(0);
    expect(t.controller.tree('e1').map((x) => x.node)).toEqual(['mixer', 'ra']);
    expect(t.controller.stats.unplaced).toBe(1);
    await a.close();
    await t.clock.advance(0);
    expect(t.controller.tree('e1').map((x) => [x.node, x.parent])).toEqual([
      ['mixer', null],
      ['rb', 'mixer'],
    ]);
    expect(t.controller.stats.unplaced).toBe(0);
    await t.controller.close();
    await b.close();
    await t.mixer.close();
    expect(t.clock.pendingTimers).toBe(0);
    await t.bus.close();
  });
});
