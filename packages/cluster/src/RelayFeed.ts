/**
 * One event's program feed on a relay: a RelayForwarder on a UDP port of its own (advertised for
 * this event in the `feeds` bucket) whose parent and children follow the event's relay tree
 * (ClusterClient), and a ProgramSource over its plaintext so that WHEP viewers (WebRtcEdge.play)
 * and plain-RTP viewers play it: the program audio, and the video of the rendition a viewer
 * chose (the mixer's stream description, validated by the ClusterClient, says which SSRC carries
 * which rendition).
 *
 * A new WHEP viewer's video starts from the forwarder's GOP cache (`replayGop`), so it gets a
 * keyframe without asking the mixer; viewers' keyframe requests go up through the forwarder's
 * limiter (at most one per rendition per 500 ms).
 *
 * A WHEP viewer that did not pin a rendition is moved between them by its link (ViewerVideo,
 * RenditionChooser), as on the mixer: `renditions()` gives each one's target bitrate from the
 * mixer's description and what it actually sends, measured here on the feed. A switch waits for
 * a keyframe requested upstream, not for the GOP cache: replaying a whole cached group mid-stream
 * would be a burst of up to a GOP's bytes (seconds of video) at the moment the viewer's link is
 * congested, and would put the viewer's picture behind by the group's age.
 *
 * Viewers see one continuous stream per kind for the life of their session: a StreamContinuity
 * per stream rewrites SSRC, sequence numbers and timestamps when the feed's source changes under
 * them (the mixer restarted with new SSRCs and random sequence numbers).
 *
 * The feed watches its parent: the program audio never pauses, so no authentic packet for
 * `parentSilentMs` means the parent (or the path to it) is gone, and the feed reports it to the
 * registry (`ClusterClient.reportParentSilent`), which replaces a dead parent after two missed
 * heartbeats instead of four; while the silence lasts, the reports thin out (SilenceReports). A
 * check that runs late (this process was busy) decides nothing: its socket may hold packets it
 * has not read yet.
 */
import { ClusterClient, type Bus, type FeedStream } from '@mcu/control';
import { RelayForwarder, StreamContinuity, type RtpSink, type StreamInfo, type UdpEndpoint } from '@mcu/relay';
import { BitrateMeter, type RtpHeader, type VideoCodec } from '@mcu/rtp';
import { mediaMsAt } from '@mcu/mixer';
import type { ProgramSource, ProgramVideoSource } from '@mcu/webrtc';
import { randomInt } from 'node:crypto';
import type { FeedKeyFollower } from './FeedKeyFollower.js';
import { SilenceReports } from './SilenceReports.js';

export interface RelayFeedOptions {
  bus: Bus;
  cluster: string;
  event: string;
  nodeId: string;
  /** The event's feed keys (started: it holds a key); the feed owns it from now on and closes it. */
  keys: FeedKeyFollower;
  bindHost: string;
  /** The address other nodes send this event's feed to (the bind address, or the node's IP for a wildcard bind). */
  advertiseHost: string;
}

/** How often the renditions' send rates are sampled (BitrateMeter smooths over 1 s windows). */
const RATE_SAMPLE_MS = 250;

/** How often the feed checks that its parent still sends. */
const PARENT_WATCH_MS = 100;

/** Where the forwarder listens before the tree names a parent: nothing is accepted from it. */
const NO_PARENT: UdpEndpoint = { host: '127.0.0.1', port: 9 };

type VideoSink = (packet: Uint8Array, length: number, mediaMs?: number) => void;

/** One rendition as this relay plays it: its current SSRC on the feed and its viewers. */
interface RenditionPlayback {
  readonly id: string;
  ssrc: number;
  width: number;
  height: number;
  codec: VideoCodec;
  /** The encoder's target (the mixer's description; null from a mixer that does not say). */
  bitrateKbps: number | null;
  /** Plaintext bytes of this rendition the feed carried, and what that makes per second. */
  bytesIn: number;
  readonly rate: BitrateMeter;
  readonly continuity: StreamContinuity;
  sinks: readonly VideoSink[];
  /** The stream's RTP timestamp base on the mixer's media clock (null: not described). */
  tsBase: number | null;
}

/** A packet's media-clock time from its (original) timestamp, or undefined when the base is unknown. */
function mediaTimeOf(timestamp: number, clockRate: number, base: number | null): number | undefined {
  return base === null ? undefined : mediaMsAt(timestamp, clockRate, base, performance.timeOrigin + performance.now());
}

/** A rendition as WHEP viewers choose between them (ProgramVideoSource.renditions). */
export interface RelayRendition {
  id: string;
  codec: VideoCodec;
  bitrateKbps: number;
  sendingKbps: number | null;
}

export class RelayFeed implements ProgramSource {
  readonly id: string;
  readonly forwarder: RelayForwarder;
  readonly client: ClusterClient;
  readonly keys: FeedKeyFollower;
  readonly continuity: StreamContinuity;
  readonly video: ProgramVideoSource;
  #sinks: ReadonlyArray<(packet: Buffer, mediaMs?: number) => void> = [];
  /** SSRC of the program audio (null until the mixer's description arrives). */
  #audioSsrc: number | null = null;
  #audioTsBase: number | null = null;
  readonly #renditions = new Map<string, RenditionPlayback>();
  readonly #renditionBySsrc = new Map<number, RenditionPlayback>();
  /** Sinks of the default (largest) rendition, subscribed without naming one. */
  #defaultSinks: readonly VideoSink[] = [];
  #defaultRendition: RenditionPlayback | null = null;
  /** Packets handed to viewers (after continuity). */
  packetsOut = 0;
  videoPacketsOut = 0;
  /** Packets replayed to new viewers from the GOP cache, and replays that found a cached group. */
  gopPacketsReplayed = 0;
  gopReplays = 0;
  /** Packets dropped because no stream description names their SSRC (yet). */
  undescribed = 0;
  readonly #rateTimer: NodeJS.Timeout;
  readonly #parentTimer: NodeJS.Timeout;
  #lastParentCheck = performance.now();
  readonly #silenceReports = new SilenceReports();
  /** Reports of a silent parent sent to the registry. */
  parentSilentReports = 0;
  #closed = false;

  private constructor(id: string, forwarder: RelayForwarder, client: ClusterClient, keys: FeedKeyFollower) {
    this.id = id;
    this.forwarder = forwarder;
    this.client = client;
    this.keys = keys;
    keys.attach(forwarder);
    this.continuity = new StreamContinuity({ outputSsrc: randomInt(1, 0xffff_ffff), clockRate: 48_000, frameSamples: 960 });
    forwarder.addConsumer({ onRtp: this.#onRtp }, { replayGop: false });
    client.on('parent', (p) => {
      if (!this.#closed) forwarder.setParent(p ? p.media : NO_PARENT);
    });
    client.on('children', (children) => {
      if (!this.#closed) forwarder.setChildren(children.map((c) => c.media));
    });
    client.on('streams', (streams) => {
      if (!this.#closed) this.#describe(streams ?? []);
    });
    this.video = {
      addVideoProgramSink: (rendition, sink) => this.#addVideoSink(rendition, sink),
      requestKeyframe: (rendition) => this.#requestKeyframe(rendition),
      replayGop: (rendition, sink) => this.#replayGop(rendition, sink),
      renditions: () => this.adaptiveRenditions(),
    };
    this.#rateTimer = setInterval(() => {
      const now = performance.now();
      for (const r of this.#renditions.values()) r.rate.measure(now, r.bytesIn);
    }, RATE_SAMPLE_MS).unref();
    this.#parentTimer = setInterval(() => this.#checkParent(), PARENT_WATCH_MS).unref();
  }

  #checkParent(): void {
    const now = performance.now();
    const late = now - this.#lastParentCheck - PARENT_WATCH_MS;
    this.#lastParentCheck = now;
    if (this.#closed || late > PARENT_WATCH_MS || this.client.parent === null) return;
    const silentMs = now - this.forwarder.lastParentRtpAt;
    if (!this.#silenceReports.due(now, silentMs)) return;
    this.parentSilentReports++;
    this.client.reportParentSilent(silentMs);
  }

  static async open(opts: RelayFeedOptions): Promise<RelayFeed> {
    // A port of its own per event: the parent sends this event's feed here and nowhere else.
    const keys = opts.keys;
    let forwarder: RelayForwarder;
    try {
      forwarder = await RelayForwarder.open({
        bindHost: opts.bindHost,
        bindPort: 0,
        parent: NO_PARENT,
        key: keys.current,
        acceptedKeys: keys.accepted,
        onUnknownKey: keys.onUnknownKey,
      });
    } catch (err) {
      keys.close();
      throw err;
    }
    const client = new ClusterClient({ bus: opts.bus, cluster: opts.cluster, event: opts.event, nodeId: opts.nodeId, eventMedia: true });
    const feed = new RelayFeed(opts.event, forwarder, client, keys);
    try {
      await client.start();
      await client.advertise({ host: opts.advertiseHost, port: forwarder.address.port });
    } catch (err) {
      feed.close();
      throw err;
    }
    if (client.parent) forwarder.setParent(client.parent.media);
    forwarder.setChildren(client.children.map((c) => c.media));
    feed.#describe(client.streams ?? []);
    return feed;
  }

  /** The renditions this feed carries (id and size), largest first. */
  get renditions(): { id: string; width: number; height: number }[] {
    return this.#described().map(({ id, width, height }) => ({ id, width, height }));
  }

  /**
   * The renditions with their target bitrate and measured send rate (kbps), largest first: what an
   * adaptive viewer chooses from. Empty while the mixer's description lacks a target bitrate for
   * any of them (an older mixer): its viewers then get the largest.
   */
  adaptiveRenditions(): RelayRendition[] {
    const described = this.#described();
    const out: RelayRendition[] = [];
    for (const r of described) {
      if (r.bitrateKbps === null) return [];
      out.push({ id: r.id, codec: r.codec, bitrateKbps: r.bitrateKbps, sendingKbps: r.rate.kbps });
    }
    return out;
  }

  #described(): RenditionPlayback[] {
    return [...this.#renditions.values()].filter((r) => r.ssrc >= 0).sort((a, b) => b.width * b.height - a.width * a.height);
  }

  /**
   * ProgramSource: `sink` gets each program audio packet (a Buffer of its own, shared by all sinks)
   * and its media-clock time when the mixer described the timestamp base.
   */
  addProgramSink(sink: (packet: Buffer, mediaMs?: number) => void): () => void {
    this.#sinks = [...this.#sinks, sink];
    return () => {
      this.#sinks = this.#sinks.filter((s) => s !== sink);
    };
  }

  get sinkCount(): number {
    return this.#sinks.length;
  }

  /** Applies the mixer's stream description: which SSRC is the audio, which each rendition. */
  #describe(streams: readonly FeedStream[]): void {
    const infos = new Map<number, StreamInfo>();
    this.#audioSsrc = null;
    this.#renditionBySsrc.clear();
    for (const r of this.#renditions.values()) r.ssrc = -1;
    for (const s of streams) {
      if (s.kind === 'audio') {
        this.#audioSsrc = s.ssrc;
        this.#audioTsBase = s.rtpTimestampBase ?? null;
        infos.set(s.ssrc, { kind: 'audio', codec: 'opus' });
        continue;
      }
      infos.set(s.ssrc, { kind: 'video', codec: s.codec });
      const r = this.#rendition(s.rendition);
      r.ssrc = s.ssrc;
      r.width = s.width;
      r.height = s.height;
      r.codec = s.codec;
      r.bitrateKbps = s.bitrateKbps ?? null;
      r.tsBase = s.rtpTimestampBase ?? null;
      this.#renditionBySsrc.set(s.ssrc, r);
    }
    let largest: RenditionPlayback | null = null;
    for (const r of this.#renditionBySsrc.values()) if (largest === null || r.width * r.height > largest.width * largest.height) largest = r;
    this.#defaultRendition = largest;
    // The forwarder caches the GOP of the streams described as video, and keys its statistics.
    this.forwarder.setStreams(infos);
  }

  #rendition(id: string): RenditionPlayback {
    let r = this.#renditions.get(id);
    if (!r) {
      r = { id, ssrc: -1, width: 0, height: 0, codec: 'vp8', bitrateKbps: null, tsBase: null, bytesIn: 0, rate: new BitrateMeter(), continuity: new StreamContinuity({ outputSsrc: randomInt(1, 0xffff_ffff), clockRate: 90_000 }), sinks: [] };
      this.#renditions.set(id, r);
    }
    return r;
  }

  #addVideoSink(rendition: string | undefined, sink: VideoSink): () => void {
    if (rendition === undefined) {
      this.#defaultSinks = [...this.#defaultSinks, sink];
      return () => {
        this.#defaultSinks = this.#defaultSinks.filter((s) => s !== sink);
      };
    }
    const r = this.#rendition(rendition);
    r.sinks = [...r.sinks, sink];
    return () => {
      r.sinks = r.sinks.filter((s) => s !== sink);
    };
  }

  #target(rendition: string | undefined): RenditionPlayback | null {
    if (rendition === undefined) return this.#defaultRendition;
    const r = this.#renditions.get(rendition);
    return r && r.ssrc >= 0 ? r : null;
  }

  #requestKeyframe(rendition: string | undefined): void {
    const r = this.#target(rendition);
    if (r) this.forwarder.requestKeyframe(r.ssrc);
  }

  /** Sends the rendition's cached group of pictures to one new viewer; returns the packets sent. */
  #replayGop(rendition: string | undefined, sink: VideoSink): number {
    const r = this.#target(rendition);
    if (!r || this.#closed) return 0;
    const replay: RtpSink = {
      onRtp: (packet, length, header) => {
        const out = Buffer.from(packet.subarray(0, length));
        if (r.continuity.rewrite(out, header)) sink(out, length);
      },
    };
    const n = this.forwarder.replayGop(replay, r.ssrc);
    this.gopPacketsReplayed += n;
    if (n > 0) this.gopReplays++;
    return n;
  }

  readonly #onRtp = (packet: Uint8Array, length: number, header: RtpHeader): void => {
    const ssrc = header.ssrc >>> 0;
    if (ssrc === this.#audioSsrc) {
      const sinks = this.#sinks;
      if (sinks.length === 0) return;
      // One copy per packet per relay (not per viewer): the forwarder's buffer is scratch.
      const out = Buffer.from(packet.subarray(0, length));
      const mediaMs = mediaTimeOf(header.timestamp, 48_000, this.#audioTsBase);
      if (!this.continuity.rewrite(out, header)) return;
      this.packetsOut++;
      for (let i = 0; i < sinks.length; i++) {
        try {
          sinks[i](out, mediaMs);
        } catch {
          // a viewer's send path must not stop the others
        }
      }
      return;
    }
    const r = this.#renditionBySsrc.get(ssrc);
    if (r === undefined) {
      this.undescribed++;
      return;
    }
    r.bytesIn += length;
    const named = r.sinks;
    const dflt = r === this.#defaultRendition ? this.#defaultSinks : null;
    if (named.length === 0 && (dflt === null || dflt.length === 0)) return;
    const out = Buffer.from(packet.subarray(0, length));
    const mediaMs = mediaTimeOf(header.timestamp, 90_000, r.tsBase);
    if (!r.continuity.rewrite(out, header)) return;
    this.videoPacketsOut++;
    for (let i = 0; i < named.length; i++) deliver(named[i], out, length, mediaMs);
    if (dflt !== null) for (let i = 0; i < dflt.length; i++) deliver(dflt[i], out, length, mediaMs);
  };

  /** Frees everything; `crashed` leaves its entry in the `feeds` bucket, as a killed process would (tests). */
  close(opts: { crashed?: boolean } = {}): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#rateTimer);
    clearInterval(this.#parentTimer);
    this.#sinks = [];
    this.#defaultSinks = [];
    for (const r of this.#renditions.values()) r.sinks = [];
    this.keys.close();
    this.forwarder.close();
    void this.client.close({ withdraw: opts.crashed !== true });
  }
}

function deliver(sink: VideoSink, packet: Buffer, length: number, mediaMs: number | undefined): void {
  try {
    sink(packet, length, mediaMs);
  } catch {
    // a viewer's send path must not stop the others
  }
}
