/**
 * The queue of raised hands in the cluster's store: the `hands` KV bucket, key `<event>.<hand>`.
 * One interface, two homes: on `mcu up` the bucket is the InProcessBus's memory, in a cluster it is
 * JetStream KV, so whichever mixer holds an event reads its queue back.
 *
 * Writes are conditional (create, update at a revision), so a second raise by the same viewer finds
 * the first and an invitation's grant is used at most once, whoever races. A watch of the bucket
 * keeps a copy in memory, by event, that `list()` reads (the producer's console polls it).
 */
import { EventEmitter } from 'node:events';
import type { Bus, KvEntry, KvStore } from './Bus.js';
import { DropCounter, readMessage } from './Drops.js';
import { BusError, ConflictError, ForbiddenError, NotFoundError } from './Errors.js';
import { handSchema, type Hand, type Invitation } from './Hands.js';
import { parseWith } from './Schema.js';
import { assertSafeId, subjects } from './Subjects.js';
import type { Stage } from './Tokens.js';

/** Bounded retries of a read-modify-write that lost a race with another writer. */
const maxUpdateAttempts = 8;

export interface HandQueueEvents {
  /** A hand of the event changed (raised, invited, joined: the hand) or went (lowered, done: null). */
  changed: [event: string, id: string, hand: Hand | null];
}

export class HandQueue extends EventEmitter<HandQueueEvents> {
  readonly drops = new DropCounter();
  readonly #kv: KvStore;
  /** event → hand id → { hand, revision, raised }: `raised` is the revision of its raise (see `raisedRevision`). */
  readonly #byEvent = new Map<string, Map<string, { hand: Hand; revision: number; raised: number }>>();
  /** Keys deleted here whose DEL the watch has not shown yet: key → the revision deleted (older PUTs are stale). */
  readonly #gone = new Map<string, number>();
  readonly #abort = new AbortController();
  #closed = false;

  private constructor(kv: KvStore) {
    super();
    this.#kv = kv;
  }

  /** Opens the cluster's `hands` bucket and reads it into memory (then follows its changes). */
  static async open(bus: Bus, cluster: string): Promise<HandQueue> {
    const queue = new HandQueue(await bus.kv(subjects(cluster).buckets.hands));
    for (const key of await queue.#kv.keys()) {
      const entry = await queue.#kv.get(key);
      if (entry) queue.#apply(entry);
    }
    queue.#follow();
    return queue;
  }

  /**
   * Raises a viewer's hand; the same viewer's second raise returns its hand as it is (`created:
   * false`), with the name and place in the queue of the first.
   */
  async raise(event: string, id: string, name: string, now = Date.now()): Promise<{ hand: Hand; created: boolean }> {
    assertSafeId(event, 'eventId');
    const hand = parseWith(handSchema, { v: 1, id, event, name, raisedAt: now }, 'hand');
    for (let attempt = 0; ; attempt++) {
      try {
        const revision = await this.#kv.create(keyOf(event, id), hand);
        this.#set(hand, revision);
        return { hand, created: true };
      } catch (err) {
        if (!(err instanceof ConflictError) || attempt + 1 >= maxUpdateAttempts) throw err;
        const entry = await this.#kv.get(keyOf(event, id));
        const existing = entry ? this.#read(entry) : null;
        // Deleted between the two calls: create again.
        if (existing) return { hand: existing, created: false };
      }
    }
  }

  /**
   * The hands of an event in the order they were raised: by time, then (raised in the same
   * millisecond) by the store's order of their creation, then by id.
   */
  list(event: string): Hand[] {
    const hands = [...(this.#byEvent.get(event)?.values() ?? [])];
    hands.sort((a, b) => a.hand.raisedAt - b.hand.raisedAt || a.raised - b.raised || (a.hand.id < b.hand.id ? -1 : a.hand.id > b.hand.id ? 1 : 0));
    return hands.map((h) => h.hand);
  }

  /** One hand as stored now (read from the store, not the copy). */
  async get(event: string, id: string): Promise<Hand | null> {
    const entry = await this.#kv.get(keyOf(event, id));
    return entry ? this.#read(entry) : null;
  }

  /** Takes a hand down (lowered, or done on stage); `NotFoundError` if it is not raised. */
  async remove(event: string, id: string): Promise<Hand> {
    const entry = await this.#kv.get(keyOf(event, id));
    const hand = entry ? this.#read(entry) : null;
    if (!hand) throw new NotFoundError(`hand ${id} is not raised`, 'hand_not_found');
    this.#gone.set(keyOf(event, id), entry!.revision);
    await this.#kv.delete(keyOf(event, id));
    this.#unset(event, id);
    return hand;
  }

  /**
   * Invites a hand on stage as `participant`: a new invitation replaces an unused one (a new
   * participant id and grant); one whose grant was used is a `ConflictError` (the guest is on stage).
   */
  async invite(event: string, id: string, stage: Stage, participant: string, ttlMs: number, now = Date.now()): Promise<Hand> {
    return this.#modify(event, id, (hand) => {
      if (hand.invitation?.joinedAt !== undefined) throw new ConflictError(`hand ${id} is on stage already`, 'hand_on_stage');
      const invitation: Invitation = { stage, participant, invitedAt: now, expiresAt: now + ttlMs };
      return { ...hand, invitation };
    });
  }

  /**
   * Uses a hand's invitation for `participant` (its WHIP session joins): once only, and only the
   * current invitation's participant; `ForbiddenError` otherwise.
   */
  async claim(event: string, id: string, participant: string, now = Date.now()): Promise<Hand> {
    return this.#modify(event, id, (hand) => {
      const inv = hand.invitation;
      if (!inv || inv.participant !== participant) throw new ForbiddenError('this invitation was withdrawn or replaced', 'invitation_invalid');
      if (inv.joinedAt !== undefined) throw new ForbiddenError('this invitation was used already', 'invitation_used');
      if (now > inv.expiresAt) throw new ForbiddenError('this invitation has expired', 'invitation_expired');
      return { ...hand, invitation: { ...inv, joinedAt: now } };
    }, () => new ForbiddenError('this invitation was withdrawn', 'invitation_invalid'));
  }

  /** The hand whose invitation made `participant`, if any (its guest left or was removed). */
  handOfParticipant(event: string, participant: string): Hand | null {
    for (const { hand } of this.#byEvent.get(event)?.values() ?? []) if (hand.invitation?.participant === participant) return hand;
    return null;
  }

  /** Every hand of an ended event goes. */
  async clear(event: string): Promise<void> {
    for (const key of await this.#kv.keys(`${assertSafeId(event, 'eventId')}.*`)) {
      this.#gone.set(key, Number.MAX_SAFE_INTEGER);
      await this.#kv.delete(key);
      this.#unset(event, key.slice(key.indexOf('.') + 1));
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#abort.abort();
  }

  async #modify(event: string, id: string, change: (hand: Hand) => Hand, missing?: () => Error): Promise<Hand> {
    // The copy first (one round trip to the store instead of two); a stale copy loses the race and reads the store.
    let known: { hand: Hand; revision: number } | null | undefined = this.#byEvent.get(event)?.get(id);
    for (let attempt = 0; ; attempt++) {
      if (!known) {
        const entry = await this.#kv.get(keyOf(event, id));
        const hand = entry ? this.#read(entry) : null;
        known = entry && hand ? { hand, revision: entry.revision } : null;
      }
      if (!known) throw missing?.() ?? new NotFoundError(`hand ${id} is not raised`, 'hand_not_found');
      const next = parseWith(handSchema, { ...change(known.hand), raisedRevision: known.hand.raisedRevision ?? known.revision }, 'hand');
      try {
        const revision = await this.#kv.update(keyOf(event, id), next, known.revision);
        this.#set(next, revision);
        return next;
      } catch (err) {
        if (!(err instanceof ConflictError) || attempt + 1 >= maxUpdateAttempts) throw err;
        known = undefined;
      }
    }
  }

  /** Follows the bucket (other writers: another mixer that held the event before). */
  #follow(): void {
    const signal = this.#abort.signal;
    void (async () => {
      for (let attempt = 0; !signal.aborted; attempt++) {
        try {
          for await (const entry of this.#kv.watch({ key: '>', signal })) {
            attempt = 0;
            this.#apply(entry);
          }
          return;
        } catch (err) {
          if (err instanceof BusError && err.reason === 'closed') return;
          await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** attempt, 2000)));
        }
      }
    })();
  }

  #apply(entry: KvEntry): void {
    const dot = entry.key.indexOf('.');
    const event = entry.key.slice(0, dot);
    const id = entry.key.slice(dot + 1);
    const known = this.#byEvent.get(event)?.get(id);
    if (known && known.revision >= entry.revision) return;
    if (entry.operation === 'DEL') {
      this.#gone.delete(entry.key);
      if (known) this.#unset(event, id);
      return;
    }
    if ((this.#gone.get(entry.key) ?? 0) >= entry.revision) return;
    const hand = this.#read(entry);
    if (hand) this.#set(hand, entry.revision);
  }

  #set(hand: Hand, revision: number): void {
    const key = keyOf(hand.event, hand.id);
    const gone = this.#gone.get(key);
    if (gone !== undefined) {
      if (gone >= revision) return;
      this.#gone.delete(key);
    }
    let hands = this.#byEvent.get(hand.event);
    if (!hands) this.#byEvent.set(hand.event, (hands = new Map()));
    const known = hands.get(hand.id);
    if (known && known.revision >= revision) return;
    hands.set(hand.id, { hand, revision, raised: hand.raisedRevision ?? revision });
    this.emit('changed', hand.event, hand.id, hand);
  }

  #unset(event: string, id: string): void {
    const hands = this.#byEvent.get(event);
    if (!hands?.delete(id)) return;
    if (hands.size === 0) this.#byEvent.delete(event);
    this.emit('changed', event, id, null);
  }

  #read(entry: KvEntry): Hand | null {
    if (entry.operation === 'DEL') return null;
    const hand = readMessage(handSchema, entry.value, this.drops);
    if (!hand) return null;
    if (keyOf(hand.event, hand.id) !== entry.key) {
      this.drops.count('id_mismatch');
      return null;
    }
    return hand;
  }
}

function keyOf(event: string, id: string): string {
  return `${assertSafeId(event, 'eventId')}.${assertSafeId(id, 'hand')}`;
}
