/**
 * Run by every node (mixer or relay): makes the node known to the cluster and
 * keeps it known.
 * - registers: `nodes` KV put (so a restarted controller finds it) and a
 *   publish on `node.register` (so running registries learn at once);
 * - heartbeats its load every `heartbeatIntervalMs`;
 * - registers again after the bus reconnects, and when a registry asks
 *   (`node.control.<id>`: it heard beats from a node it did not know);
 * - `close()`: a graceful stop (leave message, KV delete) so the node is
 *   removed at once; `abandon()`: goes silent like a crashed process.
 */
import { EventEmitter } from 'node:events';
import type { Bus, BusSubscription, BusStatus, KvStore } from './Bus.js';
import { sleep, systemClock, type Clock, type TimerHandle } from './Clock.js';
import {
  nodeControlSchema,
  nodeInfoSchema,
  type MediaAddress,
  type NodeInfo,
  type NodeLeave,
  type NodeLoad,
  type NodeRole,
} from './ClusterMessages.js';
import { controlDefaults } from './Defaults.js';
import { DropCounter, readMessage } from './Drops.js';
import { parseWith } from './Schema.js';
import { subjects, type Subjects } from './Subjects.js';

export interface NodeLoadSample {
  viewers: number;
  children: number;
  cpu?: number;
  /** Shutting down gracefully: placement skips the node (see nodeLoadSchema). */
  draining?: boolean;
  /** Mixers: events held, their participants and video sources. */
  events?: number;
  participants?: number;
  videoSources?: number;
}

export interface NodeAgentOptions {
  bus: Bus;
  cluster: string;
  node: {
    id: string;
    role: NodeRole;
    /** Base URL of the node's HTTP API / WHEP endpoint. */
    http: string;
    /** Where the node receives the feed from its parent. */
    media: MediaAddress;
    capacity: { viewers: number; children: number };
  };
  /** Current load, read at every heartbeat; zero load if absent. */
  load?: () => NodeLoadSample;
  clock?: Clock;
  heartbeatIntervalMs?: number;
}

export interface NodeAgentEvents {
  registered: [NodeInfo];
  close: [];
}

export interface NodeAgentStats {
  registrations: number;
  registerErrors: number;
  heartbeats: number;
  heartbeatErrors: number;
}

export class NodeAgent extends EventEmitter<NodeAgentEvents> {
  readonly info: NodeInfo;
  readonly drops = new DropCounter();
  readonly stats: NodeAgentStats = { registrations: 0, registerErrors: 0, heartbeats: 0, heartbeatErrors: 0 };
  readonly #bus: Bus;
  readonly #subjects: Subjects;
  readonly #clock: Clock;
  readonly #heartbeatIntervalMs: number;
  readonly #load: () => NodeLoadSample;
  #kv: KvStore | undefined;
  #seq = 0;
  #heartbeat: TimerHandle | undefined;
  #control: BusSubscription | undefined;
  #status: AsyncIterator<BusStatus> | undefined;
  /** Aborted on stop: ends registration retries. */
  readonly #abort = new AbortController();
  #registering: Promise<void> | undefined;
  #firstRegistration: Promise<void> | undefined;
  #registerAgain = false;
  #started = false;
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(opts: NodeAgentOptions) {
    super();
    this.#bus = opts.bus;
    this.#subjects = subjects(opts.cluster);
    this.#clock = opts.clock ?? systemClock;
    this.#heartbeatIntervalMs = opts.heartbeatIntervalMs ?? controlDefaults.heartbeatIntervalMs;
    this.#load = opts.load ?? (() => ({ viewers: 0, children: 0 }));
    this.info = parseWith(
      nodeInfoSchema,
      { v: 1, ...opts.node, cluster: opts.cluster, startedAt: this.#clock.now() } satisfies NodeInfo,
      'node',
    );
  }

  get id(): string {
    return this.info.id;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Registered at least once and not stopped (the bus may still be down: see `Bus.connected`). */
  get registered(): boolean {
    return this.stats.registrations > 0 && !this.#closed;
  }

  /** Sequence number of the latest heartbeat built (0 before the first). */
  get seq(): number {
    return this.#seq;
  }

  /** Publishes a heartbeat now (e.g. the node started draining) and waits until the server has it. */
  async beatNow(): Promise<void> {
    if (!this.#started || this.#closed) return;
    this.#beat();
    await this.#bus.flush().catch(() => undefined);
  }

  /** Registers once (rejects if that fails), then heartbeats and keeps the registration alive. */
  async start(): Promise<void> {
    if (this.#started || this.#closed) return;
    this.#started = true;
    this.#kv = await this.#bus.kv(this.#subjects.buckets.nodes);
    this.#control = this.#bus.subscribe(this.#subjects.node.control(this.id));
    void this.#pumpControl(this.#control);
    this.#status = this.#bus.status()[Symbol.asyncIterator]();
    void this.#pumpStatus(this.#status);
    const first = this.#registerOnce();
    this.#firstRegistration = first.catch(() => undefined);
    await first;
    if (this.#closed) return;
    this.#beat();
    this.#heartbeat = this.#clock.setInterval(() => this.#beat(), this.#heartbeatIntervalMs);
  }

  /** Graceful stop: leave message and KV delete, so registries drop the node at once. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      const wasStarted = this.#started;
      this.#stop();
      // A registration still in flight must not land after the delete below.
      await this.#firstRegistration;
      await this.#registering;
      if (wasStarted) {
        try {
          const leave: NodeLeave = { v: 1, id: this.id, at: this.#clock.now() };
          this.#bus.publish(this.#subjects.node.leave(this.id), leave);
          await this.#kv?.delete(this.id);
          await this.#bus.flush();
        } catch {
          // bus already gone: registries will declare the node dead instead
        }
      }
      this.emit('close');
    })();
    return this.#closing;
  }

  /** Stops everything without a word, as a crashed process would (its registry entry stays until declared dead). */
  abandon(): void {
    if (this.#closing) return;
    this.#stop();
    this.#closing = Promise.resolve();
    this.emit('close');
  }

  #stop(): void {
    this.#closed = true;
    this.#heartbeat?.cancel();
    this.#heartbeat = undefined;
    this.#control?.unsubscribe();
    void this.#status?.return?.();
    this.#abort.abort();
  }

  #beat(): void {
    if (this.#closed) return;
    try {
      const sample = this.#load();
      const load: NodeLoad = {
        v: 1,
        id: this.id,
        viewers: Math.max(0, Math.floor(sample.viewers)),
        children: Math.max(0, Math.floor(sample.children)),
        ...(sample.cpu !== undefined ? { cpu: Math.min(1, Math.max(0, sample.cpu)) } : {}),
        ...(sample.draining ? { draining: true } : {}),
        ...(sample.events !== undefined ? { events: Math.max(0, Math.floor(sample.events)) } : {}),
        ...(sample.participants !== undefined ? { participants: Math.max(0, Math.floor(sample.participants)) } : {}),
        ...(sample.videoSources !== undefined ? { videoSources: Math.max(0, Math.floor(sample.videoSources)) } : {}),
        seq: ++this.#seq,
        at: this.#clock.now(),
      };
      this.#bus.publish(this.#subjects.node.heartbeat(this.id), load);
      this.stats.heartbeats++;
    } catch {
      this.stats.heartbeatErrors++;
    }
  }

  async #registerOnce(): Promise<void> {
    await this.#kv!.put(this.id, this.info);
    this.#bus.publish(this.#subjects.node.register, this.info);
    this.stats.registrations++;
    this.emit('registered', this.info);
  }

  /**
   * Registers again, retrying with backoff until it succeeds or the agent
   * closes (JetStream may need a moment after a NATS restart). Calls made
   * while one is running fold into one more pass.
   */
  #register(): void {
    if (this.#closed) return;
    if (this.#registering) {
      this.#registerAgain = true;
      return;
    }
    this.#registering = (async () => {
      let delay: number = controlDefaults.registerRetryMinMs;
      do {
        this.#registerAgain = false;
        while (!this.#closed) {
          try {
            await this.#registerOnce();
            break;
          } catch {
            this.stats.registerErrors++;
            await sleep(this.#clock, delay, this.#abort.signal);
            delay = Math.min(delay * 2, controlDefaults.registerRetryMaxMs);
          }
        }
      } while (this.#registerAgain && !this.#closed);
    })().finally(() => {
      this.#registering = undefined;
    });
  }

  async #pumpControl(sub: BusSubscription): Promise<void> {
    try {
      for await (const m of sub) {
        const msg = readMessage(nodeControlSchema, m.data, this.drops);
        if (msg?.kind === 'reregister') this.#register();
      }
    } catch {
      // the bus closed
    }
  }

  async #pumpStatus(status: AsyncIterator<BusStatus>): Promise<void> {
    try {
      for (;;) {
        const r = await status.next();
        if (r.done) return;
        if (r.value.type === 'reconnected') this.#register();
      }
    } catch {
      // the bus closed
    }
  }
}
