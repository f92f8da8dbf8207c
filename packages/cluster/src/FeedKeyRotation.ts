/**
 * Mixer side of feed-key rotation for one event.
 *
 * Every `rotationMs`, and at once when a node leaves or is declared dead, a rotation starts:
 *
 * ```
 *  announce {current: K, next: K+1} ──graceMs──▶ seal with K+1, announce {current: K+1} ──overlapMs──▶ K retired
 * ```
 *
 * Relays learn the next key before any packet uses it (the announcement, or a request that finds
 * it in the reply during the grace period); a relay that missed both sees packets with a key id
 * it does not hold and asks for the set (FeedKeyFollower), so no announcement is load-bearing.
 * The sender keeps accepting RTCP from the tree under the next key (a relay may switch first) and,
 * for `overlapMs`, under the previous one (a relay may switch last).
 *
 * Key ids count up from the event's random first id and are never reused for other key material:
 * a rotation that starts while another is pending (a node died during the grace period) replaces
 * the pending key with a fresh one under a new id, since the departed node may have learnt it.
 */
import { EventEmitter } from 'node:events';
import type { Bus, Logger } from '@mcu/control';
import type { FeedKey } from '@mcu/relay';
import { feedKeyAnnounceSubject, generateFeedKey, sealFeedKeySet, type FeedKeySet } from './FeedKeys.js';

export type FeedKeyRotationReason = 'interval' | 'node_dead' | 'node_left';

export interface FeedKeyRotationOptions {
  bus: Bus;
  cluster: string;
  /** The cluster's token secret: the announcements are sealed with a key derived from it. */
  secret: string;
  event: string;
  /** Where the keys go (the event's FeedSender): seals with `current`, opens RTCP under `accepted` too. */
  sender: { setKeys(current: FeedKey, accepted: readonly FeedKey[]): void };
  rotationMs: number;
  graceMs: number;
  overlapMs: number;
  /** Key ids only, never key material. */
  log?: Logger;
}

export interface FeedKeyRotationEvents {
  /** A next key was announced (its id), for `reason`. */
  announced: [keyId: number, reason: FeedKeyRotationReason];
  /** The feed is sealed with this key from now on. */
  switched: [keyId: number, reason: FeedKeyRotationReason];
}

/** Throws RangeError unless 0 < graceMs < rotationMs and overlapMs ≥ 0. */
export function validateRotation(o: { rotationMs: number; graceMs: number; overlapMs: number }): void {
  if (!(o.graceMs > 0 && o.rotationMs > o.graceMs)) throw new RangeError(`feed key rotation every ${o.rotationMs} ms needs a grace period (${o.graceMs} ms) above 0 and shorter than it`);
  if (!(o.overlapMs >= 0)) throw new RangeError(`feed key overlap ${o.overlapMs} ms must not be negative`);
}

export class FeedKeyRotation extends EventEmitter<FeedKeyRotationEvents> {
  /** Rotations started (announced) and completed (switched). */
  readonly stats = { announced: 0, switched: 0 };
  readonly #opts: FeedKeyRotationOptions;
  #current: FeedKey;
  #next: FeedKey | null = null;
  #previous: FeedKey | null = null;
  #lastId: number;
  #reason: FeedKeyRotationReason = 'interval';
  #rotationTimer: NodeJS.Timeout | null = null;
  #switchTimer: NodeJS.Timeout | null = null;
  #retireTimer: NodeJS.Timeout | null = null;
  #closed = false;

  /** Starts the interval; `initial` is the key the sender seals with now. */
  constructor(opts: FeedKeyRotationOptions, initial: FeedKey) {
    super();
    validateRotation(opts);
    this.#opts = opts;
    this.#current = initial;
    this.#lastId = initial.id;
    this.#schedule();
  }

  /** What a relay is told now: the current key and, during the grace period, the next. */
  get keys(): FeedKeySet {
    return this.#next ? { current: this.#current, next: this.#next } : { current: this.#current };
  }

  /** Id of the key the feed is sealed with. */
  get keyId(): number {
    return this.#current.id;
  }

  /** Starts a rotation now (restarting the interval); the switch follows after the grace period. */
  rotate(reason: FeedKeyRotationReason): void {
    if (this.#closed) return;
    this.#lastId = this.#lastId === 0xffff_ffff ? 1 : this.#lastId + 1;
    this.#next = generateFeedKey(this.#lastId);
    this.#reason = reason;
    this.#apply();
    this.#announce();
    this.stats.announced++;
    this.#opts.log?.info({ event: this.#opts.event, keyId: this.#current.id, nextKeyId: this.#next.id, reason }, 'feed key rotation announced');
    this.emit('announced', this.#next.id, reason);
    if (this.#switchTimer !== null) clearTimeout(this.#switchTimer);
    this.#switchTimer = setTimeout(this.#switch, this.#opts.graceMs);
    this.#schedule();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of [this.#rotationTimer, this.#switchTimer, this.#retireTimer]) if (t !== null) clearTimeout(t);
  }

  #schedule(): void {
    if (this.#rotationTimer !== null) clearTimeout(this.#rotationTimer);
    this.#rotationTimer = setTimeout(() => this.rotate('interval'), this.#opts.rotationMs);
  }

  readonly #switch = (): void => {
    this.#switchTimer = null;
    if (this.#closed || this.#next === null) return;
    this.#previous = this.#current;
    this.#current = this.#next;
    this.#next = null;
    this.#apply();
    this.#announce();
    this.stats.switched++;
    this.#opts.log?.debug({ event: this.#opts.event, keyId: this.#current.id }, 'feed key switched');
    this.emit('switched', this.#current.id, this.#reason);
    if (this.#retireTimer !== null) clearTimeout(this.#retireTimer);
    this.#retireTimer = setTimeout(this.#retire, this.#opts.overlapMs);
  };

  readonly #retire = (): void => {
    this.#retireTimer = null;
    if (this.#closed) return;
    this.#previous = null;
    this.#apply();
  };

  #apply(): void {
    const accepted: FeedKey[] = [];
    if (this.#next) accepted.push(this.#next);
    if (this.#previous) accepted.push(this.#previous);
    this.#opts.sender.setKeys(this.#current, accepted);
  }

  /**
   * Publishes the current set unasked: a new holder of the event (failover, handover) does so when
   * it starts sending, so the relays switch to its key before its first packet needs a fetch.
   */
  announce(): void {
    if (!this.#closed) this.#announce();
  }

  #announce(): void {
    const o = this.#opts;
    try {
      o.bus.publish(feedKeyAnnounceSubject(o.cluster, o.event), sealFeedKeySet(o.secret, o.event, this.keys));
    } catch {
      // the bus is closed or reconnecting: relays fetch the keys when they meet an unknown id
    }
  }
}
