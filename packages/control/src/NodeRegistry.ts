/**
 * The live nodes of a cluster, as seen from one process: built from
 * register / heartbeat / leave messages, and on start from the `nodes` KV
 * bucket (so a restarted controller knows the cluster before the next beat).
 *
 * A node silent for `deadAfterMs` is declared dead (`nodeDead`) and removed;
 * a graceful leave removes it at once (`nodeLeft`). While this process's own
 * bus connection is down, nobody is declared dead (the silence is ours, not
 * theirs), and every node gets a fresh `deadAfterMs` once it is back.
 *
 * A child relay that stops receiving its parent's feed reports the parent silent
 * (`node.silent.<id>`, see `nodeSilentSchema`); for `deadAfterMs` after such a report the parent
 * is dead once its last beat is `suspectDeadAfterMs` old. Reports from unknown nodes are dropped,
 * and reports within `deadAfterMs` of this process's own (re)connection are ignored: beats are
 * still catching up then, and a report may have sat in a buffer.
 */
import { EventEmitter } from 'node:events';
import type { Bus, BusMessage, BusStatus, BusSubscription, KvStore } from './Bus.js';
import { systemClock, type Clock, type TimerHandle } from './Clock.js';
import {
  nodeInfoSchema,
  nodeLeaveSchema,
  nodeLoadSchema,
  nodeSilentSchema,
  type NodeControl,
  type NodeInfo,
  type NodeLoad,
} from './ClusterMessages.js';
import { controlDefaults } from './Defaults.js';
import { DropCounter, readMessage } from './Drops.js';
import { subjects, type Subjects } from './Subjects.js';

export interface LiveNode {
  info: NodeInfo;
  /** From the latest heartbeat (0 until the first one). */
  viewers: number;
  children: number;
  cpu: number | undefined;
  /** From the latest heartbeat: the node is shutting down gracefully. */
  draining: boolean;
  /** Mixers, from the latest heartbeat: events held, participants and video sources in them. */
  events?: number;
  participants?: number;
  videoSources?: number;
  /** seq of the latest heartbeat applied; 0 before the first. */
  seq: number;
  /** Registry clock time of the last sign of life. */
  lastSeenAt: number;
  joinedAt: number;
}

export interface NodeRegistryOptions {
  bus: Bus;
  cluster: string;
  clock?: Clock;
  deadAfterMs?: number;
  /** Death of a node a child reported silent: its beats this old (default `controlDefaults.suspectDeadAfterMs`). */
  suspectDeadAfterMs?: number;
  livenessCheckIntervalMs?: number;
  /** Delete a dead node's `nodes` KV entry (default true), so stale nodes do not pile up. */
  pruneDeadFromKv?: boolean;
}

export interface NodeRegistryEvents {
  nodeJoined: [NodeInfo];
  /** A known node registered again with different info (e.g. restarted, new media port). */
  nodeUpdated: [NodeInfo];
  /** Graceful leave. */
  nodeLeft: [id: string];
  /** Silent for `deadAfterMs`. */
  nodeDead: [id: string];
  /** A heartbeat was applied. */
  load: [LiveNode];
  close: [];
}

export interface NodeRegistryStats {
  joined: number;
  left: number;
  dead: number;
  reregisterRequests: number;
  /** Accepted reports of a silent parent (`node.silent.<id>`). */
  silenceReports: number;
  /** Deaths declared on a silence report before `deadAfterMs` (the rest of `dead` waited for it). */
  deadBySilence: number;
}

export class NodeRegistry extends EventEmitter<NodeRegistryEvents> {
  readonly drops = new DropCounter();
  readonly stats: NodeRegistryStats = { joined: 0, left: 0, dead: 0, reregisterRequests: 0, silenceReports: 0, deadBySilence: 0 };
  readonly deadAfterMs: number;
  readonly suspectDeadAfterMs: number;
  readonly #bus: Bus;
  readonly #cluster: string;
  readonly #subjects: Subjects;
  readonly #clock: Clock;
  readonly #livenessCheckIntervalMs: number;
  readonly #prune: boolean;
  readonly #nodes = new Map<string, LiveNode>();
  /** Unknown nodes whose KV entry is being looked up. */
  readonly #lookups = new Set<string>();
  readonly #reregisterAskedAt = new Map<string, number>();
  /** node → when (registry clock) a child last reported its feed silent. */
  readonly #suspects = new Map<string, number>();
  /** When this process's bus connection last came up (registry clock). */
  #connectedAt = 0;
  readonly #subs: BusSubscription[] = [];
  #kv: KvStore | undefined;
  #status: AsyncIterator<BusStatus> | undefined;
  #sweep: TimerHandle | undefined;
  #paused = false;
  #started = false;
  #closed = false;

  constructor(opts: NodeRegistryOptions) {
    super();
    this.#bus = opts.bus;
    this.#cluster = opts.cluster;
    this.#subjects = subjects(opts.cluster);
    this.#clock = opts.clock ?? systemClock;
    this.deadAfterMs = opts.deadAfterMs ?? controlDefaults.deadAfterMs;
    this.suspectDeadAfterMs = Math.min(this.deadAfterMs, opts.suspectDeadAfterMs ?? controlDefaults.suspectDeadAfterMs);
    this.#livenessCheckIntervalMs = opts.livenessCheckIntervalMs ?? controlDefaults.livenessCheckIntervalMs;
    this.#prune = opts.pruneDeadFromKv ?? true;
  }

  /** Subscribes, then loads the `nodes` bucket (nodes found there get `deadAfterMs` to prove they are alive). */
  async start(): Promise<void> {
    if (this.#started || this.#closed) return;
    this.#started = true;
    const s = this.#subjects;
    this.#connectedAt = this.#clock.now();
    this.#pump(this.#bus.subscribe(s.node.register), (m) => this.#onRegister(m));
    this.#pump(this.#bus.subscribe(s.node.heartbeat('*')), (m) => this.#onHeartbeat(m));
    this.#pump(this.#bus.subscribe(s.node.leave('*')), (m) => this.#onLeave(m));
    this.#pump(this.#bus.subscribe(s.node.silent('*')), (m) => this.#onSilent(m));
    this.#status = this.#bus.status()[Symbol.asyncIterator]();
    void this.#pumpStatus(this.#status);
    this.#kv = await this.#bus.kv(s.buckets.nodes);
    for (const key of await this.#kv.keys()) {
      if (this.#closed) return;
      if (this.#nodes.has(key)) continue;
      const entry = await this.#kv.get(key);
      const info = entry ? readMessage(nodeInfoSchema, entry.value, this.drops) : undefined;
      if (info && info.id === key && !this.#nodes.has(key)) this.#upsert(info);
    }
    if (this.#closed) return;
    this.#sweep = this.#clock.setInterval(() => this.#checkLiveness(), this.#livenessCheckIntervalMs);
  }

  get(id: string): LiveNode | undefined {
    return this.#nodes.get(id);
  }

  has(id: string): boolean {
    return this.#nodes.has(id);
  }

  get size(): number {
    return this.#nodes.size;
  }

  /** Live nodes sorted by id. */
  nodes(): LiveNode[] {
    return [...this.#nodes.values()].sort((a, b) => (a.info.id < b.info.id ? -1 : 1));
  }

  relays(): LiveNode[] {
    return this.nodes().filter((n) => n.info.role === 'relay');
  }

  /** Idempotent: stops listening and checking; emits `close` once. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#sweep?.cancel();
    for (const sub of this.#subs.splice(0)) sub.unsubscribe();
    await this.#status?.return?.();
    this.emit('close');
  }

  #pump(sub: BusSubscription, handle: (m: BusMessage) => void): void {
    this.#subs.push(sub);
    void (async () => {
      try {
        for await (const m of sub) if (!this.#closed) handle(m);
      } catch {
        // the bus closed
      }
    })();
  }

  async #pumpStatus(status: AsyncIterator<BusStatus>): Promise<void> {
    try {
      for (;;) {
        const r = await status.next();
        if (r.done) return;
        if (r.value.type === 'disconnected') this.#paused = true;
        else if (r.value.type === 'reconnected' || r.value.type === 'connected') {
          if (this.#paused) {
            const now = this.#clock.now();
            for (const n of this.#nodes.values()) n.lastSeenAt = now;
            this.#connectedAt = now;
            this.#suspects.clear();
          }
          this.#paused = false;
        }
      }
    } catch {
      // the bus closed
    }
  }

  #onRegister(m: BusMessage): void {
    const info = readMessage(nodeInfoSchema, m.data, this.drops);
    if (info) this.#upsert(info);
  }

  #upsert(info: NodeInfo): void {
    if (info.cluster !== this.#cluster) {
      this.drops.count('wrong_cluster');
      return;
    }
    const now = this.#clock.now();
    this.#reregisterAskedAt.delete(info.id);
    const known = this.#nodes.get(info.id);
    if (!known) {
      this.#nodes.set(info.id, { info, viewers: 0, children: 0, cpu: undefined, draining: false, seq: 0, lastSeenAt: now, joinedAt: now });
      this.stats.joined++;
      this.emit('nodeJoined', info);
      return;
    }
    known.lastSeenAt = now;
    if (JSON.stringify(known.info) === JSON.stringify(info)) return;
    // A new process under the same id starts its heartbeats at seq 1 again.
    if (known.info.startedAt !== info.startedAt) known.seq = 0;
    known.info = info;
    this.emit('nodeUpdated', info);
  }

  #onHeartbeat(m: BusMessage): void {
    const load = readMessage(nodeLoadSchema, m.data, this.drops);
    if (!load) return;
    if (m.subject !== this.#subjects.node.heartbeat(load.id)) {
      this.drops.count('id_mismatch');
      return;
    }
    const node = this.#nodes.get(load.id);
    if (node) this.#applyLoad(node, load);
    else void this.#lookUpUnknown(load);
  }

  #applyLoad(node: LiveNode, load: NodeLoad): void {
    node.lastSeenAt = this.#clock.now();
    // Beats of one process arrive in order over one connection; a lower seq
    // means the process restarted (and its new registration was missed).
    if (load.seq === node.seq) return;
    node.seq = load.seq;
    node.viewers = load.viewers;
    node.children = load.children;
    node.cpu = load.cpu;
    node.draining = load.draining === true;
    node.events = load.events;
    node.participants = load.participants;
    node.videoSources = load.videoSources;
    this.emit('load', node);
  }

  /** Beats from a node we do not know: its entry is in KV (we missed the register) or it must register again. */
  async #lookUpUnknown(load: NodeLoad): Promise<void> {
    const id = load.id;
    if (this.#lookups.has(id) || !this.#kv) return;
    this.#lookups.add(id);
    try {
      const entry = await this.#kv.get(id);
      const info = entry ? readMessage(nodeInfoSchema, entry.value, this.drops) : undefined;
      if (this.#closed) return;
      if (info && info.id === id && info.cluster === this.#cluster) {
        this.#upsert(info);
        const node = this.#nodes.get(id);
        if (node) this.#applyLoad(node, load);
        return;
      }
      this.#askToRegister(id);
    } catch {
      // KV unavailable: the next beat tries again
    } finally {
      this.#lookups.delete(id);
    }
  }

  #askToRegister(id: string): void {
    const now = this.#clock.now();
    const last = this.#reregisterAskedAt.get(id);
    if (last !== undefined && now - last < controlDefaults.reregisterRequestIntervalMs) return;
    this.#reregisterAskedAt.set(id, now);
    try {
      const msg: NodeControl = { v: 1, kind: 'reregister' };
      this.#bus.publish(this.#subjects.node.control(id), msg);
      this.stats.reregisterRequests++;
    } catch {
      // the bus closed
    }
  }

  #onLeave(m: BusMessage): void {
    const leave = readMessage(nodeLeaveSchema, m.data, this.drops);
    if (!leave) return;
    if (m.subject !== this.#subjects.node.leave(leave.id)) {
      this.drops.count('id_mismatch');
      return;
    }
    if (!this.#nodes.delete(leave.id)) return;
    this.stats.left++;
    this.emit('nodeLeft', leave.id);
  }

  #onSilent(m: BusMessage): void {
    const report = readMessage(nodeSilentSchema, m.data, this.drops);
    if (!report) return;
    if (m.subject !== this.#subjects.node.silent(report.parent)) {
      this.drops.count('id_mismatch');
      return;
    }
    if (!this.#nodes.has(report.id)) {
      this.drops.count('unknown_reporter');
      return;
    }
    const now = this.#clock.now();
    if (this.#paused || now - this.#connectedAt < this.deadAfterMs || !this.#nodes.has(report.parent)) return;
    this.stats.silenceReports++;
    this.#suspects.set(report.parent, now);
    this.#checkLiveness();
  }

  #checkLiveness(): void {
    if (this.#paused || this.#closed) return;
    const now = this.#clock.now();
    for (const [id, node] of [...this.#nodes]) {
      const reportedAt = this.#suspects.get(id);
      const suspected = reportedAt !== undefined && now - reportedAt < this.deadAfterMs;
      if (reportedAt !== undefined && !suspected) this.#suspects.delete(id);
      const silentFor = now - node.lastSeenAt;
      if (silentFor < (suspected ? this.suspectDeadAfterMs : this.deadAfterMs)) continue;
      this.#suspects.delete(id);
      if (silentFor < this.deadAfterMs) this.stats.deadBySilence++;
      this.#nodes.delete(id);
      this.stats.dead++;
      this.emit('nodeDead', id);
      if (this.#prune) this.#kv?.delete(id).catch(() => undefined);
    }
    // Forget old re-register requests so the map does not grow with dead ids.
    for (const [id, at] of this.#reregisterAskedAt) {
      if (now - at > 10 * controlDefaults.reregisterRequestIntervalMs) this.#reregisterAskedAt.delete(id);
    }
  }
}
