/**
 * One ffmpeg encoder for one rendition: raw I420 frames in (IVF "I420" on stdin), VP8 (libvpx, in
 * IVF) or H.264 (libx264, in FLV) out, parsed into frames.
 *
 * Keyframe on demand, without restarting anything: ffmpeg cannot be told "keyframe now" through
 * a pipe, but it can be told per frame through the frame's timestamp. We choose every input pts
 * (a 90 kHz clock), always even; a frame that must be a keyframe gets an odd pts, and
 * `-force_key_frames expr:eq(mod(round(t*90000),2),1)` makes ffmpeg mark exactly that frame as
 * an I frame, which libvpx turns into VPX_EFLAG_FORCE_KF and libx264 (with `-forced-idr 1`) into
 * an IDR. `-enc_time_base 1:90000` keeps the odd tick through to the encoder, and passthrough
 * timing (`-fps_mode`/`-vsync passthrough`) keeps ffmpeg from dropping or duplicating frames. The
 * keyframe comes out on the very frame after the request (measured: the next frame, with
 * ffmpeg 4.1 and 5.1), costs no process start (~100 ms and a visible freeze), no second encoder
 * (twice the CPU) and no short GOP (bitrate spent on keyframes nobody asked for). Requests are
 * coalesced and rate-limited to one forced keyframe per `minKeyframeIntervalMs`; a request that
 * comes too soon is kept and served when the interval has passed, and a regular (GOP) keyframe
 * serves any request made before it was encoded. The regular keyframe interval is kept the same
 * way, by time rather than by frame count (ffmpeg's -g is only a backstop at twice the interval),
 * so that a viewer never waits longer than `keyframeIntervalMs` even when frames were dropped.
 *
 * Input frames are written straight from the caller's buffer (no copy): `encode` takes a `done`
 * callback that runs when the pipe has taken the frame, after which the buffer may be reused.
 * When ffmpeg falls behind by more than `maxQueuedFrames`, frames are dropped rather than queued,
 * so latency stays bounded. A crashed encoder is restarted; its first frame is a keyframe.
 */
import { EventEmitter } from 'node:events';
import type { FfmpegCommand } from 'fluent-ffmpeg';
import type { VideoCodec } from '@mcu/rtp';
import { FfmpegProcess, type ProcessLog } from './FfmpegProcess.js';
import { passthroughTimingArgs, resolveFfmpeg } from './FfmpegBinary.js';
import { IVF_FRAME_HEADER_BYTES, IvfReader, ivfFileHeader, writeIvfFrameHeader } from './Ivf.js';
import { FlvH264Reader } from './Flv.js';
import { i420FrameBytes } from './VideoFrame.js';

export interface VideoEncoderOptions {
  codec: VideoCodec;
  /** Encoded size. */
  width: number;
  height: number;
  /** Size of the frames given to `encode` when it differs (ffmpeg scales them down). */
  inputWidth?: number;
  inputHeight?: number;
  fps?: number;
  bitrateKbps?: number;
  /** Regular keyframe interval (GOP). */
  keyframeIntervalMs?: number;
  /** At most one forced keyframe per this interval. */
  minKeyframeIntervalMs?: number;
  threads?: number;
  /** libvpx -cpu-used (4..16 in realtime mode; higher is faster). */
  vp8CpuUsed?: number;
  /** Frames that may wait for ffmpeg before new ones are dropped. */
  maxQueuedFrames?: number;
  /** `nice -n` for the ffmpeg child (see FfmpegProcessOptions.niceness). */
  niceness?: number;
  name?: string;
  /** Deaths and restarts of the ffmpeg child are logged here. */
  log?: ProcessLog;
}

export const VIDEO_ENCODER_DEFAULTS = Object.freeze({
  fps: 30,
  bitrateKbps: 1000,
  keyframeIntervalMs: 3000,
  minKeyframeIntervalMs: 1000,
  threads: 1,
  vp8CpuUsed: 8,
  maxQueuedFrames: 2,
  niceness: 0,
});

/** One encoded frame: `data[0 .. length)` is valid during the call only. `mediaTimeMs` is what `encode` was given. */
export type EncodedFrameSink = (data: Uint8Array, length: number, keyframe: boolean, mediaTimeMs: number) => void;

export interface VideoEncoderStats {
  framesIn: number;
  framesOut: number;
  keyframes: number;
  forcedKeyframes: number;
  /** Frames refused: ffmpeg behind or not running. */
  dropped: number;
  /** Frames ffmpeg accepted but produced no output for (encoder-side frame dropping). */
  skippedByEncoder: number;
  bytesOut: number;
  restarts: number;
  /** From writing a frame to getting it back encoded: last and smoothed (EWMA, 1/16). */
  latencyMs: number;
  latencyAvgMs: number;
}

export interface VideoEncoderEvents {
  restart: [restarts: number];
  close: [];
}

const TICKS_PER_MS = 90;
const PENDING_CAPACITY = 64;

export class VideoEncoderProcess extends EventEmitter<VideoEncoderEvents> {
  readonly codec: VideoCodec;
  readonly width: number;
  readonly height: number;
  readonly inputWidth: number;
  readonly inputHeight: number;
  readonly frameBytes: number;
  readonly stats: VideoEncoderStats = {
    framesIn: 0,
    framesOut: 0,
    keyframes: 0,
    forcedKeyframes: 0,
    dropped: 0,
    skippedByEncoder: 0,
    bytesOut: 0,
    restarts: 0,
    latencyMs: 0,
    latencyAvgMs: 0,
  };
  onFrame: EncodedFrameSink | null = null;

  private readonly o: Required<Omit<VideoEncoderOptions, 'name' | 'inputWidth' | 'inputHeight' | 'log'>>;
  private readonly process: FfmpegProcess;
  private readonly ivf: IvfReader | null = null;
  private readonly flv: FlvH264Reader | null = null;
  // Frames written and not yet back: pts, media time and write time, in a ring.
  private readonly pendingPts = new Float64Array(PENDING_CAPACITY);
  private readonly pendingMedia = new Float64Array(PENDING_CAPACITY);
  private readonly pendingSentAt = new Float64Array(PENDING_CAPACITY);
  private pendingHead = 0;
  private pendingCount = 0;
  private runStartMediaMs = NaN;
  private lastPts = -2;
  private lastMediaOut = 0;
  private keyframePending = false;
  private keyframePendingSince = 0;
  private lastKeyframeAt = -Infinity;
  private closed = false;

  constructor(opts: VideoEncoderOptions) {
    super();
    if (opts.codec !== 'vp8' && opts.codec !== 'h264') throw new RangeError(`unsupported video codec ${String(opts.codec)}`);
    this.o = {
      ...VIDEO_ENCODER_DEFAULTS,
      ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)),
    } as Required<Omit<VideoEncoderOptions, 'name' | 'inputWidth' | 'inputHeight' | 'log'>>;
    this.codec = opts.codec;
    this.width = opts.width;
    this.height = opts.height;
    this.inputWidth = opts.inputWidth ?? opts.width;
    this.inputHeight = opts.inputHeight ?? opts.height;
    for (const [w, h] of [
      [this.width, this.height],
      [this.inputWidth, this.inputHeight],
    ]) {
      if (!Number.isInteger(w) || !Number.isInteger(h) || w < 16 || h < 16 || w % 2 !== 0 || h % 2 !== 0 || w > 8192 || h > 8192) {
        throw new RangeError(`encoder size ${w}x${h} must be even and between 16 and 8192`);
      }
    }
    this.frameBytes = i420FrameBytes(this.inputWidth, this.inputHeight);
    if (this.codec === 'vp8') this.ivf = new IvfReader((d, n, pts) => this.encodedVp8(d, n, pts));
    else this.flv = new FlvH264Reader((d, n, key, ms) => this.encodedH264(d, n, key, ms));
    this.process = new FfmpegProcess({
      name: opts.name ?? `encoder ${this.codec} ${this.width}x${this.height}`,
      // Headers and one frame in the pipe beyond what maxQueuedFrames allows are never refused.
      maxQueuedBytes: (this.o.maxQueuedFrames + 1) * (this.frameBytes + IVF_FRAME_HEADER_BYTES) + 64,
      niceness: this.o.niceness,
      log: opts.log,
      configure: (cmd) => this.configure(cmd),
      onStdout: (chunk) => (this.ivf ?? this.flv)!.push(chunk),
      onSpawn: () => {
        this.ivf?.reset();
        this.flv?.reset();
        this.pendingCount = 0;
        this.runStartMediaMs = NaN;
        this.lastPts = -2;
        this.process.write(ivfFileHeader('I420', this.inputWidth, this.inputHeight));
      },
    });
    this.process.on('restart', (n) => {
      this.stats.restarts = n;
      this.emit('restart', n);
    });
    this.process.start();
  }

  get pid(): number | null {
    return this.process.pid;
  }

  get isRunning(): boolean {
    return this.process.isRunning;
  }

  get restarts(): number {
    return this.process.restarts;
  }

  /** True while a requested keyframe has not been produced yet. */
  get keyframeRequested(): boolean {
    return this.keyframePending;
  }

  stderrTail(): string[] {
    return this.process.stderrTail();
  }

  cpuTimeMs(): number {
    return this.process.cpuTimeMs();
  }

  /** Whether `encode` would take a frame now (running, and ffmpeg not behind by more than maxQueuedFrames). */
  canAccept(): boolean {
    return (
      !this.closed &&
      this.process.isRunning &&
      this.pendingCount < PENDING_CAPACITY &&
      this.process.queuedBytes <= this.o.maxQueuedFrames * (this.frameBytes + IVF_FRAME_HEADER_BYTES)
    );
  }

  /** Most input frames this encoder holds at once (whose `done` has not run yet). */
  get maxFramesHeld(): number {
    return this.o.maxQueuedFrames + 1;
  }

  /** Asks for a keyframe as soon as the rate limit allows (coalesced with pending requests). */
  requestKeyframe(nowMs: number = performance.now()): void {
    if (this.keyframePending) return;
    this.keyframePending = true;
    this.keyframePendingSince = nowMs;
  }

  /**
   * Encodes one I420 frame of inputWidth × inputHeight taken at `mediaTimeMs` (returned with the
   * encoded frame). `frame` must not change until `done` runs (called whatever happens, also when
   * the frame is refused: then this returns false).
   */
  encode(frame: Uint8Array, mediaTimeMs: number, done?: () => void, nowMs: number = performance.now()): boolean {
    if (!this.canAccept()) {
      this.stats.dropped++;
      done?.();
      return false;
    }
    if (Number.isNaN(this.runStartMediaMs)) this.runStartMediaMs = mediaTimeMs;
    const firstOfRun = this.lastPts < 0;
    let pts = 2 * Math.round(((mediaTimeMs - this.runStartMediaMs) * TICKS_PER_MS) / 2);
    if (pts <= this.lastPts) pts = this.lastPts + 2;
    this.lastPts = pts;
    const sinceKeyframe = nowMs - this.lastKeyframeAt;
    if (firstOfRun) {
      // Every run starts with a keyframe anyway, and its pts must stay even: ffmpeg ≥ 5.1
      // measures t from the first frame, so an odd first pts would flip every later frame's parity.
      this.lastKeyframeAt = nowMs;
    } else if (this.keyframePending && sinceKeyframe >= this.o.minKeyframeIntervalMs) {
      pts += 1; // odd: force a keyframe (see the file comment)
      this.keyframePending = false;
      this.lastKeyframeAt = nowMs;
      this.stats.forcedKeyframes++;
    } else if (sinceKeyframe >= this.o.keyframeIntervalMs) {
      // The regular keyframe, by time: a GOP counted in frames stretches when frames are dropped.
      pts += 1;
      this.lastKeyframeAt = nowMs;
    }
    const header = Buffer.allocUnsafe(IVF_FRAME_HEADER_BYTES);
    writeIvfFrameHeader(header, 0, this.frameBytes, pts);
    this.process.write(header);
    if (!this.process.write(frame.subarray(0, this.frameBytes), done)) {
      this.stats.dropped++;
      return false;
    }
    const slot = (this.pendingHead + this.pendingCount) % PENDING_CAPACITY;
    this.pendingPts[slot] = pts;
    this.pendingMedia[slot] = mediaTimeMs;
    this.pendingSentAt[slot] = nowMs;
    this.pendingCount++;
    this.stats.framesIn++;
    return true;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.process.close();
    this.onFrame = null;
    this.emit('close');
    this.removeAllListeners();
  }

  private configure(cmd: FfmpegCommand): void {
    const o = this.o;
    // Regular keyframes are forced by time in encode(); the encoder's own GOP is only a backstop.
    const gop = Math.max(1, Math.round((2 * o.keyframeIntervalMs * o.fps) / 1000));
    const kbps = Math.round(o.bitrateKbps);
    const scaled = this.inputWidth !== this.width || this.inputHeight !== this.height;
    cmd
      .inputOptions(['-hide_banner', '-nostats', '-loglevel', 'error', '-probesize', '32', '-analyzeduration', '0'])
      .inputFormat('ivf')
      .outputOptions([
        ...(scaled ? ['-vf', `scale=${this.width}:${this.height}:flags=area`] : []),
        '-force_key_frames',
        'expr:eq(mod(round(t*90000),2),1)',
        '-enc_time_base',
        '1:90000',
        ...passthroughTimingArgs(resolveFfmpeg()),
        // The frame rate rate control plans with (frames come untimed through passthrough).
        '-r',
        String(o.fps),
        '-pix_fmt',
        'yuv420p',
        '-threads',
        String(o.threads),
        '-g',
        String(gop),
        '-flush_packets',
        '1',
      ]);
    if (this.codec === 'vp8') {
      cmd
        .videoCodec('libvpx')
        .outputOptions([
          // Realtime, no look-ahead, each frame decodable after a loss of the previous: WebRTC's profile.
          ...['-deadline', 'realtime', '-cpu-used', String(o.vp8CpuUsed), '-lag-in-frames', '0'],
          ...['-error-resilient', '1', '-auto-alt-ref', '0'],
          // CBR (min = max = target) with a one-second buffer.
          ...['-b:v', `${kbps}k`, '-minrate', `${kbps}k`, '-maxrate', `${kbps}k`, '-bufsize', `${kbps}k`],
        ])
        .format('ivf');
    } else {
      cmd
        .videoCodec('libx264')
        .outputOptions([
          ...['-preset', 'ultrafast', '-tune', 'zerolatency', '-profile:v', 'baseline', '-level:v', h264Level(this.width, this.height, o.fps)],
          ...['-bf', '0', '-forced-idr', '1'],
          // The frame rate x264's rate control plans with. An ffmpeg before 5 (the bundled 2018
          // build) hands x264 the 1:90000 encoder time base as 90,000 fps instead of `-r`: a few
          // bits per frame, every picture flat grey at QP 51.
          ...['-x264-params', `fps=${o.fps}`],
          ...['-b:v', `${kbps}k`, '-maxrate', `${kbps}k`, '-bufsize', `${kbps}k`],
        ])
        .format('flv');
    }
  }

  /** Finds the frame an output belongs to (entries before it were skipped by the encoder). */
  private takePending(matches: (pts: number) => number): number {
    while (this.pendingCount > 0) {
      const i = this.pendingHead;
      const c = matches(this.pendingPts[i]);
      if (c > 0) return -1; // output older than anything pending (should not happen)
      this.pendingHead = (i + 1) % PENDING_CAPACITY;
      this.pendingCount--;
      if (c === 0) return i;
      this.stats.skippedByEncoder++;
    }
    return -1;
  }

  private encodedVp8(data: Uint8Array, length: number, pts: number): void {
    const i = this.takePending((p) => (p === pts ? 0 : p < pts ? -1 : 1));
    this.deliver(data, length, length > 0 && (data[0] & 0x01) === 0, i);
  }

  private encodedH264(data: Uint8Array, length: number, keyframe: boolean, timestampMs: number): void {
    // FLV has millisecond timestamps: the pending frame within a millisecond of it.
    const i = this.takePending((p) => {
      const d = p / TICKS_PER_MS - timestampMs;
      return Math.abs(d) <= 1 ? 0 : d < 0 ? -1 : 1;
    });
    this.deliver(data, length, keyframe, i);
  }

  private deliver(data: Uint8Array, length: number, keyframe: boolean, pendingIndex: number): void {
    const now = performance.now();
    let media = this.lastMediaOut;
    if (pendingIndex >= 0) {
      media = this.pendingMedia[pendingIndex];
      const sentAt = this.pendingSentAt[pendingIndex];
      const latency = now - sentAt;
      this.stats.latencyMs = latency;
      this.stats.latencyAvgMs = this.stats.framesOut === 0 ? latency : this.stats.latencyAvgMs + (latency - this.stats.latencyAvgMs) / 16;
      if (keyframe) {
        if (sentAt > this.lastKeyframeAt) this.lastKeyframeAt = sentAt;
        if (this.keyframePending && sentAt >= this.keyframePendingSince) this.keyframePending = false;
      }
    }
    this.lastMediaOut = media;
    this.stats.framesOut++;
    this.stats.bytesOut += length;
    if (keyframe) this.stats.keyframes++;
    this.onFrame?.(data, length, keyframe, media);
  }
}

/** Lowest H.264 level (Table A-1) whose frame size and macroblock rate fit. */
function h264Level(width: number, height: number, fps: number): string {
  const mbs = Math.ceil(width / 16) * Math.ceil(height / 16);
  const rate = mbs * fps;
  if (mbs <= 1620 && rate <= 40_500) return '3.0';
  if (mbs <= 3600 && rate <= 108_000) return '3.1';
  if (mbs <= 8192 && rate <= 245_760) return '4.1';
  if (mbs <= 22_080 && rate <= 589_824) return '5.1';
  return '5.2';
}
