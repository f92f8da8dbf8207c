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
 */
import { EventEmitter } from 'node:events';
import {
  ClusterClient,
  NatsBus,
  type FeedStream,
  createLogger,
  NodeAgent,
  placementReplySchema,
  ServiceUnavailableError,
  subjects,
  TreeController,
  type Bus,
  type EventStore,
  type Logger,
  type PlacementReply,
} from '@mcu/control';
import { FeedSender, type StreamInfo } from '@mcu/relay';
import type { VideoRendition } from '@mcu/mixer';
import type { EventRecord, EventTreeView, McuNode } from '@mcu/server';
import { redirectViewer, viewerLoad } from '@mcu/server';
import { clusterDefaults } from './ClusterConfig.js';
import { generateFeedKey, serveFeedKeys } from './FeedKeys.js';
import { FeedKeyRotation, validateRotation, type FeedKeyRotationReason } from './FeedKeyRotation.js';
import { mixerOperations } from './ClusterApi.js';
import { feedMetrics } from './FeedMetrics.js';
import { freeUdpPort, mediaAddressFor } from './UdpPort.js';

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
}

export interface MixerRoleEvents {
  /** An event's feed now goes to the cluster. */
  clustered: [eventId: string];
  /** An event's clustering failed (stored nowhere; viewers play on this node). */
  error: [Error];
  /** An event's feed is sealed with a new key from now on (its id), after a rotation for `reason`. */
  feedKeyRotated: [eventId: string, keyId: number, reason: FeedKeyRotationReason];
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
  #stopKeys: (() => void) | undefined;
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
      load: () => ({ viewers: this.node.edge.stats().whepSessions, children: this.#childCount() }),
      heartbeatIntervalMs: opts.heartbeatIntervalMs,
    });
    this.controller = new TreeController({
      bus: opts.bus,
      cluster: opts.cluster,
      nodeId: opts.nodeId,
      relayFanOut: fanOut,
      deadAfterMs: opts.deadAfterMs,
      livenessCheckIntervalMs: opts.livenessCheckIntervalMs,
    });
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
    let reply: PlacementReply;
    if (this.controller.isLeader) {
      reply = this.controller.placeViewer(eventId);
    } else {
      try {
        const m = await this.#bus.request(subjects(this.cluster).event(eventId).place, { v: 1 }, { timeoutMs: clusterDefaults.placementTimeoutMs });
        reply = placementReplySchema.parse(m.json());
      } catch {
        return null;
      }
    }
    return reply.relay ? `${reply.relay.http.replace(/\/$/, '')}/${kind}/${eventId}` : null;
  }

  /**
   * The relay tree of a clustered event for the console: assignments from KV (as every node sees
   * them), viewers and capacity from the registry's heartbeats. Null for an event served here alone.
   */
  eventTree(eventId: string): EventTreeView | null {
    const entry = this.#events.get(eventId);
    if (!entry) return null;
    const registry = this.controller.registry;
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
    return nodes.length > 0 ? { nodes } : null;
  }

  async #start(): Promise<void> {
    const node = this.node;
    await this.controller.start();
    await this.agent.start();
    this.#stopKeys = serveFeedKeys(this.#bus, this.cluster, this.#opts.tokenSecret, (id) => this.#events.get(id)?.keys.keys);
    node.registry.on('created', this.#onCreated);
    node.registry.on('ending', this.#onEnding);
    node.viewerPlacement = (id, kind) => this.placeViewer(id, kind);
    node.eventTree = async (id) => this.eventTree(id);
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
    this.log.info({ url: node.url, media: this.agent.info.media }, 'mixer registered with the cluster');
    for (const e of node.registry.list()) this.#onCreated(e);
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
    };
    if (this.#closed || e.mixer.isClosed || !this.node.registry.has(e.id)) {
      keys.close();
      sender.close();
      return;
    }
    this.#events.set(e.id, entry);
    const media = { host: this.#opts.advertiseHost ?? mediaAddressFor(this.#mediaHost), port: sender.address.port };
    this.log.info({ event: e.id }, 'event clustered: its feed goes to the relay tree');
    entry.stopProgram = mixer.addProgramSink((packet) => sender.send(packet));
    entry.stopVideo = e.mixer.addAllVideoProgramSink((packet, length, rendition) => {
      if (!entry.renditionBySsrc.has(rendition.ssrc)) this.#describeRendition(entry, media, rendition);
      sender.send(packet, length);
    });
    sender.on('keyframeRequest', (ssrc) => {
      const rendition = entry.renditionBySsrc.get(ssrc);
      if (rendition === undefined) return;
      entry.keyframeRequests++;
      e.mixer.requestVideoKeyframe(rendition);
    });
    client.on('children', (children) => sender.setChildren(children.map((c) => c.media)));
    await client.start();
    await client.advertise(media, entry.streams);
    sender.setChildren(client.children.map((c) => c.media));
    await this.events.put({ v: 1, id: e.id, name: e.name.slice(0, 200), mixer: this.nodeId, createdAt: Date.now(), maxSpeakers: e.maxSpeakers });
    this.emit('clustered', e.id);
  }

  /** A rendition's first packet (or its new SSRC after an encoder's restart): describe it to the relays. */
  #describeRendition(entry: ClusteredEvent, media: { host: string; port: number }, r: VideoRendition): void {
    for (const [ssrc, id] of entry.renditionBySsrc) if (id === r.id) entry.renditionBySsrc.delete(ssrc);
    entry.renditionBySsrc.set(r.ssrc, r.id);
    const video: FeedStream = { ssrc: r.ssrc, kind: 'video', codec: r.codec, rendition: r.id, width: r.width, height: r.height, bitrateKbps: r.bitrateKbps, rtpTimestampBase: r.rtpTimestampBase };
    entry.streams = [...entry.streams.filter((s) => s.kind !== 'video' || s.rendition !== r.id), video];
    entry.sender.setStreams(streamMapOf(entry.streams));
    entry.client.advertise(media, entry.streams).catch((err: unknown) => this.emit('error', err instanceof Error ? err : new Error(String(err))));
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
    // Relays see it ended and free their feeds; the controller drops the tree.
    this.events.end(e.id).catch(() => undefined);
  };

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
    this.#stopKeys?.();
    for (const entry of this.#events.values()) {
      entry.stopProgram();
      entry.stopVideo();
      entry.keys.close();
      entry.sender.close();
      await entry.client.close();
    }
    this.#events.clear();
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
