/**
 * One video input of the mixer as the mixer sees it: its RTP frame assembler (always running, so
 * its size and keyframe state are known even while hidden), its decoder process while it is
 * visible, and what the compositor shows for it.
 */
import { VideoFrameAssembler } from '@mcu/rtp';
import type { VideoCodec, VideoFrameAssemblerOptions } from '@mcu/rtp';
import type { I420Frame, VideoDecoderProcess } from '@mcu/codec';
import type { LipSync } from './LipSync.js';

/** An encoded frame held back for lip sync (copied out of the assembler's buffer). */
export interface HeldFrame {
  data: Uint8Array;
  keyframe: boolean;
  timestamp: number;
  releaseAt: number;
}

/** Frames fed to a decoder and not yet decoded, at most this many (more means some were lost in ffmpeg). */
const MAX_IN_DECODER = 16;

export interface VideoSourceStats {
  /** Frames assembled from RTP (from a keyframe on). */
  framesAssembled: number;
  /** Frames given to the decoder. */
  framesFed: number;
  framesDecoded: number;
  /** Assembled frames not decoded: hidden source, decoder waiting for a keyframe or backed up. */
  framesNotDecoded: number;
  keyframeRequests: number;
  /** Decoder processes that died and were restarted (summed over this source's decoders). */
  restarts: number;
}

export class VideoSource {
  readonly assembler: VideoFrameAssembler;
  decoder: VideoDecoderProcess | null = null;
  /** Restarts of decoders already closed (a hidden source's decoder is closed). */
  pastRestarts = 0;
  /** Size of the source's pictures, from its last keyframe; 0 until known. */
  width = 0;
  height = 0;
  /** The region it is shown in on the main canvas, or null when hidden. */
  box: { width: number; height: number } | null = null;
  /** Monotonic time of the last decoded picture; -Infinity before the first. */
  lastFrameAt = -Infinity;
  stalled = false;
  lastKeyframeRequestAt = -Infinity;
  keyframeRequestPending = false;
  /** Backstage: connected, in no composite (and so not decoded). */
  backstage = false;
  /**
   * The tile changed size with a stage change: its decoder is resized at the source's next
   * keyframe, or at this monotonic time with a keyframe request of its own (-1: none due). Until
   * then the compositor scales its pictures, so that one presenter going live costs one keyframe
   * request, not one per tile on screen.
   */
  resizeDueAt = -1;
  /** Lip sync with this presenter's audio, when it has any. */
  lipSync: LipSync | null = null;
  /** Encoded frames waiting out the lip-sync hold, oldest first, and the timer that releases them. */
  readonly held: HeldFrame[] = [];
  holdTimer: unknown = null;
  /**
   * RTP timestamps of frames fed to the decoder and not yet out of it, in order: ffmpeg decodes
   * VP8 and browser H.264 (no B-frames) in order, so the next picture out is the oldest fed.
   */
  private readonly inDecoder = new Float64Array(MAX_IN_DECODER);
  private inDecoderHead = 0;
  private inDecoderCount = 0;
  /** RTP timestamp of `picture`, -1 when unknown, and whether it has been composed yet. */
  pictureTimestamp = -1;
  pictureComposed = true;
  readonly stats: VideoSourceStats = {
    framesAssembled: 0,
    framesFed: 0,
    framesDecoded: 0,
    framesNotDecoded: 0,
    keyframeRequests: 0,
    restarts: 0,
  };
  /** The presenter's display name, drawn on its tiles when the compositor draws labels; none without one. */
  label: string | undefined = undefined;

  constructor(
    readonly id: string,
    readonly codec: VideoCodec,
    /** Names the source in stats and logs (its id when no name was given). */
    public name: string,
    assemblerOptions: Omit<VideoFrameAssemblerOptions, 'codec'> = {},
  ) {
    this.assembler = new VideoFrameAssembler({ ...assemblerOptions, codec });
  }

  /** A frame with this RTP timestamp went into the decoder. */
  fed(timestamp: number): void {
    if (this.inDecoderCount === MAX_IN_DECODER) this.forgetFed();
    this.inDecoder[(this.inDecoderHead + this.inDecoderCount) % MAX_IN_DECODER] = timestamp;
    this.inDecoderCount++;
  }

  /** The decoder delivered its next picture. */
  decoded(): void {
    if (this.inDecoderCount === 0) {
      this.pictureTimestamp = -1;
      return;
    }
    this.pictureTimestamp = this.inDecoder[this.inDecoderHead];
    this.inDecoderHead = (this.inDecoderHead + 1) % MAX_IN_DECODER;
    this.inDecoderCount--;
    this.pictureComposed = false;
  }

  /** The decoder restarted or was replaced: what was in it will not come out. */
  forgetFed(): void {
    this.inDecoderHead = 0;
    this.inDecoderCount = 0;
  }

  get visible(): boolean {
    return this.box !== null;
  }

  /** The picture to show: the newest decoded one (possibly from before a resize), or null. */
  get picture(): I420Frame | null {
    return this.decoder?.latest ?? null;
  }
}
