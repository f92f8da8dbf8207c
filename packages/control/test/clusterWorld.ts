/**
 * A small cluster for scenario tests: nodes with their own bus connection
 * (one shared InProcessBus, or one NatsBus each), agents that report the
 * viewers the test placed on them, controllers, cluster clients, and
 * cleanup of the KV buckets a run creates.
 */
import { randomBytes } from 'node:crypto';
import {
  ClusterClient,
  EventStore,
  NodeAgent,
  TreeController,
  placementReplySchema,
  decodeJson,
  subjects,
  treeFromAssignments,
  type Bus,
  type TreeAssignment,
  type PlacementReply,
  type TreeControllerOptions,
} from '../src/index.js';
import { sleep } from './helpers.js';

export interface World {
  readonly cluster: string;
  /** A bus for one node (the same bus for every node on the InProcessBus). */
  bus(): Promise<Bus>;
  /** Viewers the test placed per relay: what the relay's agent reports as its load. */
  readonly viewers: Map<string, number>;
  agent(id: string, role: 'mixer' | 'relay', opts?: { viewers?: number; children?: number; bus?: Bus }): Promise<NodeAgent>;
  controller(nodeId: string, opts?: Partial<TreeControllerOptions>): Promise<TreeController>;
  client(event: string, nodeId: string): Promise<ClusterClient>;
  events(): Promise<EventStore>;
  /** Asks for a viewer placement as a WHEP front end would; records the viewer on the relay. */
  place(event: string, timeoutMs?: number): Promise<PlacementReply>;
  close(): Promise<void>;
}

export type BusFactory = () => Promise<Bus>;

let mediaPort = 20_000;

export async function makeWorld(newBus: BusFactory, shared: boolean): Promise<World> {
  const cluster = `t${randomBytes(5).toString('hex')}`;
  const s = subjects(cluster);
  const buses: Bus[] = [];
  const closers: Array<() => Promise<void> | void> = [];
  let sharedBus: Promise<Bus> | undefined;
  const bus = async () => {
    if (shared) {
      // Keep the promise, so concurrent callers share one bus.
      sharedBus ??= newBus();
      const b = await sharedBus;
      if (!buses.includes(b)) buses.push(b);
      return b;
    }
    const b = await newBus();
    buses.push(b);
    return b;
  };
  const viewers = new Map<string, number>();
  let requester: Bus | undefined;

  const world: World = {
    cluster,
    bus,
    viewers,
    async agent(id, role, opts = {}) {
      const a = new NodeAgent({
        bus: opts.bus ?? (await bus()),
        cluster,
        node: {
          id,
          role,
          http: `http://127.0.0.1:8080/${id}`,
          media: { host: '127.0.0.1', port: mediaPort++ },
          capacity: { viewers: opts.viewers ?? 30, children: opts.children ?? 8 },
        },
        load: () => ({ viewers: viewers.get(id) ?? 0, children: 0 }),
      });
      closers.push(() => a.close());
      await a.start();
      return a;
    },
    async controller(nodeId, opts = {}) {
      const c = new TreeController({ bus: await bus(), cluster, nodeId, ...opts });
      closers.push(() => c.close());
      await c.start();
      return c;
    },
    async client(event, nodeId) {
      const c = new ClusterClient({ bus: await bus(), cluster, event, nodeId });
      closers.push(() => c.close());
      await c.start();
      return c;
    },
    async events() {
      return EventStore.open(await bus(), cluster);
    },
    async place(event, timeoutMs = 2000) {
      requester ??= await bus();
      const reply = await requester.request(s.event(event).place, { v: 1 }, { timeoutMs });
      const parsed = placementReplySchema.parse(reply.json());
      if (parsed.relay) viewers.set(parsed.relay.id, (viewers.get(parsed.relay.id) ?? 0) + 1);
      return parsed;
    },
    async close() {
      for (const c of closers.splice(0).reverse()) await c();
      const b = buses[0] ?? (await newBus());
      try {
        for (const bucket of Object.values(s.buckets)) {
          try {
            await (await b.kv(bucket)).destroy();
          } catch {
            // never created
          }
        }
      } finally {
        for (const x of new Set([...buses, b])) await x.close();
      }
    },
  };
  return world;
}

/** Polls `predicate` every 10 ms; rejects after `timeoutMs` naming `what`. */
export async function waitFor(predicate: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await predicate()) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

export function parentsOf(tree: TreeAssignment[]): Map<string, string | null> {
  return treeFromAssignments(tree);
}

export async function kvTree(world: World, event: string): Promise<Map<string, TreeAssignment>> {
  const kv = await (await world.bus()).kv(subjects(world.cluster).buckets.tree);
  const out = new Map<string, TreeAssignment>();
  for (const key of await kv.keys(`${event}.*`)) {
    const e = await kv.get(key);
    if (e) out.set(key.split('.')[1], decodeJson<TreeAssignment>(e.value));
  }
  return out;
}

export async function formTree(world: World, opts: { relays: number; fanOut: number; event?: string }) {
  const event = opts.event ?? 'e1';
  const mixer = await world.agent('mixer', 'mixer', { viewers: 0, children: opts.fanOut });
  const relays = [];
  for (let i = 1; i <= opts.relays; i++) relays.push(await world.agent(`r${i}`, 'relay'));
  const controller = await world.controller('mixer', { relayFanOut: opts.fanOut });
  const store = await world.events();
  await store.put({ v: 1, id: event, name: 'Keynote', mixer: 'mixer', createdAt: Date.now(), maxSpeakers: 4 });
  await waitFor(() => controller.tree(event).length === opts.relays + 1, 5000, `a tree of ${opts.relays + 1} nodes`);
  return { event, mixer, relays, controller, store };
}

