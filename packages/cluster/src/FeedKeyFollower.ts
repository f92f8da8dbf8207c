/**
 * Relay side of feed-key rotation for one event: holds the keys the relay's forwarder opens the
 * feed with and follows the mixer's rotations (FeedKeyRotation).
 *
 * - It subscribes to the mixer's announcements before it asks for the first key set, so no
 *   rotation falls between the two.
 * - An announcement (or a reply) naming another current key makes that key the one this relay
 *   seals its RTCP with; the key it replaces is still accepted for `overlapMs` (packets in flight,
 *   retransmissions), then retired. A `next` key is accepted at once, before the mixer uses it.
 * - Announcements are an optimisation, not a dependency: when the forwarder drops a packet whose
 *   key id it does not hold (`unknown_key`), the follower asks the mixer for the set, at most one
 *   request in flight and one per `fetchIntervalMs`. A relay that missed an announcement (NATS
 *   hiccup, slow subscriber) thus loses the packets of one request's round trip, not the feed.
 *
 * Messages are validated with `feedKeyReplySchema` (malformed ones counted in `drops`); a seal
 * that does not open is counted in `stats.badSeals`. Key material is never logged.
 */
import { DropCounter, readMessage, type Bus, type BusSubscription, type Logger } from '@mcu/control';
import type { FeedKey } from '@mcu/relay';
import { feedKeyAnnounceSubject, feedKeyReplySchema, fetchFeedKeys, openFeedKeySet, requestFeedKeys, type FeedKeySet } from './FeedKeys.js';

export interface FeedKeyFollowerOptions {
  bus: Bus;
  cluster: string;
  secret: string;
  event: string;
  /** How long a replaced key is still accepted. */
  overlapMs: number;
  /** At most one fetch per this long, however many packets carry an unknown key id. */
  fetchIntervalMs: number;
  /** Timeout of one key request. */
  requestTimeoutMs: number;
  log?: Logger;
}

/** What the follower hands its keys to (the event's RelayForwarder). */
export interface FeedKeyTarget {
  setKeys(current: FeedKey, accepted: readonly FeedKey[]): void;
}

export class FeedKeyFollower {
  readonly stats = { announcements: 0, fetches: 0, fetchFailures: 0, badSeals: 0, switches: 0 };
  /** Malformed announcements and replies, by reason. */
  readonly drops = new DropCounter();
  readonly #opts: FeedKeyFollowerOptions;
  readonly #sub: BusSubscription;
  #current: FeedKey | null = null;
  #next: FeedKey | null = null;
  #previous: FeedKey | null = null;
  #retireTimer: NodeJS.Timeout | null = null;
  #target: FeedKeyTarget | null = null;
  #fetching = false;
  #lastFetchAt = -Infinity;
  #closed = false;

  /** Subscribes to the announcements at once; `start` then fetches the first key set. */
  constructor(opts: FeedKeyFollowerOptions) {
    this.#opts = opts;
    this.#sub = opts.bus.subscribe(feedKeyAnnounceSubject(opts.cluster, opts.event));
    void this.#listen();
  }

  /** Asks until the mixer answers (bounded by `signal`); then the follower has keys. */
  async start(opts: { signal: AbortSignal; retryMs: number }): Promise<void> {
    const o = this.#opts;
    const keys = await fetchFeedKeys(o.bus, o.cluster, o.secret, o.event, { signal: opts.signal, retryMs: opts.retryMs, timeoutMs: o.requestTimeoutMs });
    // An announcement may have arrived meanwhile; it is as new as the reply or newer.
    if (this.#current === null) this.#apply(keys);
  }

  /** The key this relay seals with (throws before `start` resolved). */
  get current(): FeedKey {
    if (this.#current === null) throw new Error('FeedKeyFollower: no key yet');
    return this.#current;
  }

  /** The keys accepted beside `current`: the announced next one, the previous one during the overlap. */
  get accepted(): FeedKey[] {
    const keys: FeedKey[] = [];
    if (this.#next) keys.push(this.#next);
    if (this.#previous) keys.push(this.#previous);
    return keys;
  }

  /** Id of the key this relay seals with, -1 before the first. */
  get keyId(): number {
    return this.#current?.id ?? -1;
  }

  /** Hands the keys to `target` now and on every change from now on. */
  attach(target: FeedKeyTarget): void {
    this.#target = target;
    this.#push();
  }

  /** The forwarder met a key id it does not hold: fetch the set (rate-limited; never throws). */
  readonly onUnknownKey = (keyId: number): void => {
    if (this.#closed || this.#fetching) return;
    const now = performance.now();
    if (now - this.#lastFetchAt < this.#opts.fetchIntervalMs) return;
    this.#lastFetchAt = now;
    this.#fetching = true;
    void this.#fetch(keyId).finally(() => {
      this.#fetching = false;
    });
  };

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#sub.unsubscribe();
    if (this.#retireTimer !== null) clearTimeout(this.#retireTimer);
    this.#target = null;
  }

  async #fetch(keyId: number): Promise<void> {
    const o = this.#opts;
    this.stats.fetches++;
    try {
      const keys = await requestFeedKeys(o.bus, o.cluster, o.secret, o.event, { timeoutMs: o.requestTimeoutMs, drops: this.drops });
      if (keys === null) {
        this.stats.fetchFailures++;
        return;
      }
      if (!this.#closed) this.#apply(keys);
      o.log?.debug({ event: o.event, unknownKeyId: keyId, keyId: keys.current.id }, 'feed keys fetched after an unknown key id');
    } catch {
      this.stats.fetchFailures++;
    }
  }

  async #listen(): Promise<void> {
    const o = this.#opts;
    try {
      for await (const m of this.#sub) {
        const msg = readMessage(feedKeyReplySchema, m.data, this.drops);
        if (!msg) continue;
        if (msg.event !== o.event) {
          this.drops.count('id_mismatch');
          continue;
        }
        let keys: FeedKeySet | null;
        try {
          keys = openFeedKeySet(o.secret, o.event, msg);
        } catch {
          this.stats.badSeals++;
          continue;
        }
        if (keys === null || this.#closed) continue;
        this.stats.announcements++;
        this.#apply(keys);
      }
    } catch {
      // the bus closed
    }
  }

  #apply(keys: FeedKeySet): void {
    const before = this.#current;
    const current = keys.current;
    if (before === null || before.id !== current.id) {
      this.#current = current;
      if (before !== null) {
        this.stats.switches++;
        this.#previous = before;
        if (this.#retireTimer !== null) clearTimeout(this.#retireTimer);
        this.#retireTimer = setTimeout(this.#retire, this.#opts.overlapMs);
        this.#opts.log?.debug({ event: this.#opts.event, keyId: keys.current.id, previousKeyId: before.id }, 'feed key switched');
      }
    }
    this.#next = keys.next && keys.next.id !== current.id ? keys.next : null;
    if (this.#previous && (this.#previous.id === current.id || this.#previous.id === this.#next?.id)) this.#previous = null;
    this.#push();
  }

  readonly #retire = (): void => {
    this.#retireTimer = null;
    this.#previous = null;
    this.#push();
  };

  #push(): void {
    if (this.#current !== null) this.#target?.setKeys(this.#current, this.accepted);
  }
}
