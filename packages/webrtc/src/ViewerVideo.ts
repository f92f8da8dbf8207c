/**
 * The program video of one WHEP viewer: which rendition it receives, and switching between
 * renditions as the viewer's link allows (see RenditionChooser) without the viewer noticing more
 * than a keyframe.
 *
 * A switch subscribes to the new rendition and asks its encoder for a keyframe; the old rendition
 * keeps flowing until the new one's keyframe starts, then the viewer's stream continues from it
 * with the same SSRC, sequence numbers that go on by one, and timestamps that go on with the wall
 * clock (the renditions' RTP timestamps have different random bases).
 *
 * With `groups`, the viewer plays its rendition through that rendition's group (VideoGroup): from
 * JavaScript until its transport allows the native group, which then sends for it in one addon call
 * per packet for all its viewers (its offsets in the group carry the continuity above). Its NACKs
 * that werift's own history cannot answer are answered from the group's.
 */
import { isKeyframePacket, parseRtp, RtpHeader as ParsedHeaderClass } from '@mcu/rtp';
import type { VideoCodec } from '@mcu/rtp';
import type { RTCRtpSender, RtcpPacket } from 'werift';
import { RTP_HISTORY_SIZE } from './FastSender.js';
import type { FastSender } from './FastSender.js';
import { RenditionChooser } from './RenditionChooser.js';
import type { RenditionChooserOptions } from './RenditionChooser.js';
import type { ProgramVideoSource } from './WhepSession.js';
import type { VideoGroup, VideoGroupMember, VideoGroups } from './VideoGroup.js';

const RTCP_PSFB = 206;
const RTCP_SR = 200;
const RTCP_RR = 201;
const PSFB_REMB = 15;
/** While a switch waits for its keyframe, ask again this often (the encoder may have been busy). */
const KEYFRAME_RETRY_MS = 1000;

export interface ViewerVideoOptions {
  /** A rendition the viewer asked for (`?rendition=`): no automatic switching. */
  rendition?: string;
  /** The viewer's bandwidth from its offer (b=AS / b=TIAS), kbps. */
  initialKbps?: number;
  chooser?: RenditionChooserOptions;
  now?: () => number;
  /** The feed's rendition groups (one subscription per rendition, the native fan-out); without, a subscription per viewer. */
  groups?: VideoGroups;
}

const RTCP_RTPFB = 205;

export class ViewerVideo implements VideoGroupMember {
  packetsOut = 0;
  /** Packets sent again for the viewer's NACKs from the group's history (werift answers those its own history holds). */
  packetsResent = 0;
  /** NACKed packets neither history held any more. */
  nacksUnanswered = 0;
  pliReceived = 0;
  /** Packets of a rendition being switched to, dropped while waiting for its keyframe. */
  packetsBeforeKeyframe = 0;
  /** Packets of the first group of pictures replayed from the source's cache (a relay's). */
  gopPacketsReplayed = 0;
  /**
   * False until `startLive()` when the source replays a cached group of pictures: the viewer's
   * first packets must be that keyframe, not live packets sent before the transport was up.
   */
  private live: boolean;
  private current: string | undefined;
  private pending: string | null = null;
  private unsubscribeCurrent: (() => void) | null = null;
  private unsubscribePending: (() => void) | null = null;
  private pendingAskedAt = 0;
  private readonly chooser: RenditionChooser | null;
  private readonly codecs = new Map<string, VideoCodec>();
  private readonly parsed = new ParsedHeaderClass();
  private readonly now: () => number;
  private seqDelta = 0;
  private tsDelta = 0;
  private lastSeq = -1;
  private lastTs = 0;
  private lastTsAt = 0;
  private rembKbps: number | undefined;
  private lossFraction: number | undefined;
  private closed = false;
  private readonly groups: VideoGroups | null;
  /** The group of the current rendition, when the viewer plays through one. */
  private group: VideoGroup | null = null;
  /** Program sequence number of the last packet sent from JavaScript for the current rendition (-1: none). */
  private lastProgramSeq = -1;
  /** The viewer's sequence number (before werift's offset) of the current rendition's first packet. */
  private renditionStartSeq = -1;

  constructor(
    private readonly sender: RTCRtpSender,
    private readonly fast: FastSender,
    private readonly source: ProgramVideoSource,
    opts: ViewerVideoOptions = {},
  ) {
    this.now = opts.now ?? (() => performance.now());
    this.groups = opts.groups ?? null;
    this.live = source.replayGop === undefined;
    const all = opts.rendition === undefined ? (source.renditions?.() ?? []) : [];
    // Only renditions of one codec: the viewer negotiated one payload type.
    const list = all.filter((r) => r.codec === all[0]?.codec);
    for (const r of list) this.codecs.set(r.id, r.codec);
    this.chooser = list.length >= 2 ? new RenditionChooser(list, this.now(), opts.initialKbps, opts.chooser) : null;
    this.current = this.chooser?.current ?? opts.rendition;
    this.unsubscribeCurrent = this.subscribeCurrent(this.current);
    sender.onPictureLossIndication.subscribe(() => {
      this.pliReceived++;
      source.requestKeyframe(this.current);
    });
    sender.onRtcp.subscribe((packet) => this.onRtcp(packet));
  }

  /** VideoGroupMember: the group may send for this viewer once it is live and its stream is set. */
  wantsNative(): boolean {
    return !this.closed && this.live;
  }

  /** VideoGroupMember: back to JavaScript, going on from the last packet the group sent for it. */
  nativeDetached(): void {
    const g = this.group;
    if (g === null) return;
    if (g.lastSeq >= 0) {
      this.lastProgramSeq = g.lastSeq;
      this.lastSeq = (g.lastSeq + this.seqDelta) & 0xffff;
      this.lastTs = (g.lastTs + this.tsDelta) >>> 0;
      this.lastTsAt = g.lastTsAt;
    }
    g.setNative(this, false);
  }

  /** VideoGroupMember: packets the group sent for this viewer. */
  nativeSent(packets: number): void {
    this.packetsOut += packets;
    this.fast.nativeFanOutPackets += packets;
  }

  /** VideoGroupMember: a packet of the current rendition from its group (this viewer is not in the native group). */
  groupPacket(packet: Buffer, length: number, mediaMs?: number): void {
    this.onPacket(this.current, packet, length, mediaMs, true);
  }

  /** Brings the counters of what the native group sent for this viewer up to date (it reports them every 200 ms). */
  flushCounts(): void {
    if (this.group !== null) this.group.native?.flush(this);
  }

  /** Whether the native group sends this viewer's video. */
  get native(): boolean {
    return this.group?.native?.has(this) ?? false;
  }

  /** The transport is up: send the source's cached group of pictures, then the live stream. */
  startLive(): void {
    if (this.live || this.closed) return;
    this.live = true;
    const rendition = this.current;
    const n = this.source.replayGop?.(rendition, (packet, length) => this.onPacket(rendition, packet, length)) ?? 0;
    this.gopPacketsReplayed += n;
    if (n === 0) this.source.requestKeyframe(rendition);
  }

  /** The rendition the viewer receives now (undefined: the source's default). */
  get rendition(): string | undefined {
    return this.current;
  }

  get switches(): number {
    return this.chooser?.switches ?? 0;
  }

  describe(): Record<string, unknown> {
    this.flushCounts();
    return {
      rendition: this.current ?? null,
      renditionPending: this.pending,
      renditionSwitches: this.switches,
      gopPacketsReplayed: this.gopPacketsReplayed,
      videoNativeSrtpPackets: this.fast.nativePackets,
      videoDirectPackets: this.fast.directPackets,
      videoNativeFanOut: this.native,
      videoNativeFanOutPackets: this.fast.nativeFanOutPackets,
      videoPacketsResent: this.packetsResent,
      videoNacksUnanswered: this.nacksUnanswered,
      adaptive: this.chooser !== null,
      estimateKbps: this.rembKbps ?? null,
      lossFraction: this.lossFraction ?? null,
    };
  }

  /** The current rendition: through its group when there are groups. */
  private subscribeCurrent(rendition: string | undefined): () => void {
    if (this.groups === null) return this.subscribe(rendition);
    const { group, leave } = this.groups.join(rendition, this);
    this.group = group;
    return () => {
      leave();
      if (this.group === group) this.group = null;
    };
  }

  /** A rendition to itself (one being switched to, or every rendition without groups). */
  private subscribe(rendition: string | undefined): () => void {
    return this.source.addVideoProgramSink(rendition, (packet, length, mediaMs) => this.onPacket(rendition, packet, length, mediaMs));
  }

  private onRtcp(packet: RtcpPacket): void {
    if (this.closed) return;
    const p = packet as { type: number; feedback?: { count?: number; bitrate?: bigint }; reports?: { ssrc: number; fractionLost: number }[] };
    if (p.type === RTCP_RTPFB && p.feedback?.count === 1) {
      this.onNack((p.feedback as unknown as { lost: number[] }).lost);
      return;
    }
    if (p.type === RTCP_PSFB && p.feedback?.count === PSFB_REMB && p.feedback.bitrate !== undefined) {
      this.rembKbps = Number(p.feedback.bitrate) / 1000;
    } else if ((p.type === RTCP_RR || p.type === RTCP_SR) && p.reports) {
      for (const r of p.reports) if (r.ssrc === this.sender.ssrc) this.lossFraction = r.fractionLost / 256;
    }
    this.evaluate();
  }

  /** Runs the chooser on the latest estimate and loss; starts or re-asks a switch. */
  evaluate(): void {
    if (!this.chooser || this.closed) return;
    const now = this.now();
    const renditions = this.source.renditions?.();
    if (renditions) this.chooser.setSending(renditions);
    const next = this.chooser.update(now, this.rembKbps, this.lossFraction);
    if (next !== null) {
      if (next === this.current) this.cancelPending();
      else this.beginSwitch(next, now);
    } else if (this.pending !== null && now - this.pendingAskedAt >= KEYFRAME_RETRY_MS) {
      this.pendingAskedAt = now;
      this.source.requestKeyframe(this.pending);
    }
  }

  private beginSwitch(rendition: string, now: number): void {
    if (this.pending === rendition) return;
    this.cancelPending();
    this.pending = rendition;
    this.unsubscribePending = this.subscribe(rendition);
    this.pendingAskedAt = now;
    this.source.requestKeyframe(rendition);
  }

  private cancelPending(): void {
    this.unsubscribePending?.();
    this.unsubscribePending = null;
    this.pending = null;
  }

  /**
   * A generic NACK (RFC 4585 §6.2.1), after werift has answered what its history holds: the rest
   * from the group's history, in the viewer's numbering, for packets of the current rendition.
   */
  private onNack(lost: readonly number[]): void {
    const group = this.group;
    if (group === null || this.closed || this.renditionStartSeq < 0) return;
    const s = this.sender as unknown as { seqOffset: number; rtpCache: ({ header: { sequenceNumber: number } } | undefined)[] };
    for (const seq of lost) {
      const cached = s.rtpCache[seq % RTP_HISTORY_SIZE];
      if (cached !== undefined && cached.header.sequenceNumber === seq) continue;
      const own = (seq - s.seqOffset) & 0xffff;
      // Before the current rendition began (another stream's packet), or not sent yet.
      if (((own - this.renditionStartSeq) & 0xffff) >= 0x8000 || ((this.lastSentSeq() - own) & 0xffff) >= 0x8000) continue;
      const packet = group.packetAt((own - this.seqDelta) & 0xffff);
      const h = this.parsed;
      if (packet === null || parseRtp(packet, h) !== null) {
        this.nacksUnanswered++;
        continue;
      }
      h.sequenceNumber = own;
      h.timestamp = (h.timestamp + this.tsDelta) >>> 0;
      this.fast.resend(packet, h);
      this.packetsResent++;
    }
  }

  /** The viewer's sequence number (before werift's offset) of the last packet it was sent. */
  private lastSentSeq(): number {
    const g = this.group;
    return g !== null && g.native?.has(this) ? (g.lastSeq + this.seqDelta) & 0xffff : this.lastSeq;
  }

  private onPacket(rendition: string | undefined, packet: Uint8Array, length: number, mediaMs?: number, viaGroup = false): void {
    if (!this.live) return;
    const buf = Buffer.from(packet.buffer, packet.byteOffset, length);
    const h = this.parsed;
    if (parseRtp(buf, h) !== null) return;
    // The same packet twice: a sink added while the source was delivering it (a switch) is called for it too.
    if (rendition === this.current && h.sequenceNumber === this.lastProgramSeq && this.lastSeq >= 0) return;
    if (rendition !== this.current) {
      if (rendition === undefined || rendition !== this.pending) return;
      if (!isKeyframePacket(buf, this.codecs.get(rendition) ?? 'vp8', h.payloadOffset, h.payloadLength)) {
        this.packetsBeforeKeyframe++;
        return;
      }
      this.completeSwitch(rendition, h);
    }
    h.sequenceNumber = (h.sequenceNumber + this.seqDelta) & 0xffff;
    h.timestamp = (h.timestamp + this.tsDelta) >>> 0;
    this.lastSeq = h.sequenceNumber;
    if (h.timestamp !== this.lastTs) {
      this.lastTs = h.timestamp;
      this.lastTsAt = this.now();
    }
    this.packetsOut++;
    this.lastProgramSeq = (h.sequenceNumber - this.seqDelta) & 0xffff;
    if (this.renditionStartSeq < 0) this.renditionStartSeq = h.sequenceNumber;
    this.fast.send(buf, h, mediaMs);
    // From the group's next packet on, its native fan-out sends for this viewer (this one went from here).
    const g = this.group;
    if (viaGroup && g !== null && this.pending === null && g.native?.attach(this, this.sender, { seq: this.seqDelta, ts: this.tsDelta })) {
      g.setNative(this, true);
      // werift's history stops here: an entry kept until the sequence numbers wrap must not answer a NACK for a newer packet.
      (this.sender as unknown as { rtpCache: unknown[] }).rtpCache.length = 0;
    }
  }

  /** The new rendition's keyframe is here: the viewer's stream goes on from it. */
  private completeSwitch(rendition: string, h: ParsedHeaderClass): void {
    // Leaving the group (nativeDetached) brings the viewer's last sequence number and timestamp from it.
    this.unsubscribeCurrent?.();
    this.unsubscribePending?.();
    this.unsubscribePending = null;
    this.current = rendition;
    this.pending = null;
    this.unsubscribeCurrent = this.subscribeCurrent(rendition);
    this.lastProgramSeq = h.sequenceNumber;
    this.renditionStartSeq = -1;
    if (this.lastSeq < 0) return;
    this.seqDelta = (this.lastSeq + 1 - h.sequenceNumber) & 0xffff;
    const expectedTs = (this.lastTs + Math.max(1, Math.round((this.now() - this.lastTsAt) * 90))) >>> 0;
    this.tsDelta = (expectedTs - h.timestamp) >>> 0;
  }

  close(): void {
    this.closed = true;
    this.unsubscribeCurrent?.();
    this.unsubscribeCurrent = null;
    this.cancelPending();
  }
}
