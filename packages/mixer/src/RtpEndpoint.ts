import type dgram from 'node:dgram';
import { ipv4ToInt, isRtcpPacket, openUdpSocket, parseRtcp, parseRtp, readAudioLevel, RtpHeader } from '@mcu/rtp';
import type { ReportBlock, SenderReport, UdpSendBatch } from '@mcu/rtp';
import type { MixTransport, Participant } from './Participant.js';
import type { DropCounters } from './DropCounters.js';

export interface RtpEndpointOptions {
  /** Local address to bind (the address returned to the participant). */
  bindHost: string;
  bindPort?: number;
  /** Where the participant receives its mix; packets are accepted only from this IP. */
  remoteHost: string;
  remotePort: number;
  payloadType: number;
  /** RFC 8285 id of the RFC 6464 audio-level extension, if the sender uses it. */
  audioLevelExtId?: number;
  /** A sender whose SSRC changes is re-latched only after this long without its old SSRC. */
  ssrcRelatchMs?: number;
  now?: () => number;
  /** Sender reports of the participant's stream (for lip sync). */
  onSenderReport?: (sr: SenderReport) => void;
  /** Report blocks (in its RRs and SRs) about the mix this participant receives: the loss on its path. */
  onReceiverReport?: (block: ReportBlock) => void;
  /**
   * Native path: the arrival times `receive` is given (the kernel's, on performance.now()'s clock)
   * are on this endpoint's clock (`now` is the system's); false: `receive` uses `now()` instead.
   */
  kernelArrivalTimes?: boolean;
}

export interface RtpEndpointStats {
  packetsIn: number;
  bytesIn: number;
  rtcpIn: number;
  packetsOut: number;
  sendErrors: number;
}

const MAX_PACKET_BYTES = 1500;

/** Every endpoint parses into this one (a packet is handled to the end before the next): one header hot in cache, not one per participant. */
const scratchHeader = new RtpHeader();

/** A native endpoint's socket: where its datagrams leave from (its own, or the shared port) and how it lets go. */
export interface NativeSocket {
  /** Comes back with a send failure (`UdpSendBatch.flush`). */
  tag: number;
  fd: number;
  /** The bound port: the one handed to the participant. */
  port: number;
  /** The tick's batch its mixes are queued in. */
  sends: UdpSendBatch;
  /** Closes its own socket, or takes it off the shared port. */
  release(): void;
}

/**
 * Where native endpoints get their socket: a socket of their own in the event's native set
 * (`OwnRtpSockets`) or the one shared port (`SharedRtpPort`). Whoever reads it calls `receive`.
 */
export interface RtpSocketHome {
  /** Throws when no socket can be bound. */
  attach(endpoint: RtpEndpoint, bindHost: string, bindPort: number, remoteIpv4: number, remotePort: number): NativeSocket;
}

/**
 * A plain-RTP participant's socket: receives its Opus RTP into its jitter buffer and sends it its
 * mix, symmetric RTP (RFC 4961) from the same port. Every rejected packet is counted by reason.
 *
 * Three homes for the socket, same behaviour: a socket of its own in the event's native set, or
 * the node's one shared port (`RtpSocketHome`; read once per tick, `receive`; sends queued in the
 * event's batch, the shared mix gathered and never copied), or, where the addon is not built, a
 * dgram socket of its own.
 */
export class RtpEndpoint implements MixTransport {
  // Counters and what the per-packet paths read, on the endpoint itself: a tick touches each of a
  // hundred participants' endpoints once, and every further object is a cache miss more.
  private packetsIn = 0;
  private bytesIn = 0;
  private rtcpIn = 0;
  private packetsOut = 0;
  private sendErrors = 0;
  private readonly expectedPayloadType: number;
  /** RFC 8285 id of the audio level, -1 when the sender has none. */
  private readonly levelExtId: number;
  /** Where its mixes go (the remote port). */
  private readonly mixPort: number;
  /** Native: the socket's tag and fd, and the batch its mixes go into. */
  private readonly sendTag: number = -1;
  private readonly sendFd: number = -1;
  private readonly sends: UdpSendBatch | null = null;
  private latchedSsrc = -1;
  private lastPacketMs = -Infinity;
  private closed = false;
  private readonly now: () => number;
  private readonly relatchMs: number;
  /** The remote address as numbers, for the native path (-1: not IPv4). */
  private readonly remoteIpv4: number;
  /** Native: its socket (own or shared); null on the dgram path. */
  private readonly nativeSocket: NativeSocket | null;
  private readonly kernelTimes: boolean;
  /** Present exactly when the socket is native (the mixer then hands over headers alone). */
  readonly sendHeader?: (header: Uint8Array, headerLength: number, payload: Uint8Array, payloadLength: number, shared: boolean) => void;

  private constructor(
    private readonly socket: dgram.Socket | null,
    home: RtpSocketHome | null,
    private readonly participant: Participant,
    private readonly opts: RtpEndpointOptions,
    private readonly drops: DropCounters,
  ) {
    this.now = opts.now ?? (() => performance.now());
    this.relatchMs = opts.ssrcRelatchMs ?? 2000;
    this.remoteIpv4 = ipv4ToInt(opts.remoteHost);
    this.kernelTimes = opts.kernelArrivalTimes ?? opts.now === undefined;
    this.expectedPayloadType = opts.payloadType;
    this.levelExtId = opts.audioLevelExtId ?? -1;
    this.mixPort = opts.remotePort;
    this.nativeSocket = home !== null ? home.attach(this, opts.bindHost, opts.bindPort ?? 0, this.remoteIpv4, opts.remotePort) : null;
    if (this.nativeSocket !== null) {
      this.sendTag = this.nativeSocket.tag;
      this.sendFd = this.nativeSocket.fd;
      this.sends = this.nativeSocket.sends;
    }
    if (socket !== null) {
      socket.on('message', this.onMessage);
      // Send errors arrive here too (no per-send callback on the hot path).
      socket.on('error', () => this.sendFailed());
    } else {
      this.sendHeader = this.queueHeader;
    }
    participant.transport = this;
  }

  /**
   * Opens the participant's socket: from `home` when given (native, IPv4 only), else a dgram socket.
   * Throws when it cannot bind.
   */
  static async open(participant: Participant, opts: RtpEndpointOptions, drops: DropCounters, home: RtpSocketHome | null = null): Promise<RtpEndpoint> {
    if (home !== null && ipv4ToInt(opts.bindHost) >= 0 && ipv4ToInt(opts.remoteHost) >= 0) return new RtpEndpoint(null, home, participant, opts, drops);
    const socket = await openUdpSocket({ host: opts.bindHost, port: opts.bindPort, bufferBytes: 1 << 20 });
    return new RtpEndpoint(socket, null, participant, opts, drops);
  }

  get stats(): RtpEndpointStats {
    return { packetsIn: this.packetsIn, bytesIn: this.bytesIn, rtcpIn: this.rtcpIn, packetsOut: this.packetsOut, sendErrors: this.sendErrors };
  }

  /** Whether the socket is native (its own in the event's set, or the shared port). */
  get native(): boolean {
    return this.socket === null;
  }

  get port(): number {
    return this.socket !== null ? this.socket.address().port : this.nativeSocket!.port;
  }

  get host(): string {
    return this.socket !== null ? this.socket.address().address : this.opts.bindHost;
  }

  get remoteHost(): string {
    return this.opts.remoteHost;
  }

  get remotePort(): number {
    return this.mixPort;
  }

  get payloadType(): number {
    return this.expectedPayloadType;
  }

  send(packet: Uint8Array, length: number): void {
    if (this.closed) return;
    this.packetsOut++;
    if (this.socket !== null) this.socket.send(packet, 0, length, this.mixPort, this.opts.remoteHost);
    else this.sends!.add(this.sendTag, this.sendFd, this.remoteIpv4, this.mixPort, packet, length, false);
  }

  /** Native path: the header into the tick's batch; the shared mix is gathered after it, a mix-minus copied behind it. */
  // A method (one function for every endpoint), not a closure per endpoint: `sendHeader` is it.
  private queueHeader(header: Uint8Array, headerLength: number, payload: Uint8Array, payloadLength: number, shared: boolean): void {
    if (this.closed) return;
    this.packetsOut++;
    const sends = this.sends!;
    if (shared) {
      sends.setTail(payload, payloadLength);
      sends.add(this.sendTag, this.sendFd, this.remoteIpv4, this.mixPort, header, headerLength, true);
    } else {
      // A speaker's own mix-minus: few per tick, so header and payload are joined in the row.
      for (let i = 0; i < payloadLength; i++) header[headerLength + i] = payload[i];
      sends.add(this.sendTag, this.sendFd, this.remoteIpv4, this.mixPort, header, headerLength + payloadLength, false);
    }
  }

  /** A datagram of ours that could not be sent (a full socket buffer, an unreachable port). */
  sendFailed(): void {
    this.sendErrors++;
    this.drops.drop('socket_error');
  }

  private readonly onMessage = (msg: Buffer, rinfo: dgram.RemoteInfo): void => {
    if (rinfo.address !== this.opts.remoteHost) return this.drops.drop('unknown_source');
    this.onPacket(msg, msg.length, this.now());
  };

  /**
   * Native path: a datagram read from this endpoint's socket, or routed to it by the shared port
   * (`packet[0, length)`, a view valid during the call), from `sourceIpv4`, that arrived at
   * `arrivalMs` (the kernel's time on performance.now()'s clock).
   */
  receive(packet: Uint8Array, length: number, sourceIpv4: number, arrivalMs: number): void {
    if (this.closed) return;
    if (sourceIpv4 !== this.remoteIpv4) return this.drops.drop('unknown_source');
    this.onPacket(packet, length, this.kernelTimes ? arrivalMs : this.now());
  }

  /**
   * Shared port: how well a datagram of stream `ssrc` from this endpoint's address fits it:
   * 2 its latched stream, 1 it may take it (nothing latched yet, or its stream has been quiet
   * longer than the re-latch time), 0 not its own.
   */
  claims(ssrc: number, arrivalMs: number): 0 | 1 | 2 {
    if (ssrc === this.latchedSsrc) return 2;
    const now = this.kernelTimes ? arrivalMs : this.now();
    return this.latchedSsrc === -1 || now - this.lastPacketMs >= this.relatchMs ? 1 : 0;
  }

  /** The remote address as a number (-1: not IPv4) and port: where its mixes go. */
  get remoteAddress(): { ipv4: number; port: number } {
    return { ipv4: this.remoteIpv4, port: this.mixPort };
  }

  private onPacket(msg: Uint8Array, length: number, now: number): void {
    const drops = this.drops;
    this.packetsIn++;
    this.bytesIn += length;
    if (length > MAX_PACKET_BYTES) return drops.drop('too_large');
    if (length >= 2 && isRtcpPacket(msg)) {
      this.rtcpIn++;
      const { packets, error } = parseRtcp(msg.length === length ? msg : msg.subarray(0, length));
      if (error) drops.drop(`rtcp_${error}`);
      const { onSenderReport: onSr, onReceiverReport: onRr } = this.opts;
      for (const p of packets) {
        if (p.type === 'sr' && p.ssrc === this.latchedSsrc) onSr?.(p);
        if (onRr && (p.type === 'sr' || p.type === 'rr')) for (const b of p.reports) if (b.ssrc === this.participant.outSsrc) onRr(b);
      }
      return;
    }
    const h = scratchHeader;
    const err = parseRtp(msg, h, length);
    if (err !== null) return drops.drop(err);
    if (h.payloadType !== this.expectedPayloadType) return drops.drop('wrong_payload_type');
    if (h.payloadLength === 0) return drops.drop('empty_payload');
    if (h.ssrc !== this.latchedSsrc) {
      if (this.latchedSsrc !== -1 && now - this.lastPacketMs < this.relatchMs) return drops.drop('wrong_ssrc');
      // A new sender (or one that restarted): start its stream afresh.
      this.latchedSsrc = h.ssrc;
      this.participant.inSsrc = h.ssrc;
      this.participant.jitter.reset();
    }
    this.lastPacketMs = now;
    let level = -1;
    if (this.levelExtId >= 0 && h.hasExtension) {
      level = readAudioLevel(msg, h, this.levelExtId);
      if (level >= 0) level &= 0x7f;
    }
    const result = this.participant.jitter.push(h.sequenceNumber, h.timestamp, msg, now, level, h.payloadOffset, h.payloadLength);
    if (result !== 'accepted') drops.drop(result);
    const taps = this.participant.taps.audio;
    if (taps.length === 0) return;
    // The native set reads into a pooled buffer longer than the datagram: taps see the datagram alone.
    const packet = Buffer.from(msg.buffer, msg.byteOffset, length);
    for (let i = 0; i < taps.length; i++) taps[i](packet);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.participant.transport = null;
    if (this.socket !== null) {
      this.socket.removeAllListeners('message');
      try {
        this.socket.close();
      } catch {
        // already closed
      }
    } else {
      this.nativeSocket!.release();
    }
  }
}
