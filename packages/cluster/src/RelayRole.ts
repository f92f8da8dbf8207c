/**
 * A relay node: receives an event's program feed from its parent in the relay tree, forwards it
 * to its child relays, and plays it to viewers.
 *   - NodeAgent (role 'relay') with its capacity and load (viewers, child relays);
 *   - follows the EventStore: for each live event, asks the mixer for the feed key (FeedKeys.ts)
 *     and opens a RelayFeed (forwarder on a UDP port of its own + ProgramSource) whose parent and
 *     children come from the tree, so it carries any number of live events at once;
 *   - HTTP: `POST /whep/:id[?rendition=]` (WHEP, RFC 9725: audio and the chosen video rendition,
 *     the largest by default) and `POST /rtp-viewers/:id` (plain RTP audio to a UDP address, for
 *     benchmarks and gateways), with tokens signed by the cluster's shared secret (in
 *     `Authorization` or, after a mixer's 307, in `?token=`).
 */
import dgram from 'node:dgram';
import http from 'node:http';
import { once } from 'node:events';
import { randomBytes, randomUUID } from 'node:crypto';
import { z } from 'zod';
import {
  BusError,
  EventStore,
  NodeAgent,
  NotFoundError,
  parseJsonBody,
  ServiceUnavailableError,
  TokenIssuer,
  ValidationError,
  type Bus,
  type Role,
} from '@mcu/control';
import { Auth, json, readSdp, Router } from '@mcu/server';
import { WebRtcEdge } from '@mcu/webrtc';
import { clusterDefaults } from './ClusterConfig.js';
import { fetchFeedKey } from './FeedKeys.js';
import { createHttpServer, listen } from '@mcu/server';
import { RelayFeed } from './RelayFeed.js';
import { mediaAddressFor } from './UdpPort.js';

export interface RelayRoleOptions {
  bus: Bus;
  cluster: string;
  nodeId: string;
  tokenSecret: string;
  adminToken?: string;
  /** HTTP listen address and port (0: any free port). */
  host?: string;
  port?: number;
  /** Base of the URLs viewers are sent to; defaults to http://host:port. */
  publicUrl?: string;
  /** Media (feed) bind address; defaults to `host`. */
  mediaHost?: string;
  /** Address other nodes send the feed to (default: `mediaHost`, or this machine's IPv4 for a wildcard bind). */
  mediaAdvertiseHost?: string;
  /** Address advertised in ICE candidates behind a 1:1 NAT. */
  publicIp?: string;
  rtcPorts?: [number, number];
  iceAllow?: string[];
  iceHostAddresses?: string[];
  /** WebRTC viewers this relay serves at most (its placement capacity). */
  maxViewers?: number;
  maxRtpViewers?: number;
  /** Child relays it feeds at most. */
  maxChildren?: number;
  heartbeatIntervalMs?: number;
}

const viewerRoles: Role[] = ['admin', 'producer', 'presenter', 'viewer'];
const rtpViewerBody = z.object({ host: z.ipv4(), port: z.number().int().min(1).max(65_535) }).strict();

interface RtpViewer {
  id: string;
  event: string;
  host: string;
  port: number;
  stop: () => void;
}

export class RelayRole {
  readonly nodeId: string;
  readonly cluster: string;
  readonly edge: WebRtcEdge;
  readonly auth: Auth;
  readonly feeds = new Map<string, RelayFeed>();
  agent!: NodeAgent;
  #url = '';
  readonly #opts: RelayRoleOptions;
  readonly #bus: Bus;
  readonly #server: http.Server;
  readonly #router = new Router();
  readonly #rtpViewers = new Map<string, RtpViewer>();
  readonly #opening = new Map<string, AbortController>();
  readonly #abort = new AbortController();
  #rtpSocket: dgram.Socket | undefined;
  #closed = false;

  private constructor(opts: RelayRoleOptions) {
    this.#opts = opts;
    this.#bus = opts.bus;
    this.nodeId = opts.nodeId;
    this.cluster = opts.cluster;
    this.auth = new Auth(new TokenIssuer({ secret: opts.tokenSecret }), opts.adminToken ?? randomBytes(24).toString('base64url'));
    this.edge = new WebRtcEdge({
      portRange: opts.rtcPorts,
      publicIp: opts.publicIp,
      iceAllow: opts.iceAllow,
      additionalHostAddresses: opts.iceHostAddresses,
      maxSessions: opts.maxViewers ?? clusterDefaults.relayViewers,
    });
    this.#server = createHttpServer(this.#router);
    this.#routes();
  }

  static async start(opts: RelayRoleOptions): Promise<RelayRole> {
    const role = new RelayRole(opts);
    try {
      await role.#start();
    } catch (err) {
      await role.close();
      throw err;
    }
    return role;
  }

  get url(): string {
    return this.#url;
  }

  get viewers(): number {
    return this.edge.stats().whepSessions + this.#rtpViewers.size;
  }

  async #start(): Promise<void> {
    const o = this.#opts;
    const host = o.host ?? '127.0.0.1';
    const port = await listen(this.#server, o.port ?? 0, host);
    this.#url = (o.publicUrl ?? `http://${host.includes(':') ? `[${host}]` : host}:${port}`).replace(/\/$/, '');
    const mediaHost = o.mediaHost ?? host;
    this.#rtpSocket = dgram.createSocket({ type: 'udp4', sendBufferSize: 4 << 20 });
    this.#rtpSocket.on('error', () => undefined);
    this.#rtpSocket.bind(0, mediaHost);
    await once(this.#rtpSocket, 'listening');
    this.agent = new NodeAgent({
      bus: this.#bus,
      cluster: this.cluster,
      node: {
        id: this.nodeId,
        role: 'relay',
        http: this.#url,
        // Each event's feed has a port of its own (advertised per event in the `feeds` bucket);
        // the node's own entry names the socket plain-RTP viewers are served from.
        media: { host: o.mediaAdvertiseHost ?? mediaAddressFor(mediaHost), port: this.#rtpSocket.address().port },
        capacity: { viewers: (o.maxViewers ?? clusterDefaults.relayViewers) + (o.maxRtpViewers ?? clusterDefaults.relayRtpViewers), children: o.maxChildren ?? 8 },
      },
      load: () => ({ viewers: this.viewers, children: this.#childCount() }),
      heartbeatIntervalMs: o.heartbeatIntervalMs,
    });
    const store = await EventStore.open(this.#bus, this.cluster);
    this.#followEvents(store);
    await this.agent.start();
  }

  #childCount(): number {
    let n = 0;
    for (const f of this.feeds.values()) n += f.forwarder.children.length;
    return n;
  }

  /** Opens and closes feeds as events start and end (bounded by close; reopened after errors). */
  #followEvents(store: EventStore): void {
    const signal = this.#abort.signal;
    void (async () => {
      for (let attempt = 0; !signal.aborted; attempt++) {
        try {
          for await (const change of store.watch({ signal })) {
            attempt = 0;
            if (change.event && !change.event.ended) this.#openFeed(change.id);
            else this.#closeFeed(change.id);
          }
          return;
        } catch (err) {
          if (err instanceof BusError && err.reason === 'closed') return;
          await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** attempt, 2000)));
        }
      }
    })();
  }

  #openFeed(event: string): void {
    if (this.#closed || this.feeds.has(event) || this.#opening.has(event)) return;
    const abort = new AbortController();
    this.#opening.set(event, abort);
    void (async () => {
      try {
        const key = await fetchFeedKey(this.#bus, this.cluster, this.#opts.tokenSecret, event, {
          signal: AbortSignal.any([abort.signal, this.#abort.signal]),
          retryMs: clusterDefaults.feedKeyRetryMs,
          timeoutMs: clusterDefaults.placementTimeoutMs,
        });
        const bindHost = this.#opts.mediaHost ?? this.#opts.host ?? '127.0.0.1';
        const feed = await RelayFeed.open({
          bus: this.#bus,
          cluster: this.cluster,
          event,
          nodeId: this.nodeId,
          key,
          bindHost,
          advertiseHost: this.#opts.mediaAdvertiseHost ?? mediaAddressFor(bindHost),
        });
        if (abort.signal.aborted || this.#closed) feed.close();
        else this.feeds.set(event, feed);
      } catch {
        // aborted (event ended, relay closing) or the bus failed: the next change retries
      } finally {
        if (this.#opening.get(event) === abort) this.#opening.delete(event);
      }
    })();
  }

  #closeFeed(event: string): void {
    this.#opening.get(event)?.abort();
    this.#opening.delete(event);
    const feed = this.feeds.get(event);
    if (!feed) return;
    this.feeds.delete(event);
    this.edge.endEvent(event);
    for (const v of [...this.#rtpViewers.values()]) if (v.event === event) this.#removeRtpViewer(v.id);
    feed.close();
  }

  #feed(event: string): RelayFeed {
    const feed = this.feeds.get(event);
    if (!feed) throw new NotFoundError(`event ${event} is not carried by this relay`, 'event_not_found');
    return feed;
  }

  /** Attaches a plain-RTP viewer: the program RTP goes to host:port over UDP. */
  addRtpViewer(event: string, host: string, port: number): string {
    const feed = this.#feed(event);
    if (this.#rtpViewers.size >= (this.#opts.maxRtpViewers ?? clusterDefaults.relayRtpViewers)) {
      throw new ServiceUnavailableError('this relay serves its maximum of plain-RTP viewers', 1);
    }
    const socket = this.#rtpSocket!;
    const id = randomUUID();
    const stop = feed.addProgramSink((packet) => socket.send(packet, port, host));
    this.#rtpViewers.set(id, { id, event, host, port, stop });
    return id;
  }

  #removeRtpViewer(id: string): boolean {
    const v = this.#rtpViewers.get(id);
    if (!v) return false;
    v.stop();
    this.#rtpViewers.delete(id);
    return true;
  }

  #routes(): void {
    const r = this.#router;
    r.on('GET', '/healthz', ({ res }) => json(res, 200, { status: 'ok' }));
    r.on('GET', '/api/relay', ({ res }) =>
      json(res, 200, {
        id: this.nodeId,
        viewers: this.viewers,
        whep: this.edge.stats(),
        feeds: [...this.feeds.values()].map((f) => ({
          event: f.id,
          parent: f.client.parent,
          children: f.client.children.map((c) => c.id),
          depth: f.client.assignment?.depth ?? null,
          packetsOut: f.packetsOut,
          videoPacketsOut: f.videoPacketsOut,
          renditions: f.renditions,
          gopReplays: f.gopReplays,
          forwarder: f.forwarder.stats,
        })),
      }),
    );
    r.on('POST', '/whep/:id', async ({ req, res, params, url }) => {
      this.auth.authorize(req.headers.authorization, { event: params.id, roles: viewerRoles }, url.searchParams.get('token'));
      const feed = this.#feed(params.id);
      const rendition = url.searchParams.get('rendition') ?? undefined;
      const known = feed.renditions;
      if (rendition !== undefined && known.length > 0 && !known.some((r) => r.id === rendition)) {
        throw new ValidationError(`unknown rendition ${JSON.stringify(rendition.slice(0, 64))}; this event has ${known.map((r) => r.id).join(', ')}`, 'rendition');
      }
      const offer = await readSdp(req, 64 * 1024);
      const { session, answer } = await this.edge.play(feed, offer, { rendition });
      res.writeHead(201, {
        'content-type': 'application/sdp',
        location: `/whep/${params.id}/${session.id}`,
        etag: session.etag,
        'content-length': Buffer.byteLength(answer),
      });
      res.end(answer);
    });
    r.on('DELETE', '/whep/:id/:sid', ({ req, res, params, url }) => {
      this.auth.authorize(req.headers.authorization, { event: params.id, roles: viewerRoles }, url.searchParams.get('token'));
      this.edge.end('whep', params.id, params.sid);
      res.writeHead(200).end();
    });
    r.on('POST', '/rtp-viewers/:id', async ({ req, res, params, url }) => {
      this.auth.authorize(req.headers.authorization, { event: params.id, roles: viewerRoles }, url.searchParams.get('token'));
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const c of req) {
        size += (c as Buffer).length;
        if (size > 4096) throw new ServiceUnavailableError('body too large');
        chunks.push(c as Buffer);
      }
      const body = parseJsonBody(Buffer.concat(chunks).toString('utf8'), rtpViewerBody, 'body');
      const id = this.addRtpViewer(params.id, body.host, body.port);
      res.setHeader('location', `/rtp-viewers/${params.id}/${id}`);
      json(res, 201, { id, relay: this.nodeId });
    });
    r.on('DELETE', '/rtp-viewers/:id/:vid', ({ req, res, params, url }) => {
      this.auth.authorize(req.headers.authorization, { event: params.id, roles: viewerRoles }, url.searchParams.get('token'));
      if (!this.#removeRtpViewer(params.vid)) throw new NotFoundError(`viewer ${params.vid} not found`);
      res.writeHead(204).end();
    });
  }

  #release(): void {
    this.#closed = true;
    this.#abort.abort();
    for (const a of this.#opening.values()) a.abort();
    this.#opening.clear();
    for (const v of [...this.#rtpViewers.keys()]) this.#removeRtpViewer(v);
    this.edge.close();
    for (const f of this.feeds.values()) f.close();
    this.feeds.clear();
    try {
      this.#rtpSocket?.close();
    } catch {
      // not bound
    }
    this.#server.closeAllConnections();
  }

  /** Graceful: leaves the cluster (its place in the trees is given up at once), frees everything. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.agent?.close();
    this.#release();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** Stops at once without a word to the cluster, as a crashed process would (tests). */
  async crash(): Promise<void> {
    if (this.#closed) return;
    this.agent?.abandon();
    this.#release();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
