/**
 * One program stream to every viewer in one native call per packet (native/srtp_fanout.c): the
 * addon rewrites each viewer's RTP header, seals it with the viewer's AES-GCM key and sends the
 * tick's datagrams with sendmmsg. Per viewer and packet no JavaScript runs and no Buffer is made.
 *
 * werift keeps ICE, DTLS, the SRTP keys and RTCP. A viewer joins the native group once its
 * transport is up with AEAD_AES_128_GCM and a nominated IPv4 pair (until then, and whenever that
 * stops being so, FastSender sends for it from JavaScript). Its per-viewer state is a row of a
 * Uint32Array shared with the addon, and werift's own fields that describe the stream are made
 * accessors onto that row while it is in the group: the sender's packet/octet counts, last
 * sequence number and timestamp (its RTCP sender reports), and the SRTP rollover counter
 * (retransmissions werift encrypts itself use the same counter).
 *
 * Checked every VALIDATE_MS: the viewer still wants the native path, DTLS is still connected with
 * the same SRTP session, and its nominated pair still goes to the same address (a moved address is
 * followed; anything else returns the viewer to JavaScript). A session that closes leaves at once.
 */
import { RtcpSenderInfo, RtcpSourceDescriptionPacket, RtcpSrPacket, SourceDescriptionChunk, SourceDescriptionItem } from 'werift';
import type { RTCRtpSender } from 'werift';
import type { RtpHeader as ParsedHeader } from '@mcu/rtp';
import { ipv4ToInt } from './Sdp.js';
import { loadSrtpGcm, nativeSrtpEnabled, socketFd, SRTP_GCM_TAG_BYTES } from './SrtpGcm.js';
import { ntpNow, ntpOfUnixMs, ABS_SEND_TIME_URI } from './FastSender.js';

/** The addon's fan-out (native/srtp_fanout.c). */
interface SrtpFanOutNative {
  setKey(slot: number, key: Uint8Array, salt: Uint8Array): void;
  setRtcpKey(slot: number, key: Uint8Array, salt: Uint8Array): void;
  clearKey(slot: number): void;
  /** Seals an RTCP compound packet in place (RFC 7714 §9): protected length, or -1. */
  sealRtcp(slot: number, packet: Uint8Array, length: number, index: number): number;
  send(
    state: Uint32Array,
    slots: number,
    program: Uint8Array,
    payloadOffset: number,
    payloadLength: number,
    marker: number,
    seq: number,
    ts: number,
    csrcCount: number,
    absSendTime: number,
    out: Uint8Array,
    stride: number,
    status: Int32Array,
  ): number;
}

export interface FanOutBinding {
  SrtpFanOut: new () => SrtpFanOutNative;
  FANOUT_STATE_STRIDE: number;
}

/** Words of a viewer's row (keep in step with srtp_fanout.c). */
const W = {
  FLAGS: 0,
  SSRC: 1,
  PT: 2,
  SEQ_OFFSET: 3,
  TS_OFFSET: 4,
  ROC: 5,
  ROC_LAST: 6,
  IPV4: 7,
  PORT: 8,
  FD: 9,
  EXT_ID: 10,
  PACKETS: 11,
  OCTETS: 12,
  SEQ: 13,
  TS: 14,
  BYTES: 15,
} as const;
const STRIDE = 16;
const F_ACTIVE = 1;
const F_ROLLOVER_SEEN = 2;
const EAGAIN = 11;
/** How often the group re-checks its viewers' transports. */
const VALIDATE_MS = 200;
/** Room per datagram besides the payload: header with 15 CSRCs, abs-send-time, GCM tag; rounded to a cache line. */
const HEADER_ROOM = 12 + 60 + 8 + SRTP_GCM_TAG_BYTES;

/** A viewer the group sends for. */
export interface FanOutMember {
  /** Whether the viewer still wants this path (its send path, MCU_NATIVE_SRTP). */
  wantsNative(): boolean;
  /** The group stopped sending for the viewer: it is JavaScript's again from the next packet. */
  nativeDetached(): void;
  /** Packets sent for it natively since the last call (its session's counters). */
  nativeSent(packets: number): void;
}

interface SenderFields {
  ssrc: number;
  cname?: string;
  rtcpCancel: AbortController;
  lastSRtimestamp?: number;
  lastSentSRTimestamp?: number;
  codec?: { payloadType: number };
  seqOffset: number;
  timestampOffset: number;
  rtcpRunning: boolean;
  runRtcp(): Promise<void>;
  headerExtensions?: { uri: string; id: number }[];
  dtlsTransport: {
    state: string;
    bytesSent: number;
    packetsSent: number;
    srtp?: {
      localContext?: {
        cipher?: { srtpSessionKey?: Buffer; srtpSessionSalt?: Buffer; aeadAuthTagLen?: number };
        getSrtpSsrcState(ssrc: number): object;
      };
    };
    srtcp?: {
      localContext?: {
        cipher?: { srtcpSessionKey?: Buffer; srtcpSessionSalt?: Buffer; aeadAuthTagLen?: number };
        getSrtcpSsrcState(ssrc: number): { srtcpIndex: number };
      };
    };
    iceTransport?: { connection?: { canSendApplicationData?(): boolean; nominated?: Pair } };
  };
}

interface Pair {
  remoteAddr: [string, number];
  packetsSent: number;
  bytesSent: number;
  protocol?: { transport?: { closed?: boolean; socket?: object & { send(data: Buffer, port: number, host: string): void } } };
}

interface Slot {
  member: FanOutMember;
  sender: SenderFields;
  srtp: object;
  pair: Pair;
  socket: { send(data: Buffer, port: number, host: string): void };
  host: string;
  /** Accessor-backed werift fields, restored as data properties when the viewer leaves. */
  restore: { target: object; fields: string[] }[];
  /** Counters already reported (to the member, the transport and the pair). */
  reportedPackets: number;
  reportedBytes: number;
  /** The sender's NTP time of the last packet before the group sent for it. */
  ntpBefore: bigint;
  /** The row's packet count when ntpBefore was set (a different count: the group sent since). */
  ntpMark: number;
  /** The row's packet count when the viewer joined. */
  packetsBase: number;
  /** The group sends this viewer's sender reports (werift's loop is stopped meanwhile): when the next is due. */
  srDueAt: number | null;
}

/** werift's sender-report interval: 0.5 to 1.5 s, random. */
const srInterval = () => 500 + Math.random() * 1000;

let bindingCache: FanOutBinding | null | undefined;

/**
 * The addon's fan-out, or null when it is not built or MCU_NATIVE_FANOUT=0 (read when a program
 * feed gets its group): then FastSender sends per viewer.
 */
export function fanOutBinding(): FanOutBinding | null {
  if (process.env.MCU_NATIVE_FANOUT === '0') return null;
  if (bindingCache === undefined) {
    const b = loadSrtpGcm().binding as unknown as Partial<FanOutBinding> | null;
    bindingCache = b && typeof b.SrtpFanOut === 'function' && b.FANOUT_STATE_STRIDE === STRIDE ? (b as FanOutBinding) : null;
  }
  return bindingCache;
}

let fanOutEnabled = true;

/** Turns the one-call-per-packet fan-out on or off for every group at once (benchmarks compare paths in one run). */
export function setNativeFanOut(on: boolean): void {
  fanOutEnabled = on;
}

export function nativeFanOutEnabled(): boolean {
  return fanOutEnabled && nativeSrtpEnabled();
}

export interface NativeFanOutStats {
  viewers: number;
  /** Datagrams the kernel took in the group's sendmmsg calls, those left to dgram.send (full buffer), and those dropped (refused, counted). */
  sent: number;
  fallbacks: number;
  failed: number;
  calls: number;
  /** Sender reports the groups sealed and sent (werift's own loop sends the rest). */
  senderReports: number;
}

/** Groups' counters summed (null: none of them has the addon). */
export function sumFanOutStats(all: Iterable<NativeFanOutStats | null>): NativeFanOutStats | null {
  let total: NativeFanOutStats | null = null;
  for (const n of all) {
    if (n === null) continue;
    total ??= { viewers: 0, sent: 0, fallbacks: 0, failed: 0, calls: 0, senderReports: 0 };
    for (const k of Object.keys(total) as (keyof NativeFanOutStats)[]) total[k] += n[k];
  }
  return total;
}

export class NativeFanOut {
  private readonly native: SrtpFanOutNative;
  private state = new Uint32Array(64 * STRIDE);
  private readonly slots: (Slot | null)[] = [];
  private readonly bySlot = new Map<FanOutMember, number>();
  private readonly free: number[] = [];
  private high = 0;
  private out = new Uint8Array(0);
  private status = new Int32Array(1);
  private timer: NodeJS.Timeout | null = null;
  private lastNtp = 0n;
  readonly counters = { sent: 0, fallbacks: 0, failed: 0, calls: 0, senderReports: 0 };

  private constructor(
    binding: FanOutBinding,
    private readonly absSendTime: boolean,
  ) {
    this.native = new binding.SrtpFanOut();
  }

  /** A group, or null without the addon. `absSendTime`: stamp it on viewers that negotiated it (video). */
  static create(opts: { absSendTime?: boolean } = {}): NativeFanOut | null {
    const b = fanOutBinding();
    return b === null ? null : new NativeFanOut(b, opts.absSendTime ?? false);
  }

  get size(): number {
    return this.bySlot.size;
  }

  has(member: FanOutMember): boolean {
    return this.bySlot.has(member);
  }

  stats(): NativeFanOutStats {
    return { viewers: this.bySlot.size, ...this.counters };
  }

  /**
   * Takes `member`'s sender into the group when its transport allows (see the file comment); true
   * when it is in. Cheap when not: the first failing condition returns. `offsets` are added to
   * each packet's sequence number and timestamp before werift's own offsets.
   */
  attach(member: FanOutMember, rtpSender: RTCRtpSender, offsets?: { seq: number; ts: number }): boolean {
    if (this.bySlot.has(member)) return true;
    if (!nativeFanOutEnabled() || !member.wantsNative()) return false;
    const s = rtpSender as unknown as SenderFields;
    const dtls = s.dtlsTransport;
    if (dtls.state !== 'connected' || !s.codec) return false;
    const ctx = dtls.srtp?.localContext;
    const cipher = ctx?.cipher;
    if (!ctx || cipher?.aeadAuthTagLen !== SRTP_GCM_TAG_BYTES || cipher.srtpSessionKey?.length !== 16 || (cipher.srtpSessionSalt?.length ?? 0) < 12) return false;
    const ice = dtls.iceTransport?.connection;
    const pair = ice?.nominated;
    const transport = pair?.protocol?.transport;
    const socket = transport?.socket;
    if (!pair || !socket || transport.closed || ice.canSendApplicationData?.() === false) return false;
    const ipv4 = ipv4ToInt(pair.remoteAddr[0]);
    const fd = socketFd(socket);
    if (ipv4 < 0 || fd < 0) return false;

    const slot = this.free.pop() ?? this.high++;
    this.grow(slot + 1);
    this.native.setKey(slot, cipher.srtpSessionKey, cipher.srtpSessionSalt!.subarray(0, 12));
    const st = this.state;
    const b = slot * STRIDE;
    st.fill(0, b, b + STRIDE);
    st[b + W.SSRC] = s.ssrc >>> 0;
    st[b + W.PT] = s.codec.payloadType;
    // werift's random offsets, plus the member's own (a video viewer's continuity across rendition switches).
    st[b + W.SEQ_OFFSET] = (s.seqOffset + (offsets?.seq ?? 0)) >>> 0;
    st[b + W.TS_OFFSET] = (s.timestampOffset + (offsets?.ts ?? 0)) >>> 0;
    st[b + W.IPV4] = ipv4;
    st[b + W.PORT] = pair.remoteAddr[1];
    st[b + W.FD] = fd;
    st[b + W.EXT_ID] = this.absSendTime ? (s.headerExtensions?.find((e) => e.uri === ABS_SEND_TIME_URI)?.id ?? 0) : 0;
    const sender = s as unknown as Record<string, unknown>;
    const ssrcState = ctx.getSrtpSsrcState(s.ssrc) as Record<string, unknown>;
    const entry: Slot = {
      member,
      sender: s,
      srtp: dtls.srtp!,
      pair,
      socket,
      host: pair.remoteAddr[0],
      restore: [],
      reportedPackets: 0,
      reportedBytes: 0,
      ntpBefore: (sender.ntpTimestamp as bigint | undefined) ?? 0n,
      ntpMark: 0,
      packetsBase: 0,
      srDueAt: null,
    };
    // werift's fields onto the row: its counts, last sequence number and timestamp, rollover state.
    const u32 = (word: number) => ({ get: () => this.state[b + word], set: (v: number) => void (this.state[b + word] = v >>> 0) });
    this.shareFields(entry, sender, {
      packetCount: u32(W.PACKETS),
      octetCount: u32(W.OCTETS),
      sequenceNumber: u32(W.SEQ),
      timestamp: u32(W.TS),
      rtpTimestamp: u32(W.TS),
      ntpTimestamp: {
        get: () => (this.state[b + W.PACKETS] !== entry.ntpMark ? this.lastNtp : entry.ntpBefore),
        set: (v: bigint) => {
          entry.ntpBefore = v;
          entry.ntpMark = this.state[b + W.PACKETS];
        },
      },
    });
    entry.ntpMark = entry.packetsBase = st[b + W.PACKETS];
    this.shareFields(entry, ssrcState, {
      rolloverCounter: u32(W.ROC),
      lastSequenceNumber: u32(W.ROC_LAST),
      rolloverHasProcessed: {
        get: () => (this.state[b + W.FLAGS] & F_ROLLOVER_SEEN) !== 0,
        set: (v: boolean) => void (this.state[b + W.FLAGS] = v ? this.state[b + W.FLAGS] | F_ROLLOVER_SEEN : this.state[b + W.FLAGS] & ~F_ROLLOVER_SEEN),
      },
    });
    this.state[b + W.FLAGS] |= F_ACTIVE;
    this.slots[slot] = entry;
    this.bySlot.set(member, slot);
    // Sender reports: sealed here too when SRTCP is AES-GCM (werift's loop builds a cipher, two
    // promises and a timer per report); otherwise werift's loop, started as its sendRtp would.
    const rcipher = dtls.srtcp?.localContext?.cipher;
    if (rcipher?.aeadAuthTagLen === SRTP_GCM_TAG_BYTES && rcipher.srtcpSessionKey?.length === 16 && (rcipher.srtcpSessionSalt?.length ?? 0) >= 12) {
      this.native.setRtcpKey(slot, rcipher.srtcpSessionKey, rcipher.srtcpSessionSalt!.subarray(0, 12));
      if (s.rtcpRunning) {
        s.rtcpCancel.abort();
        s.rtcpCancel = new AbortController();
        s.rtcpRunning = false;
      }
      entry.srDueAt = performance.now() + srInterval();
    } else if (!s.rtcpRunning) void s.runRtcp().catch(() => undefined);
    this.timer ??= setInterval(() => this.validate(), VALIDATE_MS).unref();
    return true;
  }

  /** One sender report (and SDES CNAME) for the viewer, as werift's loop would send it, sealed and sent here. */
  private sendReport(slot: number, e: Slot): void {
    const s = e.sender;
    const dtls = s.dtlsTransport;
    const ctx = dtls.srtcp?.localContext;
    if (!ctx) return;
    const ntp = (s as unknown as { ntpTimestamp: bigint }).ntpTimestamp;
    const b = slot * STRIDE;
    const packets = [
      new RtcpSrPacket({ ssrc: s.ssrc, senderInfo: new RtcpSenderInfo({ ntpTimestamp: ntp, rtpTimestamp: this.state[b + W.TS], packetCount: this.state[b + W.PACKETS], octetCount: this.state[b + W.OCTETS] }) }),
    ];
    if (s.cname) packets.push(new RtcpSourceDescriptionPacket({ chunks: [new SourceDescriptionChunk({ source: s.ssrc, items: [new SourceDescriptionItem({ type: 1, text: s.cname })] })] }) as never);
    const plain = Buffer.concat(packets.map((p) => p.serialize()));
    const out = Buffer.allocUnsafe(plain.length + SRTP_GCM_TAG_BYTES + 4);
    plain.copy(out);
    const st = ctx.getSrtcpSsrcState(s.ssrc);
    st.srtcpIndex++;
    if (st.srtcpIndex > 0x7fff_ffff) st.srtcpIndex = 0;
    const n = this.native.sealRtcp(slot, out, plain.length, st.srtcpIndex);
    if (n < 0) {
      this.counters.failed++;
      return;
    }
    // The middle 32 bits of the NTP time: what the viewer's receiver report echoes (LSR), for RTT.
    s.lastSRtimestamp = Number((ntp >> 16n) & 0xffff_ffffn);
    s.lastSentSRTimestamp = Date.now() / 1000;
    dtls.bytesSent += n;
    dtls.packetsSent++;
    const sent = loadSrtpGcm().binding?.sendTo(this.state[b + W.FD], out, n, this.state[b + W.IPV4], this.state[b + W.PORT]);
    if (sent !== n) e.socket.send(out.subarray(0, n), e.pair.remoteAddr[1], e.host);
    this.counters.senderReports++;
  }

  /**
   * Makes `fields` of `target` accessors onto the row: their current values are written to it
   * first. Restored as plain values on detach.
   */
  private shareFields(entry: Slot, target: Record<string, unknown>, fields: Record<string, { get: () => unknown; set: (v: never) => void }>): void {
    for (const [name, acc] of Object.entries(fields)) {
      const value = target[name];
      Object.defineProperty(target, name, { get: acc.get, set: acc.set as (v: unknown) => void, configurable: true, enumerable: true });
      if (value !== undefined) target[name] = value;
    }
    entry.restore.push({ target, fields: Object.keys(fields) });
  }

  /** Stops sending for `member` (its session closed, or it returns to JavaScript). */
  detach(member: FanOutMember): void {
    const slot = this.bySlot.get(member);
    if (slot === undefined) return;
    const e = this.slots[slot]!;
    this.report(slot, e);
    const b = slot * STRIDE;
    this.state[b + W.FLAGS] &= ~F_ACTIVE;
    for (const { target, fields } of e.restore) {
      const t = target as Record<string, unknown>;
      for (const f of fields) {
        const value = t[f];
        Object.defineProperty(t, f, { value, writable: true, configurable: true, enumerable: true });
      }
    }
    this.native.clearKey(slot);
    this.slots[slot] = null;
    // werift's sender-report loop again, unless the session is going away.
    if (e.srDueAt !== null && e.sender.dtlsTransport.state === 'connected' && !e.sender.rtcpRunning) void e.sender.runRtcp().catch(() => undefined);
    this.bySlot.delete(member);
    this.free.push(slot);
    if (this.bySlot.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
    member.nativeDetached();
  }

  /** Detaches every viewer (the path was switched off). */
  detachAll(): void {
    for (const m of [...this.bySlot.keys()]) this.detach(m);
  }

  /** Sends one program packet (parsed once by the caller) to every viewer in the group. */
  send(packet: Uint8Array, parsed: ParsedHeader, mediaMs?: number): void {
    if (this.bySlot.size === 0) return;
    if (!nativeFanOutEnabled()) return this.detachAll();
    const sentAt = ntpNow();
    this.lastNtp = mediaMs === undefined ? sentAt : ntpOfUnixMs(mediaMs);
    const abs = this.absSendTime ? Number((sentAt >> 14n) & 0xffffffn) : -1;
    const stride = (parsed.payloadLength + HEADER_ROOM + 63) & ~63;
    const n = this.high;
    if (this.out.length < n * stride) this.out = new Uint8Array(Math.max(n * stride, this.out.length * 2));
    if (this.status.length < 1 + 3 * n) this.status = new Int32Array(1 + 3 * Math.max(n, 64) * 2);
    const built = this.native.send(this.state, n, packet, parsed.payloadOffset, parsed.payloadLength, parsed.marker ? 1 : 0, parsed.sequenceNumber, parsed.timestamp, parsed.csrcCount, abs, this.out, stride, this.status);
    this.counters.calls++;
    const status = this.status;
    const sent = status[0];
    this.counters.sent += sent;
    if (sent === built) return;
    for (let i = 0; i < built; i++) {
      const err = status[3 + 3 * i];
      if (err === 0) continue;
      const e = this.slots[status[1 + 3 * i]];
      if (err === -EAGAIN && e) {
        // The socket buffer was full: dgram.send queues (a copy: `out` is reused next packet).
        const length = status[2 + 3 * i];
        e.socket.send(Buffer.from(this.out.subarray(i * stride, i * stride + length)), e.pair.remoteAddr[1], e.host);
        this.counters.fallbacks++;
      } else {
        this.counters.failed++;
      }
    }
  }

  /** Brings `member`'s counters up to date now (the group reports every VALIDATE_MS otherwise). */
  flush(member: FanOutMember): void {
    const slot = this.bySlot.get(member);
    if (slot !== undefined) this.report(slot, this.slots[slot]!);
  }

  /** Reports a viewer's packets and bytes since last time to its session, transport and pair. */
  private report(slot: number, e: Slot): void {
    const b = slot * STRIDE;
    const packets = (this.state[b + W.PACKETS] - e.packetsBase - e.reportedPackets) >>> 0;
    const bytes = (this.state[b + W.BYTES] - e.reportedBytes) >>> 0;
    if (packets === 0 && bytes === 0) return;
    e.reportedPackets += packets;
    e.reportedBytes = this.state[b + W.BYTES];
    e.member.nativeSent(packets);
    const dtls = e.sender.dtlsTransport;
    dtls.packetsSent += packets;
    dtls.bytesSent += bytes;
    e.pair.packetsSent += packets;
    e.pair.bytesSent += bytes;
  }

  /** The periodic check (see the file comment). */
  validate(): void {
    if (!nativeFanOutEnabled()) return this.detachAll();
    const now = performance.now();
    for (const [member, slot] of [...this.bySlot]) {
      const e = this.slots[slot]!;
      this.report(slot, e);
      if (e.srDueAt !== null && now >= e.srDueAt && e.sender.dtlsTransport.state === 'connected') {
        e.srDueAt = now + srInterval();
        this.sendReport(slot, e);
      }
      const dtls = e.sender.dtlsTransport;
      const ice = dtls.iceTransport?.connection;
      const pair = ice?.nominated;
      const transport = pair?.protocol?.transport;
      const ok = member.wantsNative() && dtls.state === 'connected' && dtls.srtp === e.srtp && pair !== undefined && transport?.socket === e.socket && !transport.closed && ice?.canSendApplicationData?.() !== false;
      if (!ok) {
        this.detach(member);
        continue;
      }
      if (pair !== e.pair || pair.remoteAddr[0] !== e.host || pair.remoteAddr[1] !== this.state[slot * STRIDE + W.PORT]) {
        const ipv4 = ipv4ToInt(pair.remoteAddr[0]);
        if (ipv4 < 0) {
          this.detach(member);
          continue;
        }
        e.pair = pair;
        e.host = pair.remoteAddr[0];
        this.state[slot * STRIDE + W.IPV4] = ipv4;
        this.state[slot * STRIDE + W.PORT] = pair.remoteAddr[1];
      }
    }
  }

  private grow(slots: number): void {
    if (this.state.length >= slots * STRIDE) return;
    const next = new Uint32Array(Math.max(slots, (this.state.length / STRIDE) * 2) * STRIDE);
    next.set(this.state);
    this.state = next;
  }

  /** Detaches everyone and stops the timer. */
  close(): void {
    this.detachAll();
  }
}
