/**
 * The data plane of a relay for one event: one UDP socket that receives the protected program
 * feed from the parent (the mixer's FeedSender or another relay) and
 *
 *   1. authenticates and decrypts each packet once (replay-protected, FeedCipher),
 *   2. keeps the protected bytes per stream for answering children's NACKs,
 *   3. forwards the same protected bytes unchanged to every child relay (one Buffer, no copy),
 *   4. hands the plaintext to local consumers (`RtpSink`, later the WHEP viewers).
 *
 * Towards the parent it NACKs gaps after a short reordering delay (NackGenerator) and forwards
 * keyframe requests of children and consumers, at most one per stream per 500 ms
 * (KeyframeRequestLimiter). For video streams it caches the current group of pictures
 * (GopCache) so a new consumer or child starts without asking the mixer.
 *
 * ```
 *  parent ──RTP──▶ [socket] ──same bytes──▶ child relays
 *         ◀─NACK/PLI──  │  ◀──NACK/PLI/FIR── children (answered from the buffer, else upstream)
 *                       └──plaintext──▶ local consumers
 * ```
 *
 * Everything arrives on one socket, demultiplexed as RFC 5761 §4 does (RTCP packet types
 * 192..223 in byte 1). RTP is accepted only from the parent's address, RTCP from the parent or a
 * child. Bad input is dropped and counted in `stats.dropped`, never thrown.
 */
import { randomInt } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { RemoteInfo, Socket } from 'node:dgram';
import { buildNack, buildPli, isKeyframePacket, parseRtcp, ReceiverStats, RetransmissionBuffer, RtpHeader, seqDiff } from '@mcu/rtp';
import { FanOut, validateEndpoint } from './FanOut.js';
import { FEED_OVERHEAD_BYTES, FeedCipher } from './FeedCipher.js';
import type { FeedKey } from './FeedCipher.js';
import { FORWARD_SAMPLE_EVERY, FORWARD_SAMPLES, newFeedStats } from './FeedStats.js';
import type { FeedStats } from './FeedStats.js';
import { GopCache } from './GopCache.js';
import { KeyframeRequestLimiter } from './KeyframeRequests.js';
import { NackGenerator, PacketArrival } from './NackGenerator.js';
import { relayDefaults } from './RelayConfig.js';
import type { RelayConfig } from './RelayConfig.js';
import { clockRateOf, toStreamMap } from './RelayTypes.js';
import type { RtpSink, StreamInfo, StreamMap, UdpEndpoint } from './RelayTypes.js';
import { openUdpSocket } from '@mcu/rtp';

export interface RelayForwarderOptions {
  /** Local address to bind (loopback or the node's private address). */
  bindHost: string;
  /** 0 or absent: any free port. */
  bindPort?: number;
  /** Where the feed comes from; RTP from any other address is dropped ('unknown_source'). */
  parent: UdpEndpoint;
  /** The event's feed key (it seals this relay's RTCP); `acceptedKeys` open packets too (see `setKeys`). */
  key: FeedKey;
  acceptedKeys?: readonly FeedKey[];
  /**
   * A packet came sealed under a key this relay does not hold (`unknown_key`, counted): called on
   * every such drop with its key id, so the owner can fetch the key (rate-limited on its side).
   */
  onUnknownKey?: (keyId: number) => void;
  children?: readonly UdpEndpoint[];
  /** SSRC → kind and codec; video streams get a GOP cache and keyframe detection. */
  streams?: StreamMap;
  /** Sender SSRC of this relay's own RTCP (NACK, PLI); random by default. */
  ssrc?: number;
  config?: Partial<RelayConfig>;
  /** Clock in ms (tests may pass a manual one). */
  now?: () => number;
}

export interface RelayForwarderEvents {
  close: [];
}

/** Per-SSRC state of the feed. */
interface FeedStream {
  readonly ssrc: number;
  info: StreamInfo | undefined;
  readonly history: RetransmissionBuffer;
  readonly nack: NackGenerator;
  receiver: ReceiverStats;
  gop: GopCache | null;
  /** Sequence number of the keyframe packet that starts the cached group. */
  gopStartSeq: number;
}

export class RelayForwarder extends EventEmitter<RelayForwarderEvents> {
  readonly stats: FeedStats = newFeedStats();
  /** Sender SSRC of this relay's RTCP. */
  readonly ssrc: number;
  readonly #socket: Socket;
  readonly #config: RelayConfig;
  readonly #cipher: FeedCipher;
  readonly #onUnknownKey: ((keyId: number) => void) | null;
  readonly #children = new FanOut();
  readonly #streams = new Map<number, FeedStream>();
  #streamInfo: Map<number, StreamInfo>;
  #sinks: readonly RtpSink[] = [];
  #parentHost: string;
  #parentPort: number;
  readonly #now: () => number;
  #lastParentRtpAt = 0;
  #parentSince = 0;
  readonly #keyframes: KeyframeRequestLimiter;
  #nackTimer: NodeJS.Timeout | null = null;
  #closed = false;
  /** Datagrams received, for sampling the forward time. */
  #forwardCount = 0;

  // Scratch, reused for every packet: the forward path allocates nothing of its own.
  readonly #header = new RtpHeader();
  readonly #plain: Buffer;
  readonly #rtcpPlain: Buffer;
  readonly #replayHeader = new RtpHeader();
  readonly #replayPlain: Buffer;
  readonly #nackSeqs: number[] = [];

  private constructor(socket: Socket, opts: RelayForwarderOptions, config: RelayConfig) {
    super();
    this.#socket = socket;
    this.#config = config;
    this.#cipher = new FeedCipher(opts.key, opts.acceptedKeys);
    this.#onUnknownKey = opts.onUnknownKey ?? null;
    this.#parentHost = opts.parent.host;
    this.#parentPort = opts.parent.port;
    this.#children.set(opts.children ?? []);
    this.#streamInfo = toStreamMap(opts.streams);
    this.ssrc = (opts.ssrc ?? randomInt(1, 0xffff_ffff)) >>> 0;
    this.#now = opts.now ?? (() => performance.now());
    this.#parentSince = this.#now();
    this.#plain = Buffer.alloc(config.maxDatagramBytes);
    this.#rtcpPlain = Buffer.alloc(config.maxDatagramBytes);
    this.#replayPlain = Buffer.alloc(config.maxDatagramBytes);
    this.#keyframes = new KeyframeRequestLimiter({
      intervalMs: config.keyframeRequestIntervalMs,
      forward: this.#sendPli,
      now: this.#now,
    });
    socket.on('message', this.#onMessage);
    socket.on('error', this.#onSocketError);
  }

  /** Binds the socket and starts forwarding. Throws RangeError on an invalid parent or child. */
  static async open(opts: RelayForwarderOptions): Promise<RelayForwarder> {
    validateEndpoint(opts.parent);
    for (const c of opts.children ?? []) validateEndpoint(c);
    const config: RelayConfig = { ...relayDefaults, ...opts.config };
    const socket = await openUdpSocket({ host: opts.bindHost, port: opts.bindPort, bufferBytes: config.socketBufferBytes });
    return new RelayForwarder(socket, opts, config);
  }

  /** The address children and the parent talk to. */
  get address(): UdpEndpoint {
    const a = this.#socket.address();
    return { host: a.address, port: a.port };
  }

  get parent(): UdpEndpoint {
    return { host: this.#parentHost, port: this.#parentPort };
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Tree healing: accept the feed from another parent from now on. Replay windows, buffers,
   * pending NACKs (which now go to the new parent) and caches are kept.
   */
  setParent(parent: UdpEndpoint): void {
    validateEndpoint(parent);
    if (parent.host !== this.#parentHost || parent.port !== this.#parentPort) this.#parentSince = this.#now();
    this.#parentHost = parent.host;
    this.#parentPort = parent.port;
  }

  /**
   * When (the forwarder's clock) the parent last sent an authentic RTP packet, or when the current
   * parent was set if it has sent none since: how long the feed has been silent.
   */
  get lastParentRtpAt(): number {
    return Math.max(this.#lastParentRtpAt, this.#parentSince);
  }

  /**
   * Replaces the list of child relays. Children not in the previous list get the cached group of
   * pictures right away (unless `replayGop` is false), so they can serve viewers at once.
   */
  setChildren(children: readonly UdpEndpoint[], opts: { replayGop?: boolean } = {}): void {
    const before = this.#children;
    const added = opts.replayGop === false ? [] : children.filter((c) => !before.has(c.host, c.port));
    this.#children.set(children);
    for (const c of added) this.replayGop(c);
  }

  get children(): UdpEndpoint[] {
    return this.#children.list();
  }

  /**
   * Key rotation: this relay's RTCP is sealed with `current`; packets are opened under `current`
   * or one of `accepted` (the announced next key, the previous one for a short overlap), chosen
   * by the key id they carry. Any other id is dropped as `unknown_key`.
   */
  setKeys(current: FeedKey, accepted: readonly FeedKey[] = []): void {
    this.#cipher.setKeys(current, accepted);
  }

  /** Ids of the keys this relay holds, the one sealing its RTCP first. */
  get keyIds(): number[] {
    return this.#cipher.keyIds;
  }

  /** Id of the key the last authenticated feed packet was sealed with (-1 before the first). */
  get feedKeyId(): number {
    return this.#cipher.receivedKeyId;
  }

  /** Updates what each SSRC carries (e.g. a rendition was added). */
  setStreams(streams: StreamMap): void {
    this.#streamInfo = toStreamMap(streams);
    for (const s of this.#streams.values()) this.#describe(s, this.#streamInfo.get(s.ssrc));
  }

  /**
   * Adds a local consumer of the plaintext feed. It first gets the cached group of pictures of
   * every video stream (unless `replayGop` is false), then the live packets.
   */
  addConsumer(sink: RtpSink, opts: { replayGop?: boolean } = {}): void {
    if (this.#closed || this.#sinks.includes(sink)) return;
    if (opts.replayGop !== false) this.replayGop(sink);
    this.#sinks = [...this.#sinks, sink];
  }

  removeConsumer(sink: RtpSink): void {
    this.#sinks = this.#sinks.filter((s) => s !== sink);
  }

  get consumerCount(): number {
    return this.#sinks.length;
  }

  /** A consumer lost the picture of `ssrc` (PLI/FIR): aggregated, at most one upstream per interval. */
  requestKeyframe(ssrc: number): void {
    const s = ssrc >>> 0;
    // Only for streams of this feed: per-SSRC state must not grow with whatever a child asks for.
    if (this.#closed || !(this.#streams.has(s) || this.#streamInfo.has(s))) return;
    if (!this.#keyframes.request(s)) this.stats.pliSuppressed++;
  }

  /**
   * Sends the cached group of pictures (of `ssrc`, or of every video stream) to a local consumer
   * (decrypted) or to a child relay (protected, as received). Returns the packets replayed.
   */
  replayGop(target: RtpSink | UdpEndpoint, ssrc?: number): number {
    if (this.#closed) return 0;
    const toSink = 'onRtp' in target;
    if (!toSink) validateEndpoint(target);
    let n = 0;
    for (const stream of this.#streams.values()) {
      const gop = stream.gop;
      if (gop === null || (ssrc !== undefined && stream.ssrc !== ssrc >>> 0)) continue;
      const count = gop.packetCount;
      for (let i = 0; i < count; i++) {
        const p = gop.packet(i);
        if (toSink) {
          const len = this.#cipher.unprotectCached(p, p.length, this.#replayPlain, this.#replayHeader);
          if (typeof len === 'number') target.onRtp(this.#replayPlain, len, this.#replayHeader);
        } else {
          // A copy: the slab is rewound at the next keyframe, possibly before a queued send.
          this.#socket.send(Buffer.from(p), target.port, target.host);
          this.stats.packetsOut++;
          this.stats.bytesOut += p.length;
        }
        n++;
      }
    }
    return n;
  }

  /** Receive statistics (RFC 3550 A.1/A.3/A.8) of one stream of the feed. */
  receiverStats(ssrc: number): ReceiverStats | undefined {
    return this.#streams.get(ssrc >>> 0)?.receiver;
  }

  /** SSRCs seen on the feed. */
  get streamSsrcs(): number[] {
    return [...this.#streams.keys()];
  }

  /** Closes the socket and stops every timer; idempotent. Emits 'close' once. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#nackTimer !== null) clearTimeout(this.#nackTimer);
    this.#nackTimer = null;
    this.#keyframes.close();
    this.#sinks = [];
    this.#socket.off('message', this.#onMessage);
    this.#socket.close();
    this.emit('close');
  }

  // -------------------------------------------------------------------------------------------
  // Hot path

  readonly #onMessage = (msg: Buffer, rinfo: RemoteInfo): void => {
    if (this.#closed) return;
    const timed = ++this.#forwardCount % FORWARD_SAMPLE_EVERY === 0;
    const t0 = timed ? performance.now() : 0;
    const stats = this.stats;
    const len = msg.length;
    stats.packetsIn++;
    stats.bytesIn += len;
    if (len >= 2 && msg[1] >= 192 && msg[1] <= 223) {
      this.#onRtcp(msg, rinfo);
      return;
    }
    if (rinfo.port !== this.#parentPort || rinfo.address !== this.#parentHost) {
      stats.dropped.unknown_source++;
      return;
    }
    if (len > this.#config.maxDatagramBytes) {
      stats.dropped.too_large++;
      return;
    }
    const header = this.#header;
    const plainLength = this.#cipher.unprotect(msg, len, this.#plain, header);
    if (typeof plainLength !== 'number') {
      stats.dropped[plainLength]++;
      if (plainLength === 'unknown_key') this.#unknownKey();
      return;
    }
    stats.keySwitches = this.#cipher.keySwitches;
    const ssrc = header.ssrc;
    const stream = this.#streams.get(ssrc) ?? this.#addStream(ssrc);
    if (stream === null) {
      stats.dropped.too_many_streams++;
      return;
    }
    const seq = header.sequenceNumber;
    stream.history.store(seq, msg, len);

    const sent = this.#children.send(this.#socket, msg);
    stats.packetsOut += sent;
    stats.bytesOut += sent * len;

    const now = this.#now();
    this.#lastParentRtpAt = now;
    const arrival = stream.nack.onPacket(seq, now);
    if (arrival === PacketArrival.Recovered) stats.recovered++;
    if (stream.nack.pending > 0 && this.#nackTimer === null) this.#nackTimer = setTimeout(this.#onNackTimer, this.#config.nackDelayMs);
    stream.receiver.onPacket(seq, header.timestamp, now);
    if (stream.gop !== null) this.#cacheGop(stream, msg, len, header);

    const sinks = this.#sinks;
    for (let i = 0; i < sinks.length; i++) sinks[i].onRtp(this.#plain, plainLength, header);
    if (timed) stats.forwardMs[(this.#forwardCount / FORWARD_SAMPLE_EVERY) % FORWARD_SAMPLES] = performance.now() - t0;
  };

  /** Keeps the group of pictures current; a keyframe start rewinds the cache. */
  #cacheGop(stream: FeedStream, msg: Buffer, len: number, header: RtpHeader): void {
    const gop = stream.gop!;
    const before = gop.bytes;
    const seq = header.sequenceNumber;
    const info = stream.info;
    if (info?.kind === 'video' && isKeyframePacket(this.#plain, info.codec, header.payloadOffset, header.payloadLength)) {
      this.#keyframes.onKeyframe(stream.ssrc);
      gop.startKeyframe(msg, len);
      stream.gopStartSeq = seq;
      // A keyframe start that arrived late (recovered by NACK): the packets after it that came
      // earlier are in the retransmission buffer.
      const highest = stream.nack.highest & 0xffff;
      for (let s = (seq + 1) & 0xffff, k = 0; seqDiff(s, highest) <= 0 && k < stream.history.capacity; s = (s + 1) & 0xffff, k++) {
        const p = stream.history.get(s);
        if (p !== null) gop.append(p, p.length);
      }
    } else if (seqDiff(seq, stream.gopStartSeq) > 0) {
      gop.append(msg, len);
    }
    const overflowed = gop.overflows;
    this.stats.gopBytes += gop.bytes - before;
    if (overflowed !== 0) {
      this.stats.gopOverflows += overflowed;
      gop.overflows = 0;
    }
  }

  #addStream(ssrc: number): FeedStream | null {
    if (this.#streams.size >= this.#config.maxStreams) return null;
    const info = this.#streamInfo.get(ssrc);
    const stream: FeedStream = {
      ssrc,
      info: undefined,
      history: new RetransmissionBuffer({ capacity: this.#config.retransmissionPackets, maxPacketBytes: this.#config.maxDatagramBytes }),
      nack: new NackGenerator(this.#config),
      receiver: new ReceiverStats({ ssrc, clockRate: clockRateOf(info) }),
      gop: null,
      gopStartSeq: 0,
    };
    this.#describe(stream, info);
    this.#streams.set(ssrc, stream);
    return stream;
  }

  /** Applies a stream description: a GOP cache for video, the right clock for the statistics. */
  #describe(stream: FeedStream, info: StreamInfo | undefined): void {
    const wasVideo = stream.info?.kind === 'video';
    const rateChanged = clockRateOf(info) !== stream.receiver.clockRate;
    stream.info = info;
    if (rateChanged) stream.receiver = new ReceiverStats({ ssrc: stream.ssrc, clockRate: clockRateOf(info) });
    if (info?.kind === 'video' && !wasVideo) stream.gop = new GopCache(this.#config.gopCacheBytes);
    if (info?.kind !== 'video' && stream.gop !== null) {
      this.stats.gopBytes -= stream.gop.bytes;
      stream.gop = null;
    }
  }

  #unknownKey(): void {
    const cb = this.#onUnknownKey;
    if (cb === null) return;
    try {
      cb(this.#cipher.lastUnknownKeyId);
    } catch {
      // the owner's fetch must not break the forward path
    }
  }

  // -------------------------------------------------------------------------------------------
  // Feedback

  #onRtcp(msg: Buffer, rinfo: RemoteInfo): void {
    const stats = this.stats;
    const fromParent = rinfo.port === this.#parentPort && rinfo.address === this.#parentHost;
    if (!fromParent && !this.#children.has(rinfo.address, rinfo.port)) {
      stats.dropped.unknown_source++;
      return;
    }
    if (msg.length > this.#config.maxDatagramBytes) {
      stats.dropped.too_large++;
      return;
    }
    const len = this.#cipher.unprotectRtcp(msg, msg.length, this.#rtcpPlain);
    if (typeof len !== 'number') {
      stats.dropped[len]++;
      if (len === 'unknown_key') this.#unknownKey();
      return;
    }
    if (fromParent) {
      // Sender reports and the like: the children need them as much as we do (lip sync).
      const sent = this.#children.send(this.#socket, msg);
      stats.packetsOut += sent;
      stats.bytesOut += sent * msg.length;
      return;
    }
    const { packets, error } = parseRtcp(this.#rtcpPlain.subarray(0, len));
    if (error !== null) stats.dropped.bad_rtcp++;
    for (const p of packets) {
      if (p.type === 'nack') this.#answerNack(p.mediaSsrc, p.lost, rinfo);
      else if (p.type === 'pli') this.requestKeyframe(p.mediaSsrc);
      else if (p.type === 'fir') for (const e of p.entries) this.requestKeyframe(e.ssrc);
    }
  }

  /** Resends what the buffer holds; what it lacks and this relay lacks too is asked upstream once. */
  #answerNack(mediaSsrc: number, lost: readonly number[], to: RemoteInfo): void {
    const stats = this.stats;
    stats.nackReceived += lost.length;
    const stream = this.#streams.get(mediaSsrc);
    let upstream = false;
    for (const seq of lost) {
      const stored = stream?.history.get(seq) ?? null;
      if (stored !== null) {
        this.#socket.send(Buffer.from(stored), to.port, to.address);
        stats.retransmitted++;
        stats.packetsOut++;
        stats.bytesOut += stored.length;
      } else {
        stats.nackMisses++;
        if (stream !== undefined && stream.nack.requestMissing(seq, this.#now())) upstream = true;
      }
    }
    if (upstream && this.#nackTimer === null) this.#nackTimer = setTimeout(this.#onNackTimer, 0);
  }

  readonly #onNackTimer = (): void => {
    this.#nackTimer = null;
    if (this.#closed) return;
    const now = this.#now();
    const seqs = this.#nackSeqs;
    let pending = 0;
    for (const stream of this.#streams.values()) {
      const nack = stream.nack;
      if (nack.pending > 0) {
        seqs.length = 0;
        if (nack.collect(now, seqs) > 0) {
          this.#sendUpstream(buildNack(this.ssrc, stream.ssrc, seqs));
          this.stats.nackSent += seqs.length;
        }
        pending += nack.pending;
      }
      if (nack.gaveUp !== 0) {
        this.stats.nackGaveUp += nack.gaveUp;
        nack.gaveUp = 0;
      }
    }
    if (pending > 0) this.#nackTimer = setTimeout(this.#onNackTimer, this.#config.nackDelayMs);
  };

  readonly #sendPli = (ssrc: number): void => {
    this.stats.pliForwarded++;
    this.#sendUpstream(buildPli(this.ssrc, ssrc));
  };

  #sendUpstream(rtcp: Buffer): void {
    if (this.#closed) return;
    const out = Buffer.allocUnsafe(rtcp.length + FEED_OVERHEAD_BYTES);
    const n = this.#cipher.protectRtcp(rtcp, rtcp.length, out);
    this.#socket.send(out, 0, n, this.#parentPort, this.#parentHost);
    this.stats.packetsOut++;
    this.stats.bytesOut += n;
  }

  readonly #onSocketError = (): void => {
    this.stats.dropped.socket_error++;
  };
}
