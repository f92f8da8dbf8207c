/**
 * One video input of the mixer as the mixer sees it: its RTP frame assembler (always running, so
 * its size and keyframe state are known even while hidden), its decoder process while it is
 * visible, and what the compositor shows for it.
 */
import { VideoFrameAssembler } from '@mcu/rtp';
import type { VideoCodec, VideoFrameAssemblerOptions } from '@mcu/rtp';
import type { I420Frame, VideoDecoderProcess } from '@mcu/codec';

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
  readonly stats: VideoSourceStats = {
    framesAssembled: 0,
    framesFed: 0,
    framesDecoded: 0,
    framesNotDecoded: 0,
    keyframeRequests: 0,
    restarts: 0,
  };

  constructor(
    readonly id: string,
    readonly codec: VideoCodec,
    /** Shown in the name label. */
    public name: string,
    assemblerOptions: Omit<VideoFrameAssemblerOptions, 'codec'> = {},
  ) {
    this.assembler = new VideoFrameAssembler({ ...assemblerOptions, codec });
  }

  get visible(): boolean {
    return this.box !== null;
  }

  /** The picture to show: the newest decoded one (possibly from before a resize), or null. */
  get picture(): I420Frame | null {
    return this.decoder?.latest ?? null;
  }
}
