/**
 * A mixer node in a cluster: the McuNode (HTTP API, WHIP ingest, mixing) plus
 *   - a NodeAgent (role 'mixer'): the root of its events' relay trees;
 *   - a TreeController (only the holder of the `tree.leader` lease acts) that builds the trees and
 *     places viewers; WHEP viewers of a clustered event are redirected (307) to the chosen relay;
 *   - the EventStore: events created through the API are stored in KV, ended ones marked ended;
 *   - per clustered event a FeedSender on a UDP port of its own: the program feed (audio and every
 *     video rendition, each on its SSRC), protected once with the event's feed key, to the tree
 *     roots (this node's children in the event's tree, from a ClusterClient). The port and the
 *     description of the streams (kind, codec, rendition, size, target bitrate) are advertised in the `feeds` KV
 *     bucket, so one mixer feeds any number of clustered events at once;
 *   - keyframe requests from the tree (already aggregated per SSRC by the FeedSender) go to the
 *     rendition's encoder;
 *   - the feed-key service: relays ask for the key on the control plane (FeedKeys.ts); each event's
 *     key is rotated every `feedKeyRotationMs` and when a node leaves or is declared dead
 *     (FeedKeyRotation.ts).
 *   - several mixers per cluster (docs/failover.md): each event is held by one mixer under a lease
 *     (EventLeases.ts) whose epoch grows with every change of hands; the others stand by and take it
 *     over when the holder dies, rebuilding the event from the `events` bucket (name, speakers
 *     limit, layout) with a new feed key, its feed advertised under the new epoch. The program is
 *     sent only while the lease is held. Any mixer answers for any event: requests for an event held
 *     elsewhere are redirected (307, the token in `?token=`) to the holder, WHEP viewers placed on
 *     a relay; new events go to the least-loaded mixer (MixerPlacement.ts). `moveEvent` hands an
 *     event to another mixer (planned, `mcu event move`), `drain` moves every event before closing.
 *   - recordings survive it too (docs/recording.md, parts): their definitions are stored with the
 *     event; a new holder continues each as its next part (after a crash at once, on a move once
 *     the old holder has closed its part); a holder that finds the event held elsewhere leaves
 *     them. Their GET routes are served from the Object Store on any mixer.
 */
import { EventEmitter } from 'node:events';
import {
  ClusterClient,
  NatsBus,
  type FeedStream,
  bearerToken,
  BusError,
  ConflictError,
  createLogger,
  DropCounter,
  NotFoundError,
  parseJsonBody,
  readMessage,
  rankMixers,
  NodeAgent,
  placementReplySchema,
  ServiceUnavailableError,
  subjects,
  TreeController,
  type Bus,
  type EventDefinition,
  type EventStore,
  type Logger,
  type PlacementReply,
} from '@mcu/control';
import { FeedSender, type StreamInfo } from '@mcu/relay';
import { parseLayout, type VideoRendition } from '@mcu/mixer';
import type { EventRecord, EventTreeView, McuNode, RouteContext, RouteEntry } from '@mcu/server';
import { json, redirectViewer, viewerLoad } from '@mcu/server';
import { EventLeases } from './EventLeases.js';
import { moveEventBody, takeoverReplySchema, takeoverRequestSchema, takeoverSubject, takeoverTimeoutMs, type TakeoverReply } from './EventHandover.js';
import { CpuMeter } from './CpuMeter.js';
import { clusterDefaults } from './ClusterConfig.js';
import { generateFeedKey, serveFeedKeys } from './FeedKeys.js';
import { FeedKeyRotation, validateRotation, type FeedKeyRotationReason } from './FeedKeyRotation.js';
import { mixerOperations } from './ClusterApi.js';
import { feedMetrics } from './FeedMetrics.js';
import { freeUdpPort, mediaAddressFor } from './UdpPort.js';
import { HandService } from './HandService.js';

/** A new holder waits this long at most for the old holder to close a recording's part in a planned handover. */
const HANDOVER_RECORDING_WAIT_MS = 5000;

export interface MixerRoleOptions {
  /** A listening node (its URL is registered). */
  node: McuNode;
  bus: Bus;
  cluster: string;
  nodeId: string;
  /** The cluster's shared token secret (the node must sign with it too); seals feed keys. */
  tokenSecret: string;
  /** Address the feed is sent from; relays see it as their parent's media address. */
  mediaHost?: string;
  /** Address relays receive the feed from (default: `mediaHost`, or this machine's IPv4 for a wildcard bind). */
  advertiseHost?: string;
  relayFanOut?: number;
  heartbeatIntervalMs?: number;
  deadAfterMs?: number;
  livenessCheckIntervalMs?: number;
  /** Each event's feed key is replaced this often (default `clusterDefaults.feedKeyRotationMs`, 10 minutes). */
  feedKeyRotationMs?: number;
  /** A rotation's next key is announced this long before use (default `clusterDefaults.feedKeyGraceMs`). */
  feedKeyGraceMs?: number;
  /** A replaced key still opens RTCP from the tree this long (default `clusterDefaults.feedKeyOverlapMs`). */
  feedKeyOverlapMs?: number;
  /** Cluster events (relays registered, dead, re-parented; feeds) with `node` bound; default: the node's logger. */
  logger?: Logger;
  /** An event's holder that could not renew its lease for this long stops sending; a standby takes it (default `clusterDefaults.eventLeaseTtlMs`). */
  eventLeaseTtlMs?: number;
  eventLeaseRenewIntervalMs?: number;
}

interface ClusteredEvent {
  id: string;
  keys: FeedKeyRotation;
  sender: FeedSender;
  client: ClusterClient;
  stopProgram: () => void;
  stopVideo: () => void;
  /** The feed's streams as advertised: the audio program, then one per video rendition. */
  streams: FeedStream[];
  /** Video SSRC → rendition id, for keyframe requests coming up the tree. */
  renditionBySsrc: Map<number, string>;
  /** Keyframe requests from the tree passed to the encoders. */
  keyframeRequests: number;
  /** Epoch of the event's lease this feed is sent under. */
  epoch: number;
  /** The layout, mutes and kicks last written to the `events` bucket (JSON), so a new holder rebuilds them. */
  storedLayout: string;
}

export interface MixerRoleEvents {
  /** An event's feed now goes to the cluster. */
  clustered: [eventId: string];
  /** An event's clustering failed (stored nowhere; viewers play on this node). */
  error: [Error];
  /** An event's feed is sealed with a new key from now on (its id), after a rotation for `reason`. */
  feedKeyRotated: [eventId: string, keyId: number, reason: FeedKeyRotationReason];
  /** This mixer took over an event (failover or handover) and rebuilt it. */
  tookOver: [eventId: string, epoch: number];
  /** This mixer stopped holding an event (lease lost or handed over). */
  gaveUp: [eventId: string];
}

export class MixerRole extends EventEmitter<MixerRoleEvents> {
  readonly node: McuNode;
  readonly agent: NodeAgent;
  readonly controller: TreeController;
  readonly cluster: string;
  readonly nodeId: string;
  readonly log: Logger;
  readonly #bus: Bus;
  readonly #opts: MixerRoleOptions;
  readonly #mediaHost: string;
  readonly #events = new Map<string, ClusteredEvent>();
  /** Events whose feed is being set up. */
  readonly #clustering = new Set<string>();
  /** Events ending here because another mixer holds them now: the cluster's record stays. */
  readonly #givingUp = new Set<string>();
  /** Events built here ahead of a handover (mixing, feed socket open, nothing sent) until the lease comes. */
  readonly #prepared = new Set<string>();
  readonly leases: EventLeases;
  readonly #cpu = new CpuMeter();
  #stopKeys: (() => void) | undefined;
  /** Raised hands in the cluster's store; relays' hand requests; notices to the relays. */
  hands: HandService | undefined;
  #stopGuard: (() => void) | undefined;
  #stateTimer: NodeJS.Timeout | undefined;
  /** Handover timeouts pending (cleared on close). */
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #abort = new AbortController();
  /** No other mixer was ever seen in the cluster: no standby could take an event over. */
  #soloMixer = true;
  #closed = false;

  private constructor(opts: MixerRoleOptions, mediaPort: number) {
    super();
    this.node = opts.node;
    this.#bus = opts.bus;
    this.#opts = opts;
    this.cluster = opts.cluster;
    this.nodeId = opts.nodeId;
    this.log = (opts.logger ?? opts.node.log ?? createLogger({ name: 'mixer' })).child({ node: opts.nodeId });
    this.#mediaHost = opts.mediaHost ?? opts.node.config.rtpHost ?? opts.node.config.host;
    const fanOut = opts.relayFanOut ?? clusterDefaults.mixerChildren;
    this.agent = new NodeAgent({
      bus: opts.bus,
      cluster: opts.cluster,
      node: {
        id: opts.nodeId,
        role: 'mixer',
        http: opts.node.url,
        // The registry wants a media address; each event's feed has its own port, advertised
        // per event in the `feeds` bucket (that is where relays take their parent's address from).
        media: { host: opts.advertiseHost ?? mediaAddressFor(this.#mediaHost), port: mediaPort },
        capacity: { viewers: opts.node.config.maxRtcSessions, children: fanOut },
      },
      load: () => this.#load(),
      heartbeatIntervalMs: opts.heartbeatIntervalMs,
    });
    this.controller = new TreeController({
      bus: opts.bus,
      cluster: opts.cluster,
      nodeId: opts.nodeId,
      relayFanOut: fanOut,
      deadAfterMs: opts.deadAfterMs,
      livenessCheckIntervalMs: opts.livenessCheckIntervalMs,
      // The tree must re-root within the failover's second when the dead mixer also led it.
      leaseTtlMs: opts.eventLeaseTtlMs ?? clusterDefaults.eventLeaseTtlMs,
      leaseRenewIntervalMs: opts.eventLeaseRenewIntervalMs ?? clusterDefaults.eventLeaseRenewIntervalMs,
    });
    this.leases = new EventLeases({
      bus: opts.bus,
      cluster: opts.cluster,
      nodeId: opts.nodeId,
      ttlMs: opts.eventLeaseTtlMs ?? clusterDefaults.eventLeaseTtlMs,
      renewIntervalMs: opts.eventLeaseRenewIntervalMs ?? clusterDefaults.eventLeaseRenewIntervalMs,
      candidates: (exclude) => this.standbyMixers(exclude),
      log: this.log,
    });
  }

  #load() {
    let participants = 0;
    let videoSources = 0;
    const events = this.node.registry.list();
    for (const e of events) {
      participants += e.mixer.mixer.size;
      videoSources += e.mixer.videoMixer?.sourceCount ?? 0;
    }
    return { viewers: this.node.edge.stats().whepSessions, children: this.#childCount(), cpu: this.#cpu.sample(), events: events.length, participants, videoSources, draining: this.node.isDraining };
  }

  /** Live mixers that would take an event over, first = next (least loaded), without `exclude`. */
  standbyMixers(exclude: ReadonlySet<string> = new Set()): string[] {
    return rankMixers(this.controller.registry.nodes(), { exclude, maxEvents: undefined }).map((n) => n.info.id);
  }

  /** Registers the node, starts the tree controller and takes over the node's viewer placement. */
  static async start(opts: MixerRoleOptions): Promise<MixerRole> {
    if (!opts.node.url) throw new Error('MixerRole: the node must be listening');
    validateRotation(rotationOf(opts));
    const mediaPort = await freeUdpPort(opts.mediaHost ?? opts.node.config.rtpHost ?? opts.node.config.host);
    const role = new MixerRole(opts, mediaPort);
    try {
      await role.#start();
      // Recordings go to the cluster's Object Store (opened on first use): they outlive this node, any node serves them.
      if (opts.bus instanceof NatsBus) {
        const bucket = `mcu-recordings-${opts.cluster.replace(/[^A-Za-z0-9_-]/g, '_')}`;
        const bus = opts.bus;
        opts.node.recordings.useObjectStore(() => bus.objectStore(bucket));
      }
    } catch (err) {
      await role.close();
      throw err;
    }
    return role;
  }

  get events(): EventStore {
    return this.controller.events;
  }

  /** The feed sender of a clustered event (tests and metrics). */
  feedSender(eventId: string): FeedSender | undefined {
    return this.#events.get(eventId)?.sender;
  }

  get clusteredEvents(): string[] {
    return [...this.#events.keys()];
  }

  /** The feed's streams as advertised to the relays (tests and diagnostics). */
  feedStreams(eventId: string): readonly FeedStream[] | undefined {
    return this.#events.get(eventId)?.streams;
  }

  /** Id of the key an event's feed is sealed with now (tests and diagnostics; never the key). */
  feedKeyId(eventId: string): number | undefined {
    return this.#events.get(eventId)?.keys.keyId;
  }

  /** Starts a feed-key rotation of every clustered event now (also done on an interval and when a node leaves or dies). */
  rotateFeedKeys(reason: FeedKeyRotationReason): void {
    for (const e of this.#events.values()) e.keys.rotate(reason);
  }

  /** Keyframe requests that came up an event's tree and reached its encoders. */
  keyframeRequestsFromTree(eventId: string): number {
    return this.#events.get(eventId)?.keyframeRequests ?? 0;
  }

  /** Where a new viewer of the event goes: a relay's URL for `kind`, or null (serve here). */
  async placeViewer(eventId: string, kind: 'whep' | 'rtp-viewers'): Promise<string | null> {
    if (!this.#events.has(eventId)) return null;
    return this.#placeRemote(eventId, kind);
  }

  /**
   * The relay tree of a clustered event for the console: assignments from KV (as every node sees
   * them), viewers and capacity from the registry's heartbeats. Null for an event served here alone.
   */
  eventTree(eventId: string): EventTreeView | null {
    const entry = this.#events.get(eventId);
    if (!entry) return null;
    const registry = this.controller.registry;
    const holding = this.#holding(eventId);
    const nodes = entry.client.tree().map((a) => {
      const live = registry.get(a.node);
      const viewers = live?.viewers ?? 0;
      const capacity = live?.info.capacity.viewers ?? 0;
      return {
        id: a.node,
        role: a.parent === null ? ('mixer' as const) : ('relay' as const),
        parent: a.parent,
        depth: a.depth,
        viewers,
        capacity,
        load: viewerLoad(viewers, capacity),
        ...(live?.cpu !== undefined ? { cpu: live.cpu } : {}),
      };
    });
    return nodes.length > 0 ? { nodes, ...(holding.holder ? { holder: { id: holding.holder, epoch: holding.epoch, standby: holding.standby } } : {}) } : null;
  }

  async #start(): Promise<void> {
    const node = this.node;
    await this.controller.start();
    await this.leases.start();
    this.#stopKeys = serveFeedKeys(this.#bus, this.cluster, this.#opts.tokenSecret, (id) => (this.leases.held(id) ? this.#events.get(id)?.keys.keys : undefined));
    this.hands = await HandService.start({ bus: this.#bus, cluster: this.cluster, node, log: this.log });
    node.registry.on('created', this.#onCreated);
    node.registry.on('ending', this.#onEnding);
    node.viewerPlacement = (id, kind) => this.placeViewer(id, kind);
    node.eventTree = async (id) => this.eventTree(id);
    node.describeExtra = (id) => this.#holding(id);
    this.#stopGuard = node.router.guard((ctx, route) => this.#guard(ctx, route));
    this.#serveTakeovers();
    node.router.on('POST', '/api/events/:id/move', async ({ req, res, params }) => {
      node.auth.authorize(req.headers.authorization, { event: params.id, roles: ['admin', 'producer'] });
      if (!this.leases.held(params.id)) throw new NotFoundError(`event ${params.id} is not held here`, 'event_not_found');
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const text = Buffer.concat(chunks).toString('utf8');
      const body = text.trim() === '' ? {} : parseJsonBody(text, moveEventBody, 'body');
      json(res, 200, await this.moveEvent(params.id, body.to));
    });
    this.#holdEvents();
    this.#observe();
    // Plain-RTP viewers (benchmarks, gateways) are served by relays only: redirect, or 503.
    node.router.on('POST', '/rtp-viewers/:id', async ({ req, res, params, url }) => {
      const token = url.searchParams.get('token');
      node.auth.authorize(req.headers.authorization, { event: params.id, roles: ['admin', 'producer', 'presenter', 'viewer'] }, token);
      node.registry.get(params.id);
      const target = await this.placeViewer(params.id, 'rtp-viewers');
      if (target === null) throw new ServiceUnavailableError('no relay has room for a plain-RTP viewer of this event', 1);
      redirectViewer(req, res, target, req.headers.authorization?.replace(/^Bearer\s+/i, '') ?? token);
    });
    Object.assign(node.operations, mixerOperations);
    // Registered last: other mixers see it only once it answers takeovers (a move to it right after
    // it appeared found no responder) and its routes and hooks are in place.
    await this.agent.start();
    this.log.info({ url: node.url, media: this.agent.info.media }, 'mixer registered with the cluster');
    for (const e of node.registry.list()) this.#onCreated(e);
  }

  /**
   * Hands a held event to another mixer, make-before-break as far as leases allow (EventHandover.ts):
   * the target is asked to stand by, the lease is released (this mixer stops sending), the target
   * takes it and feeds the tree, then the event ends here (its presenters re-publish through the
   * event's URL to the target). `to`: a mixer's node id (default: the least-loaded other one).
   */
  async moveEvent(id: string, to?: string): Promise<{ id: string; from: string; to: string; epoch: number; gapMs: number }> {
    if (!this.leases.held(id)) throw new NotFoundError(`event ${id} is not held here`, 'event_not_found');
    const target = to ?? this.standbyMixers(new Set([this.nodeId]))[0];
    if (target === undefined || target === this.nodeId || this.controller.registry.get(target)?.info.role !== 'mixer') {
      throw new ConflictError(to ? `mixer ${to} is not another live mixer of the cluster` : 'no other mixer can take the event');
    }
    const ask = async (step: 'prepare' | 'take'): Promise<TakeoverReply> => {
      const m = await this.#bus.request(takeoverSubject(this.cluster, target), { v: 1, event: id, step, from: this.nodeId }, { timeoutMs: takeoverTimeoutMs });
      const reply = takeoverReplySchema.parse(m.json());
      if (!reply.ok) throw new ServiceUnavailableError(`mixer ${target} refused the event: ${reply.error ?? 'no reason'}`, 1, 'takeover_refused');
      return reply;
    };
    await ask('prepare');
    this.log.info({ event: id, to: target }, 'handing the event over');
    const releasedAt = performance.now();
    this.#givingUp.add(id);
    let reply: TakeoverReply;
    let recordingsHandedOver: Promise<void> = Promise.resolve();
    const recordings = this.node.recordings.definitionsOf(id);
    try {
      await this.leases.release(id);
      // Recordings close their segments while the target takes the lease; it waits for that before it opens the next ones.
      recordingsHandedOver = this.node.recordings.handOver(id);
      reply = await ask('take');
    } catch (err) {
      // The target did not take it: take it back (under a new epoch if someone else had it meanwhile),
      // and its recordings with it (each as a new part here).
      this.#givingUp.delete(id);
      const back = await this.leases.hold(id).catch(() => false);
      await recordingsHandedOver;
      if (back && recordings.length > 0 && this.node.registry.has(id)) void this.node.recordings.resume(this.node.registry.get(id), recordings, 0);
      throw err;
    }
    const gapMs = Math.round(performance.now() - releasedAt);
    try {
      if (this.node.registry.has(id)) {
        // Presenters hear `moved` on the event stream and re-publish at once (publish.js).
        this.node.registry.get(id).movedTo = target;
        this.node.registry.end(id);
      }
    } finally {
      this.#givingUp.delete(id);
    }
    this.leases.standBy(id);
    this.emit('gaveUp', id);
    // (The presenters were told first: a recording's last segment may take a while to upload.)
    await recordingsHandedOver;
    return { id, from: this.nodeId, to: target, epoch: reply.epoch ?? 0, gapMs };
  }

  /** Answers the handover requests addressed to this mixer. */
  #serveTakeovers(): void {
    const drops = new DropCounter();
    const sub = this.#bus.subscribe(takeoverSubject(this.cluster, this.nodeId));
    this.#abort.signal.addEventListener('abort', () => sub.unsubscribe());
    void (async () => {
      try {
        for await (const m of sub) {
          const req = readMessage(takeoverRequestSchema, m.data, drops);
          if (!req) continue;
          void this.#takeover(req.event, req.step).then(
            (reply) => m.respond(reply),
            (err: unknown) => m.respond({ v: 1, ok: false, error: String((err as Error)?.message ?? err).slice(0, 300) }),
          );
        }
      } catch {
        // the bus closed
      }
    })();
  }

  async #takeover(id: string, step: 'prepare' | 'take'): Promise<TakeoverReply> {
    if (this.#closed || this.node.isDraining) return { v: 1, ok: false, error: 'this mixer is draining' };
    if (step === 'prepare') {
      this.leases.standBy(id);
      await this.#prepare(id);
      return { v: 1, ok: true };
    }
    const clustered = new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#timers.delete(timer);
        this.off('clustered', on);
        resolve();
      };
      const on = (eventId: string) => {
        if (eventId === id) done();
      };
      this.on('clustered', on);
      const timer = setTimeout(done, takeoverTimeoutMs - 500);
      this.#timers.add(timer);
    });
    if (!(await this.leases.tryNow(id))) return { v: 1, ok: false, error: 'the lease is not free' };
    await clustered;
    return this.#events.has(id) ? { v: 1, ok: true, epoch: this.leases.epochOf(id) } : { v: 1, ok: false, error: 'the event did not start here' };
  }

  /** Who holds the event, under which epoch, and who would take it over (event descriptions, the tree). */
  #holding(id: string): { holder: string | null; epoch: number; standby: string[] } {
    const rec = this.leases.holderOf(id);
    const holder = this.leases.held(id) ? this.nodeId : (rec?.holder ?? null);
    const epoch = this.leases.held(id) ? this.leases.epochOf(id) : (rec?.epoch ?? 0);
    return { holder, epoch, standby: this.standbyMixers(new Set(holder ? [holder] : [])) };
  }

  /**
   * The events of the cluster and their leases: a standby lease on every live event held
   * elsewhere; a lease won is an event to rebuild here; a lease lost stops the program (the sinks
   * read `held`), and an event another mixer holds now ends here (its presenters come back
   * through the event's URLs, which lead to the new holder).
   */
  #holdEvents(): void {
    const leases = this.leases;
    leases.on('acquired', (id, epoch) => {
      this.log.info({ event: id, epoch }, 'event lease acquired');
      this.#events.get(id)?.sender.setSilenced(false);
      if (!this.node.registry.has(id)) void this.#rebuild(id, epoch);
      else if (this.#events.has(id)) void this.#restamp(id, epoch);
    });
    leases.on('lost', (id) => {
      this.log.warn({ event: id }, 'event lease lost: the program is no longer sent');
      if (!this.#soloMixer) this.#events.get(id)?.sender.setSilenced(true);
      this.#giveUpIfHeldElsewhere(id);
    });
    leases.on('holder', (id) => this.#giveUpIfHeldElsewhere(id));
    // Solo until another mixer shows up, and never again after: a mixer cut off from NATS sees
    // every other node die, and must not take that for being alone.
    const registry = this.controller.registry;
    const countMixers = () => {
      if (registry.nodes().some((n) => n.info.role === 'mixer' && n.info.id !== this.nodeId)) this.#soloMixer = false;
    };
    registry.on('nodeJoined', countMixers);
    countMixers();
    this.controller.registry.on('nodeDead', (id) => {
      if (id === this.nodeId) return;
      leases.holderDead(id);
      void this.controller.takeOverFrom(id);
    });
    const signal = this.#abort.signal;
    void (async () => {
      for (let attempt = 0; !signal.aborted; attempt++) {
        try {
          for await (const change of this.events.watch({ signal })) {
            attempt = 0;
            const live = change.event !== null && change.event.ended !== true;
            if (live && !this.node.registry.has(change.id) && !this.#clustering.has(change.id)) leases.standBy(change.id);
            if (!live && !this.node.registry.has(change.id)) leases.forget(change.id);
          }
          return;
        } catch (err) {
          if (err instanceof BusError && err.reason === 'closed') return;
          await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** attempt, 2000)));
        }
      }
    })();
    // The producer's layout, mutes and kicks go to the store, so a new holder rebuilds them.
    this.#stateTimer = setInterval(() => {
      for (const entry of this.#events.values()) {
        if (!this.leases.held(entry.id) || !this.node.registry.has(entry.id)) continue;
        const e = this.node.registry.get(entry.id);
        const layout = this.#storedState(e);
        if (layout === entry.storedLayout) continue;
        entry.storedLayout = layout;
        void this.#store(entry.id, entry.epoch).catch(() => {
          entry.storedLayout = '';
        });
      }
    }, 500);
    this.#stateTimer.unref();
  }

  #giveUpIfHeldElsewhere(id: string): void {
    const rec = this.leases.holderOf(id);
    if (!this.node.registry.has(id) || this.leases.held(id) || !rec || rec.holder === null || rec.holder === this.nodeId) return;
    this.log.warn({ event: id, holder: rec.holder, epoch: rec.epoch }, 'event held by another mixer now: ending it here');
    // The new holder continues the recordings from what is stored: nothing more is written here
    // (unless this mixer is handing the event over itself: its recordings are closing their parts).
    if (!this.#givingUp.has(id)) this.node.recordings.abandon(id);
    this.#givingUp.add(id);
    try {
      this.node.registry.get(id).movedTo = rec.holder;
      this.node.registry.end(id);
    } finally {
      this.#givingUp.delete(id);
      this.leases.standBy(id);
      this.emit('gaveUp', id);
    }
  }

  /** Won the lease of an event this node does not run: rebuild it from the cluster's store. */
  async #rebuild(id: string, epoch: number): Promise<void> {
    const started = performance.now();
    const def = await this.events.get(id).catch(() => null);
    if (!def || def.ended) {
      await this.leases.release(id);
      return;
    }
    if (!this.leases.held(id) || this.node.registry.has(id)) return;
    let e: EventRecord;
    try {
      e = this.node.registry.create({ id, name: def.name, maxSpeakers: def.maxSpeakers, presentersJoin: def.presentersJoin });
      e.moderation.load(def);
    } catch (err) {
      this.log.warn({ event: id, err }, 'cannot take over the event here: releasing it');
      await this.leases.release(id);
      return;
    }
    if (def.layout !== undefined) {
      try {
        e.mixer.setLayout(parseLayout(def.layout));
      } catch {
        // a layout this version cannot read: the default grid
      }
    }
    // The recordings go on here, each as a new part after what the old holder stored.
    if (def.recordings && def.recordings.length > 0) void this.node.recordings.resume(e, def.recordings, 0);
    // Armed to record on its first presenter and nobody joined yet: armed here now.
    else if (def.recordOnJoin) this.node.recordings.recordOnJoin(e, def.recordOnJoin);
    this.log.info({ event: id, epoch, previousHolder: def.mixer, rebuildMs: Math.round(performance.now() - started) }, 'event taken over');
    this.emit('tookOver', id, epoch);
  }

  /** Took the lease back (or under a new epoch) for an event already fed from here. */
  async #restamp(id: string, epoch: number): Promise<void> {
    const entry = this.#events.get(id);
    if (entry && this.#prepared.has(id)) return this.#activate(entry, epoch);
    if (!entry || entry.epoch === epoch) return;
    entry.epoch = epoch;
    const media = { host: this.#opts.advertiseHost ?? mediaAddressFor(this.#mediaHost), port: entry.sender.address.port };
    await entry.client.advertise(media, entry.streams, epoch).catch(() => undefined);
    await this.#store(id, epoch).catch(() => undefined);
  }

  /** Writes the event's definition as this holder runs it (holder, epoch, layout). */
  async #store(id: string, epoch: number): Promise<void> {
    const e = this.node.registry.get(id);
    const prev = await this.events.get(id);
    await this.events.put({
      v: 1,
      id,
      name: e.name.slice(0, 200),
      mixer: this.nodeId,
      createdAt: prev?.createdAt ?? Date.now(),
      maxSpeakers: e.maxSpeakers,
      presentersJoin: e.presentersJoin,
      layout: e.mixer.layout,
      epoch,
      muted: e.moderation.muted,
      kicked: e.moderation.kicked,
      stages: e.moderation.stages,
      recordings: this.node.recordings.definitionsOf(id).slice(0, 64),
      recordOnJoin: armedRequest(this.node.recordings.armedOf(id)),
    });
  }

  /**
   * Requests for an event held by another mixer go there (307; the token rides in `?token=`,
   * which the holder's guard moves back into the Authorization header); WHEP viewers are placed
   * on a relay. A request redirected here with `?token=` gets it as its Authorization header.
   */
  async #guard(ctx: RouteContext, route: RouteEntry): Promise<boolean> {
    const { req, res, url, params } = ctx;
    const token = url.searchParams.get('token');
    if (token && !req.headers.authorization && route.path.startsWith('/api/events')) req.headers.authorization = `Bearer ${token}`;
    if (route.method === 'POST' && route.path === '/api/events') return this.#placeEvent(ctx);
    const id = params.id;
    if (!id || !/^\/(api\/events|whip|whep|rtp-viewers)\//.test(route.path)) return false;
    if (this.leases.held(id)) return false;
    // Recordings are read from the cluster's Object Store on any mixer (also while the event changes mixers).
    if (route.method === 'GET' && route.path.startsWith('/api/events/:id/recordings') && this.node.recordings.recorder.store.kind === 'object-store') return false;
    const rec = this.leases.holderOf(id);
    if (!rec || rec.holder === null || rec.holder === this.nodeId) return false;
    const claims = this.node.auth.authorize(req.headers.authorization, { event: id, roles: ['admin', 'producer', 'presenter', 'viewer'] }, token);
    const presented = bearerToken(req.headers.authorization) ?? token;
    if (route.method === 'POST' && (route.path === '/whep/:id' || route.path === '/rtp-viewers/:id')) {
      const kind = route.path === '/whep/:id' ? 'whep' : 'rtp-viewers';
      const target = await this.#placeRemote(id, kind);
      if (target === null) throw new ServiceUnavailableError('no relay has room for a viewer of this event yet', 1);
      const rendition = url.searchParams.get('rendition');
      redirectViewer(req, res, rendition === null ? target : `${target}${target.includes('?') ? '&' : '?'}rendition=${encodeURIComponent(rendition)}`, presented);
      return true;
    }
    void claims;
    const holder = this.controller.registry.get(rec.holder);
    if (!holder) throw new ServiceUnavailableError(`event ${id} is changing mixers: try again`, 1, 'event_moving');
    redirectViewer(req, res, `${holder.info.http.replace(/\/$/, '')}${url.pathname}${url.search}`, presented);
    return true;
  }

  /** A new event goes to the least-loaded mixer with room: here, or a 307 to that mixer. */
  #placeEvent({ req, res, url }: RouteContext): boolean {
    if (url.searchParams.has('placed')) return false;
    const best = this.standbyMixers()[0];
    if (best === undefined || best === this.nodeId) return false;
    const target = this.controller.registry.get(best);
    if (!target) return false;
    this.node.auth.authorize(req.headers.authorization, { roles: ['admin'] });
    const location = new URL(`${target.info.http.replace(/\/$/, '')}/api/events?placed=1`);
    const presented = bearerToken(req.headers.authorization);
    if (presented) location.searchParams.set('token', presented);
    res.writeHead(307, { location: location.toString(), 'cache-control': 'no-store', 'content-length': 0 });
    res.end();
    req.resume();
    return true;
  }

  /** Placement of a viewer of an event held elsewhere: asked over the bus (the tree leader answers). */
  async #placeRemote(eventId: string, kind: 'whep' | 'rtp-viewers'): Promise<string | null> {
    let reply: PlacementReply;
    if (this.controller.isLeader) reply = this.controller.placeViewer(eventId);
    else {
      try {
        const m = await this.#bus.request(subjects(this.cluster).event(eventId).place, { v: 1 }, { timeoutMs: clusterDefaults.placementTimeoutMs });
        reply = placementReplySchema.parse(m.json());
      } catch {
        return null;
      }
    }
    return reply.relay ? `${reply.relay.http.replace(/\/$/, '')}/${kind}/${eventId}` : null;
  }

  /** Logs, readiness and metrics of the cluster side of the node. */
  #observe(): void {
    const log = this.log;
    const registry = this.controller.registry;
    registry.on('nodeJoined', (info) => log.info({ relay: info.id, role: info.role, http: info.http }, `${info.role} registered`));
    // A node that is gone must not go on reading the feeds: new keys for every event (FeedKeyRotation).
    registry.on('nodeLeft', (id) => {
      log.info({ relay: id }, 'node left the cluster');
      if (id !== this.nodeId) this.rotateFeedKeys('node_left');
    });
    registry.on('nodeDead', (id) => {
      log.warn({ relay: id }, 'node declared dead');
      if (id !== this.nodeId) this.rotateFeedKeys('node_dead');
    });
    const parents = new Map<string, string | null>();
    this.controller.on('assigned', (a) => {
      const key = `${a.event}.${a.node}`;
      const before = parents.get(key);
      parents.set(key, a.parent);
      if (a.parent === null) return;
      if (before === undefined) log.info({ event: a.event, relay: a.node, parent: a.parent, depth: a.depth }, 'relay joined the tree');
      else if (before !== a.parent) log.info({ event: a.event, relay: a.node, parent: a.parent, previousParent: before, depth: a.depth }, 'relay re-parented');
    });
    this.controller.on('removed', (event, node) => parents.delete(`${event}.${node}`));
    this.controller.on('leader', () => log.info('tree controller leading'));
    this.controller.on('follower', () => log.info('tree controller following'));
    const bus = this.#bus;
    this.node.readinessChecks.push(
      () => (bus.connected ? null : { reason: 'bus_disconnected', message: 'the mixer is disconnected from NATS' }),
      () => (this.agent.registered ? null : { reason: 'not_registered', message: 'the mixer is not registered with the cluster' }),
    );
    this.node.metrics.watchBus(() => bus.connected);
    feedMetrics(this.node.metrics.registry, () => [...this.#events.values()].map((e) => e.sender.stats), () => this.#childCount());
  }

  /**
   * Graceful stop of a mixer: the node drains (no new events; `/readyz` 503) and the running events
   * go on until they end or `timeoutMs` passes; then the role leaves the cluster and the node closes.
   */
  async drain(opts: { timeoutMs: number }): Promise<void> {
    // Planned handover first: every event this mixer holds moves to another mixer, if there is one.
    for (const id of this.leases.heldEvents()) {
      if (this.standbyMixers(new Set([this.nodeId])).length === 0) break;
      try {
        const moved = await this.moveEvent(id);
        this.log.info(moved, 'event handed over before the mixer stops');
      } catch (err) {
        this.log.warn({ event: id, err }, 'handing the event over failed: it runs here until the drain ends');
      }
    }
    await this.node.drain(opts);
    await this.close();
  }

  readonly #onCreated = (e: EventRecord): void => {
    if (this.#closed || this.#clustering.has(e.id) || this.#events.has(e.id)) return;
    this.#clustering.add(e.id);
    this.#cluster(e)
      .catch((err: unknown) => {
        this.emit('error', err instanceof Error ? err : new Error(String(err)));
      })
      .finally(() => this.#clustering.delete(e.id));
  };

  async #cluster(e: EventRecord): Promise<void> {
    // The event's lease first: a new event's is free (epoch 1), a taken-over one's is held already.
    // An event prepared for a handover waits for it (the feed is set up, nothing is advertised).
    const prepared = this.#prepared.has(e.id);
    if (!prepared && !(await this.leases.hold(e.id))) {
      const rec = this.leases.holderOf(e.id);
      throw new Error(`event ${e.id} is held by ${rec?.holder ?? 'another mixer'}: not clustered here`);
    }
    const epoch = this.leases.epochOf(e.id);
    const key = generateFeedKey();
    const mixer = e.mixer.mixer;
    const audio: FeedStream = { ssrc: mixer.programSsrc, kind: 'audio', codec: 'opus', rtpTimestampBase: mixer.programTimestampBase };
    // A port of its own per event: relays accept an event's feed only from its parent's address.
    const sender = await FeedSender.open({ bindHost: this.#mediaHost, bindPort: 0, key, streams: streamMapOf([audio]) });
    const client = new ClusterClient({ bus: this.#bus, cluster: this.cluster, event: e.id, nodeId: this.nodeId, eventMedia: true });
    const rotation = rotationOf(this.#opts);
    const keys = new FeedKeyRotation({ bus: this.#bus, cluster: this.cluster, secret: this.#opts.tokenSecret, event: e.id, sender, log: this.log, ...rotation }, key);
    keys.on('switched', (keyId, reason) => this.emit('feedKeyRotated', e.id, keyId, reason));
    const entry: ClusteredEvent = {
      id: e.id,
      keys,
      sender,
      client,
      stopProgram: () => undefined,
      stopVideo: () => undefined,
      streams: [audio],
      renditionBySsrc: new Map(),
      keyframeRequests: 0,
      epoch,
      storedLayout: this.#storedState(e),
    };
    if (this.#closed || e.mixer.isClosed || !this.node.registry.has(e.id)) {
      keys.close();
      sender.close();
      return;
    }
    this.#events.set(e.id, entry);
    const media = { host: this.#opts.advertiseHost ?? mediaAddressFor(this.#mediaHost), port: sender.address.port };
    this.log.info({ event: e.id }, 'event clustered: its feed goes to the relay tree');
    // Only the holder of the lease sends: `held` is a clock comparison against its last renewal.
    // A mixer that knows no other mixer sends anyway: nobody can take over, and a NATS outage
    // must not silence the only program there is.
    const leases = this.leases;
    const id = e.id;
    entry.stopProgram = mixer.addProgramSink((packet) => {
      if (this.#soloMixer || leases.held(id)) sender.send(packet);
    });
    entry.stopVideo = e.mixer.addAllVideoProgramSink((packet, length, rendition) => {
      if (!entry.renditionBySsrc.has(rendition.ssrc)) this.#describeRendition(entry, media, rendition);
      if (this.#soloMixer || leases.held(id)) sender.send(packet, length);
    });
    sender.on('keyframeRequest', (ssrc) => {
      const rendition = entry.renditionBySsrc.get(ssrc);
      if (rendition === undefined) return;
      entry.keyframeRequests++;
      e.mixer.requestVideoKeyframe(rendition);
    });
    client.on('children', (children) => sender.setChildren(children.map((c) => c.media)));
    await client.start();
    sender.setChildren(client.children.map((c) => c.media));
    if (prepared) {
      if (this.leases.held(id)) await this.#activate(entry, this.leases.epochOf(id));
      return;
    }
    await client.advertise(media, entry.streams, entry.epoch);
    keys.announce();
    await this.#store(e.id, entry.epoch);
    this.emit('clustered', e.id);
  }

  /** A prepared event's lease came (a handover): advertise the feed under the epoch, hand out its key, store. */
  async #activate(entry: ClusteredEvent, epoch: number): Promise<void> {
    if (!this.#prepared.delete(entry.id)) return;
    entry.epoch = epoch;
    // The recordings go on here once the old holder has closed its part (it does so as it releases the lease).
    const def = await this.events.get(entry.id).catch(() => null);
    if (def?.recordings && def.recordings.length > 0 && this.node.registry.has(entry.id)) {
      void this.node.recordings.resume(this.node.registry.get(entry.id), def.recordings, HANDOVER_RECORDING_WAIT_MS);
    } else if (def?.recordOnJoin && this.node.registry.has(entry.id)) {
      this.node.recordings.recordOnJoin(this.node.registry.get(entry.id), def.recordOnJoin);
    }
    const media = { host: this.#opts.advertiseHost ?? mediaAddressFor(this.#mediaHost), port: entry.sender.address.port };
    entry.keys.announce();
    await entry.client.advertise(media, entry.streams, epoch);
    await this.#store(entry.id, epoch);
    this.log.info({ event: entry.id, epoch }, 'event taken over (prepared for a handover)');
    this.emit('clustered', entry.id);
    this.emit('tookOver', entry.id, epoch);
  }

  /** Builds an event from the store ahead of a handover: mixing and its feed socket ready, nothing sent until the lease comes. */
  async #prepare(id: string): Promise<void> {
    if (this.node.registry.has(id)) return;
    const def = await this.events.get(id);
    if (!def || def.ended) throw new NotFoundError(`event ${id} is not live`, 'event_not_found');
    if (this.node.registry.has(id)) return;
    this.#prepared.add(id);
    const e = this.node.registry.create({ id, name: def.name, maxSpeakers: def.maxSpeakers, presentersJoin: def.presentersJoin });
    e.moderation.load(def);
    if (def.layout !== undefined) {
      try {
        e.mixer.setLayout(parseLayout(def.layout));
      } catch {
        // a layout this version cannot read: the default grid
      }
    }
    for (let i = 0; i < 200 && this.#clustering.has(id); i++) await new Promise((r) => setTimeout(r, 10));
    // A handover that never comes: the prepared copy goes after a while.
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (!this.#prepared.has(id) || this.leases.held(id)) return;
      this.#prepared.delete(id);
      this.#givingUp.add(id);
      try {
        if (this.node.registry.has(id)) this.node.registry.end(id);
      } finally {
        this.#givingUp.delete(id);
      }
    }, 15_000);
    this.#timers.add(timer);
  }

  /** A rendition's first packet (or its new SSRC after an encoder's restart): describe it to the relays. */
  #describeRendition(entry: ClusteredEvent, media: { host: string; port: number }, r: VideoRendition): void {
    for (const [ssrc, id] of entry.renditionBySsrc) if (id === r.id) entry.renditionBySsrc.delete(ssrc);
    entry.renditionBySsrc.set(r.ssrc, r.id);
    const video: FeedStream = { ssrc: r.ssrc, kind: 'video', codec: r.codec, rendition: r.id, width: r.width, height: r.height, bitrateKbps: r.bitrateKbps, rtpTimestampBase: r.rtpTimestampBase };
    entry.streams = [...entry.streams.filter((s) => s.kind !== 'video' || s.rendition !== r.id), video];
    entry.sender.setStreams(streamMapOf(entry.streams));
    entry.client.advertise(media, entry.streams, entry.epoch).catch((err: unknown) => this.emit('error', err instanceof Error ? err : new Error(String(err))));
  }

  readonly #onEnding = (e: EventRecord): void => {
    const entry = this.#events.get(e.id);
    if (!entry) return;
    this.#events.delete(e.id);
    entry.stopProgram();
    entry.stopVideo();
    entry.keys.close();
    entry.sender.close();
    void entry.client.close();
    if (this.#givingUp.has(e.id)) return;
    // Relays see it ended and free their feeds; the controller drops the tree. Then the lease goes.
    void this.events
      .end(e.id)
      .catch(() => undefined)
      .then(() => this.leases.release(e.id));
  };

  #storedState(e: EventRecord): string {
    return storedState(e, this.node.recordings.definitionsOf(e.id), this.node.recordings.armedOf(e.id) !== undefined);
  }

  #childCount(): number {
    let n = 0;
    for (const e of this.#events.values()) n += e.sender.children.length;
    return n;
  }

  /** Graceful: ends feeds (events stay running on the node), leaves the cluster. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.node.registry.off('created', this.#onCreated);
    this.node.registry.off('ending', this.#onEnding);
    this.node.viewerPlacement = undefined;
    this.node.eventTree = undefined;
    this.node.describeExtra = undefined;
    this.#stopGuard?.();
    this.#abort.abort();
    if (this.#stateTimer) clearInterval(this.#stateTimer);
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    this.#stopKeys?.();
    this.hands?.close();
    for (const entry of this.#events.values()) {
      entry.stopProgram();
      entry.stopVideo();
      entry.keys.close();
      entry.sender.close();
      await entry.client.close();
    }
    this.#events.clear();
    // A standby will take the events and continue their recordings: their parts end here first.
    if (!this.#soloMixer) await Promise.all(this.leases.heldEvents().map((id) => this.node.recordings.handOver(id).catch(() => undefined)));
    // Released: a standby takes the events at once (they keep running here until the node closes).
    await this.leases.closeAll();
    await this.agent.close();
    await this.controller.close();
  }
}

function rotationOf(o: MixerRoleOptions): { rotationMs: number; graceMs: number; overlapMs: number } {
  return {
    rotationMs: o.feedKeyRotationMs ?? clusterDefaults.feedKeyRotationMs,
    graceMs: o.feedKeyGraceMs ?? clusterDefaults.feedKeyGraceMs,
    overlapMs: o.feedKeyOverlapMs ?? clusterDefaults.feedKeyOverlapMs,
  };
}

function streamMapOf(streams: readonly FeedStream[]): Map<number, StreamInfo> {
  const map = new Map<number, StreamInfo>();
  for (const s of streams) map.set(s.ssrc, s.kind === 'audio' ? { kind: 'audio', codec: 'opus' } : { kind: 'video', codec: s.codec });
  return map;
}

/** An armed record-on-first-presenter request as stored in the definition. */
function armedRequest(req: { readonly recipients?: readonly string[]; rendition?: string | false; segmentMinutes?: number } | undefined): EventDefinition['recordOnJoin'] {
  if (!req) return undefined;
  return { recipients: req.recipients ? [...req.recipients] : undefined, rendition: req.rendition, segmentMinutes: req.segmentMinutes };
}

/** What a holder keeps in the event's stored definition beyond its creation: layout, mutes, kicks, stages, recordings, armed to record. */
function storedState(e: EventRecord, recordings: readonly { id: string }[], armed: boolean): string {
  return JSON.stringify([e.mixer.layout, e.moderation.muted, e.moderation.kicked, e.moderation.stages, recordings.map((r) => r.id), armed]);
}
