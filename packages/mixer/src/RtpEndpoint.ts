import type dgram from 'node:dgram';
import { isRtcpPacket, openUdpSocket, parseRtcp, parseRtp, readAudioLevel, RtpHeader } from '@mcu/rtp';
import type { SenderReport } from '@mcu/rtp';
import type { Participant } from './Participant.js';
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
}

export interface RtpEndpointStats {
  packetsIn: number;
  bytesIn: number;
  rtcpIn: number;
  packetsOut: number;
  sendErrors: number;
}

const MAX_PACKET_BYTES = 1500;

/**
 * A plain-RTP participant's socket: receives its Opus RTP into its jitter buffer and sends it its
 * mix, symmetric RTP (RFC 4961) from the same port. Every rejected packet is counted by reason.
 */
export class RtpEndpoint {
  readonly stats: RtpEndpointStats = { packetsIn: 0, bytesIn: 0, rtcpIn: 0, packetsOut: 0, sendErrors: 0 };
  private readonly header = new RtpHeader();
  private latchedSsrc = -1;
  private lastPacketMs = -Infinity;
  private closed = false;
  private readonly now: () => number;
  private readonly relatchMs: number;

  private constructor(
    private readonly socket: dgram.Socket,
    private readonly participant: Participant,
    private readonly opts: RtpEndpointOptions,
    private readonly drops: DropCounters,
  ) {
    this.now = opts.now ?? (() => performance.now());
    this.relatchMs = opts.ssrcRelatchMs ?? 2000;
    socket.on('message', this.onMessage);
    // Send errors arrive here too (no per-send callback on the hot path).
    socket.on('error', () => {
      this.stats.sendErrors++;
      this.drops.drop('socket_error');
    });
    participant.transport = this;
  }

  static async open(participant: Participant, opts: RtpEndpointOptions, drops: DropCounters): Promise<RtpEndpoint> {
    const socket = await openUdpSocket({ host: opts.bindHost, port: opts.bindPort, bufferBytes: 1 << 20 });
    return new RtpEndpoint(socket, participant, opts, drops);
  }

  get port(): number {
    return this.socket.address().port;
  }

  get host(): string {
    return this.socket.address().address;
  }

  get remoteHost(): string {
    return this.opts.remoteHost;
  }

  get remotePort(): number {
    return this.opts.remotePort;
  }

  get payloadType(): number {
    return this.opts.payloadType;
  }

  send(packet: Uint8Array, length: number): void {
    if (this.closed) return;
    this.stats.packetsOut++;
    this.socket.send(packet, 0, length, this.opts.remotePort, this.opts.remoteHost);
  }

  private readonly onMessage = (msg: Buffer, rinfo: dgram.RemoteInfo): void => {
    const drops = this.drops;
    if (rinfo.address !== this.opts.remoteHost) return drops.drop('unknown_source');
    this.stats.packetsIn++;
    this.stats.bytesIn += msg.length;
    if (msg.length > MAX_PACKET_BYTES) return drops.drop('too_large');
    if (msg.length >= 2 && isRtcpPacket(msg)) {
      this.stats.rtcpIn++;
      const { packets, error } = parseRtcp(msg);
      if (error) drops.drop(`rtcp_${error}`);
      const onSr = this.opts.onSenderReport;
      if (onSr) for (const p of packets) if (p.type === 'sr' && p.ssrc === this.latchedSsrc) onSr(p);
      return;
    }
    const h = this.header;
    const err = parseRtp(msg, h);
    if (err !== null) return drops.drop(err);
    if (h.payloadType !== this.opts.payloadType) return drops.drop('wrong_payload_type');
    if (h.payloadLength === 0) return drops.drop('empty_payload');
    const now = this.now();
    if (h.ssrc !== this.latchedSsrc) {
      if (this.latchedSsrc !== -1 && now - this.lastPacketMs < this.relatchMs) return drops.drop('wrong_ssrc');
      // A new sender (or one that restarted): start its stream afresh.
      this.latchedSsrc = h.ssrc;
      this.participant.inSsrc = h.ssrc;
      this.participant.jitter.reset();
    }
    this.lastPacketMs = now;
    let level = -1;
    if (this.opts.audioLevelExtId !== undefined && h.hasExtension) {
      level = readAudioLevel(msg, h, this.opts.audioLevelExtId);
      if (level >= 0) level &= 0x7f;
    }
    const result = this.participant.jitter.push(h.sequenceNumber, h.timestamp, msg, now, level, h.payloadOffset, h.payloadLength);
    if (result !== 'accepted') drops.drop(result);
    const taps = this.participant.taps.audio;
    for (let i = 0; i < taps.length; i++) taps[i](msg);
  };

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.participant.transport = null;
    this.socket.removeAllListeners('message');
    try {
      this.socket.close();
    } catch {
      // already closed
    }
  }
}
