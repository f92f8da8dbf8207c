/**
 * The cluster control plane end to end, run against both buses: nodes
 * register, the tree forms, viewers spread, a relay dies and its children
 * re-parent, a relay leaves, a controller restarts, two controllers contend.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  ClusterClient,
  childrenOf,
  controlDefaults,
  subjects,
  treeDepth,
  validateTree,
  type TreeController,
} from '../src/index.js';
import { formTree, kvTree, makeWorld, parentsOf, waitFor, type BusFactory, type World } from './clusterWorld.js';

const now = () => Date.now();


export function clusterScenarios(name: string, newBus: BusFactory, shared: boolean): void {
  describe(`cluster control plane on ${name}`, () => {
    let world: World | undefined;
    const open = async () => (world = await makeWorld(newBus, shared));

    afterEach(async () => {
      await world?.close();
      world = undefined;
    });

    it('1 mixer + 3 relays at fan-out 2 form a tree of depth 2; 50 viewers spread within capacity; a dead relay’s children re-parent within deadAfterMs; a leaving relay goes at once', async () => {
      const w = await open();
      const { event, mixer, relays, controller } = await formTree(w, { relays: 3, fanOut: 2 });

      // The tree: shallowest first, fan-out 2, depth 2, stored in KV and known to every node.
      const tree = controller.tree(event);
      const parents = parentsOf(tree);
      expect(validateTree(parents)).toEqual([]);
      expect(treeDepth(parents)).toBe(2);
      expect(parents.get('mixer')).toBeNull();
      expect(childrenOf(parents, 'mixer')).toEqual(['r1', 'r2']);
      expect(parents.get('r3')).toBe('r1');
      for (const id of parents.keys()) expect(childrenOf(parents, id).length).toBeLessThanOrEqual(2);
      const stored = await kvTree(w, event);
      expect([...stored.values()].sort((a, b) => (a.node < b.node ? -1 : 1))).toEqual([...tree].sort((a, b) => (a.node < b.node ? -1 : 1)));

      const clients = new Map<string, ClusterClient>();
      for (const id of ['mixer', 'r1', 'r2', 'r3']) clients.set(id, await w.client(event, id));
      const addressOf = (id: string) => relays.find((r) => r.id === id)?.info.media;
      expect(clients.get('r3')!.parent).toEqual({ id: 'r1', media: addressOf('r1'), http: 'http://127.0.0.1:8080/r1' });
      expect(clients.get('r1')!.children.map((c) => [c.id, c.media])).toEqual([['r3', addressOf('r3')]]);
      expect(clients.get('mixer')!.children.map((c) => c.id)).toEqual(['r1', 'r2']);
      expect(clients.get('mixer')!.parent).toBeNull();
      expect(clients.get('mixer')!.assignment?.depth).toBe(0);

      // 50 viewers arriving at once are spread, each relay within its capacity (30).
      for (let i = 0; i < 50; i++) {
        const reply = await w.place(event);
        expect(reply.relay?.role).toBe('relay');
      }
      const counts = ['r1', 'r2', 'r3'].map((id) => w.viewers.get(id) ?? 0);
      expect(counts.reduce((a, b) => a + b)).toBe(50);
      expect(Math.max(...counts)).toBeLessThanOrEqual(30);
      expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);

      // r1 (parent of r3) dies silently.
      const r3Parents: Array<string | undefined> = [];
      clients.get('r3')!.on('parent', (p) => r3Parents.push(p?.id));
      relays[0].abandon();
      const diedAt = now();
      const healedIn = await waitFor(
        () => {
          const t = parentsOf(controller.tree(event));
          return !t.has('r1') && t.get('r3') !== undefined && t.get('r3') !== 'r1';
        },
        controlDefaults.deadAfterMs + 2000,
        'r3 to re-parent',
      );
      expect(healedIn).toBeLessThanOrEqual(controlDefaults.deadAfterMs + controlDefaults.livenessCheckIntervalMs + 400);
      const healed = parentsOf(controller.tree(event));
      expect(healed.get('r3')).toBe('mixer'); // the slot r1 left at depth 1
      expect(validateTree(healed)).toEqual([]);
      await waitFor(() => clients.get('r3')!.parent?.id === 'mixer', 2000, 'r3’s client to see its new parent');
      expect(clients.get('r3')!.parent?.media).toEqual(mixer.info.media);
      expect(clients.get('mixer')!.children.map((c) => c.id)).toEqual(['r2', 'r3']);
      expect(r3Parents.at(-1)).toBe('mixer');
      expect(now() - diedAt).toBeLessThan(3000);
      expect((await kvTree(w, event)).has('r1')).toBe(false);

      // r1's viewers come back and are placed elsewhere; placement never returns r1 again, and stops when full.
      const r1Viewers = w.viewers.get('r1') ?? 0;
      w.viewers.delete('r1');
      const seen = new Set<string>();
      for (let i = 0; i < r1Viewers; i++) seen.add((await w.place(event)).relay!.id);
      expect(seen.has('r1')).toBe(false);
      let full;
      for (let i = 0; i < 30; i++) {
        const reply = await w.place(event);
        if (!reply.relay) {
          full = reply;
          break;
        }
        expect(reply.relay.id).not.toBe('r1');
      }
      expect(full).toEqual({ v: 1, relay: null, reason: 'no_room' });
      expect(w.viewers.get('r2')).toBe(30);
      expect(w.viewers.get('r3')).toBe(30);

      // r2 leaves gracefully: gone from the tree long before a death could be declared.
      const leftAt = now();
      await relays[1].close();
      await waitFor(() => !parentsOf(controller.tree(event)).has('r2'), 2000, 'r2 to leave the tree');
      expect(now() - leftAt).toBeLessThan(controlDefaults.deadAfterMs / 2);
      expect(controller.registry.has('r2')).toBe(false);
      expect(controller.stats.errors).toBe(0);
    });

    it('a controller started after the first one closed recovers the tree and every event from KV', async () => {
      const w = await open();
      const { event, controller, store } = await formTree(w, { relays: 4, fanOut: 2 });
      await store.put({ v: 1, id: 'e0', name: 'Rehearsal', mixer: 'mixer', createdAt: now() - 1000, maxSpeakers: 2 });
      await store.end('e0');
      await store.put({ v: 1, id: 'e2', name: 'Panel', mixer: 'mixer', createdAt: now() + 1, maxSpeakers: 8, layout: { kind: 'grid' } });
      await waitFor(() => controller.tree('e2').length === 5, 5000, 'the e2 tree');
      const before = { e1: controller.tree(event), e2: controller.tree('e2') };
      await controller.close();

      const second = await w.controller('standby', { relayFanOut: 2 });
      await waitFor(() => second.isLeader, 3000, 'the second controller to lead');
      await second.reconcile();
      expect(second.tree(event)).toEqual(before.e1);
      expect(second.tree('e2')).toEqual(before.e2);
      expect(second.tree('e0')).toEqual([]);
      // Nothing had to be rewritten: the tree came back from KV as it was.
      expect(second.stats.assignmentsWritten).toBe(0);
      const events = await (await w.events()).list();
      expect(events.map((e) => [e.id, e.ended ?? false])).toEqual([
        ['e0', true],
        ['e1', false],
        ['e2', false],
      ]);
      expect(events[2].layout).toEqual({ kind: 'grid' });
      expect((await w.place(event)).relay).not.toBeNull();
    });

    it('of two controllers only the lease holder acts; a standby takes over a crashed leader after the ttl', async () => {
      const w = await open();
      const leaseOpts = { relayFanOut: 2, leaseTtlMs: 1000, leaseRenewIntervalMs: 250 };
      const [a, b] = await Promise.all([w.controller('ctl-a', leaseOpts), w.controller('ctl-b', leaseOpts)]);
      await w.agent('mixer', 'mixer', { children: 2 });
      for (const id of ['r1', 'r2', 'r3']) await w.agent(id, 'relay');
      await (await w.events()).put({ v: 1, id: 'e1', name: 'Keynote', mixer: 'mixer', createdAt: now(), maxSpeakers: 4 });
      await waitFor(async () => (await kvTree(w, 'e1')).size === 4, 5000, 'the tree in KV');
      await new Promise((r) => setTimeout(r, 300));
      const leaders = [a, b].filter((c) => c.isLeader);
      expect(leaders.length).toBe(1);
      const [leader, standby]: TreeController[] = leaders[0] === a ? [a, b] : [b, a];
      expect(standby.stats.assignmentsWritten).toBe(0);
      expect(leader.stats.assignmentsWritten).toBe(4);
      expect(standby.tree('e1')).toEqual([]);
      expect(standby.placeViewer('e1')).toEqual({ v: 1, relay: null, reason: 'not_leader' });
      // One responder only: each placement counts once.
      for (let i = 0; i < 6; i++) expect((await w.place('e1')).relay).not.toBeNull();
      expect(leader.stats.placements).toBe(6);
      expect(standby.stats.placements).toBe(0);

      const crashedAt = now();
      await leader.abandon();
      const tookOver = await waitFor(() => standby.isLeader, 4000, 'the standby to take over');
      // Not before a ttl after the leader's last renewal, which came at most one renew interval before the crash.
      expect(now() - crashedAt).toBeGreaterThanOrEqual(1000 - 250 - 20);
      expect(tookOver).toBeLessThan(3000);
      // It recovered the tree and acts: a new relay joins under it.
      await w.agent('r4', 'relay');
      await waitFor(() => standby.tree('e1').some((x) => x.node === 'r4'), 3000, 'r4 placed by the new leader');
      // the mixer is full; r1 feeds r3 already, so r2 (fewer children) takes it
      expect(standby.tree('e1').find((x) => x.node === 'r4')?.parent).toBe('r2');
      expect(standby.stats.assignmentsWritten).toBe(1);
    });

    it('counts and ignores malformed placement requests, tree entries and event definitions', async () => {
      const w = await open();
      const { event, controller } = await formTree(w, { relays: 2, fanOut: 2 });
      const s = subjects(w.cluster);
      const b = await w.bus();
      const enc = (x: string) => new TextEncoder().encode(x);
      for (const bad of [enc('{nope'), { v: 2 }, { v: '1' }, [1]]) {
        await expect(b.request(s.event(event).place, bad, { timeoutMs: 150 })).rejects.toMatchObject({ reason: 'timeout' });
      }
      expect(controller.drops.byReason()).toMatchObject({ not_json: 1, wrong_version: 2, invalid: 1 });

      // A relay watching the tree ignores garbage written under its event.
      const client = await w.client(event, 'r1');
      const treeKv = await b.kv(s.buckets.tree);
      await treeKv.put(`${event}.zz`, enc('garbage'));
      await treeKv.put(`${event}.yy`, { v: 1, event, node: 'other', parent: 'r1', depth: 2, epoch: 1 });
      await treeKv.put(`${event}.xx`, { v: 1, event, node: 'xx', parent: null, depth: 3, epoch: 1 });
      await waitFor(() => client.drops.total >= 3, 2000, 'the client to drop three entries');
      expect(client.drops.byReason()).toEqual({ not_json: 1, id_mismatch: 1, invalid: 1 });
      expect(client.children).toEqual([]);
      expect(client.parent?.id).toBe('mixer');

      const eventsKv = await b.kv(s.buckets.events);
      await eventsKv.put('broken', { v: 1, id: 'broken', name: '' });
      await eventsKv.put('wrongkey', { v: 1, id: 'e9', name: 'x', mixer: 'mixer', createdAt: 1, maxSpeakers: 1 });
      const store = await w.events();
      expect(await store.get('broken')).toBeNull();
      expect((await store.list()).map((e) => e.id)).toEqual([event]);
      expect(store.drops.byReason()).toEqual({ invalid: 2, id_mismatch: 1 });
      // The controller is still healthy and still answers.
      expect((await w.place(event)).relay).not.toBeNull();
      expect(controller.isLeader).toBe(true);
    });
  });
}
