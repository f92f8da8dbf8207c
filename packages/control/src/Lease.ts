/**
 * A lease on one KV key (e.g. `tree.leader`): at most one holder acts at a
 * time, and a standby takes over when the holder stops renewing.
 *
 * Only revision checks decide who holds it, never comparisons of clocks
 * between machines:
 * - the key is taken with `create` (absent or deleted) or with `update`
 *   against the revision the taker read, so of two contenders one wins;
 * - the holder renews with `update` against its own last revision; a
 *   conflict means someone else took it, so it stops at once;
 * - a standby takes the key over only after it has seen the same revision
 *   for a whole ttl on its own clock;
 * - the holder counts itself as holding only until ttl after it *sent* its
 *   last successful renewal, which is no later than the moment the standby
 *   first saw that revision. So the old holder has stopped before a standby
 *   can start, as long as the two clocks run at the same rate.
 * Releasing writes `holder: null` (conditionally), so a standby takes over
 * without waiting for the ttl.
 *
 * Each record carries an epoch that grows by one whenever the lease changes
 * hands (renewals keep it), so whatever the holder does under the lease can be
 * stamped with it and an older holder's leftovers told apart. `takeOverFrom`
 * lets a standby skip the ttl when the cluster already declared the holder
 * dead (its heartbeats stopped): the holder's own ttl runs out at about the
 * same time, and a holder that is only partitioned cannot renew past the
 * takeover (its conditional update conflicts).
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { KvStore } from './Bus.js';
import { systemClock, type Clock, type TimerHandle } from './Clock.js';
import { leaseRecordSchema, type LeaseRecord } from './ClusterMessages.js';
import { controlDefaults } from './Defaults.js';
import { DropCounter, readMessage } from './Drops.js';
import { ConflictError, ValidationError } from './Errors.js';
import { assertSafeId } from './Subjects.js';

export interface LeaseOptions {
  kv: KvStore;
  key: string;
  /** Node id of the would-be holder (shown in the record). */
  holder: string;
  clock?: Clock;
  ttlMs?: number;
  renewIntervalMs?: number;
  /**
   * The holder counts itself as holding only until `ttlMs - holdMarginMs` after its last renewal
   * was sent, so that whatever it does under the lease (checked on a timer, a little late) has
   * stopped before a standby can take over at `ttlMs` (default 0).
   */
  holdMarginMs?: number;
  /**
   * A record naming this holder id under another instance counts as free: every lease of this
   * holder id lives in this process (the others were abandoned here, or belong to a previous run
   * of the same node), so it may be taken back at once (default false).
   */
  reclaimOwn?: boolean;
}

export interface LeaseEvents {
  acquired: [];
  lost: [];
  close: [];
}

export class Lease extends EventEmitter<LeaseEvents> {
  readonly drops = new DropCounter();
  readonly holder: string;
  readonly instance = randomBytes(8).toString('hex');
  readonly #kv: KvStore;
  readonly #key: string;
  readonly #clock: Clock;
  readonly #ttlMs: number;
  readonly #renewIntervalMs: number;
  readonly #holdMs: number;
  readonly #reclaimOwn: boolean;
  #timer: TimerHandle | undefined;
  /** Revision of our own record while we hold (or try to keep) the lease. */
  #revision: number | undefined;
  #lastRenewSentAt = 0;
  /** A standby's view of someone else's record: which revision, seen since when. */
  #observedRevision = 0;
  #observedAt = 0;
  #wasHeld = false;
  #epoch = 0;
  /** The holder named in the last record a standby read (null: free or unknown). */
  #observedHolder: string | null = null;
  #ticking: Promise<void> | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(opts: LeaseOptions) {
    super();
    this.holder = assertSafeId(opts.holder, 'holder');
    this.#kv = opts.kv;
    this.#key = opts.key;
    this.#clock = opts.clock ?? systemClock;
    this.#ttlMs = opts.ttlMs ?? controlDefaults.leaseTtlMs;
    this.#renewIntervalMs = opts.renewIntervalMs ?? controlDefaults.leaseRenewIntervalMs;
    this.#holdMs = this.#ttlMs - (opts.holdMarginMs ?? 0);
    this.#reclaimOwn = opts.reclaimOwn ?? false;
    if (!(this.#renewIntervalMs > 0 && this.#renewIntervalMs * 2 <= this.#ttlMs)) {
      throw new ValidationError('renewIntervalMs: expected a positive value of at most half of ttlMs', 'renewIntervalMs');
    }
  }

  /** True while this process may act as the holder. */
  get held(): boolean {
    return !this.#closed && this.#revision !== undefined && this.#clock.now() - this.#lastRenewSentAt < this.#holdMs;
  }

  /** Epoch of the lease while held (or last held); 0 before the first acquisition. */
  get epoch(): number {
    return this.#epoch;
  }

  /** The other holder a standby last saw in the record (null: free, ours, or not read yet). */
  get observedHolder(): string | null {
    return this.#observedHolder;
  }

  /**
   * The cluster declared `holder` dead: if the record still names it, take the lease as soon as the
   * holder's own ttl has run out — a whole ttl after this standby first saw the record's current
   * revision, exactly, instead of at the next tick after that — with a conditional update against
   * that revision (of two standbys one wins). A holder that is only slow to beat but still renews
   * changes the revision and keeps the lease. Never throws; resolves when the attempt is done.
   */
  async takeOverFrom(holder: string): Promise<void> {
    if (this.#closed || this.#revision !== undefined) return;
    await this.#ticking?.catch(() => undefined);
    try {
      let entry = await this.#kv.get(this.#key);
      if (!entry || this.#closed || this.#revision !== undefined) return;
      let current = readMessage(leaseRecordSchema, entry.value, this.drops);
      if (!current || current.holder !== holder) return;
      if (entry.revision !== this.#observedRevision) {
        this.#observedRevision = entry.revision;
        this.#observedAt = this.#clock.now();
      }
      const waitMs = this.#observedAt + Math.max(current.ttlMs, this.#ttlMs) - this.#clock.now();
      if (waitMs > 0) {
        const seen = entry.revision;
        await new Promise<void>((resolve) => this.#clock.setTimeout(resolve, waitMs));
        entry = await this.#kv.get(this.#key);
        // Renewed meanwhile (the death was false, or the holder is only slow to beat): keep off.
        if (!entry || this.#closed || this.#revision !== undefined || entry.revision !== seen) return;
        current = readMessage(leaseRecordSchema, entry.value, this.drops);
        if (!current || current.holder !== holder) return;
      }
      const sentAt = this.#clock.now();
      const epoch = (current.epoch ?? 0) + 1;
      await this.#take(sentAt, epoch, () => this.#kv.update(this.#key, this.#record(this.holder, epoch), entry.revision));
    } catch {
      // bus trouble: the ttl path takes over
    }
    this.#emitTransitions();
  }

  /** Makes a first attempt (so a free lease is held when this resolves), then keeps trying / renewing. */
  async start(): Promise<void> {
    if (this.#closed || this.#timer) return;
    this.#timer = this.#clock.setInterval(() => void this.tick(), this.#renewIntervalMs);
    await this.tick();
  }

  /** One renewal or acquisition attempt; runs on the timer, exposed for tests. Never throws. */
  tick(): Promise<void> {
    if (this.#ticking) return this.#ticking;
    // `.finally` runs asynchronously, so `#ticking` is set before it is cleared.
    const run: Promise<void> = this.#attempt()
      .catch(() => {
        // bus trouble: `held` runs out by itself if renewals keep failing
      })
      .finally(() => {
        if (this.#ticking === run) this.#ticking = undefined;
        this.#emitTransitions();
      });
    this.#ticking = run;
    return run;
  }

  async #attempt(): Promise<void> {
    if (this.#closed) return;
    if (this.#revision !== undefined) await this.#renew();
    else await this.#tryAcquire();
  }

  /** Releases the lease if held (a standby may take it at once) and stops. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#timer?.cancel();
      this.#timer = undefined;
      await this.#ticking;
      const revision = this.#revision;
      this.#closed = true;
      this.#emitTransitions();
      if (revision !== undefined) {
        try {
          await this.#kv.update(this.#key, this.#record(null, this.#epoch), revision);
        } catch {
          // lost it already, or the bus is gone: the ttl frees it
        }
      }
      this.#revision = undefined;
      this.emit('close');
    })();
    return this.#closing;
  }

  /** Stops renewing without releasing, as a crashed holder would (tests). */
  abandon(): void {
    if (this.#closed) return;
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#closed = true;
    this.#closing = Promise.resolve();
    this.#emitTransitions();
    this.emit('close');
  }

  async #renew(): Promise<void> {
    const sentAt = this.#clock.now();
    try {
      this.#revision = await this.#kv.update(this.#key, this.#record(this.holder, this.#epoch), this.#revision!);
      this.#lastRenewSentAt = sentAt;
    } catch (err) {
      if (err instanceof ConflictError) this.#revision = undefined;
      // other errors: keep the revision and try again; if nobody took it meanwhile we still hold it
    }
  }

  async #tryAcquire(): Promise<void> {
    const sentAt = this.#clock.now();
    const entry = await this.#kv.get(this.#key);
    if (!entry) {
      this.#observedHolder = null;
      await this.#take(sentAt, 1, () => this.#kv.create(this.#key, this.#record(this.holder, 1)));
      return;
    }
    const current: LeaseRecord | undefined = readMessage(leaseRecordSchema, entry.value, this.drops);
    const free = !current || current.holder === null || current.instance === this.instance || (this.#reclaimOwn && current.holder === this.holder);
    this.#observedHolder = free ? null : current.holder;
    const epoch = (current?.epoch ?? 0) + (current?.instance === this.instance && current.holder !== null ? 0 : 1);
    if (!free) {
      if (entry.revision !== this.#observedRevision) {
        this.#observedRevision = entry.revision;
        this.#observedAt = this.#clock.now();
        return;
      }
      if (this.#clock.now() - this.#observedAt < Math.max(current.ttlMs, this.#ttlMs)) return;
    }
    await this.#take(sentAt, epoch, () => this.#kv.update(this.#key, this.#record(this.holder, epoch), entry.revision));
  }

  async #take(sentAt: number, epoch: number, write: () => Promise<number>): Promise<void> {
    try {
      const revision = await write();
      if (this.#closed) return;
      this.#revision = revision;
      this.#epoch = epoch;
      this.#observedHolder = null;
      this.#lastRenewSentAt = sentAt;
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
    }
  }

  #record(holder: string | null, epoch: number): LeaseRecord {
    return { v: 1, holder, instance: this.instance, ttlMs: this.#ttlMs, at: this.#clock.now(), epoch };
  }

  #emitTransitions(): void {
    const held = this.held;
    if (held === this.#wasHeld) return;
    this.#wasHeld = held;
    this.emit(held ? 'acquired' : 'lost');
  }
}
