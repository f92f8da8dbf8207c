import type { z } from 'zod';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import {
  bearerToken,
  createLogger,
  generateSecret,
  parseJsonBody,
  parseWith,
  PayloadTooLargeError,
  ServiceUnavailableError,
  TokenIssuer,
  UnsupportedMediaTypeError,
  NotFoundError,
  MethodNotAllowedError,
  ValidationError,
  ConflictError,
  type Logger,
} from '@mcu/control';
import { parseLayout } from '@mcu/mixer';
import type { VideoLayout } from '@mcu/mixer';
import { Auth } from './Auth.js';
import { nodeConfigSchema } from './Config.js';
import type { NodeConfig, NodeConfigInput } from './Config.js';
import { EventRegistry } from './EventRegistry.js';
import type { EventRecord } from './EventRegistry.js';
import { Router } from './Router.js';
import { viewerLoad } from './EventTree.js';
import type { EventTreeProvider, EventTreeView } from './EventTree.js';
import { createHttpServer, json, listen, schemeOf, type HttpServer } from './HttpFront.js';
import { ServerCertificate } from './ServerCertificate.js';
import { Metrics, restreamMetrics } from './Metrics.js';
import { Restreams, restreamRoutes } from './Restreams.js';
import { RestreamAllow } from './RestreamAllow.js';
import type { RouteContext } from './Router.js';
import { createEventBody, layoutBody, participantPatchBody, rtpParticipantBody } from './Schemas.js';
import { presenterName } from './PresenterName.js';
import { healthRoutes, type NotReady, type ReadinessCheck } from './Readiness.js';
import { nodeOperations, openApiDocument, type OperationTable } from './OpenApi.js';
import { NodeRecordings } from './NodeRecordings.js';
import { programSourceOf, WebRtcEdge } from '@mcu/webrtc';
import { playPresenterPreview } from './PresenterPreviewRoute.js';
import { HandDesk } from './HandDesk.js';
import { RESUME_TOKEN_HEADER, resumeGrant } from './Moderation.js';
import { handOperations, handRoutes, handStreamEvents, HandStreams, newHandLimits } from './HandApi.js';
import type { TokenClaims } from '@mcu/control';
import { pageFor, staticFile } from '@mcu/web';

/**
 * Where a new viewer of an event should play: an absolute WHEP (or plain-RTP viewer) URL on a
 * relay, or null to serve the viewer on this node. Set by the cluster's mixer role.
 */
export type ViewerPlacement = (eventId: string, kind: 'whep' | 'rtp-viewers') => Promise<string | null>;

/** The `levels` server-sent event: 4 per second, enough for a meter, cheap for many consoles. */
const levelsIntervalMs = 250;

export interface McuNodeOptions {
  /** Lifecycle events go here, one JSON line each; default: a logger at MCU_LOG_LEVEL / info (silent under vitest). */
  logger?: Logger;
}

export interface DrainOptions {
  /** Close after this long even if events are still running. */
  timeoutMs: number;
}

export interface McuNodeInfo {
  url: string;
  adminToken: string;
  adminTokenGenerated: boolean;
}

/**
 * The all-in-one node: HTTP API, token checks and the events it mixes. `close()` ends every event
 * and frees the listening socket.
 */
export class McuNode {
  readonly config: NodeConfig;
  readonly registry: EventRegistry;
  readonly edge: WebRtcEdge;
  readonly metrics: Metrics;
  /** Pushes of events' programs to RTMP servers (docs/restream.md). */
  readonly restreams: Restreams;
  readonly auth: Auth;
  readonly adminToken: string;
  readonly adminTokenGenerated: boolean;
  private readonly server: HttpServer;
  /** The certificate served when the node runs HTTPS (`tlsCert`, `tlsKey`). */
  readonly certificate: ServerCertificate | undefined;
  /** The node's routes; roles (the cluster's mixer) add theirs. */
  readonly router = new Router();
  /** The OpenAPI description of `router`'s routes (`GET /api/openapi.json`); a role adding a route documents it here. */
  readonly operations: OperationTable = { ...nodeOperations };
  /** When set, WHEP viewers are redirected (307) to the URL it returns, if any. */
  viewerPlacement: ViewerPlacement | undefined;
  /** When set and it returns a tree, `GET /api/events/:id/tree` shows it (the cluster's relay tree). */
  eventTree: EventTreeProvider | undefined;
  /** When set, its fields join an event's description (the cluster's mixer role: holder, epoch, standby mixers). */
  describeExtra: ((eventId: string) => Record<string, unknown>) | undefined;
  readonly log: Logger;
  /** Conditions of `/readyz` beyond the node's own (cluster roles add theirs: bus, registration). */
  readonly readinessChecks: ReadinessCheck[] = [];
  /** Recordings of this node's events (docs/recording.md). */
  readonly recordings: NodeRecordings;
  private readonly sseClients = new Set<ServerResponse>();
  /** Raised hands and invitations (docs/production.md): the queue, and the viewers' event streams by hand. */
  readonly hands: HandDesk;
  readonly handStreams = new HandStreams();
  readonly handLimits = newHandLimits();
  private baseUrl = '';
  private closed = false;
  private draining = false;

  constructor(input: NodeConfigInput = {}, opts: McuNodeOptions = {}) {
    this.config = parseWith(nodeConfigSchema, input, 'config');
    this.log = opts.logger ?? createLogger({ name: 'mcu' });
    // First: a certificate that cannot be served fails the node before it opens anything.
    this.certificate = certificateOf(this.config, this.log);
    this.adminTokenGenerated = this.config.adminToken === undefined;
    this.adminToken = this.config.adminToken ?? randomBytes(24).toString('base64url');
    const issuer = new TokenIssuer({ secret: this.config.tokenSecret ?? generateSecret(), defaultTtlSeconds: this.config.tokenTtlSeconds });
    this.auth = new Auth(issuer, this.adminToken);
    this.registry = new EventRegistry({
      maxEvents: this.config.maxEvents,
      rtpHost: this.config.rtpHost ?? this.config.host,
      rtpAdvertiseHost: this.config.publicIp,
      rtpPort: this.config.rtpPort,
      onTick: (seconds) => this.metrics.tickSeconds.observe(seconds),
      videoRenditions: this.config.videoRenditions,
      maxLipSyncDelayMs: this.config.maxLipSyncDelayMs,
      opusComplexity: this.config.opusComplexity,
      log: this.log,
    });
    this.edge = new WebRtcEdge({
      portRange: this.config.rtcPorts,
      rtcPort: this.config.rtcPort,
      publicIp: this.config.publicIp,
      iceAllow: this.config.iceAllow,
      additionalHostAddresses: this.config.iceHostAddresses,
      mediaTimeoutMs: this.config.rtcMediaTimeoutMs,
      answerTimeoutMs: this.config.rtcAnswerTimeoutMs,
      maxSessions: this.config.maxRtcSessions,
      log: this.log,
    });
    this.registry.on('created', (e) => this.log.info({ event: e.id, name: e.name }, 'event created'));
    this.hands = new HandDesk({ issuer, whipUrl: (id) => `${this.baseUrl}/whip/${id}`, log: this.log });
    this.hands.on('notice', (n) => this.handStreams.deliver(n));
    this.registry.on('ended', (e) => {
      this.edge.endEvent(e.id);
      void this.hands.endEvent(e.id);
      this.log.info({ event: e.id }, 'event ended');
    });
    this.metrics = new Metrics(this.registry, this.edge, () => this.draining || this.closed);
    this.restreams = new Restreams(this.registry, { rendition: this.config.restreamRendition, maxPerEvent: this.config.maxRestreamsPerEvent, allow: new RestreamAllow(this.config.restreamAllow), log: this.log });
    restreamMetrics(this.metrics.registry, this.restreams);
    this.server = createHttpServer(this.router, this.log, this.certificate && { certificate: this.certificate, hstsMaxAgeSeconds: this.config.hstsMaxAgeSeconds });
    this.routes();
    this.recordings = new NodeRecordings({
      router: this.router,
      auth: this.auth,
      registry: this.registry,
      metricsRegistry: this.metrics.registry,
      dir: this.config.recordingsDir,
      defaultRecipients: this.config.recordingRecipients,
      log: this.log,
      readJson: (req, schema) => readJson(req, this.config.maxBodyBytes, schema),
    });
  }

  /** Why the node does not take new participants or viewers now (`/readyz` answers 503), or null. */
  notReady(): NotReady | null {
    if (this.closed) return { reason: 'closing', message: 'the node is shutting down' };
    if (this.draining) return { reason: 'draining', message: 'the node is draining: no new events' };
    if (this.registry.list().length >= this.config.maxEvents) {
      return { reason: 'events_full', message: `the node runs its maximum of ${this.config.maxEvents} events` };
    }
    if (this.edge.size >= this.config.maxRtcSessions) {
      return { reason: 'sessions_full', message: `the node serves its maximum of ${this.config.maxRtcSessions} WebRTC sessions` };
    }
    return null;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /**
   * Graceful stop of a node: `/readyz` answers 503 and no new event is created; running events go
   * on (their presenters and viewers stay) until they end or `timeoutMs` passes, then the node
   * closes. Idempotent; resolves when closed.
   */
  async drain(opts: DrainOptions): Promise<void> {
    if (this.closed) return;
    if (!this.draining) {
      this.draining = true;
      this.log.info({ events: this.registry.list().length, timeoutMs: opts.timeoutMs }, 'node draining');
    }
    const deadline = performance.now() + opts.timeoutMs;
    while (!this.closed && this.registry.list().length > 0 && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    if (this.registry.list().length > 0) this.log.warn({ events: this.registry.list().length }, 'drain timed out: ending the events still running');
    await this.close();
  }

  get url(): string {
    return this.baseUrl;
  }

  async listen(): Promise<McuNodeInfo> {
    // The one WebRTC port (rtcPort), bound now so that a taken port stops the start, not the first session.
    await this.edge.listen();
    const port = await listen(this.server, this.config.port, this.config.host);
    const host = this.config.host.includes(':') ? `[${this.config.host}]` : this.config.host;
    this.baseUrl = (this.config.publicUrl ?? `${schemeOf(this.server)}://${host}:${port}`).replace(/\/$/, '');
    this.log.info({ url: this.baseUrl }, 'node listening');
    return { url: this.baseUrl, adminToken: this.adminToken, adminTokenGenerated: this.adminTokenGenerated };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.log.info({ events: this.registry.list().length }, 'node closing');
    this.edge.close();
    this.restreams.close();
    await this.recordings.close();
    this.registry.close();
    this.certificate?.close();
    await this.hands.close();
    for (const res of this.sseClients) res.end();
    this.sseClients.clear();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private routes(): void {
    const r = this.router;
    const page = async ({ res, url }: RouteContext) => {
      const file = await staticFile(pageFor(url.pathname) ?? '');
      if (!file) throw new NotFoundError('page not found');
      res.writeHead(200, { 'content-type': file.type, 'cache-control': 'no-cache' });
      res.end(file.body);
    };
    r.on('GET', '/', page);
    r.on('GET', '/publish/:id', page);
    r.on('GET', '/watch/:id', page);
    r.on('GET', '/static/:file', async ({ res, params }) => {
      const file = await staticFile(params.file);
      if (!file) throw new NotFoundError(`static file ${params.file} not found`);
      res.writeHead(200, { 'content-type': file.type, 'cache-control': 'no-cache' });
      res.end(file.body);
    });
    r.on('GET', '/metrics', async ({ res }) => {
      const { body, type } = await this.metrics.render();
      res.writeHead(200, { 'content-type': type });
      res.end(body);
    });
    healthRoutes(r, () => [() => this.notReady(), ...this.readinessChecks], () => ({ events: this.registry.list().length, sessions: this.edge.size }));
    r.on('GET', '/api/openapi.json', ({ res }) => json(res, 200, openApiDocument(this.operations, { title: 'mcu node' })));

    r.on('POST', '/api/events', async ({ req, res }) => {
      this.auth.authorize(req.headers.authorization, { roles: ['admin'] });
      if (this.draining || this.closed) throw new ServiceUnavailableError('this node is draining: create the event on another node', 30, 'draining');
      const body = await readJson(req, this.config.maxBodyBytes, createEventBody);
      if (body.record) await this.recordings.checkRecordOnJoin(body.record);
      const e = this.registry.create({ name: body.name, maxSpeakers: body.maxSpeakers ?? this.config.defaultMaxSpeakers, presentersJoin: body.presentersJoin });
      if (body.record) this.recordings.recordOnJoin(e, body.record);
      const ttlSeconds = this.config.tokenTtlSeconds;
      const issuer = this.auth.issuer;
      res.setHeader('location', `/api/events/${e.id}`);
      json(res, 201, {
        ...this.describe(e),
        tokens: {
          producer: issuer.issue({ event: e.id, role: 'producer', ttlSeconds }),
          presenter: issuer.issue({ event: e.id, role: 'presenter', ttlSeconds }),
          viewer: issuer.issue({ event: e.id, role: 'viewer', ttlSeconds }),
        },
      });
    });

    r.on('GET', '/api/events', ({ req, res }) => {
      const claims = this.auth.authorize(req.headers.authorization, { roles: ['admin', 'producer'] });
      const events = this.registry.list().filter((e) => claims.role === 'admin' || claims.evt === e.id);
      json(res, 200, { events: events.map((e) => this.describe(e)) });
    });

    r.on('GET', '/api/events/:id', ({ req, res, params, url }) => {
      this.auth.authorize(req.headers.authorization, { event: params.id, roles: ['admin', 'producer'] });
      const e = this.registry.get(params.id);
      // ?tickWindow=N: tick durations of the last N ticks only (benchmarks compare phases of a run).
      const window = Number(url.searchParams.get('tickWindow') ?? 0);
      const t = e.mixer.mixer.tickStats;
      const tickWindow = Number.isInteger(window) && window > 0 ? { tickWindow: { ticks: window, p50: t.percentileOfLast(50, window), p99: t.percentileOfLast(99, window) } } : {};
      json(res, 200, { ...this.describe(e), stats: { ...e.mixer.stats(), ...tickWindow }, participants: e.mixer.participants() });
    });

    r.on('DELETE', '/api/events/:id', ({ req, res, params }) => {
      this.auth.authorize(req.headers.authorization, { event: params.id, roles: ['admin', 'producer'] });
      this.registry.end(params.id);
      res.writeHead(204).end();
    });

    // The video layout switches on the next composed frame, without restarting encoders.
    r.on('PUT', '/api/events/:id/layout', async ({ req, res, params }) => {
      this.auth.authorize(req.headers.authorization, { event: params.id, roles: ['admin', 'producer'] });
      const e = this.registry.get(params.id);
      const body = await readJson(req, this.config.maxBodyBytes, layoutBody);
      let layout: VideoLayout;
      try {
        layout = parseLayout(body);
      } catch (err) {
        throw new ValidationError(`layout: ${(err as Error).message}`, 'kind');
      }
      e.mixer.setLayout(layout);
      json(res, 200, { layout });
    });

    r.on('GET', '/api/events/:id/tree', async ({ req, res, params }) => {
      this.auth.authorize(req.headers.authorization, { event: params.id, roles: ['admin', 'producer'] });
      const e = this.registry.get(params.id);
      json(res, 200, (await this.eventTree?.(e.id)) ?? this.singleNodeTree(e));
    });

    r.on('GET', '/api/events/:id/participants', ({ req, res, params }) => {
      this.auth.authorize(req.headers.authorization, { event: params.id, roles: ['admin', 'producer'] });
      json(res, 200, { participants: this.registry.get(params.id).mixer.participants() });
    });

    // Moderation: mute (out of selection and every mix until unmuted), live/backstage (in or out
    // of the program from the next tick and composed frame) and kick (WHIP sessions are torn
    // down, RTP sockets closed).
    r.on('PATCH', '/api/events/:id/participants/:pid', async ({ req, res, params }) => {
      this.auth.authorize(req.headers.authorization, { event: params.id, roles: ['admin', 'producer'] });
      const e = this.registry.get(params.id);
      const body = await readJson(req, this.config.maxBodyBytes, participantPatchBody);
      let info = e.mixer.participantSummary(params.pid);
      if (info && body.muted !== undefined) info = e.mixer.setMuted(params.pid, body.muted);
      if (info && body.muted !== undefined) e.moderation.setMuted(params.pid, body.muted);
      if (info && body.stage !== undefined) {
        const from = info.stage;
        info = e.mixer.setStage(params.pid, body.stage);
        if (info) e.moderation.setStage(params.pid, body.stage);
        if (info && from !== body.stage) {
          this.log.info({ event: e.id, participant: params.pid, stage: body.stage }, body.stage === 'live' ? 'presenter live' : 'presenter backstage');
          // A guest from the audience: its page shows where it is now.
          this.hands.moved(e.id, params.pid, body.stage);
        }
      }
      if (!info) throw new NotFoundError(`participant ${params.pid} not found`, 'participant_not_found');
      json(res, 200, info);
    });

    r.on('DELETE', '/api/events/:id/participants/:pid', ({ req, res, params }) => {
      this.auth.authorize(req.headers.authorization, { event: params.id, roles: ['admin', 'producer'] });
      const e = this.registry.get(params.id);
      if (!e.mixer.removeParticipant(params.pid)) {
        throw new NotFoundError(`participant ${params.pid} not found`, 'participant_not_found');
      }
      // Kicked for good: its grant (a resume grant, an invitation) cannot bring it back.
      e.moderation.kick(params.pid);
      res.writeHead(204).end();
    });

    r.on('POST', '/api/events/:id/rtp-participants', async ({ req, res, params }) => {
      const claims = this.auth.authorize(req.headers.authorization, { event: params.id, roles: ['admin', 'producer', 'presenter'] });
      const e = this.registry.get(params.id);
      const body = await readJson(req, this.config.maxBodyBytes, rtpParticipantBody);
      if (e.mixer.mixer.size >= this.config.maxParticipantsPerEvent) {
        throw new ServiceUnavailableError(`event ${e.id} has its maximum of ${this.config.maxParticipantsPerEvent} participants`, 10);
      }
      // Re-registering with its resume grant (after a failover), a participant comes back under its
      // id: refused when kicked, muted and on the stage the producer left it on.
      e.moderation.admit(claims.pid);
      if (claims.pid !== undefined && !(await e.mixer.mixer.departed(claims.pid))) {
        throw new ConflictError(`participant ${claims.pid} is connected already`, 'participant_exists');
      }
      const stage = e.moderation.stageOf(claims.pid) ?? claims.stage ?? body.stage;
      let info = await e.mixer.addRtpParticipant({ ...body, name: claims.name ?? body.name, ...(claims.pid !== undefined ? { id: claims.pid } : {}), ...(stage !== undefined ? { stage } : {}) });
      if (e.moderation.isMuted(info.id)) {
        e.mixer.setMuted(info.id, true);
        info = e.mixer.participantInfo(info.id) ?? info;
      }
      this.log.info({ event: e.id, participant: info.id, host: info.remoteHost, port: info.remotePort }, 'RTP participant joined');
      const resumeToken = resumeGrant(this.auth.issuer, e.id, { id: info.id, name: typeof info.name === 'string' ? info.name : undefined, stage: info.stage });
      res.setHeader('location', `/api/events/${e.id}/rtp-participants/${info.id}`);
      res.setHeader(RESUME_TOKEN_HEADER, resumeToken);
      json(res, 201, { ...info, resumeToken });
    });

    r.on('GET', '/api/events/:id/rtp-participants/:pid', ({ req, res, params }) => {
      this.auth.authorize(req.headers.authorization, { event: params.id, roles: ['admin', 'producer', 'presenter'] });
      const info = this.registry.get(params.id).mixer.participantInfo(params.pid);
      if (!info) throw new NotFoundError(`participant ${params.pid} not found`, 'participant_not_found');
      json(res, 200, info);
    });

    r.on('DELETE', '/api/events/:id/rtp-participants/:pid', ({ req, res, params }) => {
      this.auth.authorize(req.headers.authorization, { event: params.id, roles: ['admin', 'producer', 'presenter'] });
      if (!this.registry.get(params.id).mixer.removeParticipant(params.pid)) {
        throw new NotFoundError(`participant ${params.pid} not found`, 'participant_not_found');
      }
      this.log.info({ event: params.id, participant: params.pid, reason: 'deleted' }, 'RTP participant left');
      res.writeHead(204).end();
    });

    restreamRoutes(r, this.auth, this.restreams, (req, schema) => readJson(req, this.config.maxBodyBytes, schema));

    // WHIP (RFC 9725) ingest and WHEP playback: SDP offer in, SDP answer out, a session resource.
    for (const kind of ['whip', 'whep'] as const) {
      const roles = kind === 'whip' ? (['admin', 'producer', 'presenter'] as const) : (['admin', 'producer', 'presenter', 'viewer'] as const);
      r.on('POST', `/${kind}/:id`, async ({ req, res, params, url }) => {
        // ?token= too: a viewer redirected here from a mixer keeps its token in the URL, since
        // fetch and browsers drop Authorization on a cross-origin redirect.
        const token = url.searchParams.get('token');
        const claims = this.auth.authorize(req.headers.authorization, { event: params.id, roles: [...roles] }, token);
        const e = this.registry.get(params.id);
        // The producer's preview of one presenter, served here where its packets arrive.
        const source = kind === 'whep' ? url.searchParams.get('source') : null;
        if (source !== null) return playPresenterPreview(this.edge, e.mixer, claims, source, () => readSdp(req, this.config.maxBodyBytes), res);
        // A presenter grant (an invitation) joins on its own stage and as its own participant.
        // Coming back under its id (a resume grant), a presenter is put back on the stage the producer last moved it to.
        const grant = kind === 'whip' ? { stage: e.moderation.stageOf(claims.pid) ?? claims.stage, participantId: claims.pid, name: presenterName(claims, url.searchParams) } : {};
        if (kind === 'whep' && this.viewerPlacement) {
          const target = await this.viewerPlacement(e.id, 'whep');
          if (target !== null) {
            // The relay plays the rendition the viewer asked the mixer for.
            const rendition = url.searchParams.get('rendition');
            const located = rendition === null ? target : withQuery(target, 'rendition', rendition);
            redirectViewer(req, res, located, bearerToken(req.headers.authorization) ?? token);
            return;
          }
        }
        const offer = await readSdp(req, this.config.maxBodyBytes);
        // An invitation's grant works once (its hand is marked joined); the guest's hand is done when it leaves.
        if (kind === 'whip') e.moderation.admit(claims.pid);
        const hand = kind === 'whip' ? await this.hands.claim(e.id, claims) : null;
        const { session, answer } = kind === 'whip' ? await this.edge.publish(e.mixer, offer, grant) : await this.edge.play(programSourceOf(e.mixer), offer, { rendition: url.searchParams.get('rendition') ?? undefined });
        if (hand !== null) session.once('close', () => void this.hands.guestLeft(e.id, hand));
        // A presenter the producer muted stays muted when it comes back under its id; its resume
        // grant brings it back under that id (after a failover, on any mixer of the cluster).
        const joined = kind === 'whip' ? e.mixer.participantSummary(session.id) : undefined;
        if (joined && e.moderation.isMuted(session.id)) e.mixer.setMuted(session.id, true);
        res.writeHead(201, {
          'content-type': 'application/sdp',
          location: `/${kind}/${e.id}/${session.id}`,
          etag: session.etag,
          ...(joined ? { [RESUME_TOKEN_HEADER]: resumeGrant(this.auth.issuer, e.id, { id: session.id, name: typeof joined.name === 'string' ? joined.name : undefined, stage: joined.stage }) } : {}),
          'content-length': Buffer.byteLength(answer),
        });
        res.end(answer);
      });
      r.on('DELETE', `/${kind}/:id/:sid`, ({ req, res, params }) => {
        this.auth.authorize(req.headers.authorization, { event: params.id, roles: [...roles] });
        this.edge.end(kind, params.id, params.sid);
        res.writeHead(200).end();
      });
      // Trickle ICE and ICE restarts are optional in RFC 9725 §4.3: we answer 405 as it allows;
      // clients send every candidate in the offer.
      r.on('PATCH', `/${kind}/:id/:sid`, ({ req, params }) => {
        this.auth.authorize(req.headers.authorization, { event: params.id, roles: [...roles] });
        this.edge.get(kind, params.id, params.sid);
        throw new MethodNotAllowedError(['DELETE', 'OPTIONS'], 'trickle ICE and ICE restart are not supported: send all candidates in the offer');
      });
      r.on('GET', `/${kind}/:id/:sid`, ({ req, res, params }) => {
        this.auth.authorize(req.headers.authorization, { event: params.id, roles: [...roles] });
        json(res, 200, this.edge.get(kind, params.id, params.sid).describe());
      });
    }

    // Server-sent events: speaker changes as they happen. EventSource cannot set headers, so the
    // token may also come as ?token=.
    r.on('GET', '/api/events/:id/stream', ({ req, res, params, url }) => {
      const claims = this.auth.authorize(
        req.headers.authorization,
        { event: params.id, roles: ['admin', 'producer', 'presenter', 'viewer'] },
        url.searchParams.get('token'),
      );
      // ?events=hands: only the hand events (a watch page), none of the 4/s levels.
      this.stream(this.registry.get(params.id), req, res, claims, url.searchParams.get('events') === 'hands');
    });

    handRoutes({
      router: r,
      auth: this.auth,
      registry: this.registry,
      desk: this.hands,
      limits: this.handLimits,
      readJson: (req, schema) => readJson(req, this.config.maxBodyBytes, schema),
      baseUrl: () => this.baseUrl,
      tokenTtlSeconds: this.config.tokenTtlSeconds,
    });
    Object.assign(this.operations, handOperations);
  }

  private stream(e: EventRecord, req: IncomingMessage, res: ServerResponse, claims: TokenClaims, handsOnly = false): void {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    const send = (event: string, data: unknown) => {
      if (!res.writableEnded) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    if (!handsOnly) send('state', { speakers: e.mixer.mixer.speakerIds, dominantSpeaker: e.mixer.mixer.dominantSpeaker });
    const onSpeakers = (ids: string[]) => send('speakers', { speakers: ids });
    const onDominant = (id: string | null) => send('dominantSpeaker', { dominantSpeaker: id });
    const onEnded = (ended: EventRecord) => {
      if (ended.id !== e.id) return;
      // An event that moved to another node goes on there: pages reconnect through the event's URLs.
      if (ended.movedTo !== undefined) send('moved', { id: e.id, to: ended.movedTo });
      else send('ended', { id: e.id });
      res.end();
    };
    const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
    // Levels for meters, read from speaker selection (nothing is decoded for them); `participants`
    // whenever someone joins or leaves, noticed on the same beat.
    let roster = '';
    const sendLevels = () => {
      const levels = e.mixer.levels();
      const ids = levels.map((l) => `${l.id}:${l.stage}`).join(',');
      if (ids !== roster) {
        roster = ids;
        send('participants', { participants: e.mixer.participants() });
      }
      send('levels', { participants: levels, dominantSpeaker: e.mixer.mixer.dominantSpeaker });
    };
    let levelTimer: NodeJS.Timeout | undefined;
    if (!handsOnly) {
      sendLevels();
      levelTimer = setInterval(sendLevels, levelsIntervalMs);
      e.mixer.mixer.on('speakers', onSpeakers);
      e.mixer.mixer.on('dominantSpeaker', onDominant);
    }
    this.registry.on('ended', onEnded);
    this.sseClients.add(res);
    const stopHands = handStreamEvents(this.hands, this.handStreams, e.id, claims, send);
    const cleanup = () => {
      stopHands();
      clearInterval(keepAlive);
      clearInterval(levelTimer);
      e.mixer.mixer.off('speakers', onSpeakers);
      e.mixer.mixer.off('dominantSpeaker', onDominant);
      this.registry.off('ended', onEnded);
      this.sseClients.delete(res);
    };
    req.on('close', cleanup);
    res.on('close', cleanup);
  }

  /** This node alone: the root of its own tree, serving the event's WHEP viewers. */
  private singleNodeTree(e: EventRecord): EventTreeView {
    const viewers = this.edge.sessionCount('whep', e.id);
    const capacity = this.config.maxRtcSessions;
    return { nodes: [{ id: new URL(this.baseUrl || 'http://local').host, role: 'mixer', parent: null, depth: 0, viewers, capacity, load: viewerLoad(this.edge.size, capacity) }] };
  }

  private describe(e: EventRecord) {
    return {
      id: e.id,
      name: e.name,
      maxSpeakers: e.maxSpeakers,
      presentersJoin: e.presentersJoin,
      createdAt: e.createdAt,
      whip: `${this.baseUrl}/whip/${e.id}`,
      whep: `${this.baseUrl}/whep/${e.id}`,
      participants: e.mixer.mixer.size,
      layout: e.mixer.layout,
      speakers: e.mixer.mixer.speakerIds,
      dominantSpeaker: e.mixer.mixer.dominantSpeaker,
      ...this.describeExtra?.(e.id),
    };
  }

}

/**
 * The node's certificate when it serves HTTPS: both files or neither. Read here, before anything
 * listens, so that a bad file fails the start with its name.
 */
export function certificateOf(config: { tlsCert?: string; tlsKey?: string; tlsReloadIntervalMs?: number }, log?: Logger): ServerCertificate | undefined {
  const { tlsCert, tlsKey } = config;
  if (tlsCert === undefined && tlsKey === undefined) return undefined;
  if (tlsCert === undefined || tlsKey === undefined) {
    throw new ValidationError(`HTTPS needs both a certificate and its key: ${tlsCert === undefined ? 'tlsCert (--tls-cert, MCU_TLS_CERT)' : 'tlsKey (--tls-key, MCU_TLS_KEY)'} is missing`, 'tls');
  }
  return new ServerCertificate({ certFile: tlsCert, keyFile: tlsKey, reloadIntervalMs: config.tlsReloadIntervalMs, log });
}

/**
 * 307 keeps the method and body (RFC 9110 §15.4.8): fetch, werift clients and browsers re-POST the
 * SDP offer to the relay. The token goes along in the query string.
 */
function withQuery(url: string, name: string, value: string): string {
  const u = new URL(url);
  u.searchParams.set(name, value);
  return u.toString();
}

export function redirectViewer(req: IncomingMessage, res: ServerResponse, target: string, token: string | null | undefined): void {
  const location = new URL(target);
  if (token) location.searchParams.set('token', token);
  res.writeHead(307, { location: location.toString(), 'cache-control': 'no-store', 'content-length': 0 });
  res.end();
  req.resume();
}

/** Reads an SDP offer body (RFC 9725: Content-Type application/sdp). */
export async function readSdp(req: IncomingMessage, maxBytes: number): Promise<string> {
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/sdp') throw new UnsupportedMediaTypeError('the offer must be sent as application/sdp');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) throw new PayloadTooLargeError(`SDP is larger than ${maxBytes} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Reads and validates a JSON body (an empty body is `{}`), enforcing content type and size. */
async function readJson<T>(req: IncomingMessage, maxBytes: number, schema: z.ZodType<T>): Promise<T> {
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > maxBytes) throw new PayloadTooLargeError(`body is larger than ${maxBytes} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) throw new PayloadTooLargeError(`body is larger than ${maxBytes} bytes`);
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return parseWith(schema, {}, 'body');
  if (type !== 'application/json') throw new UnsupportedMediaTypeError('body must be application/json');
  return parseJsonBody(Buffer.concat(chunks).toString('utf8'), schema, 'body');
}
