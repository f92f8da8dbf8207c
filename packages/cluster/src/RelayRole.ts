/**
 * A relay node: receives an event's program feed from its parent in the relay tree, forwards it
 * to its child relays, and plays it to viewers.
 *   - NodeAgent (role 'relay') with its capacity and load (viewers, child relays);
 *   - follows the EventStore: for each live event, asks the mixer for the feed key (FeedKeys.ts)
 *     and opens a RelayFeed (forwarder on a UDP port of its own + ProgramSource) whose parent and
 *     children come from the tree, so it carries any number of live events at once;
 *   - HTTP: `POST /whep/:id[?rendition=]` (WHEP, RFC 9725: audio and the chosen video rendition;
 *     without one, the highest the viewer's link holds, switched as that changes) and `POST /rtp-viewers/:id` (plain RTP audio to a UDP address, for
 *     benchmarks and gateways), with tokens signed by the cluster's shared secret (in
 *     `Authorization` or, after a mixer's 307, in `?token=`).
 *
 *   - `/healthz`, `/readyz` (503 when closing, draining, disconnected from NATS, not registered, or
 *     at its WebRTC viewer maximum), `/metrics`, `/api/openapi.json`;
 *   - `drain()`: graceful stop (see there).
 *
 * A relay that carries no event is ready: placement only sends viewers to relays attached to an
 * event's tree, and an idle relay must not hold up a rolling update.
 */
import type dgram from 'node:dgram';
import { endpointKey, FanOut, validateEndpoint } from '@mcu/relay';
import { openUdpSocket } from '@mcu/rtp';
import { randomBytes, randomUUID } from 'node:crypto';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import {
  BusError,
  createLogger,
  EventStore,
  NodeAgent,
  NotFoundError,
  parseJsonBody,
  ServiceUnavailableError,
  TokenIssuer,
  ValidationError,
  type Bus,
  type Logger,
  type Role,
} from '@mcu/control';
import { Auth, certificateOf, drainingGauge, healthRoutes, json, natsConnectedGauge, openApiDocument, readSdp, renderMetrics, Router, webrtcMetrics, type NotReady, type RouteEntry } from '@mcu/server';
import { WebRtcEdge, type RenditionChooserOptions } from '@mcu/webrtc';
import { clusterDefaults } from './ClusterConfig.js';
import { FeedKeyFollower } from './FeedKeyFollower.js';
import { createHttpServer, listen, schemeOf, type HttpServer, type ServerCertificate } from '@mcu/server';
import { RelayFeed } from './RelayFeed.js';
import { mediaAddressFor } from './UdpPort.js';
import { relayOperations, rtpViewerBody } from './ClusterApi.js';
import { feedMetrics } from './FeedMetrics.js';
import { RelayHands } from './RelayHands.js';

export interface RelayRoleOptions {
  bus: Bus;
  cluster: string;
  nodeId: string;
  tokenSecret: string;
  adminToken?: string;
  /** HTTP listen address and port (0: any free port). */
  host?: string;
  port?: number;
  /** Base of the URLs viewers are sent to; defaults to http://host:port (https:// with a certificate). */
  publicUrl?: string;
  /** Serve HTTPS with this PEM certificate file and key file (both or neither); re-read when they change. */
  tlsCert?: string;
  tlsKey?: string;
  /** How often the certificate files are checked for a renewal (default 10 s, 0: never). */
  tlsReloadIntervalMs?: number;
  /** With HTTPS, send Strict-Transport-Security with this max-age. */
  hstsMaxAgeSeconds?: number;
  /** Media (feed) bind address; defaults to `host`. */
  mediaHost?: string;
  /** Address other nodes send the feed to (default: `mediaHost`, or this machine's IPv4 for a wildcard bind). */
  mediaAdvertiseHost?: string;
  /** Address advertised in ICE candidates behind a 1:1 NAT. */
  publicIp?: string;
  rtcPorts?: [number, number];
  /** One UDP port for every WebRTC session (takes precedence over rtcPorts). */
  rtcPort?: number;
  iceAllow?: string[];
  iceHostAddresses?: string[];
  /** WebRTC viewers this relay serves at most (its placement capacity). */
  maxViewers?: number;
  maxRtpViewers?: number;
  /** Child relays it feeds at most. */
  maxChildren?: number;
  heartbeatIntervalMs?: number;
  /** How WHEP viewers that did not pin a rendition are moved between renditions by their link (RenditionChooser's defaults otherwise). */
  renditionChooser?: RenditionChooserOptions;
  /** How long a replaced feed key is still accepted (default `clusterDefaults.feedKeyOverlapMs`). */
  feedKeyOverlapMs?: number;
  /** Lifecycle events (one JSON line each, with `node` bound); default: a logger at MCU_LOG_LEVEL / info. */
  logger?: Logger;
}

export interface RelayDrainResult {
  /** WHEP and plain-RTP viewers ended so that they reconnect through the mixer. */
  viewersEnded: number;
  /** The timeout passed before the viewers were gone and the child relays had moved. */
  timedOut: boolean;
}

const viewerRoles: Role[] = ['admin', 'producer', 'presenter', 'viewer'];

interface RtpViewer {
  id: string;
  event: string;
  host: string;
  port: number;
  /** Its group: the viewers of one event asking for the same one-in-N (and phase) of the packets. */
  group: string;
}

/**
 * The plain-RTP viewers of one event that asked for the same `everyNth` and phase: one program
 * sink and one FanOut for all of them, so a packet costs one sink call and one `sendMany`
 * (sendmmsg) per group, not a closure and a `socket.send` per viewer.
 */
interface RtpViewerGroup {
  readonly fanOut: FanOut;
  /** Viewers per address (two viewers at one address share one entry of the FanOut); empty: the group goes. */
  readonly addresses: Map<string, number>;
  readonly stop: () => void;
}

export class RelayRole {
  readonly nodeId: string;
  readonly cluster: string;
  readonly edge: WebRtcEdge;
  readonly auth: Auth;
  readonly feeds = new Map<string, RelayFeed>();
  readonly log: Logger;
  readonly metrics = new Registry();
  /** Its viewers' raised hands (forwarded to the mixer) and their pages' event streams. */
  readonly hands: RelayHands;
  agent!: NodeAgent;
  #url = '';
  readonly #opts: RelayRoleOptions;
  readonly #bus: Bus;
  readonly #server: HttpServer;
  readonly #certificate: ServerCertificate | undefined;
  readonly #router = new Router();
  readonly #rtpViewers = new Map<string, RtpViewer>();
  readonly #rtpGroups = new Map<string, RtpViewerGroup>();
  readonly #opening = new Map<string, AbortController>();
  readonly #abort = new AbortController();
  #rtpSocket: dgram.Socket | undefined;
  #closed = false;
  #draining: Promise<RelayDrainResult> | undefined;
  /** Set before the drain's first heartbeat is built (the promise above is assigned only after `#drain` returns). */
  #drainStarted = false;

  private constructor(opts: RelayRoleOptions) {
    this.#opts = opts;
    this.#bus = opts.bus;
    this.nodeId = opts.nodeId;
    this.cluster = opts.cluster;
    this.log = (opts.logger ?? createLogger({ name: 'relay' })).child({ node: opts.nodeId });
    // First: a certificate that cannot be served fails the relay before it opens anything.
    this.#certificate = certificateOf({ tlsCert: opts.tlsCert, tlsKey: opts.tlsKey, tlsReloadIntervalMs: opts.tlsReloadIntervalMs }, this.log);
    this.auth = new Auth(new TokenIssuer({ secret: opts.tokenSecret }), opts.adminToken ?? randomBytes(24).toString('base64url'));
    this.edge = new WebRtcEdge({
      portRange: opts.rtcPorts,
      rtcPort: opts.rtcPort,
      publicIp: opts.publicIp,
      iceAllow: opts.iceAllow,
      additionalHostAddresses: opts.iceHostAddresses,
      maxSessions: opts.maxViewers ?? clusterDefaults.relayViewers,
      renditionChooser: opts.renditionChooser,
      log: this.log,
    });
    this.#server = createHttpServer(this.#router, this.log, this.#certificate && { certificate: this.#certificate, hstsMaxAgeSeconds: opts.hstsMaxAgeSeconds });
    this.hands = new RelayHands({ bus: opts.bus, cluster: opts.cluster, auth: this.auth, carries: (event) => void this.#feed(event), log: this.log });
    this.#routes();
    this.#registerMetrics();
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

  /** The certificate it serves HTTPS with, if any. */
  get certificate(): ServerCertificate | undefined {
    return this.#certificate;
  }

  get viewers(): number {
    return this.edge.stats().whepSessions + this.#rtpViewers.size;
  }

  /** Its HTTP routes (the OpenAPI test holds them to `relayOperations`). */
  routes(): RouteEntry[] {
    return this.#router.routes();
  }

  get isDraining(): boolean {
    return this.#drainStarted;
  }

  /** Why `/readyz` answers 503 now, or null (ready). */
  notReady(): NotReady | null {
    if (this.#closed) return { reason: 'closing', message: 'the relay is shutting down' };
    if (this.#drainStarted) return { reason: 'draining', message: 'the relay is draining: its viewers move to other relays' };
    if (!this.#bus.connected) return { reason: 'bus_disconnected', message: 'the relay is disconnected from NATS' };
    if (!this.agent?.registered) return { reason: 'not_registered', message: 'the relay is not registered with the cluster' };
    const max = this.#opts.maxViewers ?? clusterDefaults.relayViewers;
    if (this.edge.size >= max) return { reason: 'sessions_full', message: `the relay serves its maximum of ${max} WebRTC viewers` };
    return null;
  }

  /**
   * Graceful stop: `/readyz` answers 503 and the heartbeat says draining at once, so placement sends
   * no new viewers or child relays here and the tree controller moves this relay's children to other
   * parents; new viewers are refused (503, they ask the mixer again); the WHEP and plain-RTP viewers
   * are ended so that they reconnect through the mixer onto another relay. Then it waits until no
   * viewer and no child relay is left, or `timeoutMs` passes, and closes. Idempotent.
   */
  drain(opts: { timeoutMs: number }): Promise<RelayDrainResult> {
    this.#drainStarted = true;
    this.#draining ??= this.#drain(opts.timeoutMs);
    return this.#draining;
  }

  async #drain(timeoutMs: number): Promise<RelayDrainResult> {
    const deadline = performance.now() + timeoutMs;
    this.log.info({ viewers: this.viewers, children: this.#childCount(), timeoutMs }, 'relay draining');
    await this.agent?.beatNow();
    const viewersEnded = this.edge.endViewers('draining') + this.#rtpViewers.size;
    for (const v of [...this.#rtpViewers.keys()]) this.#removeRtpViewer(v, 'draining');
    while (!this.#closed && (this.viewers > 0 || this.#childCount() > 0) && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const timedOut = this.viewers > 0 || this.#childCount() > 0;
    if (timedOut) this.log.warn({ viewers: this.viewers, children: this.#childCount() }, 'drain timed out: closing anyway');
    else this.log.info({ viewersEnded }, 'relay drained');
    await this.close();
    return { viewersEnded, timedOut };
  }
  async #start(): Promise<void> {
    const o = this.#opts;
    const host = o.host ?? '127.0.0.1';
    // The one WebRTC port (rtcPort), bound now so that a taken port stops the start.
    await this.edge.listen();
    const port = await listen(this.#server, o.port ?? 0, host);
    this.#url = (o.publicUrl ?? `${schemeOf(this.#server)}://${host.includes(':') ? `[${host}]` : host}:${port}`).replace(/\/$/, '');
    const mediaHost = o.mediaHost ?? host;
    // Destinations are IP literals: a lookup that answers at once (Node's default defers each send).
    this.#rtpSocket = await openUdpSocket({ host: mediaHost, bufferBytes: 4 << 20 });
    this.#rtpSocket.on('error', () => undefined);
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
      load: () => ({ viewers: this.viewers, children: this.#childCount(), draining: this.isDraining }),
      heartbeatIntervalMs: o.heartbeatIntervalMs,
    });
    const store = await EventStore.open(this.#bus, this.cluster);
    this.#followEvents(store);
    await this.agent.start();
    this.log.info({ url: this.#url, media: this.agent.info.media }, 'relay listening and registered');
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
      // Subscribed to the mixer's key announcements before the first request: no rotation is missed in between.
      const keys = new FeedKeyFollower({
        bus: this.#bus,
        cluster: this.cluster,
        secret: this.#opts.tokenSecret,
        event,
        overlapMs: this.#opts.feedKeyOverlapMs ?? clusterDefaults.feedKeyOverlapMs,
        fetchIntervalMs: clusterDefaults.feedKeyFetchIntervalMs,
        requestTimeoutMs: clusterDefaults.placementTimeoutMs,
        log: this.log,
      });
      try {
        await keys.start({ signal: AbortSignal.any([abort.signal, this.#abort.signal]), retryMs: clusterDefaults.feedKeyRetryMs });
        const bindHost = this.#opts.mediaHost ?? this.#opts.host ?? '127.0.0.1';
        // From here on the feed owns the keys (and closes them, also when opening fails).
        const feed = await RelayFeed.open({
          bus: this.#bus,
          cluster: this.cluster,
          event,
          nodeId: this.nodeId,
          keys,
          bindHost,
          advertiseHost: this.#opts.mediaAdvertiseHost ?? mediaAddressFor(bindHost),
        });
        if (abort.signal.aborted || this.#closed) feed.close();
        else {
          this.feeds.set(event, feed);
          this.log.info({ event, parent: feed.client.parent?.id ?? null }, 'feed opened');
          feed.client.on('assignment', (a) => {
            if (a) this.log.info({ event, parent: a.parent, depth: a.depth }, 'relay placed in the tree');
            else this.log.info({ event }, 'relay taken out of the tree');
          });
        }
      } catch {
        // aborted (event ended, relay closing) or the bus failed: the next change retries
        keys.close();
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
    this.hands.endEvent(event);
    for (const v of [...this.#rtpViewers.values()]) if (v.event === event) this.#removeRtpViewer(v.id, 'event_ended');
    feed.close();
    this.log.info({ event }, 'feed closed');
  }

  #feed(event: string): RelayFeed {
    const feed = this.feeds.get(event);
    if (!feed) throw new NotFoundError(`event ${event} is not carried by this relay`, 'event_not_found');
    return feed;
  }

  /**
   * Attaches a plain-RTP viewer: the program RTP goes to host:port over UDP (for load generators,
   * only the packets whose sequence number leaves `phase` divided by `everyNth`).
   */
  addRtpViewer(event: string, host: string, port: number, everyNth = 1, phase = 0): string {
    const feed = this.#feed(event);
    this.#refuseWhileDraining();
    if (this.#rtpViewers.size >= (this.#opts.maxRtpViewers ?? clusterDefaults.relayRtpViewers)) {
      throw new ServiceUnavailableError('this relay serves its maximum of plain-RTP viewers', 1);
    }
    validateEndpoint({ host, port });
    if (!(Number.isInteger(everyNth) && everyNth >= 1 && Number.isInteger(phase) && phase >= 0 && phase < everyNth)) {
      throw new ValidationError(`everyNth ${everyNth} with phase ${phase}: phase must be a whole number below everyNth`, 'phase');
    }
    const socket = this.#rtpSocket!;
    const id = randomUUID();
    const key = `${event} ${everyNth} ${phase}`;
    let group = this.#rtpGroups.get(key);
    if (!group) {
      const fanOut = new FanOut();
      const stop =
        everyNth === 1
          ? feed.addProgramSink((packet) => fanOut.send(socket, packet))
          : feed.addProgramSink((packet) => {
              if (((packet[2] << 8) | packet[3]) % everyNth === phase) fanOut.send(socket, packet);
            });
      group = { fanOut, addresses: new Map(), stop };
      this.#rtpGroups.set(key, group);
    }
    const address = endpointKey(host, port);
    group.addresses.set(address, (group.addresses.get(address) ?? 0) + 1);
    group.fanOut.add({ host, port });
    this.#rtpViewers.set(id, { id, event, host, port, group: key });
    this.log.debug({ event, viewer: id, host, port }, 'RTP viewer joined');
    return id;
  }

  #removeRtpViewer(id: string, reason: string): boolean {
    const v = this.#rtpViewers.get(id);
    if (!v) return false;
    const group = this.#rtpGroups.get(v.group);
    if (group) {
      const address = endpointKey(v.host, v.port);
      const left = (group.addresses.get(address) ?? 1) - 1;
      if (left > 0) group.addresses.set(address, left);
      else {
        group.addresses.delete(address);
        group.fanOut.remove(v.host, v.port);
      }
      if (group.addresses.size === 0) {
        group.stop();
        this.#rtpGroups.delete(v.group);
      }
    }
    this.#rtpViewers.delete(id);
    this.log.debug({ event: v.event, viewer: id, reason }, 'RTP viewer left');
    return true;
  }

  /** A viewer sent here while draining asks the mixer again and is placed elsewhere. */
  #refuseWhileDraining(): void {
    if (this.#drainStarted || this.#closed) throw new ServiceUnavailableError('this relay is draining: join through the mixer again', 1, 'draining');
  }

  #registerMetrics(): void {
    const registry = this.metrics;
    collectDefaultMetrics({ register: registry, prefix: 'mcu_' });
    drainingGauge(registry, () => this.isDraining || this.#closed);
    natsConnectedGauge(registry, () => this.#bus.connected);
    webrtcMetrics(registry, this.edge);
    const edge = this.edge;
    const rtpViewers = this.#rtpViewers;
    new Gauge({
      name: 'mcu_relay_viewers',
      help: 'Viewers this relay plays to, by transport',
      labelNames: ['kind'],
      registers: [registry],
      collect() {
        this.set({ kind: 'whep' }, edge.stats().whepSessions);
        this.set({ kind: 'rtp' }, rtpViewers.size);
      },
    });
    feedMetrics(registry, () => [...this.feeds.values()].map((f) => f.forwarder.stats), () => this.#childCount());
  }

  #routes(): void {
    const r = this.#router;
    healthRoutes(r, () => [() => this.notReady()], () => ({ viewers: this.viewers, feeds: this.feeds.size }));
    r.on('GET', '/metrics', async ({ res }) => {
      const { body, type } = await renderMetrics(this.metrics);
      res.writeHead(200, { 'content-type': type });
      res.end(body);
    });
    r.on('GET', '/api/openapi.json', ({ res }) => json(res, 200, openApiDocument(relayOperations, { title: 'mcu relay' })));
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
      // A relay has the program only: a presenter's own packets are on the mixer holding the event.
      if (url.searchParams.has('source')) throw new ValidationError('a presenter preview (?source=) is served by the mixer holding the event, not by a relay', 'source');
      const feed = this.#feed(params.id);
      const rendition = url.searchParams.get('rendition') ?? undefined;
      const known = feed.renditions;
      if (rendition !== undefined && known.length > 0 && !known.some((r) => r.id === rendition)) {
        throw new ValidationError(`unknown rendition ${JSON.stringify(rendition.slice(0, 64))}; this event has ${known.map((r) => r.id).join(', ')}`, 'rendition');
      }
      this.#refuseWhileDraining();
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
      const id = this.addRtpViewer(params.id, body.host, body.port, body.everyNth, body.phase);
      res.setHeader('location', `/rtp-viewers/${params.id}/${id}`);
      json(res, 201, { id, relay: this.nodeId });
    });
    r.on('DELETE', '/rtp-viewers/:id/:vid', ({ req, res, params, url }) => {
      this.auth.authorize(req.headers.authorization, { event: params.id, roles: viewerRoles }, url.searchParams.get('token'));
      if (!this.#removeRtpViewer(params.vid, 'deleted')) throw new NotFoundError(`viewer ${params.vid} not found`);
      res.writeHead(204).end();
    });
    this.hands.routes(r);
  }

  #release(crashed = false): void {
    this.#closed = true;
    this.#abort.abort();
    for (const a of this.#opening.values()) a.abort();
    this.#opening.clear();
    this.hands.close();
    for (const v of [...this.#rtpViewers.keys()]) this.#removeRtpViewer(v, 'shutdown');
    this.edge.close();
    for (const f of this.feeds.values()) f.close({ crashed });
    this.feeds.clear();
    try {
      this.#rtpSocket?.close();
    } catch {
      // not bound
    }
    this.#certificate?.close();
    this.#server.closeAllConnections();
  }

  /** Graceful: leaves the cluster (its place in the trees is given up at once), frees everything. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.log.info({ viewers: this.viewers }, 'relay closing');
    await this.agent?.close();
    this.#release();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** Stops at once without a word to the cluster, as a crashed process would (tests). */
  async crash(): Promise<void> {
    if (this.#closed) return;
    this.agent?.abandon();
    this.#release(true);
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
