/**
 * Keeps one relay tree per event and answers viewer placement requests. Runs
 * on every node that may coordinate (typically the mixer plus a standby);
 * only the holder of the `tree.leader` lease acts, the others keep their
 * registry warm and wait.
 *
 * The acting controller is level-triggered: each pass of `reconcile` compares
 * the trees (loaded from the `tree` KV bucket when it took the lease) with
 * the registry's live nodes and the event definitions, and writes only the
 * differences:
 *   1. the event's mixer is the root (`parent: null`);
 *   2. dead nodes leave the tree, their children re-parent (`reparent`);
 *   3. nodes cut off from the root (corrupt or half-written state) leave too;
 *   4. every live relay not in the tree joins under `shallowestWithRoom`.
 * A draining relay (its heartbeat says so) keeps its place until it leaves, but its child relays
 * move to other parents as a dead node's would (if they all find room), no new relay joins under
 * it and no viewer is placed on it.
 * Joins, deaths and event changes trigger a pass at once; a timer runs one
 * every `reconcileIntervalMs` anyway, which retries anything a failed write
 * left undone. Each assignment is written to KV (`<event>.<node>`) and then
 * published on `event.<id>.tree`.
 */
import { EventEmitter } from 'node:events';
import type { Bus, BusSubscription, KvStore } from './Bus.js';
import { sleep, systemClock, type Clock, type TimerHandle } from './Clock.js';
import {
  placementRequestSchema,
  treeAssignmentSchema,
  type EventDefinition,
  type PlacementReply,
  type TreeAssignment,
  type TreeChange,
} from './ClusterMessages.js';
import { controlDefaults } from './Defaults.js';
import { DropCounter, readMessage } from './Drops.js';
import { BusError } from './Errors.js';
import { EventStore } from './EventStore.js';
import { Lease } from './Lease.js';
import { NodeRegistry, type LiveNode } from './NodeRegistry.js';
import { depthsOf, leastLoadedRelay, reparent, shallowestWithRoom, type Tree } from './Placement.js';
import { assertSafeId, subjects, type Subjects } from './Subjects.js';

/** The key of the leader lease in the `leases` bucket. */
export const treeLeaderKey = 'tree.leader';

export interface TreeControllerOptions {
  bus: Bus;
  cluster: string;
  /** Id of the node running this controller: the lease holder's name. */
  nodeId: string;
  clock?: Clock;
  relayFanOut?: number;
  /** Passed to the registry it creates (ignored with `registry`). */
  deadAfterMs?: number;
  livenessCheckIntervalMs?: number;
  /** A registry shared with other components; the controller starts it if needed but does not close it. */
  registry?: NodeRegistry;
  leaseTtlMs?: number;
  leaseRenewIntervalMs?: number;
  reconcileIntervalMs?: number;
  placementHoldMs?: number;
}

export interface TreeControllerEvents {
  /** This controller now acts for the cluster. */
  leader: [];
  /** It stopped acting (lease lost or released). */
  follower: [];
  /** One assignment was written (and published). */
  assigned: [TreeAssignment];
  /** A node was removed from an event's tree. */
  removed: [event: string, node: string];
  close: [];
}

export interface TreeControllerStats {
  assignmentsWritten: number;
  removalsWritten: number;
  placements: number;
  placementsRefused: number;
  reconciles: number;
  /** Failed KV writes or reads; the next pass retries. */
  errors: number;
  /** Live relays that found no parent with room in the last pass (summed over events). */
  unplaced: number;
}

class NotActing extends Error {}

export class TreeController extends EventEmitter<TreeControllerEvents> {
  readonly drops = new DropCounter();
  readonly stats: TreeControllerStats = {
    assignmentsWritten: 0,
    removalsWritten: 0,
    placements: 0,
    placementsRefused: 0,
    reconciles: 0,
    errors: 0,
    unplaced: 0,
  };
  readonly registry: NodeRegistry;
  readonly nodeId: string;
  readonly relayFanOut: number;
  readonly #ownsRegistry: boolean;
  readonly #bus: Bus;
  readonly #subjects: Subjects;
  readonly #clock: Clock;
  readonly #opts: TreeControllerOptions;
  readonly #placementHoldMs: number;
  #treeKv: KvStore | undefined;
  #store: EventStore | undefined;
  #lease: Lease | undefined;
  readonly #events = new Map<string, EventDefinition>();
  /** event → node → assignment, as written to KV. Only while acting. */
  readonly #trees = new Map<string, Map<string, TreeAssignment>>();
  readonly #epochs = new Map<string, number>();
  /** Nodes the registry reported dead or gone: removed from trees without waiting. */
  readonly #gone = new Set<string>();
  /** relay → times (controller clock) of placements its heartbeats have not yet shown. */
  readonly #pending = new Map<string, number[]>();
  /** relay → viewers in its previous heartbeat, to tell how many placed viewers arrived. */
  readonly #lastViewers = new Map<string, number>();
  /** Nodes whose latest heartbeat said they are draining. */
  readonly #draining = new Set<string>();
  #acting = false;
  #actingSince = 0;
  #placeSub: BusSubscription | undefined;
  #eventsWatch: AbortController | undefined;
  #timer: TimerHandle | undefined;
  #running: Promise<void> | undefined;
  #dirty = false;
  #leadership: Promise<void> = Promise.resolve();
  #leadQueued = false;
  #started = false;
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(opts: TreeControllerOptions) {
    super();
    this.#opts = opts;
    this.#bus = opts.bus;
    this.#subjects = subjects(opts.cluster);
    this.nodeId = assertSafeId(opts.nodeId, 'nodeId');
    this.#clock = opts.clock ?? systemClock;
    this.relayFanOut = opts.relayFanOut ?? controlDefaults.relayFanOut;
    this.#placementHoldMs = opts.placementHoldMs ?? controlDefaults.placementHoldMs;
    this.#ownsRegistry = opts.registry === undefined;
    this.registry =
      opts.registry ??
      new NodeRegistry({
        bus: opts.bus,
        cluster: opts.cluster,
        clock: this.#clock,
        deadAfterMs: opts.deadAfterMs,
        livenessCheckIntervalMs: opts.livenessCheckIntervalMs,
      });
  }

  /** Whether this controller currently acts (holds the lease and has loaded the trees). */
  get isLeader(): boolean {
    return this.#isActing();
  }

  /** The event store this controller reads (available after `start()`). */
  get events(): EventStore {
    if (!this.#store) throw new Error('TreeController is not started');
    return this.#store;
  }

  async start(): Promise<void> {
    if (this.#started || this.#closed) return;
    this.#started = true;
    const r = this.registry;
    r.on('nodeJoined', this.#onJoined);
    r.on('nodeUpdated', this.#onChange);
    r.on('nodeLeft', this.#onGone);
    r.on('nodeDead', this.#onGone);
    r.on('load', this.#onLoad);
    await r.start();
    this.#treeKv = await this.#bus.kv(this.#subjects.buckets.tree);
    this.#store = await EventStore.open(this.#bus, this.#opts.cluster);
    for (const def of await this.#store.list()) this.#events.set(def.id, def);
    this.#watchEvents(this.#store);
    if (this.#closed) return;
    const lease = new Lease({
      kv: await this.#bus.kv(this.#subjects.buckets.leases),
      key: treeLeaderKey,
      holder: this.nodeId,
      clock: this.#clock,
      ttlMs: this.#opts.leaseTtlMs,
      renewIntervalMs: this.#opts.leaseRenewIntervalMs,
    });
    this.#lease = lease;
    lease.on('acquired', () => this.#queueLeadership(() => this.#lead()));
    lease.on('lost', () => this.#queueLeadership(async () => this.#follow()));
    this.#timer = this.#clock.setInterval(() => this.#tick(), this.#opts.reconcileIntervalMs ?? controlDefaults.treeReconcileIntervalMs);
    await lease.start();
    await this.#leadership;
  }

  /** The event's tree (sorted by depth, then node), as this controller last wrote it; empty unless leading. */
  tree(eventId: string): TreeAssignment[] {
    const tree = this.#trees.get(eventId);
    if (!tree || !this.#isActing()) return [];
    return [...tree.values()].sort((a, b) => a.depth - b.depth || (a.node < b.node ? -1 : 1));
  }

  /**
   * Where a new viewer of the event should connect: the least-loaded relay
   * with room in its tree. The placement counts against the relay until its
   * heartbeats show the viewer (or `placementHoldMs` passes).
   */
  placeViewer(eventId: string): PlacementReply {
    if (!this.#isActing()) return this.#refuse('not_leader');
    const def = this.#events.get(eventId);
    if (!def) return this.#refuse('unknown_event');
    if (def.ended) return this.#refuse('event_ended');
    const tree = this.#trees.get(eventId);
    const now = this.#clock.now();
    const pending = new Map<string, number>();
    for (const [id, times] of this.#pending) {
      while (times.length > 0 && now - times[0] >= this.#placementHoldMs) times.shift();
      if (times.length > 0) pending.set(id, times.length);
      else this.#pending.delete(id);
    }
    const relay = tree ? leastLoadedRelay(this.registry.relays(), { pending, within: parentMap(tree) }) : null;
    if (!relay) return this.#refuse('no_room');
    const id = relay.info.id;
    if (!this.#lastViewers.has(id)) this.#lastViewers.set(id, relay.viewers);
    const times = this.#pending.get(id);
    if (times) times.push(now);
    else this.#pending.set(id, [now]);
    this.stats.placements++;
    return { v: 1, relay: relay.info };
  }

  /** The registry declared `node` dead: if it held the leader lease, take it now instead of after the ttl. */
  async takeOverFrom(node: string): Promise<void> {
    await this.#lease?.takeOverFrom(node);
  }

  /** Runs one reconcile pass now (normally timers and registry events do this). Resolves when it is done. */
  async reconcile(): Promise<void> {
    this.#kick();
    while (this.#running) await this.#running;
  }

  /** Stops acting, releases the lease (a standby takes over at once) and the registry it owns. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed = true;
      this.#timer?.cancel();
      this.#eventsWatch?.abort();
      await this.#running?.catch(() => undefined);
      await this.#lease?.close();
      await this.#leadership;
      this.#follow();
      const r = this.registry;
      r.off('nodeJoined', this.#onJoined);
      r.off('nodeUpdated', this.#onChange);
      r.off('nodeLeft', this.#onGone);
      r.off('nodeDead', this.#onGone);
      r.off('load', this.#onLoad);
      if (this.#ownsRegistry) await r.close();
      this.emit('close');
    })();
    return this.#closing;
  }

  /** Stops without releasing the lease, as a crashed process would (tests): a standby must wait for the ttl. */
  async abandon(): Promise<void> {
    this.#lease?.abandon();
    await this.close();
  }

  #isActing(): boolean {
    return this.#acting && !this.#closed && this.#lease !== undefined && this.#lease.held;
  }

  #refuse(reason: NonNullable<PlacementReply['reason']>): PlacementReply {
    this.stats.placementsRefused++;
    return { v: 1, relay: null, reason };
  }

  readonly #onJoined = (info: { id: string }): void => {
    this.#gone.delete(info.id);
    this.#kick();
  };

  readonly #onChange = (): void => this.#kick();

  readonly #onGone = (id: string): void => {
    this.#gone.add(id);
    this.#draining.delete(id);
    this.#pending.delete(id);
    this.#kick();
  };

  /** A heartbeat: as many pending placements as the relay's viewer count grew are settled (the viewers arrived). */
  readonly #onLoad = (node: LiveNode): void => {
    const id = node.info.id;
    if (node.draining !== this.#draining.has(id)) {
      if (node.draining) this.#draining.add(id);
      else this.#draining.delete(id);
      this.#kick();
    }
    const before = this.#lastViewers.get(id);
    this.#lastViewers.set(id, node.viewers);
    const times = this.#pending.get(id);
    if (!times || before === undefined) return;
    const arrived = node.viewers - before;
    if (arrived > 0) times.splice(0, arrived);
    if (times.length === 0) this.#pending.delete(id);
  };

  #watchEvents(store: EventStore): void {
    const abort = new AbortController();
    this.#eventsWatch = abort;
    void (async () => {
      // The watch resumes across reconnects by itself; if it ends with an error, open it again (bounded by close).
      for (let attempt = 0; !abort.signal.aborted && !this.#closed; attempt++) {
        try {
          for await (const change of store.watch({ signal: abort.signal })) {
            attempt = 0;
            if (change.event) this.#events.set(change.id, change.event);
            else this.#events.delete(change.id);
            this.#kick();
          }
          return;
        } catch (err) {
          if (err instanceof BusError && err.reason === 'closed') return;
          await sleep(this.#clock, Math.min(100 * 2 ** attempt, 2000), abort.signal);
        }
      }
    })();
  }

  #queueLeadership(step: () => Promise<void>): void {
    this.#leadership = this.#leadership.then(step).catch(() => {
      this.stats.errors++;
    });
  }

  /** Took the lease: read the trees back from KV, listen for placements, reconcile. */
  async #lead(): Promise<void> {
    if (this.#closed || this.#acting || !this.#lease?.held) return;
    const trees = new Map<string, Map<string, TreeAssignment>>();
    const epochs = new Map<string, number>();
    const kv = this.#treeKv!;
    for (const key of await kv.keys('*.*')) {
      const entry = await kv.get(key);
      const a = entry ? readMessage(treeAssignmentSchema, entry.value, this.drops) : undefined;
      if (!a) continue;
      if (key !== `${a.event}.${a.node}`) {
        this.drops.count('id_mismatch');
        continue;
      }
      let tree = trees.get(a.event);
      if (!tree) trees.set(a.event, (tree = new Map()));
      tree.set(a.node, a);
      epochs.set(a.event, Math.max(epochs.get(a.event) ?? 0, a.epoch));
    }
    if (this.#closed || !this.#lease.held) return;
    this.#trees.clear();
    for (const [id, tree] of trees) this.#trees.set(id, tree);
    this.#epochs.clear();
    for (const [id, epoch] of epochs) this.#epochs.set(id, epoch);
    this.#pending.clear();
    this.#placeSub = this.#bus.subscribe(this.#subjects.event('*').place);
    void this.#answerPlacements(this.#placeSub);
    this.#acting = true;
    this.#actingSince = this.#clock.now();
    this.emit('leader');
    this.#kick();
  }

  #follow(): void {
    const was = this.#acting;
    this.#acting = false;
    this.#placeSub?.unsubscribe();
    this.#placeSub = undefined;
    this.#trees.clear();
    this.#pending.clear();
    if (was) this.emit('follower');
  }

  async #answerPlacements(sub: BusSubscription): Promise<void> {
    try {
      for await (const m of sub) {
        // mcu.<cluster>.event.<id>.place
        const eventId = m.subject.split('.')[3];
        if (!readMessage(placementRequestSchema, m.data, this.drops)) continue;
        m.respond(this.placeViewer(eventId));
      }
    } catch {
      // the bus closed
    }
  }

  /** Periodic: reconcile, or retry taking over if loading the trees failed after the lease was won. */
  #tick(): void {
    if (!this.#acting && !this.#closed && this.#lease?.held && !this.#leadQueued) {
      this.#leadQueued = true;
      this.#queueLeadership(async () => {
        this.#leadQueued = false;
        await this.#lead();
      });
      return;
    }
    this.#kick();
  }

  #kick(): void {
    if (!this.#isActing()) return;
    if (this.#running) {
      this.#dirty = true;
      return;
    }
    this.#running = (async () => {
      try {
        do {
          this.#dirty = false;
          await this.#reconcileAll();
        } while (this.#dirty && this.#isActing());
      } catch (err) {
        if (!(err instanceof NotActing)) this.stats.errors++;
      } finally {
        this.#running = undefined;
      }
    })();
  }

  async #reconcileAll(): Promise<void> {
    this.stats.reconciles++;
    let unplaced = 0;
    for (const [id, def] of [...this.#events]) {
      if (def.ended) await this.#dropTree(id);
      else unplaced += await this.#reconcileEvent(def);
    }
    for (const id of [...this.#trees.keys()]) if (!this.#events.has(id)) await this.#dropTree(id);
    this.stats.unplaced = unplaced;
    // Forget departed nodes that no tree holds any more.
    for (const id of [...this.#gone]) if (![...this.#trees.values()].some((t) => t.has(id))) this.#gone.delete(id);
    for (const id of [...this.#lastViewers.keys()]) if (!this.registry.has(id)) this.#lastViewers.delete(id);
  }

  /** Returns how many live relays found no parent. */
  async #reconcileEvent(def: EventDefinition): Promise<number> {
    const event = def.id;
    let tree = this.#trees.get(event);
    if (!tree) this.#trees.set(event, (tree = new Map()));
    const live = this.registry.nodes();

    // 1. The mixer is the root. A tree rooted elsewhere (the event moved to another mixer: failover
    // or handover) is re-rooted in place: the new holder becomes the root, the old root's children
    // move under it at the same depth, and the old root leaves. Every relay below keeps its parent.
    const root = [...tree.values()].find((a) => a.parent === null);
    if (root && root.node !== def.mixer) {
      const newRoot = tree.get(def.mixer);
      if (newRoot && newRoot.parent !== null) await this.#remove(event, def.mixer);
      await this.#write(event, def.mixer, null, 0);
      for (const a of [...tree.values()]) if (a.parent === root.node) await this.#write(event, a.node, def.mixer, 1);
      await this.#remove(event, root.node);
    }
    const mixerEntry = tree.get(def.mixer);
    if (!mixerEntry || mixerEntry.parent !== null) await this.#write(event, def.mixer, null, 0);

    // 2. Dead nodes leave; their children re-parent. Deepest first, so no node is moved twice.
    const now = this.#clock.now();
    const pastGrace = now - this.#actingSince >= this.registry.deadAfterMs;
    const depths = depthsOf(parentMap(tree));
    const dead = [...tree.keys()]
      .filter((n) => n !== def.mixer && !this.registry.has(n) && (pastGrace || this.#gone.has(n)))
      .sort((a, b) => (depths.get(b) ?? 0) - (depths.get(a) ?? 0) || (a < b ? -1 : 1));
    for (const node of dead) {
      if (!tree.has(node)) continue;
      const result = reparent(parentMap(tree), node, live, this.relayFanOut);
      for (const move of result.changed) await this.#write(event, move.node, move.parent, move.depth);
      for (const n of result.detached) await this.#remove(event, n);
      await this.#remove(event, node);
    }

    // 2b. A draining relay's children move to other parents; it keeps its own place (and its
    // viewers) until it leaves. If some child found no room, they all stay for now.
    for (const node of [...tree.keys()]) {
      if (node === def.mixer || !this.#draining.has(node) || !this.registry.has(node)) continue;
      const result = reparent(parentMap(tree), node, live, this.relayFanOut);
      if (result.detached.length > 0) continue;
      for (const move of result.changed) await this.#write(event, move.node, move.parent, move.depth);
    }

    // 3. Nodes cut off from the root, or with a stale depth, are removed or rewritten.
    const current = depthsOf(parentMap(tree));
    for (const [node, a] of [...tree]) {
      const depth = current.get(node);
      if (depth === undefined) await this.#remove(event, node);
      else if (depth !== a.depth) await this.#write(event, node, a.parent, depth);
    }

    // 4. Live relays not in the tree join under the shallowest parent with room.
    let unplaced = 0;
    const waiting = live
      .filter((n) => n.info.role === 'relay' && !n.draining && !tree.has(n.info.id))
      .sort((a, b) => a.joinedAt - b.joinedAt || (a.info.id < b.info.id ? -1 : 1));
    for (const relay of waiting) {
      const parents = parentMap(tree);
      const parent = shallowestWithRoom(parents, live, this.relayFanOut, { exclude: new Set([relay.info.id]) });
      if (parent === null) {
        unplaced++;
        continue;
      }
      await this.#write(event, relay.info.id, parent, tree.get(parent)!.depth + 1);
    }
    return unplaced;
  }

  async #dropTree(event: string): Promise<void> {
    const tree = this.#trees.get(event);
    if (tree) for (const node of [...tree.keys()]) await this.#remove(event, node);
    this.#trees.delete(event);
  }

  async #write(event: string, node: string, parent: string | null, depth: number): Promise<void> {
    if (!this.#isActing()) throw new NotActing();
    const epoch = (this.#epochs.get(event) ?? 0) + 1;
    const a: TreeAssignment = { v: 1, event, node, parent, depth, epoch };
    try {
      await this.#treeKv!.put(`${event}.${node}`, a);
    } catch (err) {
      this.stats.errors++;
      throw err;
    }
    this.#epochs.set(event, epoch);
    let tree = this.#trees.get(event);
    if (!tree) this.#trees.set(event, (tree = new Map()));
    tree.set(node, a);
    this.stats.assignmentsWritten++;
    this.#publish(event, a);
    this.emit('assigned', a);
  }

  async #remove(event: string, node: string): Promise<void> {
    const tree = this.#trees.get(event);
    if (!tree?.has(node)) return;
    if (!this.#isActing()) throw new NotActing();
    try {
      await this.#treeKv!.delete(`${event}.${node}`);
    } catch (err) {
      this.stats.errors++;
      throw err;
    }
    const epoch = (this.#epochs.get(event) ?? 0) + 1;
    this.#epochs.set(event, epoch);
    tree.delete(node);
    this.stats.removalsWritten++;
    this.#publish(event, { v: 1, event, node, removed: true, epoch });
    this.emit('removed', event, node);
  }

  #publish(event: string, change: TreeChange): void {
    try {
      this.#bus.publish(this.#subjects.event(event).tree, change);
    } catch {
      // KV is the record; the subject is a courtesy for observers
    }
  }
}

function parentMap(tree: ReadonlyMap<string, TreeAssignment>): Tree {
  const out = new Map<string, string | null>();
  for (const [node, a] of tree) out.set(node, a.parent);
  return out;
}
