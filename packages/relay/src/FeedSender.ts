/**
 * The mixer's end of the program feed: protects each plaintext RTP packet once (FeedCipher),
 * sends it to the roots of the relay tree, keeps it to answer their NACKs, and surfaces their
 * keyframe requests to the encoder (aggregated: at most one per stream per 500 ms).
 */
import { EventEmitter } from 'node:events';
import type { RemoteInfo, Socket } from 'node:dgram';
import { isKeyframePacket, parseRtcp, parseRtp, RetransmissionBuffer, RtpHeader } from '@mcu/rtp';
import { FanOut, validateEndpoint } from './FanOut.js';
import { FEED_OVERHEAD_BYTES, FeedCipher } from './FeedCipher.js';
import type { FeedKey } from './FeedCipher.js';
import { newFeedStats } from './FeedStats.js';
import type { FeedStats } from './FeedStats.js';
import { KeyframeRequestLimiter } from './KeyframeRequests.js';
import { relayDefaults } from './RelayConfig.js';
import type { RelayConfig } from './RelayConfig.js';
import { toStreamMap } from './RelayTypes.js';
import type { StreamInfo, StreamMap, UdpEndpoint } from './RelayTypes.js';
import { openUdpSocket } from '@mcu/rtp';

export interface FeedSenderOptions {
  bindHost: string;
  bindPort?: number;
  /** The key it seals with; `acceptedKeys` also open RTCP from the tree (see `setKeys`). */
  key: FeedKey;
  acceptedKeys?: readonly FeedKey[];
  /** The roots of the relay tree. */
  children?: readonly UdpEndpoint[];
  /** SSRC → kind and codec; keyframes of video streams settle pending keyframe requests. */
  streams?: StreamMap;
  config?: Partial<RelayConfig>;
  now?: () => number;
}

export interface FeedSenderEvents {
  /** A root asked for a keyframe of this SSRC (already aggregated). */
  keyframeRequest: [ssrc: number];
  close: [];
}

export class FeedSender extends EventEmitter<FeedSenderEvents> {
  readonly stats: FeedStats = newFeedStats();
  readonly #socket: Socket;
  readonly #config: RelayConfig;
  readonly #cipher: FeedCipher;
  readonly #children = new FanOut();
  readonly #history = new Map<number, RetransmissionBuffer>();
  #streamInfo: Map<number, StreamInfo>;
  readonly #keyframes: KeyframeRequestLimiter;
  readonly #header = new RtpHeader();
  readonly #rtcpPlain: Buffer;
  #closed = false;
  #silenced = false;

  private constructor(socket: Socket, opts: FeedSenderOptions, config: RelayConfig) {
    super();
    this.#socket = socket;
    this.#config = config;
    this.#cipher = new FeedCipher(opts.key, opts.acceptedKeys);
    this.#children.set(opts.children ?? []);
    this.#streamInfo = toStreamMap(opts.streams);
    this.#rtcpPlain = Buffer.alloc(config.maxDatagramBytes);
    this.#keyframes = new KeyframeRequestLimiter({
      intervalMs: config.keyframeRequestIntervalMs,
      forward: this.#surfaceKeyframeRequest,
      now: opts.now,
    });
    socket.on('message', this.#onMessage);
    socket.on('error', this.#onSocketError);
  }

  static async open(opts: FeedSenderOptions): Promise<FeedSender> {
    for (const c of opts.children ?? []) validateEndpoint(c);
    const config: RelayConfig = { ...relayDefaults, ...opts.config };
    const socket = await openUdpSocket({ host: opts.bindHost, port: opts.bindPort, bufferBytes: config.socketBufferBytes });
    return new FeedSender(socket, opts, config);
  }

  get address(): UdpEndpoint {
    const a = this.#socket.address();
    return { host: a.address, port: a.port };
  }

  setChildren(children: readonly UdpEndpoint[]): void {
    this.#children.set(children);
  }

  get children(): UdpEndpoint[] {
    return this.#children.list();
  }

  /**
   * Key rotation: seals with `current` from the next packet on; RTCP from the tree is accepted
   * under `current` and `accepted` (the next key, announced; the previous one, for a short overlap).
   */
  setKeys(current: FeedKey, accepted: readonly FeedKey[] = []): void {
    this.#cipher.setKeys(current, accepted);
  }

  /** Id of the key the feed is sealed with now. */
  get keyId(): number {
    return this.#cipher.currentKeyId;
  }

  /**
   * A silenced sender sends nothing (no program, no RTCP, no retransmission): the mixer lost the
   * event's lease, and until it holds it again nothing it has may reach the tree.
   */
  setSilenced(silenced: boolean): void {
    this.#silenced = silenced;
  }

  get silenced(): boolean {
    return this.#silenced;
  }

  setStreams(streams: StreamMap): void {
    this.#streamInfo = toStreamMap(streams);
  }

  /**
   * Protects and sends one plaintext RTP packet (the first `length` bytes of `packet`) to every
   * root. Returns false, counting the drop, when it is not valid RTP or too large.
   */
  send(packet: Uint8Array, length: number = packet.length): boolean {
    if (this.#closed || this.#silenced) return false;
    const stats = this.stats;
    const h = this.#header;
    const err = parseRtp(packet, h, length);
    if (err !== null) {
      stats.dropped.bad_rtp++;
      return false;
    }
    if (length + FEED_OVERHEAD_BYTES > this.#config.maxDatagramBytes) {
      stats.dropped.too_large++;
      return false;
    }
    // A fresh Buffer from Node's pool: a send may still be queued when the next packet comes.
    const out = Buffer.allocUnsafe(length + FEED_OVERHEAD_BYTES);
    const n = this.#cipher.protect(packet, length, out);
    let history = this.#history.get(h.ssrc);
    if (history === undefined) {
      history = new RetransmissionBuffer({ capacity: this.#config.retransmissionPackets, maxPacketBytes: this.#config.maxDatagramBytes });
      this.#history.set(h.ssrc, history);
    }
    history.store(h.sequenceNumber, out, n);
    const info = this.#streamInfo.get(h.ssrc);
    if (info?.kind === 'video' && isKeyframePacket(packet, info.codec, h.payloadOffset, h.payloadLength)) this.#keyframes.onKeyframe(h.ssrc);
    const sent = this.#children.send(this.#socket, out);
    stats.packetsOut += sent;
    stats.bytesOut += sent * n;
    return true;
  }

  /** Protects and sends an RTCP (compound) packet, e.g. SR + SDES, to every root. */
  sendRtcp(packet: Uint8Array, length: number = packet.length): boolean {
    if (this.#closed || this.#silenced) return false;
    if (length < 8 || packet[0] >> 6 !== 2 || length + FEED_OVERHEAD_BYTES > this.#config.maxDatagramBytes) {
      this.stats.dropped.bad_rtcp++;
      return false;
    }
    const out = Buffer.allocUnsafe(length + FEED_OVERHEAD_BYTES);
    const n = this.#cipher.protectRtcp(packet, length, out);
    const sent = this.#children.send(this.#socket, out);
    this.stats.packetsOut += sent;
    this.stats.bytesOut += sent * n;
    return true;
  }

  /** Stops timers and closes the socket; idempotent. Emits 'close' once. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#keyframes.close();
    this.#socket.off('message', this.#onMessage);
    this.#socket.close();
    this.emit('close');
  }

  readonly #onMessage = (msg: Buffer, rinfo: RemoteInfo): void => {
    if (this.#closed) return;
    const stats = this.stats;
    stats.packetsIn++;
    stats.bytesIn += msg.length;
    if (!this.#children.has(rinfo.address, rinfo.port)) {
      stats.dropped.unknown_source++;
      return;
    }
    if (msg.length < 2 || msg[1] < 192 || msg[1] > 223) {
      stats.dropped.unexpected_rtp++;
      return;
    }
    if (msg.length > this.#config.maxDatagramBytes) {
      stats.dropped.too_large++;
      return;
    }
    const len = this.#cipher.unprotectRtcp(msg, msg.length, this.#rtcpPlain);
    if (typeof len !== 'number') {
      stats.dropped[len]++;
      return;
    }
    const { packets, error } = parseRtcp(this.#rtcpPlain.subarray(0, len));
    if (error !== null) stats.dropped.bad_rtcp++;
    for (const p of packets) {
      if (p.type === 'nack') this.#answerNack(p.mediaSsrc, p.lost, rinfo);
      else if (p.type === 'pli') this.#requestKeyframe(p.mediaSsrc);
      else if (p.type === 'fir') for (const e of p.entries) this.#requestKeyframe(e.ssrc);
    }
  };

  #answerNack(mediaSsrc: number, lost: readonly number[], to: RemoteInfo): void {
    if (this.#silenced) return;
    const stats = this.stats;
    stats.nackReceived += lost.length;
    const history = this.#history.get(mediaSsrc);
    for (const seq of lost) {
      const stored = history?.get(seq) ?? null;
      if (stored === null) {
        stats.nackMisses++;
        continue;
      }
      this.#socket.send(Buffer.from(stored), to.port, to.address);
      stats.retransmitted++;
      stats.packetsOut++;
      stats.bytesOut += stored.length;
    }
  }

  #requestKeyframe(ssrc: number): void {
    if (!(this.#history.has(ssrc) || this.#streamInfo.has(ssrc))) return; // not a stream of this feed
    if (!this.#keyframes.request(ssrc)) this.stats.pliSuppressed++;
  }

  readonly #surfaceKeyframeRequest = (ssrc: number): void => {
    this.stats.pliForwarded++;
    this.emit('keyframeRequest', ssrc);
  };

  readonly #onSocketError = (): void => {
    this.stats.dropped.socket_error++;
  };
}
