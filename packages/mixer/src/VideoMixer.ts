/**
 * The video half of an event's MCU: sources in as RTP, one composite per rendition out as RTP.
 *
 * Per source, RTP goes through a frame assembler (reorder, loss → keyframe request) and, while
 * the source is visible in the layout, into its own ffmpeg decoder that delivers pictures already
 * scaled to the source's tile. A hidden source is not decoded at all: its decoder is stopped, and
 * started again (with a keyframe request) when the layout shows it.
 *
 * Once per video tick (1/fps, on a MixingClock with absolute deadlines) the newest picture of each
 * visible source is drawn into the canvas: once per distinct canvas aspect, at the size of the
 * largest rendition with that aspect. Each rendition's encoder gets that canvas; a smaller
 * rendition of the same aspect (360p next to 720p) is scaled down inside its encoder process by
 * swscale, which costs less than a second TypeScript composition and a second set of tile
 * decodes, and looks better than downscaling tiles here. Encoded frames come back asynchronously,
 * are packetized (VP8: RFC 7741, H.264: RFC 6184) and handed to the sink with one SSRC per
 * rendition, continuous sequence numbers (also across encoder restarts) and 90 kHz timestamps
 * from the shared media clock (so audio and video sender reports agree, see MediaClock.ts).
 *
 * A source whose decoder has produced nothing for `stallMs` shows a placeholder (dark grey, with
 * its name when labels are on) until pictures come back; until then its last picture stays.
 */
import { EventEmitter } from 'node:events';
import { BitrateMeter, H264Packetizer, Vp8Packetizer, writeRtp } from '@mcu/rtp';
import type { AssembledFrame, RtpBuildFields, VideoCodec, VideoFrameAssemblerOptions } from '@mcu/rtp';
import { VideoDecoderProcess, VideoEncoderProcess, type ProcessLog } from '@mcu/codec';
import { Compositor } from './Compositor.js';
import type { CompositorOptions, CompositorTile } from './Compositor.js';
import { computeLayout, fitInside, parseLayout } from './Layouts.js';
import type { LayoutOptions, LayoutRegion, VideoLayout } from './Layouts.js';
import { MixingClock, systemTimer } from './MixingClock.js';
import type { Timer } from './MixingClock.js';
import { rtpTimestampAt, senderReportTimes, systemMediaClock } from './MediaClock.js';
import type { MediaClock, SenderReportTimes } from './MediaClock.js';
import { VideoSource } from './VideoSource.js';
import type { LipSync, LipSyncStats } from './LipSync.js';
import { TickStats } from './TickStats.js';
import { DropCounters } from './DropCounters.js';

export interface VideoRenditionOptions {
  id: string;
  width: number;
  height: number;
  /** At most the mixer's fps; a lower rate encodes every n-th composed frame. */
  fps?: number;
  codec?: VideoCodec;
  bitrateKbps?: number;
  payloadType?: number;
  ssrc?: number;
}

/** What a transport needs to know about one output stream (SDP, sender reports). */
export interface VideoRendition {
  readonly id: string;
  readonly width: number;
  readonly height: number;
  readonly fps: number;
  readonly codec: VideoCodec;
  readonly bitrateKbps: number;
  readonly payloadType: number;
  readonly ssrc: number;
  /** RTP timestamp = rtpTimestampAt(mediaClock time, 90000, rtpTimestampBase). */
  readonly rtpTimestampBase: number;
  /**
   * Media-clock time (Unix ms) of the frame whose packets are being sent: what a sender report
   * pairs with their timestamp, rather than the send time, which comes an encode later.
   */
  readonly frameMediaMs: number;
}

export interface VideoMixerOptions {
  /** Composition rate (ticks per second). */
  fps?: number;
  renditions?: VideoRenditionOptions[];
  /** Codec of renditions that do not name one. */
  codec?: VideoCodec;
  layout?: VideoLayout;
  layoutOptions?: LayoutOptions;
  compositor?: CompositorOptions;
  mediaClock?: MediaClock;
  /** Drives the video tick (a ManualTimer in tests). */
  timer?: Timer;
  /** Start the tick in the constructor (default); otherwise call `start()`, or drive `tick()` yourself. */
  autoStart?: boolean;
  /** A source without a new picture for this long shows the placeholder. */
  stallMs?: number;
  /** Keyframe requests towards one source at most this often (more are coalesced). */
  sourceKeyframeIntervalMs?: number;
  /**
   * After a stage change, a tile already on screen whose size changed is re-decoded at its new
   * size at the source's next keyframe, or after this long with a keyframe request (the compositor
   * scales its pictures meanwhile): spreads the requests instead of one per tile at once.
   */
  stageResizeDelayMs?: number;
  /** Regular keyframe interval of the renditions. */
  keyframeIntervalMs?: number;
  /** Forced keyframes per rendition at most this often (`requestKeyframe`). */
  minKeyframeIntervalMs?: number;
  /** Largest RTP packet written (header included). */
  maxPacketBytes?: number;
  /** Payload types when a rendition names none. */
  payloadTypes?: { vp8?: number; h264?: number };
  encoderThreads?: number;
  decoderThreads?: number;
  /**
   * `nice -n` for the ffmpeg children: video can take a few ms more, the audio tick and packet
   * forwarding in this process cannot. Default 5; 0 runs them at normal priority.
   */
  ffmpegNiceness?: number;
  /**
   * `nice -n` for the encoders. Default 0: a late encode is a dropped frame for every viewer,
   * while a late tile decode only repeats that tile's previous frame (measured in the browser
   * test: niced encoders fell to 17–22 fps beside four Chromium pages, 27–28.5 fps at 0).
   */
  encoderNiceness?: number;
  assembler?: Omit<VideoFrameAssemblerOptions, 'codec' | 'now'>;
  random?: () => number;
  /** Deaths and restarts of the ffmpeg decoders and encoders are logged here. */
  log?: ProcessLog;
}

/** A rendition's bitrate: as configured, or about 1.6 bits per pixel per second (1500 kbps at 720p). */
export function renditionBitrateKbps(r: { width: number; height: number; bitrateKbps?: number }): number {
  return r.bitrateKbps ?? Math.round((r.width * r.height * 1.6) / 1000);
}

export const VIDEO_MIXER_DEFAULTS = Object.freeze({
  fps: 30,
  codec: 'vp8' as VideoCodec,
  renditions: Object.freeze([
    { id: '720p', width: 1280, height: 720, fps: 30, bitrateKbps: 1500 },
    { id: '360p', width: 640, height: 360, fps: 30, bitrateKbps: 500 },
  ]) as readonly VideoRenditionOptions[],
  stallMs: 2000,
  sourceKeyframeIntervalMs: 500,
  stageResizeDelayMs: 5000,
  keyframeIntervalMs: 3000,
  minKeyframeIntervalMs: 1000,
  maxPacketBytes: 1200,
  ffmpegNiceness: 5,
  payloadTypes: Object.freeze({ vp8: 96, h264: 102 }),
});

/** Receives each outgoing packet; `packet` stays valid for the next 255 packets of that rendition. */
export type VideoSink = (rendition: VideoRendition, packet: Uint8Array, length: number) => void;

export interface VideoMixerEvents {
  /** Ask this source for a keyframe (send it a PLI/FIR); already rate-limited per source. */
  keyframeRequest: [sourceId: string];
  sourceStalled: [sourceId: string];
  sourceResumed: [sourceId: string];
  close: [];
}

export interface VideoSourceStatsSnapshot {
  codec: VideoCodec;
  name: string;
  /** The name label drawn on the source's tiles (null: none). */
  label: string | null;
  visible: boolean;
  stalled: boolean;
  width: number;
  height: number;
  decodeWidth: number;
  decodeHeight: number;
  packets: number;
  lost: number;
  framesAssembled: number;
  framesDecoded: number;
  framesDropped: number;
  keyframeRequests: number;
  restarts: number;
  decoderPid: number | null;
  /** Lip sync with the presenter's audio (null for a source without audio): skew in ms, video minus audio. */
  avSync: LipSyncStats | null;
}

export interface VideoRenditionStatsSnapshot {
  codec: VideoCodec;
  width: number;
  height: number;
  framesIn: number;
  framesEncoded: number;
  keyframes: number;
  forcedKeyframes: number;
  dropped: number;
  packetsOut: number;
  bytesOut: number;
  restarts: number;
  encodeLatencyMs: number;
  encodeLatencyAvgMs: number;
  encoderPid: number | null;
}

export interface VideoMixerStats {
  ticks: number;
  tickErrors: number;
  framesComposed: number;
  composeMs: { p50: number; p99: number; max: number };
  dropped: Record<string, number>;
  /** Every decoder and encoder restart after a crash. */
  restarts: number;
  sources: Record<string, VideoSourceStatsSnapshot>;
  renditions: Record<string, VideoRenditionStatsSnapshot>;
}

const TWO_32 = 0x1_0000_0000;
const PACKET_RING = 256;
/** Encoded frames a source may have waiting out its lip-sync hold (200 ms at 120 fps, with room). */
const MAX_HELD_FRAMES = 64;

/** One output stream: encoder, packetizer, RTP state. */
class RenditionState implements VideoRendition {
  readonly id: string;
  readonly width: number;
  readonly height: number;
  readonly fps: number;
  readonly codec: VideoCodec;
  readonly bitrateKbps: number;
  readonly payloadType: number;
  readonly ssrc: number;
  readonly rtpTimestampBase: number;
  encoder!: VideoEncoderProcess;
  packetizer!: Vp8Packetizer | H264Packetizer;
  seq: number;
  readonly packets: Uint8Array[];
  packetIndex = 0;
  packetsOut = 0;
  bytesOut = 0;
  /** Composition group (canvas) it encodes from. */
  group!: CanvasGroup;
  /** Frame slot (at its own fps) it last took, and whether it takes this tick's composition. */
  lastSlot = -1;
  due = false;
  rtpTimestamp = 0;
  frameMediaMs = 0;
  private readonly rate = new BitrateMeter();

  /** What the encoder actually sends (kbps, smoothed over seconds), or null before the first second. */
  get sendingKbps(): number | null {
    return this.rate.kbps;
  }

  /** Called every tick; updates `sendingKbps` once a second: a still composite sends far less than its target bitrate. */
  measureRate(nowMs: number): void {
    this.rate.measure(nowMs, this.bytesOut);
  }

  constructor(o: Required<VideoRenditionOptions>, maxPacketBytes: number, seq: number, rtpBase: number) {
    this.id = o.id;
    this.width = o.width;
    this.height = o.height;
    this.fps = o.fps;
    this.codec = o.codec;
    this.bitrateKbps = o.bitrateKbps;
    this.payloadType = o.payloadType;
    this.ssrc = o.ssrc >>> 0;
    this.rtpTimestampBase = rtpBase;
    this.seq = seq;
    this.packets = Array.from({ length: PACKET_RING }, () => new Uint8Array(maxPacketBytes));
  }

  info(): VideoRendition {
    const { id, width, height, fps, codec, bitrateKbps, payloadType, ssrc, rtpTimestampBase, frameMediaMs } = this;
    return { id, width, height, fps, codec, bitrateKbps, payloadType, ssrc, rtpTimestampBase, frameMediaMs };
  }
}

/** One canvas size (per distinct aspect): its compositor, regions and canvas buffers. */
class CanvasGroup {
  readonly compositor: Compositor;
  readonly renditions: RenditionState[] = [];
  regions: LayoutRegion[] = [];
  tiles: CompositorTile[] = [];
  buffers: Uint8Array[] = [];
  /** Encoders still reading each buffer. */
  inFlight = new Int32Array(0);

  constructor(
    readonly width: number,
    readonly height: number,
    opts: CompositorOptions,
  ) {
    this.compositor = new Compositor(width, height, opts);
  }

  /**
   * Canvas buffers: every encoder of the group may hold `held` frames in its pipe, and one more is
   * needed to compose into, so a free buffer always exists for an encoder that accepts a frame.
   */
  allocate(held: number): void {
    const n = held + 1;
    this.buffers = Array.from({ length: n }, () => new Uint8Array(this.compositor.frameBytes));
    this.inFlight = new Int32Array(n);
  }

  /** `extra` more buffers for an encoder that joins; the counts of buffers in use are kept. */
  grow(extra: number): void {
    for (let i = 0; i < extra; i++) this.buffers.push(new Uint8Array(this.compositor.frameBytes));
    const inFlight = new Int32Array(this.buffers.length);
    inFlight.set(this.inFlight);
    this.inFlight = inFlight;
  }

  freeBuffer(): number {
    for (let i = 0; i < this.inFlight.length; i++) if (this.inFlight[i] === 0) return i;
    return -1;
  }
}

export class VideoMixer extends EventEmitter<VideoMixerEvents> {
  readonly fps: number;
  readonly clock: MixingClock;
  readonly drops = new DropCounters();
  readonly composeStats = new TickStats(600);
  private readonly counters = { ticks: 0, tickErrors: 0, framesComposed: 0 };

  private readonly sink: VideoSink;
  private readonly o: {
    stallMs: number;
    sourceKeyframeIntervalMs: number;
    stageResizeDelayMs: number;
    layoutOptions: LayoutOptions;
    assembler: Omit<VideoFrameAssemblerOptions, 'codec' | 'now'>;
    decoderThreads: number;
    niceness: number;
    log: ProcessLog | undefined;
  };
  private readonly mediaClock: MediaClock;
  private readonly timer: Timer;
  private readonly sources = new Map<string, VideoSource>();
  private readonly order: string[] = [];
  private readonly groups: CanvasGroup[] = [];
  /** The group decoders are sized for: the one holding the largest rendition. */
  private readonly mainGroup: CanvasGroup;
  private readonly renditionList: RenditionState[] = [];
  private layout: VideoLayout;
  private activeSpeaker: string | null = null;
  private readonly rtpFields: RtpBuildFields = { payloadType: 0, sequenceNumber: 0, timestamp: 0, ssrc: 0, marker: false };
  /** What a rendition added later (`addRendition`) is built with: the constructor's options. */
  private readonly renditionDefaults: { codec: VideoCodec; payloadTypes: { vp8: number; h264: number }; maxPacketBytes: number; random: () => number; opts: VideoMixerOptions };
  private closed = false;

  constructor(sink: VideoSink, opts: VideoMixerOptions = {}) {
    super();
    this.sink = sink;
    const d = VIDEO_MIXER_DEFAULTS;
    this.fps = opts.fps ?? d.fps;
    if (!(this.fps > 0 && this.fps <= 120)) throw new RangeError(`fps ${this.fps} must be in (0, 120]`);
    const random = opts.random ?? Math.random;
    this.mediaClock = opts.mediaClock ?? systemMediaClock;
    this.timer = opts.timer ?? systemTimer;
    this.o = {
      stallMs: opts.stallMs ?? d.stallMs,
      sourceKeyframeIntervalMs: opts.sourceKeyframeIntervalMs ?? d.sourceKeyframeIntervalMs,
      stageResizeDelayMs: opts.stageResizeDelayMs ?? d.stageResizeDelayMs,
      layoutOptions: opts.layoutOptions ?? {},
      assembler: opts.assembler ?? {},
      decoderThreads: opts.decoderThreads ?? 1,
      niceness: opts.ffmpegNiceness ?? d.ffmpegNiceness,
      log: opts.log,
    };
    this.layout = opts.layout ? parseLayout(opts.layout) : { kind: 'grid' };
    const maxPacketBytes = opts.maxPacketBytes ?? d.maxPacketBytes;
    const payloadTypes = { ...d.payloadTypes, ...opts.payloadTypes };
    const renditions = opts.renditions ?? d.renditions;
    if (renditions.length === 0) throw new RangeError('a video mixer needs at least one rendition');
    this.renditionDefaults = { codec: opts.codec ?? d.codec, payloadTypes, maxPacketBytes, random, opts };
    for (const r of renditions) {
      if (this.renditionList.some((x) => x.id === r.id)) throw new RangeError(`duplicate rendition id ${r.id}`);
      this.renditionList.push(this.newRendition(r));
    }
    // Group renditions by aspect; each group composes at its largest rendition's size.
    const byAspect = new Map<string, RenditionState[]>();
    for (const r of this.renditionList) {
      const key = aspectKey(r.width, r.height);
      const list = byAspect.get(key) ?? [];
      list.push(r);
      byAspect.set(key, list);
    }
    for (const list of byAspect.values()) {
      const largest = list.reduce((a, b) => (b.width * b.height > a.width * a.height ? b : a));
      const group = new CanvasGroup(largest.width, largest.height, opts.compositor ?? {});
      for (const r of list) {
        r.group = group;
        group.renditions.push(r);
      }
      this.groups.push(group);
    }
    this.mainGroup = this.groups.reduce((a, b) => (b.width * b.height > a.width * a.height ? b : a));
    for (const r of this.renditionList) this.startEncoder(r);
    for (const g of this.groups) g.allocate(g.renditions.reduce((n, r) => n + r.encoder.maxFramesHeld, 0));
    this.clock = new MixingClock((i) => this.tick(i), { tickMs: 1000 / this.fps, timer: this.timer });
    if (opts.autoStart !== false) this.clock.start();
  }

  /** A rendition's RTP state from its options (not yet in a canvas group, no encoder yet). */
  private newRendition(r: VideoRenditionOptions): RenditionState {
    const { codec: defaultCodec, payloadTypes, maxPacketBytes, random } = this.renditionDefaults;
    const codec = r.codec ?? defaultCodec;
    const full: Required<VideoRenditionOptions> = {
      id: r.id,
      width: r.width,
      height: r.height,
      fps: Math.min(r.fps ?? this.fps, this.fps),
      codec,
      bitrateKbps: renditionBitrateKbps(r),
      payloadType: r.payloadType ?? payloadTypes[codec],
      ssrc: r.ssrc ?? Math.floor(random() * TWO_32),
    };
    return new RenditionState(full, maxPacketBytes, Math.floor(random() * 0x10000), Math.floor(random() * TWO_32));
  }

  private startEncoder(r: RenditionState): void {
    const { maxPacketBytes, opts } = this.renditionDefaults;
    const d = VIDEO_MIXER_DEFAULTS;
    r.packetizer = r.codec === 'vp8' ? new Vp8Packetizer({ maxPayloadBytes: maxPacketBytes - 12 }) : new H264Packetizer({ maxPayloadBytes: maxPacketBytes - 12 });
    r.encoder = new VideoEncoderProcess({
      codec: r.codec,
      width: r.width,
      height: r.height,
      inputWidth: r.group.width,
      inputHeight: r.group.height,
      fps: r.fps,
      bitrateKbps: r.bitrateKbps,
      keyframeIntervalMs: opts.keyframeIntervalMs ?? d.keyframeIntervalMs,
      minKeyframeIntervalMs: opts.minKeyframeIntervalMs ?? d.minKeyframeIntervalMs,
      threads: opts.encoderThreads ?? 1,
      niceness: opts.encoderNiceness ?? 0,
      name: `encoder ${r.id}`,
      log: opts.log,
    });
    r.encoder.onFrame = (data, length, keyframe, mediaMs) => this.sendFrame(r, data, length, keyframe, mediaMs);
  }

  /**
   * Adds a rendition while the mixer runs (a restream needs H.264 when the event has none). It
   * joins the canvas of its aspect (composed at that canvas's size, scaled by its own encoder as
   * the others are) or gets a canvas of its own; its encoder starts now, with a keyframe. Nothing
   * else restarts: the other renditions' encoders and the decoders go on as they were.
   */
  addRendition(r: VideoRenditionOptions): VideoRendition {
    if (this.closed) throw new Error('video mixer is closed');
    if (this.renditionList.some((x) => x.id === r.id)) throw new RangeError(`duplicate rendition id ${r.id}`);
    const state = this.newRendition(r);
    const aspect = aspectKey(state.width, state.height);
    let group = this.groups.find((g) => aspectKey(g.width, g.height) === aspect);
    const newGroup = group === undefined;
    group ??= new CanvasGroup(state.width, state.height, this.renditionDefaults.opts.compositor ?? {});
    state.group = group;
    this.startEncoder(state);
    group.renditions.push(state);
    // Frames already handed to the other encoders keep their buffers: this one gets more.
    if (newGroup) group.allocate(state.encoder.maxFramesHeld);
    else group.grow(state.encoder.maxFramesHeld);
    this.renditionList.push(state);
    if (newGroup) {
      this.groups.push(group);
      this.relayout();
    }
    return state.info();
  }

  /** Stops and removes a rendition added with `addRendition` (or any but the last). Returns false when unknown. */
  removeRendition(id: string): boolean {
    const i = this.renditionList.findIndex((r) => r.id === id);
    if (i < 0 || this.closed) return false;
    if (this.renditionList.length === 1) throw new RangeError('a video mixer needs at least one rendition');
    const r = this.renditionList[i];
    this.renditionList.splice(i, 1);
    const group = r.group;
    group.renditions.splice(group.renditions.indexOf(r), 1);
    r.encoder.close();
    if (group.renditions.length === 0 && group !== this.mainGroup) this.groups.splice(this.groups.indexOf(group), 1);
    return true;
  }

  /** The output streams, for SDP and sender reports. */
  get renditions(): VideoRendition[] {
    return this.renditionList.map((r) => r.info());
  }

  /** What rendition `index` (in `renditions` order) actually sends, kbps; null before its first second. */
  sendingKbps(index: number): number | null {
    return this.renditionList[index]?.sendingKbps ?? null;
  }

  get currentLayout(): VideoLayout {
    return this.layout;
  }

  /** Regions of the main canvas (the largest rendition's), as last computed. */
  get regions(): readonly LayoutRegion[] {
    return this.mainGroup.regions;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Video sources (presenters' cameras) in the mix. */
  get sourceCount(): number {
    return this.sources.size;
  }

  start(): void {
    if (!this.closed) this.clock.start();
  }

  /**
   * `name`: the presenter's display name, its tiles' label (a source without one has no label);
   * `lipSync`: the presenter's A/V sync, measured here for video and applied as a hold before decoding;
   * `backstage`: connected but in no composite until `setBackstage(id, false)`.
   */
  addSource(id: string, opts: { codec: VideoCodec; name?: string; lipSync?: LipSync; backstage?: boolean }): void {
    if (this.closed) throw new Error('video mixer is closed');
    if (this.sources.has(id)) throw new Error(`video source ${id} already exists`);
    const s = new VideoSource(id, opts.codec, opts.name ?? id, { ...this.o.assembler, now: () => this.timer.now() });
    s.lipSync = opts.lipSync ?? null;
    s.backstage = opts.backstage ?? false;
    s.label = opts.name;
    s.assembler.onFrame = (f) => this.onSourceFrame(s, f);
    s.assembler.onKeyframeNeeded = () => {
      if (s.visible) this.requestSourceKeyframe(s);
    };
    this.sources.set(id, s);
    this.order.push(id);
    this.relayout();
  }

  removeSource(id: string): boolean {
    const s = this.sources.get(id);
    if (!s) return false;
    this.sources.delete(id);
    this.order.splice(this.order.indexOf(id), 1);
    this.stopDecoder(s);
    this.dropHeld(s);
    if (this.activeSpeaker === id) this.activeSpeaker = null;
    this.relayout();
    return true;
  }

  hasSource(id: string): boolean {
    return this.sources.has(id);
  }

  /** One RTP packet of a source (`packet[0 .. length)`, copied; the buffer may be reused at once). */
  pushRtp(sourceId: string, packet: Uint8Array, length: number = packet.length): void {
    const s = this.sources.get(sourceId);
    if (!s) {
      this.drops.drop('unknown_source');
      return;
    }
    s.assembler.push(packet, length, this.timer.now());
  }

  /** Applies from the next composed frame; decoders of sources that appear start, of those that vanish stop. */
  setLayout(layout: VideoLayout): void {
    this.layout = parseLayout(layout);
    this.relayout();
  }

  /**
   * Moves a source out of the composite (backstage) or into it (live), from the next composed
   * frame. The source that appears gets one keyframe request; tiles already on screen that change
   * size keep their decoders (the compositor scales their pictures) until their next keyframe, or
   * `stageResizeDelayMs`. Returns false for an unknown source.
   */
  setBackstage(id: string, backstage: boolean): boolean {
    const s = this.sources.get(id);
    if (!s) return false;
    if (s.backstage === backstage) return true;
    s.backstage = backstage;
    this.relayout(true);
    return true;
  }

  /** Drives the `speaker` layout and the active-speaker border. */
  setActiveSpeaker(sourceId: string | null): void {
    const id = sourceId !== null && this.sources.has(sourceId) ? sourceId : null;
    if (id === this.activeSpeaker) return;
    this.activeSpeaker = id;
    this.relayout();
  }

  /** A viewer needs a keyframe on this rendition (all renditions when omitted); rate-limited per rendition. */
  requestKeyframe(renditionId?: string): void {
    for (const r of this.renditionList) if (renditionId === undefined || r.id === renditionId) r.encoder.requestKeyframe();
  }

  /** NTP and RTP times for a sender report on a rendition, from the shared media clock. */
  senderReport(renditionId: string): SenderReportTimes {
    const r = this.renditionList.find((x) => x.id === renditionId);
    if (!r) throw new RangeError(`no rendition ${renditionId}`);
    return senderReportTimes(this.mediaClock, 90_000, r.rtpTimestampBase);
  }

  /** Pids of the running ffmpeg children (for diagnostics, tests and CPU accounting). */
  processIds(): { decoders: Record<string, number | null>; encoders: Record<string, number | null> } {
    const decoders: Record<string, number | null> = {};
    for (const s of this.sources.values()) if (s.decoder) decoders[s.id] = s.decoder.pid;
    const encoders: Record<string, number | null> = {};
    for (const r of this.renditionList) encoders[r.id] = r.encoder.pid;
    return { decoders, encoders };
  }

  /** Last stderr lines of a source's decoder or a rendition's encoder. */
  stderrTail(id: string): string[] {
    return this.sources.get(id)?.decoder?.stderrTail() ?? this.renditionList.find((r) => r.id === id)?.encoder.stderrTail() ?? [];
  }

  /** One video tick: compose each canvas once and hand it to the renditions due. */
  tick(tickIndex: number): void {
    if (this.closed) return;
    this.counters.ticks++;
    try {
      this.runTick(tickIndex);
    } catch {
      this.counters.tickErrors++;
    }
  }

  private runTick(tickIndex: number): void {
    const now = this.timer.now();
    const mediaMs = this.mediaClock.nowMs();
    for (const r of this.renditionList) r.measureRate(now);
    for (const s of this.sources.values()) {
      s.assembler.poll(now);
      if (!s.visible) continue;
      if (s.resizeDueAt >= 0 && now >= s.resizeDueAt) this.updateDecoder(s);
      if (s.keyframeRequestPending) this.requestSourceKeyframe(s, now);
      const stalled = now - s.lastFrameAt >= this.o.stallMs && s.lastFrameAt > -Infinity;
      if (stalled !== s.stalled) {
        s.stalled = stalled;
        this.emit(stalled ? 'sourceStalled' : 'sourceResumed', s.id);
      }
    }
    const highlight = this.mainGroup.regions.length > 1 ? this.activeSpeaker : null;
    for (const group of this.groups) {
      // Renditions at a lower fps take every n-th composition; an encoder that is behind (or
      // restarting) skips this frame rather than queueing it.
      let due = 0;
      for (const r of group.renditions) {
        const slot = Math.floor((tickIndex * r.fps) / this.fps);
        r.due = slot !== r.lastSlot;
        if (!r.due) continue;
        r.lastSlot = slot;
        if (r.encoder.canAccept()) due++;
        else {
          r.due = false;
          this.drops.drop('encoder_busy');
        }
      }
      if (due === 0) continue;
      const b = group.freeBuffer();
      if (b < 0) {
        this.drops.drop('no_canvas'); // cannot happen: see CanvasGroup.allocate
        continue;
      }
      for (const tile of group.tiles) {
        const s = this.sources.get(tile.region.sourceId);
        tile.frame = s?.picture ?? null;
        if (s !== undefined && tile.frame !== null && !s.pictureComposed) {
          // This picture enters the program now, at `mediaMs`.
          s.pictureComposed = true;
          if (s.lipSync !== null && s.pictureTimestamp >= 0) s.lipSync.videoComposed(s.pictureTimestamp, mediaMs, now);
        }
        tile.placeholder = s === undefined || s.stalled;
        tile.highlight = highlight !== null && tile.region.sourceId === highlight;
      }
      const t0 = performance.now();
      const buffer = group.buffers[b];
      group.compositor.compose(buffer, group.tiles);
      this.composeStats.record(performance.now() - t0);
      this.counters.framesComposed++;
      for (const r of group.renditions) {
        if (!r.due) continue;
        group.inFlight[b]++;
        r.encoder.encode(buffer, mediaMs, () => {
          group.inFlight[b]--;
        });
      }
    }
  }

  private sendFrame(r: RenditionState, data: Uint8Array, length: number, _keyframe: boolean, mediaMs: number): void {
    if (this.closed) return;
    r.rtpTimestamp = rtpTimestampAt(mediaMs, 90_000, r.rtpTimestampBase);
    r.frameMediaMs = mediaMs;
    r.packetizer.packetize(data, length, (payload, payloadLength, last) => this.sendPacket(r, payload, payloadLength, last));
  }

  private sendPacket(r: RenditionState, payload: Uint8Array, payloadLength: number, last: boolean): void {
    const f = this.rtpFields;
    f.payloadType = r.payloadType;
    f.sequenceNumber = r.seq;
    f.timestamp = r.rtpTimestamp;
    f.ssrc = r.ssrc;
    f.marker = last;
    r.seq = (r.seq + 1) & 0xffff;
    const buf = r.packets[r.packetIndex];
    r.packetIndex = (r.packetIndex + 1) % PACKET_RING;
    const n = writeRtp(buf, f, payload, payloadLength);
    r.packetsOut++;
    r.bytesOut += n;
    try {
      this.sink(r, buf, n);
    } catch {
      this.drops.drop('sink_error');
    }
  }

  /**
   * Recomputes regions and tiles of every canvas, and which sources are decoded at what size.
   * `deferResize` (a stage change): decoders already running are resized later (see resizeDueAt).
   */
  private relayout(deferResize = false): void {
    if (this.closed) return;
    let ids: readonly string[] = this.order;
    for (const s of this.sources.values()) {
      if (s.backstage) {
        ids = this.order.filter((id) => !this.sources.get(id)!.backstage);
        break;
      }
    }
    for (const g of this.groups) {
      g.regions = computeLayout(this.layout, ids, g, this.activeSpeaker, this.o.layoutOptions);
      g.tiles = g.regions.map((region) => ({ region, frame: null, label: this.sources.get(region.sourceId)?.label }));
    }
    // Decoders are sized for the main canvas; a source shown twice is decoded for its largest region.
    const boxes = new Map<string, { width: number; height: number }>();
    for (const r of this.mainGroup.regions) {
      const b = boxes.get(r.sourceId);
      if (!b || r.width * r.height > b.width * b.height) boxes.set(r.sourceId, { width: r.width, height: r.height });
    }
    let deferred = 0;
    for (const s of this.sources.values()) {
      const box = boxes.get(s.id) ?? null;
      if (box === null) {
        if (s.visible) {
          s.box = null;
          this.stopDecoder(s);
        }
        continue;
      }
      const wasVisible = s.visible;
      s.box = box;
      if (deferResize && s.decoder !== null) {
        // Staggered by the per-source keyframe interval, so that they never come together.
        if (s.resizeDueAt < 0) s.resizeDueAt = this.timer.now() + this.o.stageResizeDelayMs + deferred++ * this.o.sourceKeyframeIntervalMs;
        continue;
      }
      this.updateDecoder(s);
      // Asked on the next tick, not from inside addSource/setLayout, so that listeners attached
      // right after the call hear it.
      if (!wasVisible && s.decoder === null) s.keyframeRequestPending = true;
    }
  }

  /** Starts or resizes the decoder of a visible source whose size is known. */
  private updateDecoder(s: VideoSource, requestKeyframe = true): void {
    s.resizeDueAt = -1;
    if (!s.box || s.width === 0) return; // size comes with the next keyframe
    const size = fitInside(s.width, s.height, s.box.width, s.box.height);
    if (s.decoder === null) {
      this.startDecoder(s, size.width, size.height, 'stretch', requestKeyframe);
    } else if (size.width !== s.decoder.outputWidth || size.height !== s.decoder.outputHeight) {
      s.decoder.resize(size.width, size.height, s.width, s.height);
      s.forgetFed();
    }
  }

  /**
   * 'stretch' at the fitted size when the source size is known; 'fit' (ffmpeg keeps the aspect and
   * pads to the tile) for a keyframe that does not say its size (H.264 whose SPS came out of band).
   */
  private startDecoder(s: VideoSource, width: number, height: number, fit: 'stretch' | 'fit', requestKeyframe: boolean): void {
    const decoder = new VideoDecoderProcess({
      codec: s.codec,
      width,
      height,
      fit,
      sourceWidth: s.width || width,
      sourceHeight: s.height || height,
      threads: this.o.decoderThreads,
      niceness: this.o.niceness,
      name: `decoder ${s.id}`,
      log: this.o.log,
    });
    decoder.on('frame', () => {
      s.lastFrameAt = this.timer.now();
      s.stats.framesDecoded++;
      s.decoded();
    });
    decoder.on('keyframeNeeded', () => {
      s.keyframeRequestPending = true; // resize() is called from setLayout: ask on the next tick
    });
    decoder.on('restart', () => {
      s.stats.restarts = s.pastRestarts + decoder.restarts;
      s.forgetFed();
    });
    s.decoder = decoder;
    s.forgetFed();
    s.lastFrameAt = this.timer.now(); // the stall clock starts now, not at -Infinity
    if (requestKeyframe) s.keyframeRequestPending = true;
  }


  private stopDecoder(s: VideoSource): void {
    if (!s.decoder) return;
    s.pastRestarts += s.decoder.restarts;
    s.decoder.close();
    s.decoder = null;
    s.forgetFed();
    s.stalled = false;
    s.lastFrameAt = -Infinity;
  }

  private onSourceFrame(s: VideoSource, f: AssembledFrame): void {
    s.stats.framesAssembled++;
    if (f.keyframe && f.width > 0 && (f.width !== s.width || f.height !== s.height)) {
      s.width = f.width;
      s.height = f.height;
      // This keyframe is about to be fed: a new decoder needs no request of its own.
      if (s.visible) this.updateDecoder(s, false);
    } else if (f.keyframe && s.resizeDueAt >= 0 && s.visible) {
      // A resize deferred by a stage change, at no cost: this keyframe (fed now, or after the
      // lip-sync hold) starts the resized decoder, which therefore asks for none of its own. If the
      // decoder still lacks a keyframe after it, feed() asks then.
      this.updateDecoder(s, false);
      s.keyframeRequestPending = false;
    }
    if (s.decoder === null && f.keyframe && s.width === 0 && s.box !== null) {
      const even = (v: number) => Math.max(2, v & ~1);
      this.startDecoder(s, even(s.box.width), even(s.box.height), 'fit', false);
    }
    const hold = s.lipSync?.videoHoldMs ?? 0;
    if (hold > 0 || s.held.length > 0) this.holdFrame(s, f, hold);
    else this.feed(s, f.data, f.length, f.keyframe, f.timestamp);
  }

  /** Keeps a copy of the frame until `hold` ms from now (after those already held), for lip sync. */
  private holdFrame(s: VideoSource, f: AssembledFrame, hold: number): void {
    if (s.held.length >= MAX_HELD_FRAMES) {
      s.held.shift();
      this.drops.drop('lip_sync_overflow');
    }
    s.held.push({ data: f.data.slice(0, f.length), keyframe: f.keyframe, timestamp: f.timestamp, releaseAt: this.timer.now() + hold });
    this.scheduleHeld(s);
  }

  private scheduleHeld(s: VideoSource): void {
    if (s.holdTimer !== null || s.held.length === 0) return;
    const wait = Math.max(0, s.held[0].releaseAt - this.timer.now());
    s.holdTimer = this.timer.setTimeout(() => {
      s.holdTimer = null;
      this.releaseHeld(s);
    }, wait);
  }

  private releaseHeld(s: VideoSource): void {
    if (this.closed || !this.sources.has(s.id)) return;
    const now = this.timer.now();
    // Timers fire up to a millisecond early or late; a frame due within half a millisecond goes now.
    while (s.held.length > 0 && s.held[0].releaseAt <= now + 0.5) {
      const h = s.held.shift()!;
      this.feed(s, h.data, h.data.length, h.keyframe, h.timestamp);
    }
    this.scheduleHeld(s);
  }

  private dropHeld(s: VideoSource): void {
    if (s.holdTimer !== null) this.timer.clearTimeout(s.holdTimer);
    s.holdTimer = null;
    s.held.length = 0;
  }

  private feed(s: VideoSource, data: Uint8Array, length: number, keyframe: boolean, timestamp: number): void {
    const decoder = s.decoder;
    if (decoder === null) {
      s.stats.framesNotDecoded++;
      return;
    }
    if (decoder.decode(data, length, keyframe)) {
      s.stats.framesFed++;
      s.fed(timestamp);
    } else {
      s.stats.framesNotDecoded++;
      if (decoder.needsKeyframe) this.requestSourceKeyframe(s);
    }
  }

  /** Emits `keyframeRequest` now, or as soon as the per-source interval allows. */
  private requestSourceKeyframe(s: VideoSource, now: number = this.timer.now()): void {
    if (this.closed || !this.sources.has(s.id)) return;
    if (now - s.lastKeyframeRequestAt < this.o.sourceKeyframeIntervalMs) {
      s.keyframeRequestPending = true;
      return;
    }
    s.keyframeRequestPending = false;
    s.lastKeyframeRequestAt = now;
    s.stats.keyframeRequests++;
    this.emit('keyframeRequest', s.id);
  }

  stats(): VideoMixerStats {
    const sources: Record<string, VideoSourceStatsSnapshot> = {};
    let restarts = 0;
    for (const s of this.sources.values()) {
      const a = s.assembler.stats;
      const r = s.pastRestarts + (s.decoder?.restarts ?? 0);
      restarts += r;
      sources[s.id] = {
        codec: s.codec,
        name: s.name,
        label: s.label ?? null,
        visible: s.visible,
        stalled: s.stalled,
        width: s.width,
        height: s.height,
        decodeWidth: s.decoder?.outputWidth ?? 0,
        decodeHeight: s.decoder?.outputHeight ?? 0,
        packets: a.packets,
        lost: a.lost,
        framesAssembled: s.stats.framesAssembled,
        framesDecoded: s.stats.framesDecoded,
        framesDropped: a.framesDropped + s.stats.framesNotDecoded,
        keyframeRequests: s.stats.keyframeRequests,
        restarts: r,
        decoderPid: s.decoder?.pid ?? null,
        avSync: s.lipSync?.stats() ?? null,
      };
    }
    const renditions: Record<string, VideoRenditionStatsSnapshot> = {};
    for (const r of this.renditionList) {
      const e = r.encoder.stats;
      restarts += r.encoder.restarts;
      renditions[r.id] = {
        codec: r.codec,
        width: r.width,
        height: r.height,
        framesIn: e.framesIn,
        framesEncoded: e.framesOut,
        keyframes: e.keyframes,
        forcedKeyframes: e.forcedKeyframes,
        dropped: e.dropped,
        packetsOut: r.packetsOut,
        bytesOut: r.bytesOut,
        restarts: r.encoder.restarts,
        encodeLatencyMs: e.latencyMs,
        encodeLatencyAvgMs: e.latencyAvgMs,
        encoderPid: r.encoder.pid,
      };
    }
    const c = this.composeStats;
    return {
      ticks: this.counters.ticks,
      tickErrors: this.counters.tickErrors,
      framesComposed: this.counters.framesComposed,
      composeMs: { p50: c.percentile(50), p99: c.percentile(99), max: c.maxMs },
      dropped: this.drops.snapshot(),
      restarts,
      sources,
      renditions,
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.clock.stop();
    for (const s of this.sources.values()) {
      this.stopDecoder(s);
      this.dropHeld(s);
    }
    for (const r of this.renditionList) r.encoder.close();
    this.emit('close');
    this.removeAllListeners();
  }
}

function aspectKey(width: number, height: number): string {
  const g = gcd(width, height);
  return `${width / g}:${height / g}`;
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}
