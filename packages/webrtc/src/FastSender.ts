import { RtpHeader } from 'werift';
import type { RTCRtpSender } from 'werift';
import { ntpFromUnixMs, rtpPacketLength, writeRtp } from '@mcu/rtp';
import type { HeaderExtension, RtpBuildFields, RtpHeader as ParsedHeader } from '@mcu/rtp';
import { loadSrtpGcm, nativeSrtpEnabled, socketFd, SRTP_GCM_TAG_BYTES } from './SrtpGcm.js';
import { ipv4ToInt } from './Sdp.js';
import type { SrtpGcmSession } from './SrtpGcm.js';
import { SharedPortTransport } from './SharedUdpPort.js';

/**
 * The per-viewer send path for a packet built once for all viewers.
 *
 * werift's `RTCRtpSender.sendRtp(buffer)` parses the buffer into a new packet object, rebuilds the
 * extension list with closures, sorts it and serializes again, for every viewer. Here the packet is
 * parsed once per tick (by the caller, into `parsed`), and per viewer only the header fields that
 * differ (SSRC, payload type, the sender's sequence/timestamp offsets) are set on one reused header
 * object before werift's SRTP encrypt and send. The sender's counters are kept so that werift's
 * own RTCP sender reports stay correct.
 */
interface SenderInternals {
  ssrc: number;
  codec?: { payloadType: number };
  seqOffset: number;
  timestampOffset: number;
  sequenceNumber?: number;
  timestamp?: number;
  ntpTimestamp: bigint;
  rtpTimestamp: number;
  octetCount: number;
  packetCount: number;
  dtlsTransport: DtlsInternals;
  rtcpRunning: boolean;
  runRtcp(): Promise<void>;
  rtpCache: { header: RtpHeader; payload: Buffer }[];
  headerExtensions?: { uri: string; id: number }[];
}

interface DtlsInternals {
  state: string;
  bytesSent: number;
  packetsSent: number;
  srtp?: SrtpInternals;
  iceTransport?: { connection?: IceInternals };
  sendRtp(payload: Buffer, header: RtpHeader): Promise<number>;
}

interface SrtpInternals {
  encrypt(payload: Buffer, header: RtpHeader): Buffer;
  localContext?: {
    cipher?: { srtpSessionKey?: Buffer; srtpSessionSalt?: Buffer; aeadAuthTagLen?: number };
    getSrtpSsrcState(ssrc: number): { rolloverCounter: number };
    updateRolloverCount(sequenceNumber: number, state: { rolloverCounter: number }): void;
  };
}

/**
 * The native GCM session of each werift SRTP session (null: not GCM, or no addon). Weak: a
 * viewer's session and its OpenSSL context go when its transport does.
 */
const nativeSessions = new WeakMap<SrtpInternals, SrtpGcmSession | null>();

/** Each ICE socket's fd (-1: not found), looked up once. */
const socketFds = new WeakMap<object, number>();

function nativeSessionOf(srtp: SrtpInternals): SrtpGcmSession | null {
  let n = nativeSessions.get(srtp);
  if (n !== undefined) return n;
  n = null;
  const cipher = srtp.localContext?.cipher;
  const binding = loadSrtpGcm().binding;
  // Only AEAD_AES_128_GCM (werift's CipherAesGcm: 16-byte tag); AES-CM stays werift's. werift
  // derives a 14-byte session salt (RFC 3711's length) and uses its first 12 bytes, as we do.
  if (binding && cipher?.aeadAuthTagLen === SRTP_GCM_TAG_BYTES && cipher.srtpSessionKey?.length === 16 && (cipher.srtpSessionSalt?.length ?? 0) >= 12) {
    try {
      n = new binding.SrtpGcm(cipher.srtpSessionKey, cipher.srtpSessionSalt!.subarray(0, 12));
    } catch {
      n = null;
    }
  }
  nativeSessions.set(srtp, n);
  return n;
}

interface IceInternals {
  canSendApplicationData?(): boolean;
  nominated?: {
    remoteAddr: [string, number];
    packetsSent: number;
    bytesSent: number;
    protocol?: { transport?: { closed?: boolean; socket?: { send(data: Buffer, port: number, host: string): void } } };
  };
}

/** The NTP time of the current program packet, computed once for all its viewers. */
let sharedNtp = { at: -1, value: 0n };
/**
 * Now as a 64-bit NTP timestamp, computed at most once a millisecond for all viewers. Not werift's
 * `ntpTime()`: it puts the decimal digits of the milliseconds in the fraction (".567 s" becomes
 * 567 / 2^32 s), so its sender reports are off by up to a second and abs-send-time jumps once a
 * second.
 */
export function ntpNow(): bigint {
  const now = performance.now();
  if (now - sharedNtp.at > 1) sharedNtp = { at: now, value: ntpOfUnixMs(performance.timeOrigin + now) };
  return sharedNtp.value;
}

/** A Unix time in ms as werift's 64-bit NTP timestamp (RFC 3550 §4: 32.32 fixed point). */
export function ntpOfUnixMs(ms: number): bigint {
  const t = ntpFromUnixMs(ms);
  return (BigInt(t.sec) << 32n) | BigInt(t.frac);
}

/** werift answers NACKs from a 128-entry history indexed by sequence number. */
export const RTP_HISTORY_SIZE = 128;

export interface FastSenderOptions {
  /** Keep each sent packet in werift's history so that viewers' NACKs are answered (video). */
  retransmit?: boolean;
  /**
   * Stamp each packet with abs-send-time when the viewer negotiated it (video). A receiver's
   * bandwidth estimate (REMB) then times packets by when they left, not by their RTP timestamps,
   * which carry the composition time and so the encoder's varying delay as fake queuing delay.
   */
  absSendTime?: boolean;
}

export const ABS_SEND_TIME_URI = 'http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time';

export class FastSender {
  private readonly header = new RtpHeader({ extensions: [] });
  private readonly csrc: number[] = [];
  private readonly retransmit: boolean;
  private readonly absSendTime: boolean;
  /** The negotiated abs-send-time extension id: undefined until looked up, 0 when not negotiated. */
  private absSendTimeId: number | undefined;
  private readonly absSendTimeExt = { id: 0, payload: Buffer.alloc(3) };
  packetsSent = 0;

  constructor(
    private readonly sender: RTCRtpSender,
    opts: FastSenderOptions = {},
  ) {
    this.retransmit = opts.retransmit ?? false;
    this.absSendTime = opts.absSendTime ?? false;
  }

  /** The header extensions this packet carries: abs-send-time (24 bits, 6.18 fixed-point seconds of NTP time) or none. */
  private extensions(s: SenderInternals, ntp: bigint): { id: number; payload: Buffer }[] {
    if (!this.absSendTime) return [];
    if (this.absSendTimeId === undefined) {
      if (!s.headerExtensions) return [];
      this.absSendTimeId = s.headerExtensions.find((e) => e.uri === ABS_SEND_TIME_URI)?.id ?? 0;
      this.absSendTimeExt.id = this.absSendTimeId;
      (this.absSendTimeElement[0] as HeaderExtension).id = this.absSendTimeId;
    }
    if (this.absSendTimeId === 0) return [];
    this.absSendTimeExt.payload.writeUIntBE(Number((ntp >> 14n) & 0xffffffn), 0, 3);
    return this.absSendTimeList;
  }

  private readonly absSendTimeList = [this.absSendTimeExt];
  /** The same element for our own header writer (one buffer: written once per packet). */
  private readonly absSendTimeElement: readonly HeaderExtension[] = [{ id: 0, data: this.absSendTimeExt.payload }];
  /** Header fields of the packet being sealed natively, one object reused. */
  private readonly fields: RtpBuildFields = { payloadType: 0, sequenceNumber: 0, timestamp: 0, ssrc: 0 };

  /** Packets sealed by the native GCM path (the rest by werift's). */
  nativePackets = 0;
  /** Packets written with one sendto(2) by the addon; the rest went through dgram.send. */
  directPackets = 0;
  /** Direct sends refused (a full socket buffer, an error): those went through dgram.send. */
  directFallbacks = 0;
  private directHost = '';
  private directIp = -1;

  /** Packets the native fan-out group sent for this viewer (NativeFanOut), counted every 200 ms. */
  nativeFanOutPackets = 0;

  /** Packets queued in the shared port's batch (sendmmsg). */
  batchedPackets = 0;

  /** The viewer's address as a number (-1: not IPv4), converted when it changes. */
  private remoteIp(host: string): void {
    if (host !== this.directHost) {
      this.directHost = host;
      this.directIp = ipv4ToInt(host);
    }
  }

  /** Sends through the addon's sendto on the socket's fd; false when it cannot (then dgram.send). */
  private sendDirect(socket: object, packet: Buffer, to: [string, number]): boolean {
    if (!nativeSrtpEnabled()) return false;
    const binding = loadSrtpGcm().binding;
    if (binding === null) return false;
    let fd = socketFds.get(socket);
    if (fd === undefined) {
      fd = socketFd(socket);
      socketFds.set(socket, fd);
    }
    if (fd < 0) return false;
    this.remoteIp(to[0]);
    if (this.directIp < 0) return false;
    const n = binding.sendTo(fd, packet, packet.length, this.directIp, to[1]);
    if (n === packet.length) {
      this.directPackets++;
      return true;
    }
    this.directFallbacks++;
    return false;
  }

  /**
   * The packet sealed by the native AES-GCM session, with werift's rollover counter kept in step;
   * null when the session is not GCM or the addon is missing or failed (werift encrypts then).
   */
  private protect(srtp: SrtpInternals, payload: Buffer, h: RtpHeader): Buffer | null {
    if (!nativeSrtpEnabled()) return null;
    const native = nativeSessionOf(srtp);
    const ctx = srtp.localContext;
    if (native === null || !ctx) return null;
    const f = this.fields;
    f.payloadType = h.payloadType;
    f.sequenceNumber = h.sequenceNumber;
    f.timestamp = h.timestamp;
    f.ssrc = h.ssrc;
    f.marker = h.marker;
    f.csrcs = this.csrc;
    f.csrcCount = this.csrc.length;
    // abs-send-time is the only element this path writes (see extensions()).
    f.extensions = h.extensions.length > 0 ? this.absSendTimeElement : undefined;
    // One buffer per packet: the socket holds it until the datagram is out.
    const out = Buffer.allocUnsafe(rtpPacketLength(f, payload.length) + SRTP_GCM_TAG_BYTES);
    const hdr = writeRtp(out, f, payload) - payload.length;
    const state = ctx.getSrtpSsrcState(h.ssrc);
    ctx.updateRolloverCount(h.sequenceNumber, state);
    if (native.protect(out, hdr, payload.length, state.rolloverCounter) < 0) return null;
    this.nativePackets++;
    return out;
  }

  /**
   * Sends one program packet. `mediaMs`, when given, is the media-clock time of its frame: the
   * sender report's NTP/RTP pair then names that instant (lip sync), while abs-send-time still
   * carries the real send time.
   */
  send(packet: Buffer, parsed: ParsedHeader, mediaMs?: number): void {
    this.transmit(packet, parsed, mediaMs, false);
  }

  /**
   * Sends a packet again (a viewer's NACK), sealed and sent as `send` does, but leaving the
   * sender's state alone: its last sequence number, timestamp and NTP time (its sender reports)
   * and its packet count stay those of the live stream.
   */
  resend(packet: Buffer, parsed: ParsedHeader): void {
    this.transmit(packet, parsed, undefined, true);
  }

  private transmit(packet: Buffer, parsed: ParsedHeader, mediaMs: number | undefined, again: boolean): void {
    const s = this.sender as unknown as SenderInternals;
    if (s.dtlsTransport.state !== 'connected' || !s.codec) return;
    const h = this.header;
    h.ssrc = s.ssrc;
    h.payloadType = s.codec.payloadType;
    h.marker = parsed.marker;
    h.sequenceNumber = (parsed.sequenceNumber + s.seqOffset) & 0xffff;
    h.timestamp = (parsed.timestamp + s.timestampOffset) >>> 0;
    this.csrc.length = parsed.csrcCount;
    for (let i = 0; i < parsed.csrcCount; i++) this.csrc[i] = parsed.csrcs[i];
    h.csrc = this.csrc;
    h.csrcLength = parsed.csrcCount;
    const payload = packet.subarray(parsed.payloadOffset, parsed.payloadOffset + parsed.payloadLength);
    const sentAt = ntpNow();
    h.extensions = this.extensions(s, sentAt);
    if (!again) {
      s.sequenceNumber = h.sequenceNumber;
      s.timestamp = h.timestamp;
      s.ntpTimestamp = mediaMs === undefined ? sentAt : ntpOfUnixMs(mediaMs);
      s.rtpTimestamp = h.timestamp;
      s.octetCount += payload.length;
      s.packetCount = (s.packetCount + 1) >>> 0;
      this.packetsSent++;
      // werift starts its sender-report loop from its own sendRtp; this path must start it too.
      if (!s.rtcpRunning) void s.runRtcp().catch(() => undefined);
    }
    if (this.retransmit) {
      s.rtpCache[h.sequenceNumber % RTP_HISTORY_SIZE] = {
        header: new RtpHeader({ ...h, csrc: [...this.csrc], extensions: [] }),
        payload: Buffer.from(payload),
      };
    }
    const dtls = s.dtlsTransport;
    const ice = dtls.iceTransport?.connection;
    const pair = ice?.nominated;
    const socket = pair?.protocol?.transport?.socket;
    if (!dtls.srtp || !ice || !pair || !socket || pair.protocol?.transport?.closed || ice.canSendApplicationData?.() === false) {
      // SRTP encryption serializes the header synchronously, so the header object can be reused.
      void dtls.sendRtp(payload, h).catch(() => undefined);
      return;
    }
    // werift's send path is four nested promises per packet; the nominated pair's socket is the
    // same one it would end up on, written to directly.
    const enc = this.protect(dtls.srtp, payload, h) ?? dtls.srtp.encrypt(payload, h);
    const transport = pair.protocol?.transport;
    if (transport instanceof SharedPortTransport && nativeSrtpEnabled()) {
      // One socket for every viewer: the tick's datagrams leave together (sendmmsg).
      this.remoteIp(pair.remoteAddr[0]);
      if (transport.queue(enc, this.directIp, pair.remoteAddr[1], pair.remoteAddr[0])) this.batchedPackets++;
      else socket.send(enc, pair.remoteAddr[1], pair.remoteAddr[0]);
    } else if (!this.sendDirect(socket, enc, pair.remoteAddr)) socket.send(enc, pair.remoteAddr[1], pair.remoteAddr[0]);
    dtls.bytesSent += enc.length;
    dtls.packetsSent++;
    pair.packetsSent++;
    pair.bytesSent += enc.length;
  }
}

