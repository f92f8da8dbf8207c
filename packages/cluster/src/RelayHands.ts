/**
 * A relay's side of raised hands: its viewers raise and lower their hands here (rate-limited per
 * viewer and for the relay, then forwarded to the event's mixer over NATS, `event.<id>.hands`), and
 * their pages' event streams (`GET /api/events/:id/stream`) get their hand's state and what happens
 * to it (the mixer's notices on `event.<id>.hand`: invited with the grant, lowered, done), so that a
 * viewer on a relay is invited on stage without ever talking to the mixer but over WHIP.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  bearerToken,
  BusError,
  DropCounter,
  handDefaults,
  handIdFor,
  handNoticeSchema,
  handReplySchema,
  raiseHandBody,
  checkMessage,
  viewerTokenBody,
  subjects,
  ServiceUnavailableError,
  viewerKeyOf,
  parseJsonBody,
  PayloadTooLargeError,
  UnsupportedMediaTypeError,
  type Bus,
  type HandRequest,
  type Logger,
  type TokenClaims,
} from '@mcu/control';
import { HandStreams, json, newHandLimits, personalViewerToken, sendHandState, type Auth, type HandState, type Router } from '@mcu/server';

export interface RelayHandsOptions {
  bus: Bus;
  cluster: string;
  auth: Auth;
  /** Throws NotFoundError when this relay does not carry the event. */
  carries: (event: string) => void;
  log: Logger;
}

const keepAliveMs = 15_000;

export class RelayHands {
  readonly streams = new HandStreams();
  readonly limits = newHandLimits();
  readonly drops = new DropCounter();
  /** Requests forwarded to the mixer, and notices delivered to a stream here. */
  readonly counts = { forwarded: 0, notices: 0, delivered: 0 };
  readonly #opts: RelayHandsOptions;
  readonly #abort = new AbortController();
  /** Every open stream by event, to end them when the event ends here. */
  readonly #open = new Map<string, Set<ServerResponse>>();

  constructor(opts: RelayHandsOptions) {
    this.#opts = opts;
    const sub = opts.bus.subscribe(subjects(opts.cluster).event('*').hand, { signal: this.#abort.signal });
    void (async () => {
      for await (const m of sub) {
        this.counts.notices++;
        // Every relay hears every notice of the cluster; most are for viewers elsewhere: look at
        // the hand first, validate only what goes to a page here.
        let value: unknown;
        try {
          value = m.json();
        } catch {
          this.drops.count('not_json');
          continue;
        }
        const { event, hand } = (value ?? {}) as { event?: unknown; hand?: unknown };
        if (typeof event !== 'string' || typeof hand !== 'string' || !this.streams.has(event, hand)) continue;
        const notice = checkMessage(handNoticeSchema, value, this.drops);
        if (notice) this.counts.delivered += this.streams.deliver(notice);
      }
    })();
  }

  routes(r: Router): void {
    const { auth } = this.#opts;
    // Signed here with the cluster's secret: nothing to ask the mixer.
    r.on('POST', '/api/events/:id/viewer-tokens', async ({ req, res, params }) => {
      const claims = auth.authorize(req.headers.authorization, { event: params.id, roles: ['viewer'] });
      this.limits.take(viewerKeyOf(claims));
      this.#opts.carries(params.id);
      const body = parseJsonBody(await readBody(req), viewerTokenBody, 'body');
      json(res, 201, personalViewerToken(auth.issuer, params.id, claims, body.name));
    });
    r.on('POST', '/api/events/:id/hands', async ({ req, res, params }) => {
      const claims = auth.authorize(req.headers.authorization, { event: params.id, roles: ['viewer'] });
      this.limits.take(viewerKeyOf(claims));
      this.#opts.carries(params.id);
      const body = parseJsonBody(await readBody(req), raiseHandBody, 'body');
      await this.#forward(res, { v: 1, op: 'raise', event: params.id, token: tokenOf(req)!, ...(body.name !== undefined ? { name: body.name } : {}) });
    });
    r.on('DELETE', '/api/events/:id/hands/:hid', async ({ req, res, params }) => {
      const claims = auth.authorize(req.headers.authorization, { event: params.id, roles: ['producer', 'viewer'] });
      if (claims.role === 'viewer') this.limits.take(viewerKeyOf(claims));
      this.#opts.carries(params.id);
      await this.#forward(res, { v: 1, op: 'lower', event: params.id, token: tokenOf(req)!, hand: params.hid });
    });
    r.on('GET', '/api/events/:id/stream', ({ req, res, params, url }) => {
      const token = url.searchParams.get('token');
      const claims = auth.authorize(req.headers.authorization, { event: params.id, roles: ['producer', 'presenter', 'viewer'] }, token);
      this.#opts.carries(params.id);
      this.#stream(params.id, claims, tokenOf(req) ?? token!, req, res);
    });
  }

  /** The event is no longer carried here: its streams are told and closed. */
  endEvent(event: string): void {
    const set = this.#open.get(event);
    if (!set) return;
    this.#open.delete(event);
    for (const res of set) {
      if (!res.writableEnded) res.end(`event: ended\ndata: ${JSON.stringify({ id: event })}\n\n`);
    }
  }

  close(): void {
    this.#abort.abort();
    for (const event of [...this.#open.keys()]) this.endEvent(event);
  }

  #stream(event: string, claims: TokenClaims, token: string, req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    const send = (name: string, data: unknown) => {
      if (!res.writableEnded) res.write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    let set = this.#open.get(event);
    if (!set) this.#open.set(event, (set = new Set()));
    set.add(res);
    const remove = claims.role === 'viewer' ? this.streams.add(event, handIdFor(event, viewerKeyOf(claims)), send) : () => undefined;
    const keepAlive = setInterval(() => {
      if (!res.writableEnded) res.write(': keep-alive\n\n');
    }, keepAliveMs);
    keepAlive.unref();
    const cleanup = () => {
      clearInterval(keepAlive);
      remove();
      set.delete(res);
    };
    req.on('close', cleanup);
    res.on('close', cleanup);
    if (claims.role !== 'viewer') return;
    // Its hand now (and a pending invitation), asked of the mixer after subscribing: nothing is missed in between.
    void this.#request({ v: 1, op: 'mine', event, token }).then(
      (reply) => {
        if (reply.status === 200) sendHandState(send, reply.body as HandState);
      },
      () => send('hand', { hand: null, unavailable: true }),
    );
  }

  async #forward(res: ServerResponse, request: HandRequest): Promise<void> {
    const reply = await this.#request(request);
    if (reply.retryAfterSeconds !== undefined) res.setHeader('retry-after', String(reply.retryAfterSeconds));
    if (reply.status === 201 && request.op === 'raise') res.setHeader('location', `/api/events/${request.event}/hands/${(reply.body as { id: string }).id}`);
    if (reply.status === 204) res.writeHead(204).end();
    else json(res, reply.status, reply.body);
  }

  async #request(request: HandRequest) {
    this.counts.forwarded++;
    try {
      const m = await this.#opts.bus.request(subjects(this.#opts.cluster).event(request.event).hands, request, { timeoutMs: handDefaults.requestTimeoutMs });
      return handReplySchema.parse(m.json());
    } catch (err) {
      if (err instanceof BusError) throw new ServiceUnavailableError("the event's mixer did not answer: try again", 1, 'mixer_unavailable');
      throw err;
    }
  }
}

function tokenOf(req: IncomingMessage): string | undefined {
  return bearerToken(req.headers.authorization);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > 4096) throw new PayloadTooLargeError('body is larger than 4096 bytes');
    chunks.push(c as Buffer);
  }
  if (size === 0) return '{}';
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/json') throw new UnsupportedMediaTypeError('body must be application/json');
  return Buffer.concat(chunks).toString('utf8');
}
