/**
 * Who holds each event of the cluster: one Lease per event on `event.<id>` in the `leases` KV
 * bucket (Lease.ts: revision checks decide, the epoch grows with every change of hands).
 *
 * On every mixer: the events it holds (`hold`, for an event created here or taken over) and a
 * standby lease on every other live event (`standBy`), which takes the event when its holder
 * stops renewing for a ttl, or at once when the registry declares the holder dead and this mixer
 * is the first of the standby candidates (least loaded, `rankMixers`). `holderOf` answers from a
 * watch of the bucket, for redirects.
 *
 * `held(id)` is read on the media path (a clock read): the program is sent only while it is true,
 * so a mixer cut off from NATS stops within the ttl of its last renewal even while its renewal
 * request still hangs; a watchdog turns that into a `lost` event within `checkIntervalMs`.
 */
import { EventEmitter } from 'node:events';
import {
  BusError,
  DropCounter,
  Lease,
  leaseRecordSchema,
  readMessage,
  subjects,
  type Bus,
  type KvStore,
  type Logger,
} from '@mcu/control';

export const eventLeaseKey = (event: string): string => `event.${event}`;

export interface EventLeasesOptions {
  bus: Bus;
  cluster: string;
  nodeId: string;
  ttlMs: number;
  renewIntervalMs: number;
  /** How often held leases are checked against the clock (default 50 ms). */
  checkIntervalMs?: number;
  /** The standby candidates for an event whose holder is gone, first = the one to take it now. */
  candidates: (exclude: ReadonlySet<string>) => string[];
  log?: Logger;
}

export interface EventLeasesEvents {
  /** This mixer now holds the event, under `epoch`. */
  acquired: [event: string, epoch: number];
  /** It stopped holding it (ttl ran out without a renewal, or someone else took it). */
  lost: [event: string];
  /** The bucket names a new holder for an event (any node). */
  holder: [event: string, holder: string | null, epoch: number];
}

export interface HolderRecord {
  holder: string | null;
  epoch: number;
}

export class EventLeases extends EventEmitter<EventLeasesEvents> {
  readonly drops = new DropCounter();
  readonly #opts: EventLeasesOptions;
  readonly #leases = new Map<string, Lease>();
  readonly #wasHeld = new Map<string, boolean>();
  readonly #holders = new Map<string, HolderRecord>();
  readonly #abort = new AbortController();
  #kv: KvStore | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(opts: EventLeasesOptions) {
    super();
    this.#opts = opts;
  }

  async start(): Promise<void> {
    this.#kv = await this.#opts.bus.kv(subjects(this.#opts.cluster).buckets.leases);
    for (const key of await this.#kv.keys('event.*')) {
      const entry = await this.#kv.get(key);
      if (entry) this.#apply(key, entry.value);
    }
    this.#follow();
    this.#timer = setInterval(() => this.#check(), this.#opts.checkIntervalMs ?? 50);
    this.#timer.unref();
  }

  /** Whether this mixer holds the event now (cheap: a clock comparison). */
  held(event: string): boolean {
    return this.#leases.get(event)?.held === true;
  }

  epochOf(event: string): number {
    return this.#leases.get(event)?.epoch ?? 0;
  }

  /** The event's holder as the bucket says (any node), or undefined when unknown. */
  holderOf(event: string): HolderRecord | undefined {
    return this.#holders.get(event);
  }

  /** Every event whose lease this mixer holds now. */
  heldEvents(): string[] {
    return [...this.#leases].filter(([, l]) => l.held).map(([id]) => id);
  }

  /** Takes (or keeps) the event's lease; resolves true when held. A free or new lease is held at once. */
  async hold(event: string): Promise<boolean> {
    const lease = this.#lease(event);
    await lease.start();
    if (!lease.held) await lease.tick();
    this.#check();
    return lease.held;
  }

  /** Follows the event as a standby: its lease is taken when the holder stops renewing. */
  standBy(event: string): void {
    if (this.#closed) return;
    void this.#lease(event).start();
  }

  /** Tries to take the event now (a handover: the holder released it). */
  async tryNow(event: string): Promise<boolean> {
    const lease = this.#leases.get(event);
    if (lease?.held) return true;
    // A fresh lease: the standby's may have a tick in flight that read the record before the
    // release, or a stale revision of its own (lost earlier) whose renewal has to fail first.
    if (lease) {
      // Abandoned, not closed: a tick of it may hang on a request sent while the bus was away. If
      // a tick in flight takes the released lease after all, the record names this node under the
      // old instance, which the fresh lease reclaims (`reclaimOwn`).
      this.#leases.delete(event);
      lease.abandon();
    }
    return this.hold(event);
  }

  /** Releases the lease (a standby may take it at once) and stops following the event. */
  async release(event: string): Promise<void> {
    const lease = this.#leases.get(event);
    if (!lease) return;
    this.#leases.delete(event);
    this.#wasHeld.delete(event);
    await lease.close();
  }

  /** Stops following the event without releasing (it ended, or the lease is someone else's). */
  forget(event: string): void {
    const lease = this.#leases.get(event);
    if (!lease) return;
    this.#leases.delete(event);
    this.#wasHeld.delete(event);
    if (lease.held) void lease.close();
    else lease.abandon();
  }

  /** The registry declared `node` dead: the first standby candidate takes its events now. */
  holderDead(node: string): void {
    const first = this.#opts.candidates(new Set([node]))[0];
    if (first !== this.#opts.nodeId) return;
    for (const [event, lease] of this.#leases) {
      if (lease.held) continue;
      const named = this.#holders.get(event)?.holder ?? lease.observedHolder;
      if (named !== node) continue;
      this.#opts.log?.info({ event, deadHolder: node }, 'taking over the event of a dead mixer');
      void lease.takeOverFrom(node).then(() => this.#check());
    }
  }

  /** Stops every lease without releasing those held (the process goes down; tests: a crash). */
  abandonAll(): void {
    for (const lease of this.#leases.values()) lease.abandon();
    this.#leases.clear();
    this.close();
  }

  /** Releases the held leases and stops. Idempotent. */
  async closeAll(): Promise<void> {
    const leases = [...this.#leases.values()];
    this.#leases.clear();
    this.close();
    await Promise.all(leases.map((l) => l.close()));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#abort.abort();
    if (this.#timer) clearInterval(this.#timer);
    for (const l of this.#leases.values()) l.abandon();
    this.#leases.clear();
  }

  #lease(event: string): Lease {
    let lease = this.#leases.get(event);
    if (lease) return lease;
    // The margin covers the watchdog's period and timer lateness: what the holder does under the
    // lease (its feed's RTCP and retransmissions, silenced from the watchdog) stops before a standby
    // may take over.
    lease = new Lease({ kv: this.#kv!, key: eventLeaseKey(event), holder: this.#opts.nodeId, ttlMs: this.#opts.ttlMs, renewIntervalMs: this.#opts.renewIntervalMs, holdMarginMs: 150, reclaimOwn: true });
    lease.on('acquired', () => this.#check());
    lease.on('lost', () => this.#check());
    this.#leases.set(event, lease);
    return lease;
  }

  /** Emits the transitions of every lease, from the clock (a renewal may still hang). */
  #check(): void {
    for (const [event, lease] of this.#leases) {
      const held = lease.held;
      if (held === (this.#wasHeld.get(event) ?? false)) continue;
      this.#wasHeld.set(event, held);
      this.emit(held ? 'acquired' : 'lost', event, lease.epoch);
    }
  }

  #apply(key: string, value: Uint8Array): void {
    const event = key.slice('event.'.length);
    const rec = readMessage(leaseRecordSchema, value, this.drops);
    if (!rec) return;
    const before = this.#holders.get(event);
    const next: HolderRecord = { holder: rec.holder, epoch: rec.epoch ?? 0 };
    if (before && before.holder === next.holder && before.epoch === next.epoch) return;
    this.#holders.set(event, next);
    this.emit('holder', event, next.holder, next.epoch);
  }

  #follow(): void {
    const signal = this.#abort.signal;
    void (async () => {
      for (let attempt = 0; !signal.aborted; attempt++) {
        try {
          for await (const entry of this.#kv!.watch({ key: 'event.*', signal })) {
            attempt = 0;
            if (entry.operation === 'DEL') this.#holders.delete(entry.key.slice('event.'.length));
            else this.#apply(entry.key, entry.value);
          }
          return;
        } catch (err) {
          if (err instanceof BusError && err.reason === 'closed') return;
          await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** attempt, 2000)));
        }
      }
    })();
  }
}
