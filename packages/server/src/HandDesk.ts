/**
 * The producer's side of raised hands on the node that holds an event (the all-in-one node or the
 * cluster's mixer): the queue in the cluster's store (HandQueue), the invitations with their
 * single-use presenter grants, and the notices for the viewers' pages (`notice`: the node's own
 * event streams listen, the cluster's mixer passes them on over NATS to the relays'). Nothing here
 * touches the media path.
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import {
  ConflictError,
  ForbiddenError,
  handDefaults,
  handIdFor,
  handOfGrant,
  HandQueue,
  invitationSubject,
  InProcessBus,
  ValidationError,
  viewerKeyOf,
  type Hand,
  type HandNotice,
  type Logger,
  type Stage,
  type TokenClaims,
  type TokenIssuer,
} from '@mcu/control';

/** A viewer's hand and pending invitation, as its page's event stream starts with (`hand` event). */
export interface HandState {
  hand: ReturnType<typeof handView> | null;
  invitation?: NonNullable<HandNotice['invitation']>;
}

export interface HandDeskEvents {
  notice: [HandNotice];
}

export interface HandDeskOptions {
  issuer: TokenIssuer;
  /** The WHIP URL of an event, sent with its invitations. */
  whipUrl: (event: string) => string;
  log: Logger;
  invitationTtlSeconds?: number;
}

/** A hand as the API shows it. */
export function handView(hand: Hand, now = Date.now()) {
  return {
    id: hand.id,
    name: hand.name,
    raisedAt: hand.raisedAt,
    waitingMs: Math.max(0, now - hand.raisedAt),
    state: hand.invitation === undefined ? 'raised' : hand.invitation.joinedAt === undefined ? 'invited' : 'on_stage',
    ...(hand.invitation ? { invitation: { stage: hand.invitation.stage, participant: hand.invitation.participant, expiresAt: hand.invitation.expiresAt } } : {}),
  };
}

export class HandDesk extends EventEmitter<HandDeskEvents> {
  #queue: Promise<HandQueue>;
  /** The in-memory home of the queue (single node); replaced by the cluster's with `useQueue`. */
  #localBus: InProcessBus | null;
  readonly #opts: HandDeskOptions;
  /** The guests on stage on this node: `<event>/<participant>` → their hand. */
  readonly #guests = new Map<string, string>();
  #closed = false;

  constructor(opts: HandDeskOptions) {
    super();
    this.#opts = opts;
    this.#localBus = new InProcessBus();
    this.#queue = this.#watch(HandQueue.open(this.#localBus, 'local'));
  }

  /** Moves the queue to the cluster's store (the mixer role, before it serves events). */
  async useQueue(queue: HandQueue): Promise<void> {
    const old = await this.#queue.catch(() => null);
    this.#queue = this.#watch(Promise.resolve(queue));
    old?.close();
    await this.#localBus?.close();
    this.#localBus = null;
  }

  queue(): Promise<HandQueue> {
    return this.#queue;
  }

  /** A viewer raises its hand (a second raise finds the first); the name from its token, else `name`. */
  async raise(event: string, claims: TokenClaims, name: string | undefined): Promise<{ hand: Hand; created: boolean }> {
    const displayName = claims.name ?? name;
    if (displayName === undefined) throw new ValidationError('name: say who you are (the token carries no name)', 'name', 'name_required');
    const q = await this.#queue;
    return q.raise(event, handIdFor(event, viewerKeyOf(claims)), displayName);
  }

  /** The viewer's own hand in `event`, or null. */
  async mine(event: string, claims: TokenClaims): Promise<Hand | null> {
    return (await this.#queue).get(event, handIdFor(event, viewerKeyOf(claims)));
  }

  /**
   * What a viewer's page is told when its event stream opens: its hand, and when it is invited and
   * has not joined yet, the invitation again (a grant for the same participant, single use with the
   * first: the page reloaded, or its stream moved to another relay).
   */
  async stateOf(event: string, claims: TokenClaims): Promise<HandState> {
    const hand = await this.mine(event, claims);
    if (!hand) return { hand: null };
    const inv = hand.invitation;
    if (!inv || inv.joinedAt !== undefined || inv.expiresAt <= Date.now()) return { hand: handView(hand) };
    const ttlSeconds = Math.max(1, Math.floor((inv.expiresAt - Date.now()) / 1000));
    const grant = this.#opts.issuer.issue({ event, role: 'presenter', participant: inv.participant, stage: inv.stage, name: hand.name, subject: invitationSubject(hand.id), ttlSeconds });
    return { hand: handView(hand), invitation: { stage: inv.stage, participant: inv.participant, grant, whip: this.#opts.whipUrl(event), expiresAt: inv.expiresAt } };
  }

  /**
   * Lowers a hand: the producer any, a viewer only its own (403 for another's). A guest on stage is
   * not lowered (409): its time on stage ends when it leaves or is kicked, and then its hand goes.
   */
  async lower(event: string, id: string, claims: TokenClaims): Promise<Hand> {
    if (claims.role === 'viewer' && handIdFor(event, viewerKeyOf(claims)) !== id) {
      throw new ForbiddenError("a viewer may lower only its own hand", 'forbidden_hand');
    }
    const queue = await this.#queue;
    const current = await queue.get(event, id);
    if (current?.invitation?.joinedAt !== undefined) {
      throw new ConflictError(`hand ${id} is on stage as participant ${current.invitation.participant}: kick it (DELETE /api/events/${event}/participants/${current.invitation.participant}) to end its time on stage`, 'hand_on_stage');
    }
    const hand = await queue.remove(event, id);
    this.#notify({ v: 1, event, hand: id, kind: 'lowered', at: Date.now() });
    return hand;
  }

  async list(event: string): Promise<Hand[]> {
    return (await this.#queue).list(event);
  }

  /**
   * Invites a hand on stage: a participant id of its own and a presenter grant for it alone (the
   * event, that participant, `stage`, the viewer's name; bound to the hand by its subject, short
   * expiry, refused after its first use), sent to the viewer's page.
   */
  async invite(event: string, id: string, stage: Stage): Promise<Hand> {
    const ttlSeconds = this.#opts.invitationTtlSeconds ?? handDefaults.invitationTtlSeconds;
    const participant = `guest-${randomBytes(9).toString('base64url')}`;
    const hand = await (await this.#queue).invite(event, id, stage, participant, ttlSeconds * 1000);
    const grant = this.#opts.issuer.issue({ event, role: 'presenter', participant, stage, name: hand.name, subject: invitationSubject(id), ttlSeconds });
    this.#notify({
      v: 1,
      event,
      hand: id,
      kind: 'invited',
      invitation: { stage, participant, grant, whip: this.#opts.whipUrl(event), expiresAt: hand.invitation!.expiresAt },
      at: Date.now(),
    });
    this.#opts.log.info({ event, hand: id, participant, stage }, 'hand invited on stage');
    return hand;
  }

  /**
   * A WHIP request with an invitation grant: the grant's hand must be invited as exactly this
   * participant and not yet joined; it is marked used (once, whoever races). Tokens without a hand
   * pass untouched.
   */
  async claim(event: string, claims: TokenClaims): Promise<string | null> {
    const hand = handOfGrant(claims);
    if (hand === null) return null;
    if (claims.pid === undefined) throw new ForbiddenError('an invitation grant must name its participant', 'invitation_invalid');
    await (await this.#queue).claim(event, hand, claims.pid);
    this.#guests.set(`${event}/${claims.pid}`, hand);
    return hand;
  }

  /**
   * The producer moved a participant live or backstage: when it is a guest on stage here, its page
   * is told where it is now (`moved`). Other participants: nothing.
   */
  moved(event: string, participant: string, stage: Stage): void {
    const hand = this.#guests.get(`${event}/${participant}`);
    if (hand !== undefined) this.#notify({ v: 1, event, hand, kind: 'moved', stage, at: Date.now() });
  }

  /** The guest's WHIP session ended (it left the stage, or was removed): its hand is done. */
  async guestLeft(event: string, hand: string): Promise<void> {
    for (const [key, h] of this.#guests) if (h === hand && key.startsWith(`${event}/`)) this.#guests.delete(key);
    try {
      await (await this.#queue).remove(event, hand);
    } catch {
      // lowered or cleared already
    }
    this.#notify({ v: 1, event, hand, kind: 'done', at: Date.now() });
  }

  /** The event ended: its queue goes. */
  async endEvent(event: string): Promise<void> {
    for (const key of this.#guests.keys()) if (key.startsWith(`${event}/`)) this.#guests.delete(key);
    await (await this.#queue).clear(event).catch(() => undefined);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#guests.clear();
    (await this.#queue.catch(() => null))?.close();
    await this.#localBus?.close();
  }

  #notify(notice: HandNotice): void {
    this.emit('notice', notice);
  }

  #watch(queue: Promise<HandQueue>): Promise<HandQueue> {
    queue.catch((err: unknown) => this.#opts.log.error({ err }, 'hand queue could not open'));
    return queue;
  }
}
