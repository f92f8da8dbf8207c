/**
 * The program video of one WHEP viewer: which rendition it receives, and switching between
 * renditions as the viewer's link allows (see RenditionChooser) without the viewer noticing more
 * than a keyframe.
 *
 * A switch subscribes to the new rendition and asks its encoder for a keyframe; the old rendition
 * keeps flowing until the new one's keyframe starts, then the viewer's stream continues from it
 * with the same SSRC, sequence numbers that go on by one, and timestamps that go on with the wall
 * clock (the renditions' RTP timestamps have different random bases).
 */
import { isKeyframePacket, parseRtp, RtpHeader as ParsedHeaderClass } from '@mcu/rtp';
import type { VideoCodec } from '@mcu/rtp';
import type { RTCRtpSender, RtcpPacket } from 'werift';
import type { FastSender } from './FastSender.js';
import { RenditionChooser } from './RenditionChooser.js';
import type { RenditionChooserOptions } from './RenditionChooser.js';
import type { ProgramVideoSource } from './WhepSession.js';

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
}

export class ViewerVideo {
  packetsOut = 0;
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

  constructor(
    private readonly sender: RTCRtpSender,
    private readonly fast: FastSender,
    private readonly source: ProgramVideoSource,
    opts: ViewerVideoOptions = {},
  ) {
    this.now = opts.now ?? (() => performance.now());
    this.live = source.replayGop === undefined;
    const all = opts.rendition === undefined ? (source.renditions?.() ?? []) : [];
    // Only renditions of one codec: the viewer negotiated one payload type.
    const list = all.filter((r) => r.codec === all[0]?.codec);
    for (const r of list) this.codecs.set(r.id, r.codec);
    this.chooser = list.length >= 2 ? new RenditionChooser(list, this.now(), opts.initialKbps, opts.chooser) : null;
    this.current = this.chooser?.current ?? opts.rendition;
    this.unsubscribeCurrent = this.subscribe(this.current);
    sender.onPictureLossIndication.subscribe(() => {
      this.pliReceived++;
      source.requestKeyframe(this.current);
    });
    sender.onRtcp.subscribe((packet) => this.onRtcp(packet));
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
    return {
      rendition: this.current ?? null,
      renditionPending: this.pending,
      renditionSwitches: this.switches,
      gopPacketsReplayed: this.gopPacketsReplayed,
      videoNativeSrtpPackets: this.fast.nativePackets,
      videoDirectPackets: this.fast.directPackets,
      adaptive: this.chooser !== null,
      estimateKbps: this.rembKbps ?? null,
      lossFraction: this.lossFraction ?? null,
    };
  }

  private subscribe(rendition: string | undefined): () => void {
    return this.source.addVideoProgramSink(rendition, (packet, length, mediaMs) => this.onPacket(rendition, packet, length, mediaMs));
  }

  private onRtcp(packet: RtcpPacket): void {
    if (this.closed) return;
    const p = packet as { type: number; feedback?: { count?: number; bitrate?: bigint }; reports?: { ssrc: number; fractionLost: number }[] };
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

  private onPacket(rendition: string | undefined, packet: Uint8Array, length: number, mediaMs?: number): void {
    if (!this.live) return;
    const buf = Buffer.from(packet.buffer, packet.byteOffset, length);
    const h = this.parsed;
    if (parseRtp(buf, h) !== null) return;
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
    this.fast.send(buf, h, mediaMs);
  }

  /** The new rendition's keyframe is here: the viewer's stream goes on from it. */
  private completeSwitch(rendition: string, h: ParsedHeaderClass): void {
    this.unsubscribeCurrent?.();
    this.unsubscribeCurrent = this.unsubscribePending;
    this.unsubscribePending = null;
    this.current = rendition;
    this.pending = null;
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
