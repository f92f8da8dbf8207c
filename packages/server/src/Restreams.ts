/**
 * The restreams of one node: started and stopped through the HTTP API (`restreamRoutes`), each
 * event's ended with it, totals kept for metrics after they stop.
 *
 *   POST   /api/events/:id/restreams          {"url": "rtmp://host/app/key"} → 201 the restream
 *   GET    /api/events/:id/restreams          → {"restreams": [...]} with state, bytes, reconnects
 *   GET    /api/events/:id/restreams/:rsid    → one
 *   DELETE /api/events/:id/restreams/:rsid    → 200 the restream, stopped
 *
 * The stream key is never in a response or a log line: the URL is shown masked.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { z } from 'zod';
import { ConflictError, NotFoundError, type Logger } from '@mcu/control';
import type { VideoRenditionOptions } from '@mcu/mixer';
import type { Auth } from './Auth.js';
import type { EventRecord, EventRegistry } from './EventRegistry.js';
import { json } from './HttpFront.js';
import type { OperationTable } from './OpenApi.js';
import { Restream, type RestreamInfo, type RestreamOptions, type RestreamState } from './Restream.js';
import { restreamProgramOf } from './RestreamProgram.js';
import { RestreamAllow } from './RestreamAllow.js';
import { parseRestreamUrl, restreamBody } from './RestreamUrl.js';
import type { Router } from './Router.js';

export interface RestreamsOptions {
  /** The H.264 rendition added to an event that has none. */
  rendition: Omit<VideoRenditionOptions, 'codec' | 'id'>;
  maxPerEvent: number;
  /** Where restreams may connect (RestreamAllow.ts); default: public addresses only. */
  allow?: RestreamAllow;
  log?: Logger;
}

export type RestreamSettings = Partial<Omit<RestreamOptions, 'id' | 'event' | 'target' | 'program' | 'log' | 'allow'>>;

/** Ended events remembered, so that a restream asked of one is a 409 rather than a 404. */
const ENDED_REMEMBERED = 10_000;

export class Restreams {
  private readonly byEvent = new Map<string, Map<string, Restream>>();
  private readonly ended = new Set<string>();
  /** Of restreams that were stopped: their reconnects and bytes stay in the totals. */
  private readonly past = { reconnects: 0, bytes: 0 };
  private closed = false;
  /** Retry, timeout and audio settings of restreams started from now on (RESTREAM_DEFAULTS otherwise; tests shorten them). */
  restreamOptions: RestreamSettings = {};

  private readonly allow: RestreamAllow;

  constructor(
    private readonly registry: EventRegistry,
    private readonly opts: RestreamsOptions,
  ) {
    this.allow = opts.allow ?? new RestreamAllow();
    registry.on('ending', (e) => this.eventEnding(e));
  }

  /**
   * Starts pushing the event's program to `url`: 400 when it is no RTMP ingest URL or its host does
   * not resolve, 403 when the node's restreamAllow refuses the host (checked again at every connection).
   */
  async start(eventId: string, url: string): Promise<Restream> {
    this.startable(eventId);
    const target = parseRestreamUrl(url);
    await this.allow.check(target.host, target.port);
    // The event may have ended while the name resolved.
    const e = this.startable(eventId);
    const mine = this.byEvent.get(eventId) ?? new Map<string, Restream>();
    if ([...mine.values()].some((r) => r.target.url === url)) throw new ConflictError(`event ${eventId} already restreams to ${target.masked}`, 'restream_exists');
    if (mine.size >= this.opts.maxPerEvent) throw new ConflictError(`event ${eventId} has its maximum of ${this.opts.maxPerEvent} restreams`, 'restreams_full');
    const id = randomBytes(6).toString('base64url').replace(/^[-_]/, 'r');
    const program = restreamProgramOf(e.mixer, { id: 'restream', ...this.opts.rendition });
    const restream = new Restream({ ...this.restreamOptions, id, event: eventId, target, program, allow: this.allow, log: this.opts.log });
    mine.set(id, restream);
    this.byEvent.set(eventId, mine);
    this.opts.log?.info({ restream: id, event: eventId, url: target.masked, rendition: program.video.rendition }, 'restream started');
    return restream;
  }

  private startable(eventId: string): EventRecord {
    if (this.ended.has(eventId)) throw new ConflictError(`event ${eventId} has ended: nothing to restream`, 'event_ended');
    const e = this.registry.get(eventId);
    if (e.mixer.isClosed) throw new ConflictError(`event ${eventId} has ended: nothing to restream`, 'event_ended');
    return e;
  }

  /** 404 for an event this node neither runs nor ran. */
  assertKnown(eventId: string): void {
    if (!this.ended.has(eventId)) this.registry.get(eventId);
  }

  list(eventId: string): Restream[] {
    return [...(this.byEvent.get(eventId)?.values() ?? [])];
  }

  get(eventId: string, id: string): Restream {
    const r = this.byEvent.get(eventId)?.get(id);
    if (!r) throw new NotFoundError(`restream ${id} not found`, 'restream_not_found');
    return r;
  }

  /** Stops a restream; returns its final state. */
  stop(eventId: string, id: string): RestreamInfo {
    const r = this.get(eventId, id);
    this.remove(r);
    return r.describe();
  }

  /** Every restream of the node (for metrics). */
  all(): Restream[] {
    return [...this.byEvent.values()].flatMap((m) => [...m.values()]);
  }

  /** Running restreams by state, and reconnects and bytes of all, stopped ones included. */
  totals(): { byState: Record<RestreamState, number>; reconnects: number; bytes: number } {
    const byState: Record<RestreamState, number> = { connecting: 0, live: 0, retrying: 0, failed: 0, stopped: 0 };
    let { reconnects, bytes } = this.past;
    for (const r of this.all()) {
      byState[r.state]++;
      reconnects += r.reconnects;
      bytes += r.bytes;
    }
    return { byState, reconnects, bytes };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const r of this.all()) this.remove(r);
  }

  private remove(r: Restream): void {
    const mine = this.byEvent.get(r.event);
    if (!mine?.delete(r.id)) return;
    if (mine.size === 0) this.byEvent.delete(r.event);
    r.close();
    this.past.reconnects += r.reconnects;
    this.past.bytes += r.bytes;
  }

  private eventEnding(e: EventRecord): void {
    this.ended.add(e.id);
    if (this.ended.size > ENDED_REMEMBERED) this.ended.delete(this.ended.values().next().value!);
    for (const r of this.list(e.id)) this.remove(r);
  }
}

/** The routes, on the node's router; `readJson` is the node's body reader (size, type, schema). */
export function restreamRoutes(
  router: Router,
  auth: Auth,
  restreams: Restreams,
  readJson: <T>(req: IncomingMessage, schema: z.ZodType<T>) => Promise<T>,
): void {
  const roles: ['admin', 'producer'] = ['admin', 'producer'];
  router.on('POST', '/api/events/:id/restreams', async ({ req, res, params }) => {
    auth.authorize(req.headers.authorization, { event: params.id, roles });
    const body = await readJson(req, restreamBody);
    const r = await restreams.start(params.id, body.url);
    res.setHeader('location', `/api/events/${params.id}/restreams/${r.id}`);
    json(res, 201, r.describe());
  });
  router.on('GET', '/api/events/:id/restreams', ({ req, res, params }) => {
    auth.authorize(req.headers.authorization, { event: params.id, roles });
    restreams.assertKnown(params.id);
    json(res, 200, { restreams: restreams.list(params.id).map((r) => r.describe()) });
  });
  router.on('GET', '/api/events/:id/restreams/:rsid', ({ req, res, params }) => {
    auth.authorize(req.headers.authorization, { event: params.id, roles });
    json(res, 200, restreams.get(params.id, params.rsid).describe());
  });
  router.on('DELETE', '/api/events/:id/restreams/:rsid', ({ req, res, params }) => {
    auth.authorize(req.headers.authorization, { event: params.id, roles });
    json(res, 200, restreams.stop(params.id, params.rsid));
  });
}

/** The routes' OpenAPI entries (spread into `nodeOperations`). */
export function restreamOperations(): OperationTable {
  const auth = ['producer'] as const;
  const tag = 'restreams';
  return {
    'POST /api/events/:id/restreams': {
      summary: 'Push the program to an RTMP(S) ingest (YouTube, Twitch, any RTMP server): H.264 copied, the Opus mix transcoded to AAC',
      tag,
      auth,
      body: restreamBody,
      ok: { status: 201, description: 'the restream: `{"id","url" (key masked),"state":"connecting",…}`', headers: ['location'] },
      errors: {
        400: 'not an rtmp:// or rtmps:// ingest URL (`invalid_restream_url`), or its host does not resolve (`restream_host_unresolved`)',
        403: 'the token is for another event or role, or the node does not restream to this host (`restream_target_refused`): a loopback, private, link-local or reserved address, or one its restreamAllow setting does not allow',
        409: 'the event has ended, already restreams to this URL, or has its maximum of restreams',
      },
      description:
        'The URL must be rtmp:// or rtmps:// with a host, an application and a stream key; the key is never echoed nor logged. The host must be allowed by the node\'s restreamAllow setting (default: public addresses only), checked here and again, after DNS, at every connection.',
    },
    'GET /api/events/:id/restreams': {
      summary: 'List restreams: state (connecting, live, retrying, failed), bytes, reconnects',
      tag,
      auth,
      ok: { status: 200, description: '`{"restreams":[…]}`' },
    },
    'GET /api/events/:id/restreams/:rsid': { summary: 'One restream', tag, auth, ok: { status: 200, description: 'the restream' } },
    'DELETE /api/events/:id/restreams/:rsid': { summary: 'Stop a restream', tag, auth, ok: { status: 200, description: 'the restream, `"state":"stopped"`' } },
  };
}
