import { ntpTime, RtpHeader } from 'werift';
import type { RTCRtpSender } from 'werift';
import type { RtpHeader as ParsedHeader } from '@mcu/rtp';

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
  srtp?: { encrypt(payload: Buffer, header: RtpHeader): Buffer };
  iceTransport?: { connection?: IceInternals };
  sendRtp(payload: Buffer, header: RtpHeader): Promise<number>;
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
function ntpNow(): bigint {
  const now = performance.now();
  if (now - sharedNtp.at > 1) sharedNtp = { at: now, value: ntpTime() };
  return sharedNtp.value;
}

/** werift answers NACKs from a 128-entry history indexed by sequence number. */
const RTP_HISTORY_SIZE = 128;

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

const ABS_SEND_TIME_URI = 'http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time';

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
    }
    if (this.absSendTimeId === 0) return [];
    this.absSendTimeExt.payload.writeUIntBE(Number((ntp >> 14n) & 0xffffffn), 0, 3);
    return this.absSendTimeList;
  }

  private readonly absSendTimeList = [this.absSendTimeExt];

  send(packet: Buffer, parsed: ParsedHeader): void {
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
    s.sequenceNumber = h.sequenceNumber;
    s.timestamp = h.timestamp;
    s.ntpTimestamp = ntpNow();
    h.extensions = this.extensions(s, s.ntpTimestamp);
    s.rtpTimestamp = h.timestamp;
    s.octetCount += payload.length;
    s.packetCount = (s.packetCount + 1) >>> 0;
    this.packetsSent++;
    // werift starts its sender-report loop from its own sendRtp; this path must start it too.
    if (!s.rtcpRunning) void s.runRtcp().catch(() => undefined);
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
    const enc = dtls.srtp.encrypt(payload, h);
    socket.send(enc, pair.remoteAddr[1], pair.remoteAddr[0]);
    dtls.bytesSent += enc.length;
    dtls.packetsSent++;
    pair.packetsSent++;
    pair.bytesSent += enc.length;
  }
}

