/**
 * The HTTP side of raised hands on a node that holds events (all-in-one node, cluster mixer):
 * viewer tokens with names (invitation links), raising and lowering hands, the producer's queue and
 * invitations, and the `hand` / `invited` / `lowered` / `done` events of a viewer's event stream.
 * Relays serve the viewer's half of it over NATS (see @mcu/cluster's RelayHands).
 */
import type { IncomingMessage } from 'node:http';
import { randomBytes } from 'node:crypto';
import type { z } from 'zod';
import {
  handDefaults,
  handIdFor,
  inviteHandBody,
  raiseHandBody,
  viewerKeyOf,
  viewerTokenBody,
  ValidationError,
  type Hand,
  type HandNotice,
  type Role,
  type TokenClaims,
  type TokenIssuer,
} from '@mcu/control';
import type { Auth } from './Auth.js';
import type { EventRegistry } from './EventRegistry.js';
import { handView, type HandDesk, type HandState } from './HandDesk.js';
import { json } from './HttpFront.js';
import type { OperationTable } from './OpenApi.js';
import { HandLimits } from './RateLimiter.js';
import type { Router } from './Router.js';

type SendEvent = (event: string, data: unknown) => void;

/** Body reader of the node (content type, size, schema). */
export type ReadJson = <T>(req: IncomingMessage, schema: z.ZodType<T>) => Promise<T>;

export function newHandLimits(now?: () => number): HandLimits {
  return new HandLimits({ ...handDefaults, now });
}

/**
 * The event streams of viewers, by their hand: a notice about a hand reaches the streams of its
 * viewer on this node (a viewer may have several pages open).
 */
export class HandStreams {
  readonly #byHand = new Map<string, Set<SendEvent>>();

  /** Registers a viewer's stream; returns its removal. */
  add(event: string, hand: string, send: SendEvent): () => void {
    const key = `${event}.${hand}`;
    let set = this.#byHand.get(key);
    if (!set) this.#byHand.set(key, (set = new Set()));
    set.add(send);
    return () => {
      set.delete(send);
      if (set.size === 0 && this.#byHand.get(key) === set) this.#byHand.delete(key);
    };
  }

  /** Whether a viewer's stream for this hand is open here. */
  has(event: string, hand: string): boolean {
    return this.#byHand.has(`${event}.${hand}`);
  }

  /** Passes a notice to its viewer's streams here; returns how many. */
  deliver(notice: HandNotice): number {
    const set = this.#byHand.get(`${notice.event}.${notice.hand}`);
    if (!set) return 0;
    for (const send of set) sendNotice(send, notice);
    return set.size;
  }

  /** Viewers' streams open on this node. */
  get size(): number {
    let n = 0;
    for (const s of this.#byHand.values()) n += s.size;
    return n;
  }
}

/** `sentAt`: when this node wrote it to the page (ms since the epoch), for measuring the last hop apart. */
export function sendNotice(send: SendEvent, notice: HandNotice): void {
  if (notice.kind === 'invited') send('invited', { hand: notice.hand, invitation: notice.invitation, sentAt: Date.now() });
  else if (notice.kind === 'moved') send('moved', { hand: notice.hand, stage: notice.stage, sentAt: Date.now() });
  else send(notice.kind, { hand: notice.hand, sentAt: Date.now() });
}

/** The start of a viewer's stream: its hand, then its pending invitation if there is one. */
export function sendHandState(send: SendEvent, state: HandState): void {
  send('hand', { hand: state.hand });
  if (state.hand && state.invitation) send('invited', { hand: state.hand.id, invitation: state.invitation });
}

/**
 * A stream's hand events: for a viewer its own hand (state now, then notices); for a producer the
 * queue (`hands`: all of it once, then `hand-update` per hand that changes, `{id, hand}` with
 * `hand: null` when it went), small messages however long the queue. Returns the cleanup.
 */
export function handStreamEvents(desk: HandDesk, streams: HandStreams, event: string, claims: TokenClaims, send: SendEvent): () => void {
  if (claims.role === 'viewer') {
    const remove = streams.add(event, handIdFor(event, viewerKeyOf(claims)), send);
    desk.stateOf(event, claims).then((state) => sendHandState(send, state), () => undefined);
    return remove;
  }
  if (claims.role !== 'producer' && claims.role !== 'admin') return () => undefined;
  let stopped = false;
  let unsubscribe = () => undefined as void;
  desk.queue().then((q) => {
    if (stopped) return;
    const onChanged = (changed: string, id: string, hand: Hand | null) => {
      if (changed === event) send('hand-update', { id, hand: hand ? handView(hand) : null });
    };
    q.on('changed', onChanged);
    unsubscribe = () => q.off('changed', onChanged);
    send('hands', { hands: q.list(event).map((h) => handView(h)) });
  }, () => undefined);
  return () => {
    stopped = true;
    unsubscribe();
  };
}

/**
 * A viewer's own token for its hand: the same event and role, its name, a subject of its own (so
 * viewers who opened the same public link do not share a hand or an invitation), and no longer
 * valid than the token it was asked with.
 */
export function personalViewerToken(issuer: TokenIssuer, event: string, claims: TokenClaims, name: string | undefined): { token: string; name: string } {
  const displayName = name ?? claims.name;
  if (displayName === undefined) throw new ValidationError('name: say who you are', 'name', 'name_required');
  const ttlSeconds = Math.max(1, claims.exp - Math.floor(Date.now() / 1000));
  return { token: issuer.issue({ event, role: 'viewer', name: displayName, subject: `viewer-${randomBytes(12).toString('base64url')}`, ttlSeconds }), name: displayName };
}

export interface HandRouteContext {
  router: Router;
  auth: Auth;
  registry: EventRegistry;
  desk: HandDesk;
  limits: HandLimits;
  readJson: ReadJson;
  /** The node's base URL (links in viewer tokens' answers). */
  baseUrl: () => string;
  tokenTtlSeconds: number;
}

const producers: Role[] = ['admin', 'producer'];

/** The node's hand routes (documented in `handOperations`). */
export function handRoutes(c: HandRouteContext): void {
  const r = c.router;
  r.on('POST', '/api/events/:id/viewer-tokens', async ({ req, res, params }) => {
    const claims = c.auth.authorize(req.headers.authorization, { event: params.id, roles: [...producers, 'viewer'] });
    const e = c.registry.get(params.id);
    const body = await c.readJson(req, viewerTokenBody);
    if (claims.role === 'viewer') {
      c.limits.take(viewerKeyOf(claims));
      json(res, 201, personalViewerToken(c.auth.issuer, e.id, claims, body.name));
      return;
    }
    const token = c.auth.issuer.issue({ event: e.id, role: 'viewer', name: body.name, ttlSeconds: body.ttlSeconds ?? c.tokenTtlSeconds });
    json(res, 201, { token, ...(body.name !== undefined ? { name: body.name } : {}), watch: `${c.baseUrl()}/watch/${e.id}?token=${encodeURIComponent(token)}` });
  });

  r.on('POST', '/api/events/:id/hands', async ({ req, res, params }) => {
    const claims = c.auth.authorize(req.headers.authorization, { event: params.id, roles: ['viewer'] });
    c.limits.take(viewerKeyOf(claims));
    const e = c.registry.get(params.id);
    const body = await c.readJson(req, raiseHandBody);
    const { hand, created } = await c.desk.raise(e.id, claims, body.name);
    if (created) res.setHeader('location', `/api/events/${e.id}/hands/${hand.id}`);
    json(res, created ? 201 : 200, handView(hand));
  });

  r.on('GET', '/api/events/:id/hands', async ({ req, res, params }) => {
    c.auth.authorize(req.headers.authorization, { event: params.id, roles: producers });
    const e = c.registry.get(params.id);
    const now = Date.now();
    json(res, 200, { hands: (await c.desk.list(e.id)).map((h) => handView(h, now)) });
  });

  r.on('DELETE', '/api/events/:id/hands/:hid', async ({ req, res, params }) => {
    const claims = c.auth.authorize(req.headers.authorization, { event: params.id, roles: [...producers, 'viewer'] });
    if (claims.role === 'viewer') c.limits.take(viewerKeyOf(claims));
    const e = c.registry.get(params.id);
    await c.desk.lower(e.id, params.hid, claims);
    res.writeHead(204).end();
  });

  r.on('POST', '/api/events/:id/hands/:hid/invite', async ({ req, res, params }) => {
    c.auth.authorize(req.headers.authorization, { event: params.id, roles: producers });
    const e = c.registry.get(params.id);
    const body = await c.readJson(req, inviteHandBody);
    json(res, 200, handView(await c.desk.invite(e.id, params.hid, body.stage)));
  });
}

const viewerOnly = ['viewer'] as const;
const producerOnly = ['producer'] as const;
const rateLimited = { 429: 'over the rate limit of this viewer or this node (Retry-After: seconds)' };

/** The routes a viewer's hand is raised and lowered with (on every node: relays forward them to the mixer). */
export const viewerHandOperations: OperationTable = {
  'POST /api/events/:id/viewer-tokens': {
    summary: "A viewer's own token for its hand (its name, a subject of its own): viewers of one public link do not share a hand",
    tag: 'hands',
    auth: ['viewer'],
    body: viewerTokenBody,
    ok: { status: 201, description: '`{"token","name"}`' },
    errors: rateLimited,
  },
  'POST /api/events/:id/hands': {
    summary: 'Raise your hand (viewer token; a second raise returns the first)',
    tag: 'hands',
    auth: viewerOnly,
    body: raiseHandBody,
    ok: { status: 201, description: 'the hand `{"id","name","raisedAt","state",…}` (200: it was raised already)', headers: ['location'] },
    errors: rateLimited,
  },
  'DELETE /api/events/:id/hands/:hid': {
    summary: 'Lower a hand (the producer any, a viewer its own); a guest on stage is kicked instead',
    tag: 'hands',
    auth: ['producer', 'viewer'],
    ok: { status: 204, description: 'lowered' },
    errors: { ...rateLimited, 409: 'the guest is on stage: kick its participant to end it (code hand_on_stage)' },
  },
};

/** Every hand route of a node that holds events. */
export const handOperations: OperationTable = {
  'GET /api/events/:id/stream': {
    summary:
      "Server-sent events: speakers, dominant speaker, levels (4/s), participants, ended; a viewer's own hand (`hand`, `invited` with a single-use grant, `lowered`, `moved` live or backstage, `done`); for producers the queue (`hands` once, then `hand-update`). `?events=hands`: the hand events (and ended) only",
    tag: 'events',
    auth: ['producer', 'presenter', 'viewer'],
    tokenInQuery: true,
    ok: { status: 200, description: 'text/event-stream', content: 'event-stream' },
  },
  'POST /api/events/:id/viewer-tokens': {
    summary: 'A viewer token with a display name: an invitation link (producer), or a viewer\'s own token for its hand (viewer)',
    tag: 'hands',
    auth: ['producer', 'viewer'],
    body: viewerTokenBody,
    ok: { status: 201, description: '`{"token","name","watch"}` (`watch`: the watch page link with the token); for a viewer `{"token","name"}`' },
    errors: rateLimited,
  },
  ...viewerHandOperations,
  'GET /api/events/:id/hands': {
    summary: 'The raised hands in order: id, name, raised at, waiting time, state (raised, invited, on_stage)',
    tag: 'hands',
    auth: producerOnly,
    ok: { status: 200, description: '`{"hands":[…]}`' },
  },
  'POST /api/events/:id/hands/:hid/invite': {
    summary: "Invite a hand on stage (backstage or live): the viewer's page gets a single-use presenter grant",
    tag: 'hands',
    auth: producerOnly,
    body: inviteHandBody,
    ok: { status: 200, description: 'the hand, with its invitation' },
    errors: { 409: 'the guest is on stage already' },
  },
};
