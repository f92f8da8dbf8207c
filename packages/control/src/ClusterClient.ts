/**
 * A node's view of its place in one event's relay tree: where its feed
 * comes from (the parent's media address) and where it must send it (its
 * children's media addresses). Used by relays (and by the mixer for its
 * children).
 *
 * It watches the `tree` KV bucket (keys `<event>.*`: its own assignment and
 * the assignments naming it as parent) and the `nodes` bucket (addresses).
 * With `eventMedia`, a node's address in this event is the one it advertised
 * for the event in the `feeds` bucket (`advertise`: a socket per event per
 * node), and the root's entry there describes the feed's streams; a node that
 * has not advertised one is not a known parent or child yet.
 * KV watches resume after a reconnect without losing a change; if one ends
 * with an error anyway, it is opened again (bounded by `close()`).
 */
import { EventEmitter } from 'node:events';
import type { Bus, KvEntry, KvStore } from './Bus.js';
import { sleep, systemClock, type Clock } from './Clock.js';
import {
  eventFeedSchema,
  nodeInfoSchema,
  nodeSilentSchema,
  treeAssignmentSchema,
  type EventFeed,
  type FeedStream,
  type MediaAddress,
  type NodeInfo,
  type TreeAssignment,
} from './ClusterMessages.js';
import { DropCounter, readMessage } from './Drops.js';
import { BusError } from './Errors.js';
import { assertSafeId, subjects } from './Subjects.js';

export interface NodeAddress {
  id: string;
  /** Where the node receives the feed (RTP over UDP). */
  media: MediaAddress;
  /** Its HTTP / WHEP base URL. */
  http: string;
}

export interface ClusterClientOptions {
  bus: Bus;
  cluster: string;
  event: string;
  /** This node's id. */
  nodeId: string;
  /** For the backoff between watch retries. */
  clock?: Clock;
  /** Addresses come from the nodes' per-event entries in the `feeds` bucket, not their NodeInfo. */
  eventMedia?: boolean;
}

export interface ClusterClientEvents {
  /** This node's own assignment changed (null: not in the tree). */
  assignment: [TreeAssignment | null];
  /** The parent's address changed (null: no parent, or its address is unknown). */
  parent: [NodeAddress | null];
  /** The children (with known addresses) changed. */
  children: [NodeAddress[]];
  /** The root's description of the feed's streams changed (null: none yet). */
  streams: [FeedStream[] | null];
  close: [];
}

export class ClusterClient extends EventEmitter<ClusterClientEvents> {
  readonly drops = new DropCounter();
  readonly event: string;
  readonly nodeId: string;
  readonly #bus: Bus;
  readonly #cluster: string;
  readonly #clock: Clock;
  readonly #abort = new AbortController();
  /** node → its assignment in this event. */
  readonly #tree = new Map<string, TreeAssignment>();
  readonly #nodes = new Map<string, NodeInfo>();
  /** key → latest revision applied, per bucket, so a snapshot and a watch can overlap. */
  readonly #treeRevisions = new Map<string, number>();
  readonly #nodeRevisions = new Map<string, number>();
  readonly #feeds = new Map<string, EventFeed>();
  readonly #feedRevisions = new Map<string, number>();
  readonly #eventMedia: boolean;
  #feedsKv: KvStore | null = null;
  #advertised = false;
  #streams: FeedStream[] | null = null;
  #assignment: TreeAssignment | null = null;
  #parent: NodeAddress | null = null;
  #children: NodeAddress[] = [];
  #started = false;
  #closed = false;

  constructor(opts: ClusterClientOptions) {
    super();
    this.#bus = opts.bus;
    this.#cluster = opts.cluster;
    this.event = assertSafeId(opts.event, 'event');
    this.nodeId = assertSafeId(opts.nodeId, 'nodeId');
    this.#clock = opts.clock ?? systemClock;
    this.#eventMedia = opts.eventMedia ?? false;
  }

  /** The feed's streams as the root (the mixer) describes them; null until it has. */
  get streams(): FeedStream[] | null {
    return this.#streams;
  }

  /**
   * Publishes this node's end of the event's feed (its socket's address, and on the mixer the
   * stream description) in the `feeds` bucket; `close()` withdraws it.
   */
  async advertise(media: MediaAddress, streams?: FeedStream[], epoch?: number): Promise<void> {
    if (this.#closed) return;
    const kv = (this.#feedsKv ??= await this.#bus.kv(subjects(this.#cluster).buckets.feeds));
    const entry: EventFeed = eventFeedSchema.parse({ v: 1, event: this.event, node: this.nodeId, media, ...(streams ? { streams } : {}), ...(epoch !== undefined ? { epoch } : {}) });
    await kv.put(`${this.event}.${this.nodeId}`, entry);
    this.#advertised = true;
  }

  /**
   * Tells the registry that the feed from this node's parent has been silent for `silentMs` (see
   * `nodeSilentSchema`): a dead parent is then replaced within about two heartbeats.
   */
  reportParentSilent(silentMs: number): void {
    const parent = this.#parent;
    if (this.#closed || !parent) return;
    const report = nodeSilentSchema.parse({ v: 1, id: this.nodeId, event: this.event, parent: parent.id, silentMs: Math.round(silentMs), at: Date.now() });
    try {
      this.#bus.publish(subjects(this.#cluster).node.silent(parent.id), report);
    } catch {
      // the bus is closed or down: the parent's missed beats tell the registry anyway
    }
  }

  get assignment(): TreeAssignment | null {
    return this.#assignment;
  }

  /** The parent's address; null for the root, when unassigned, or while the parent's address is unknown. */
  get parent(): NodeAddress | null {
    return this.#parent;
  }

  /** The event's whole tree as last read from KV, sorted by depth, then node id. */
  tree(): TreeAssignment[] {
    return [...this.#tree.values()].sort((a, b) => a.depth - b.depth || (a.node < b.node ? -1 : 1));
  }

  /** Children with known addresses, sorted by id. */
  get children(): readonly NodeAddress[] {
    return this.#children;
  }

  /**
   * Reads the current state (so it is known when this resolves; listeners
   * attached before get it as a first change), then follows changes.
   */
  async start(): Promise<void> {
    if (this.#started || this.#closed) return;
    this.#started = true;
    const buckets = subjects(this.#cluster).buckets;
    const treeKv = await this.#bus.kv(buckets.tree);
    const nodesKv = await this.#bus.kv(buckets.nodes);
    const treeFilter = `${this.event}.*`;
    await this.#snapshot(nodesKv, '>', (e) => this.#applyNode(e));
    await this.#snapshot(treeKv, treeFilter, (e) => this.#applyTree(e));
    if (this.#eventMedia) {
      const feedsKv = (this.#feedsKv ??= await this.#bus.kv(buckets.feeds));
      await this.#snapshot(feedsKv, treeFilter, (e) => this.#applyFeed(e));
      this.#follow(feedsKv, treeFilter, (e) => this.#applyFeed(e));
    }
    this.#recompute();
    this.#follow(nodesKv, '>', (e) => this.#applyNode(e));
    this.#follow(treeKv, treeFilter, (e) => this.#applyTree(e));
  }

  /** Idempotent. */
  /** Stops following the tree and withdraws what `advertise` published (unless `withdraw` is false: a crash, in tests). */
  async close(opts: { withdraw?: boolean } = {}): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#abort.abort();
    if (this.#advertised && opts.withdraw !== false) await this.#feedsKv?.delete(`${this.event}.${this.nodeId}`).catch(() => undefined);
    this.emit('close');
  }

  async #snapshot(kv: KvStore, filter: string, apply: (e: KvEntry) => void): Promise<void> {
    for (const key of await kv.keys(filter)) {
      const entry = await kv.get(key);
      if (entry) apply(entry);
    }
  }

  #follow(kv: KvStore, filter: string, apply: (e: KvEntry) => void): void {
    const signal = this.#abort.signal;
    void (async () => {
      for (let attempt = 0; !signal.aborted; attempt++) {
        try {
          for await (const entry of kv.watch({ key: filter, signal })) {
            attempt = 0;
            apply(entry);
            this.#recompute();
          }
          return; // ended by close() or by the bus closing
        } catch (err) {
          if (err instanceof BusError && err.reason === 'closed') return;
          await sleep(this.#clock, Math.min(100 * 2 ** attempt, 2000), signal);
        }
      }
    })();
  }

  #applyTree(entry: KvEntry): void {
    if ((this.#treeRevisions.get(entry.key) ?? 0) >= entry.revision) return;
    this.#treeRevisions.set(entry.key, entry.revision);
    const node = entry.key.slice(this.event.length + 1);
    if (entry.operation === 'DEL') {
      this.#tree.delete(node);
      return;
    }
    const a = readMessage(treeAssignmentSchema, entry.value, this.drops);
    if (!a) return;
    if (a.event !== this.event || a.node !== node) {
      this.drops.count('id_mismatch');
      return;
    }
    this.#tree.set(node, a);
  }

  #applyNode(entry: KvEntry): void {
    if ((this.#nodeRevisions.get(entry.key) ?? 0) >= entry.revision) return;
    this.#nodeRevisions.set(entry.key, entry.revision);
    if (entry.operation === 'DEL') {
      this.#nodes.delete(entry.key);
      return;
    }
    const info = readMessage(nodeInfoSchema, entry.value, this.drops);
    if (!info) return;
    if (info.id !== entry.key) {
      this.drops.count('id_mismatch');
      return;
    }
    this.#nodes.set(info.id, info);
  }

  #applyFeed(entry: KvEntry): void {
    if ((this.#feedRevisions.get(entry.key) ?? 0) >= entry.revision) return;
    this.#feedRevisions.set(entry.key, entry.revision);
    const node = entry.key.slice(this.event.length + 1);
    if (entry.operation === 'DEL') {
      this.#feeds.delete(node);
      return;
    }
    const f = readMessage(eventFeedSchema, entry.value, this.drops);
    if (!f) return;
    if (f.event !== this.event || f.node !== node) {
      this.drops.count('id_mismatch');
      return;
    }
    this.#feeds.set(node, f);
  }

  #address(id: string): NodeAddress | null {
    const info = this.#nodes.get(id);
    if (!info) return null;
    if (!this.#eventMedia) return { id, media: { ...info.media }, http: info.http };
    const feed = this.#feeds.get(id);
    if (!feed || !this.#currentEpoch(feed)) return null;
    return { id, media: { ...feed.media }, http: info.http };
  }

  /**
   * A mixer's feed entry (it carries an epoch) is current only with the highest epoch any mixer
   * advertised for this event: a mixer that lost the event's lease is never taken as a parent
   * again, even while a stale tree still names it. Relays' entries carry none and always count.
   */
  #currentEpoch(feed: EventFeed): boolean {
    if (feed.epoch === undefined) return true;
    let max = 0;
    for (const f of this.#feeds.values()) if (f.epoch !== undefined && f.epoch > max) max = f.epoch;
    return feed.epoch >= max;
  }

  /** The mixer whose feed entry carries the highest epoch (null: none carries one, an older mixer). */
  #currentRoot(): string | null {
    let best: EventFeed | null = null;
    for (const f of this.#feeds.values()) if (f.epoch !== undefined && f.streams !== undefined && (best === null || f.epoch > best.epoch!)) best = f;
    return best?.node ?? null;
  }

  /** The highest lease epoch a mixer advertised for this event's feed (0: none). */
  get epoch(): number {
    let max = 0;
    for (const f of this.#feeds.values()) if (f.epoch !== undefined && f.epoch > max) max = f.epoch;
    return max;
  }

  #recompute(): void {
    if (this.#closed) return;
    const assignment = this.#tree.get(this.nodeId) ?? null;
    // A new holder of the event (failover, handover) advertises its feed under a higher epoch
    // before the tree controller has re-rooted the tree: a node whose parent is the old root takes
    // the new holder as parent at once, and the new holder feeds the old root's children, so the
    // program is back one KV round trip after the takeover instead of after the re-rooting.
    const root = this.#eventMedia ? this.#currentRoot() : null;
    const effectiveParent = (parent: string | null): string | null => {
      if (parent === null || root === null || parent === root) return parent;
      // The parent is a mixer that no longer holds the event: an older epoch, a mixer's node entry,
      // or gone from both buckets (a dead mixer is pruned, a mixer that handed over withdrew its feed).
      const f = this.#feeds.get(parent);
      const info = this.#nodes.get(parent);
      const staleMixer = f?.epoch !== undefined || info?.role === 'mixer' || (info === undefined && f === undefined);
      return staleMixer ? root : parent;
    };
    const parentId = effectiveParent(assignment?.parent ?? null);
    const parent = parentId !== null && parentId !== this.nodeId ? this.#address(parentId) : null;
    const children: NodeAddress[] = [];
    for (const [node, a] of this.#tree) {
      if (node === this.nodeId || effectiveParent(a.parent) !== this.nodeId) continue;
      const address = this.#address(node);
      if (address) children.push(address);
    }
    children.sort((a, b) => (a.id < b.id ? -1 : 1));
    let streams: FeedStream[] | null = null;
    if (this.#eventMedia) {
      if (root !== null) streams = this.#feeds.get(root)?.streams ?? null;
      else {
        for (const [node, a] of this.#tree) {
          const feed = a.parent === null ? this.#feeds.get(node) : undefined;
          if (feed && this.#currentEpoch(feed)) streams = feed.streams ?? null;
        }
      }
    }

    const assignmentChanged = !sameJson(assignment, this.#assignment);
    const parentChanged = !sameJson(parent, this.#parent);
    const childrenChanged = !sameJson(children, this.#children);
    const streamsChanged = !sameJson(streams, this.#streams);
    this.#streams = streams;
    this.#assignment = assignment;
    this.#parent = parent;
    this.#children = children;
    if (assignmentChanged) this.emit('assignment', assignment);
    if (parentChanged) this.emit('parent', parent);
    if (childrenChanged) this.emit('children', children);
    if (streamsChanged) this.emit('streams', streams);
  }
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
