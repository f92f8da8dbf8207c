/**
 * The one door the program leaves through besides the relay feed: recordings, restreams and
 * previews subscribe here to the program as it is already encoded (the shared Opus mix and one
 * rendition's VP8 or H.264), as whole frames with their time on the event's media clock. Nothing
 * is decoded or encoded again.
 *
 * The tap listens to the same RTP packets the feed sender sends to the relays (`addProgramSink`,
 * `addVideoProgramSink`), once per event and rendition whatever the number of consumers, and only
 * while it has one. Consumers of frames (recordings, previews) get each video rendition
 * depacketized once, however many they are (one VideoFrameAssembler per rendition, run only while
 * a frame consumer exists); consumers of the RTP packets themselves (restreams, which hand them to
 * ffmpeg as they are: `subscribeRtp`) get them from the same listener. Timestamps go back to
 * media time through the stream's RTP timestamp base (MediaClock.ts), so audio and video of one
 * subscriber share a timeline exactly as the viewers' sender reports do.
 */
import { RtpHeader, VideoFrameAssembler, parseRtp } from '@mcu/rtp';
import type { AssembledFrame, VideoCodec } from '@mcu/rtp';
import { mediaMsAt } from './MediaClock.js';
import type { MixerEvent } from './MixerEvent.js';
import type { VideoRendition } from './VideoMixer.js';

/** One Opus packet of the program mix (20 ms). `data` is valid during the call only. */
export interface ProgramAudioFrame {
  readonly data: Uint8Array;
  /** Media-clock time (Unix ms) of its first sample. */
  readonly mediaMs: number;
  readonly durationMs: number;
}

/** One encoded video frame of a rendition (VP8 frame or H.264 Annex-B access unit). `data` is valid during the call only. */
export interface ProgramVideoFrame {
  readonly data: Uint8Array;
  readonly mediaMs: number;
  readonly keyframe: boolean;
  readonly codec: VideoCodec;
  readonly rendition: string;
  /** From the keyframe's header / SPS; 0 on other frames. */
  readonly width: number;
  readonly height: number;
}

export interface ProgramTapSink {
  audio?(frame: ProgramAudioFrame): void;
  video?(frame: ProgramVideoFrame): void;
}

export interface ProgramTapRendition {
  id: string;
  codec: VideoCodec;
  bitrateKbps: number;
}

export interface ProgramTapOptions {
  /** Rendition id whose video is delivered; undefined: the first (largest); false: audio only. */
  rendition?: string | false;
}

export interface ProgramTap {
  readonly eventId: string;
  /** The program's video renditions, largest first. */
  renditions(): ProgramTapRendition[];
  /** Subscribes; a keyframe is asked for so that video starts at once. Returns the unsubscribe function. */
  subscribe(sink: ProgramTapSink, opts?: ProgramTapOptions): () => void;
  /** A subscriber lost or needs a picture (a new segment starts). */
  requestKeyframe(rendition: string): void;
  /** Frames the tap could not depacketize (lost packets), per rendition. */
  stats(): { audioFrames: number; videoFrames: Record<string, number>; videoDropped: Record<string, number> };
}

/** Receives one RTP packet of the program: `packet[0 .. length)` is valid during the call only. */
export type ProgramRtpSink = (packet: Uint8Array, length: number) => void;

/** The program's RTP packets, as the mixer sends them to viewers. */
export interface ProgramTapRtpSink {
  audio?: ProgramRtpSink;
  video?: ProgramRtpSink;
}

/** One rendition's depacketizer and its subscribers. */
class RenditionTap {
  readonly sinks = new Set<ProgramTapSink>();
  readonly rtpSinks = new Set<ProgramRtpSink>();
  readonly assembler: VideoFrameAssembler;
  private rendition: VideoRendition | null = null;
  private readonly frame = { data: new Uint8Array(0) as Uint8Array, mediaMs: 0, keyframe: false, codec: 'vp8' as VideoCodec, rendition: '', width: 0, height: 0 };
  frames = 0;
  unsubscribe: (() => void) | null = null;

  constructor(
    readonly id: string,
    codec: VideoCodec,
  ) {
    // The packets come from this process: nothing is reordered, and a loss cannot happen short of a bug.
    this.assembler = new VideoFrameAssembler({ codec, maxReorderPackets: 4 });
    this.assembler.onFrame = (f) => this.deliver(f);
  }

  get idle(): boolean {
    return this.sinks.size === 0 && this.rtpSinks.size === 0;
  }

  push(packet: Uint8Array, length: number, rendition: VideoRendition): void {
    for (const s of this.rtpSinks) s(packet, length);
    // Depacketized only for frame consumers; a frame consumer that joins starts at a keyframe it asks for.
    if (this.sinks.size === 0) return;
    this.rendition = rendition;
    this.assembler.push(packet, length);
  }

  private deliver(f: AssembledFrame): void {
    const r = this.rendition!;
    const out = this.frame;
    out.data = f.data.subarray(0, f.length);
    // The frame being sent is the one whose media time the rendition holds: it anchors the unwrap.
    out.mediaMs = mediaMsAt(f.timestamp, 90_000, r.rtpTimestampBase, r.frameMediaMs);
    out.keyframe = f.keyframe;
    out.codec = f.codec;
    out.rendition = r.id;
    out.width = f.width;
    out.height = f.height;
    this.frames++;
    for (const s of this.sinks) s.video?.(out);
  }
}

/** The ProgramTap of an event mixed in this process. */
export class MixerProgramTap implements ProgramTap {
  private readonly audioSinks = new Set<ProgramTapSink>();
  private readonly audioRtpSinks = new Set<ProgramRtpSink>();
  private stopAudio: (() => void) | null = null;
  private readonly video = new Map<string, RenditionTap>();
  private readonly header = new RtpHeader();
  private readonly audioFrame = { data: new Uint8Array(0) as Uint8Array, mediaMs: 0, durationMs: 20 };
  private audioFrames = 0;

  constructor(private readonly event: MixerEvent) {}

  get eventId(): string {
    return this.event.id;
  }

  renditions(): ProgramTapRendition[] {
    return this.event.videoRenditions.map(({ id, codec, bitrateKbps }) => ({ id, codec, bitrateKbps }));
  }

  subscribe(sink: ProgramTapSink, opts: ProgramTapOptions = {}): () => void {
    let video: RenditionTap | null = null;
    if (opts.rendition !== false) {
      video = this.renditionTap(opts.rendition);
      video.sinks.add(sink);
      this.event.requestVideoKeyframe(video.id);
    }
    this.audioSinks.add(sink);
    this.listenAudio();
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.audioSinks.delete(sink);
      this.releaseAudio();
      if (video) {
        video.sinks.delete(sink);
        this.releaseRendition(video);
      }
    };
  }

  /**
   * Subscribes to the program's RTP packets themselves (the Opus mix and one rendition), from the
   * same listeners as the frames: for a consumer that forwards RTP (a restream). Returns the
   * unsubscribe function.
   */
  subscribeRtp(sink: ProgramTapRtpSink, opts: { rendition: string }): () => void {
    // Own closures: the same function subscribed twice is two subscriptions.
    const onVideo: ProgramRtpSink | null = sink.video ? (p, n) => sink.video!(p, n) : null;
    const audio: ProgramRtpSink | null = sink.audio ? (p, n) => sink.audio!(p, n) : null;
    const video = onVideo ? this.renditionTap(opts.rendition) : null;
    if (video) video.rtpSinks.add(onVideo!);
    if (audio) {
      this.audioRtpSinks.add(audio);
      this.listenAudio();
    }
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (audio) {
        this.audioRtpSinks.delete(audio);
        this.releaseAudio();
      }
      if (video) {
        video.rtpSinks.delete(onVideo!);
        this.releaseRendition(video);
      }
    };
  }

  private renditionTap(id: string | undefined): RenditionTap {
    const renditions = this.renditions();
    const r = id === undefined ? renditions[0] : renditions.find((x) => x.id === id);
    if (!r) throw new RangeError(`no rendition ${String(id)}`);
    let tap = this.video.get(r.id);
    if (!tap) {
      const t = new RenditionTap(r.id, r.codec);
      t.unsubscribe = this.event.addVideoProgramSink(r.id, (packet, length, rendition) => t.push(packet, length, rendition));
      this.video.set(r.id, t);
      tap = t;
    }
    return tap;
  }

  private releaseRendition(tap: RenditionTap): void {
    if (!tap.idle) return;
    tap.unsubscribe?.();
    this.video.delete(tap.id);
  }

  private listenAudio(): void {
    this.stopAudio ??= this.event.mixer.addProgramSink((packet, mediaMs) => this.onAudio(packet, mediaMs));
  }

  private releaseAudio(): void {
    if (this.audioSinks.size > 0 || this.audioRtpSinks.size > 0 || !this.stopAudio) return;
    this.stopAudio();
    this.stopAudio = null;
  }

  requestKeyframe(rendition: string): void {
    this.event.requestVideoKeyframe(rendition);
  }

  stats() {
    const videoFrames: Record<string, number> = {};
    const videoDropped: Record<string, number> = {};
    for (const [id, t] of this.video) {
      videoFrames[id] = t.frames;
      videoDropped[id] = t.assembler.stats.framesDropped;
    }
    return { audioFrames: this.audioFrames, videoFrames, videoDropped };
  }

  private onAudio(packet: Buffer, mediaMs: number): void {
    for (const s of this.audioRtpSinks) s(packet, packet.length);
    if (this.audioSinks.size === 0 || parseRtp(packet, this.header) !== null) return;
    const h = this.header;
    const f = this.audioFrame;
    f.data = packet.subarray(h.payloadOffset, h.payloadOffset + h.payloadLength);
    f.mediaMs = mediaMs;
    f.durationMs = (this.event.mixer.frameSamples * 1000) / this.event.mixer.sampleRate;
    this.audioFrames++;
    for (const s of this.audioSinks) s.audio?.(f);
  }
}

/** The program tap of an event (one per event: its listeners and depacketizers are shared by all subscribers). */
export function programTapOf(event: MixerEvent): MixerProgramTap {
  let tap = taps.get(event);
  if (!tap) {
    tap = new MixerProgramTap(event);
    taps.set(event, tap);
  }
  return tap;
}

const taps = new WeakMap<MixerEvent, MixerProgramTap>();
