import type { PeerConfig, RTCRtpSender } from 'werift';
import { parseRtp, RtpHeader as ParsedHeaderClass } from '@mcu/rtp';
import type { RtpHeader as ParsedHeader, VideoCodec } from '@mcu/rtp';
import { WebRtcSession } from './WebRtcSession.js';
import { FastSender } from './FastSender.js';
import { NativeFanOut } from './NativeFanOut.js';
import type { FanOutMember, NativeFanOutStats } from './NativeFanOut.js';
import { ViewerVideo } from './ViewerVideo.js';
import { VideoGroups } from './VideoGroup.js';
import type { ViewerVideoOptions } from './ViewerVideo.js';

/** How a program packet reaches each viewer: werift's generic sender, or the shared-parse fast path. */
export type SendPath = 'werift' | 'fast';

/**
 * Where a program feed comes from: the mixer's audio mixer on a mixer node, the relay forwarder's
 * decrypted feed on a relay. `subscribe` returns the unsubscribe function.
 */
export interface ProgramSource {
  readonly id: string;
  /** `mediaMs`: the media-clock time of the packet's tick, when the source knows it (see VideoPacketSink). */
  addProgramSink(sink: (packet: Buffer, mediaMs?: number) => void): () => void;
  /** The program video, when the source has one (a mixer event, a relay's feed). */
  readonly video?: ProgramVideoSource;
}

/**
 * A program video packet; `mediaMs` (Unix ms on the event's media clock) is the time its frame was
 * composed, when the source knows it (the mixer; a relay does not): viewers' sender reports then
 * pair the timestamp with that time, not with the send time an encode later, so players line
 * video up with audio exactly.
 */
export type VideoPacketSink = (packet: Uint8Array, length: number, mediaMs?: number) => void;

/** A program video feed: one RTP stream per rendition. */
export interface ProgramVideoSource {
  /** Subscribes to a rendition (the first, largest, when omitted); returns the unsubscribe function. */
  addVideoProgramSink(rendition: string | undefined, sink: VideoPacketSink): () => void;
  /** A viewer lost a picture: ask for a keyframe on the rendition (all when omitted). */
  requestKeyframe(rendition?: string): void;
  /**
   * The renditions, largest first, with codec and bitrate: a viewer that did not pin one gets the
   * highest its link holds, switched as that changes. Without it every viewer gets the default.
   */
  renditions?(): readonly { id: string; codec: VideoCodec; bitrateKbps: number; sendingKbps?: number | null }[];
  /**
   * Sends the rendition's cached group of pictures (from its last keyframe) to one sink, at once;
   * returns the packets sent (0: nothing cached). A source that has it (a relay) starts each new
   * viewer from the cache instead of asking upstream for a keyframe.
   */
  replayGop?(rendition: string | undefined, sink: (packet: Uint8Array, length: number) => void): number;
}

/**
 * One per event: subscribes once to the program feed, parses each packet once, fans out. Viewers
 * whose transport allows it are in the native group (one addon call per packet for all of them:
 * NativeFanOut); the others get the packet from JavaScript (FastSender, or werift's own path).
 */
export class ProgramFanOut {
  private readonly viewers = new Set<WhepSession>();
  /** Viewers not in the native group. */
  private readonly js = new Set<WhepSession>();
  private readonly parsed = new ParsedHeaderClass();
  private unsubscribe: (() => void) | null = null;
  /** The native group (null: the addon is not built). */
  readonly native: NativeFanOut | null = NativeFanOut.create();
  /** The program video's rendition groups (null: the feed has no video). */
  readonly video: VideoGroups | null;

  constructor(private readonly source: ProgramSource) {
    this.video = source.video ? new VideoGroups(source.video) : null;
  }

  add(viewer: WhepSession): () => void {
    this.viewers.add(viewer);
    this.js.add(viewer);
    this.unsubscribe ??= this.source.addProgramSink((packet, mediaMs) => {
      if (parseRtp(packet, this.parsed) !== null) return;
      this.native?.send(packet, this.parsed, mediaMs);
      for (const v of this.js) v.deliver(packet, this.parsed, mediaMs);
    });
    return () => {
      this.native?.detach(viewer);
      this.viewers.delete(viewer);
      this.js.delete(viewer);
      if (this.viewers.size === 0) {
        this.unsubscribe?.();
        this.unsubscribe = null;
      }
    };
  }

  get size(): number {
    return this.viewers.size;
  }

  /** `viewer` moved to the native group (true) or back to JavaScript (false). */
  setNative(viewer: WhepSession, native: boolean): void {
    if (native) this.js.delete(viewer);
    else if (this.viewers.has(viewer)) this.js.add(viewer);
  }

  nativeStats(): NativeFanOutStats | null {
    return this.native?.stats() ?? null;
  }
}

/**
 * A viewer playing the program feed over WHEP: recvonly audio, and the program video when the
 * viewer offered a video transceiver. The program packet is built once per tick by the mixer;
 * per viewer only werift's header rewrite and SRTP remain. A viewer's PLI asks the rendition's
 * encoder for a keyframe.
 */
export class WhepSession extends WebRtcSession implements FanOutMember {
  private unsubscribe: (() => void) | null = null;
  #sendPath: SendPath;
  private audioSender: RTCRtpSender | null = null;
  private fast: FastSender | null = null;
  private videoSender: RTCRtpSender | null = null;
  private video: ViewerVideo | null = null;

  constructor(
    eventId: string,
    config: Partial<PeerConfig>,
    mediaTimeoutMs: number,
    private readonly program: ProgramFanOut,
    sendPath: SendPath = 'fast',
    video?: { source: ProgramVideoSource } & ViewerVideoOptions,
  ) {
    super('whep', eventId, config, mediaTimeoutMs);
    this.#sendPath = sendPath;
    this.pc.onRemoteTransceiverAdded.subscribe((t) => {
      t.setDirection('sendonly');
      if (t.kind === 'audio' && !this.audioSender) {
        this.audioSender = t.sender;
        this.fast = new FastSender(t.sender);
      } else if (t.kind === 'video' && video && !this.videoSender) {
        this.attachVideo(t.sender, video.source, video);
      }
    });
    this.unsubscribe = program.add(this);
  }

  private attachVideo(sender: RTCRtpSender, source: ProgramVideoSource, opts: ViewerVideoOptions): void {
    this.videoSender = sender;
    // Video viewers NACK lost packets: keep the history werift answers them from.
    // Through the feed's rendition groups when the video is the feed's own (a preview's is not).
    const groups = source === this.program.video?.source ? this.program.video : undefined;
    const video = new ViewerVideo(sender, new FastSender(sender, { retransmit: true, absSendTime: true }), source, { ...opts, groups });
    this.video = video;
    if (source.replayGop) {
      // Live packets wait until the transport is up; then the cached group of pictures goes first
      // and the live stream follows it in the same turn (see ViewerVideo.startLive).
      const start = (): void => {
        if (this.pc.connectionState === 'connected') video.startLive();
      };
      this.pc.connectionStateChange.subscribe(start);
      start();
    }
  }

  get videoPacketsOut(): number {
    this.video?.flushCounts();
    return this.video?.packetsOut ?? 0;
  }

  get pliReceived(): number {
    return this.video?.pliReceived ?? 0;
  }

  /** The viewer's program video (rendition, switches), once its video transceiver is attached. */
  get viewerVideo(): ViewerVideo | null {
    return this.video;
  }

  get sendPath(): SendPath {
    return this.#sendPath;
  }

  /** Switches this viewer's path; leaving 'fast' takes it out of the native group at once. */
  set sendPath(path: SendPath) {
    this.#sendPath = path;
    if (path !== 'fast') this.program.native?.detach(this);
  }

  /**
   * Called by the event's fan-out once per program packet, parsed once for all viewers, while
   * the viewer is not in the native group; it joins the group as soon as its transport allows.
   */
  deliver(packet: Buffer, parsed: ParsedHeader, mediaMs?: number): void {
    const sender = this.audioSender;
    if (!sender) return;
    this.stats.packetsOut++;
    if (this.#sendPath !== 'fast') return void sender.sendRtp(packet).catch(() => undefined);
    this.fast!.send(packet, parsed, mediaMs);
    // From the next packet on, the group sends for it (this one went from here).
    if (this.program.native?.attach(this, sender)) this.program.setNative(this, true);
  }

  /** FanOutMember: the group may send for this viewer. */
  wantsNative(): boolean {
    return this.#sendPath === 'fast' && !this.isClosed;
  }

  /** FanOutMember: back to JavaScript. */
  nativeDetached(): void {
    this.program.setNative(this, false);
  }

  /** FanOutMember: packets the group sent for this viewer. */
  nativeSent(packets: number): void {
    this.stats.packetsOut += packets;
    if (this.fast) this.fast.nativeFanOutPackets += packets;
  }

  /** Viewers send no media: a viewer is alive while its connection (ICE consent) is up. */
  protected override beforeWatchdog(): void {
    if (this.pc.connectionState === 'connected') this.touch();
  }

  override describe(): Record<string, unknown> {
    this.program.native?.flush(this);
    // (The video's description brings its counters up to date first.)
    const video = this.video?.describe();
    return { ...super.describe(), videoPacketsOut: this.video?.packetsOut ?? 0, pliReceived: this.pliReceived, audioNativeSrtpPackets: this.fast?.nativePackets ?? 0, audioNativeFanOutPackets: this.fast?.nativeFanOutPackets ?? 0, audioNativeFanOut: this.program.native?.has(this) ?? false, audioDirectPackets: this.fast?.directPackets ?? 0, ...video };
  }

  protected release(): void {
    this.program.native?.detach(this);
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.video?.close();
  }
}
