/**
 * One ffmpeg decoder for one visible source: compressed frames in (IVF on stdin), I420 frames out
 * at the size the source's tile needs (y4m on stdout), scaled by ffmpeg's swscale (SIMD, and
 * better filtering than anything we would write per pixel in TypeScript).
 *
 * Latency, measured with ffmpeg 5.1 feeding one frame every 100 ms: with these options a frame
 * comes back ~1 ms after it went in. What it took:
 * - IVF framing for H.264 too: a raw Annex-B input goes through ffmpeg's parser, which releases an
 *   access unit only when the next one starts (2–3 frames of delay);
 * - y4m output: the rawvideo muxer held each frame until the next arrived (one frame of delay);
 * - `-probesize 32 -analyzeduration 0`: no buffering of the first frames to probe the stream;
 * - `-threads 1`: frame threading would delay output by one frame per thread (tiles are small);
 * - NOT `-fflags nobuffer`: it discards the packets read while probing, i.e. the keyframe that
 *   starts the stream, and the decoder then waits a whole GOP.
 *
 * Output frames land in a small pool of buffers (no allocation per frame); `latest` is the newest
 * complete frame and stays valid until two more have arrived. Resizing the tile replaces the
 * process (`resize`), and the new one needs a keyframe: `needsKeyframe` says so, and so does the
 * `keyframeNeeded` event, which the owner turns into a PLI/FIR towards the source.
 */
import { EventEmitter } from 'node:events';
import type { FfmpegCommand } from 'fluent-ffmpeg';
import type { VideoCodec } from '@mcu/rtp';
import { FfmpegProcess, type ProcessLog } from './FfmpegProcess.js';
import { passthroughTimingArgs, resolveFfmpeg } from './FfmpegBinary.js';
import { IVF_FRAME_HEADER_BYTES, ivfFileHeader, writeIvfFrameHeader } from './Ivf.js';
import { Y4mReader } from './Y4m.js';
import type { I420Frame } from './VideoFrame.js';

export interface VideoDecoderOptions {
  codec: VideoCodec;
  /** Output size in pixels (even numbers for 4:2:0). */
  width: number;
  height: number;
  /**
   * 'stretch': scale to exactly width × height (the caller computed a size that keeps the aspect);
   * 'fit': keep the aspect inside width × height and pad with black.
   */
  fit?: 'stretch' | 'fit';
  /** Size the source is known to have (written in the IVF header; the bitstream has the last word). */
  sourceWidth?: number;
  sourceHeight?: number;
  /** Decoder threads (1: no frame-threading delay). */
  threads?: number;
  /** Frame buffers per output size (at least 3: one being written, `latest`, one spare). */
  poolSize?: number;
  /** Compressed bytes that may wait for stdin before frames are dropped. */
  maxQueuedBytes?: number;
  /** `nice -n` for the ffmpeg child (see FfmpegProcessOptions.niceness). */
  niceness?: number;
  name?: string;
  /** Deaths and restarts of the ffmpeg child are logged here. */
  log?: ProcessLog;
}

export interface VideoDecoderStats {
  framesIn: number;
  framesOut: number;
  /** Frames not passed to ffmpeg: stdin backed up, or not a keyframe while one is needed. */
  dropped: number;
  bytesIn: number;
  restarts: number;
  reconfigures: number;
}

export interface VideoDecoderEvents {
  frame: [frame: I420Frame];
  /** The (new) process needs a keyframe before it can decode anything. */
  keyframeNeeded: [];
  restart: [restarts: number];
  close: [];
}

class PooledFrame implements I420Frame {
  constructor(
    readonly data: Uint8Array,
    readonly width: number,
    readonly height: number,
  ) {}
}

export class VideoDecoderProcess extends EventEmitter<VideoDecoderEvents> {
  readonly codec: VideoCodec;
  readonly stats: VideoDecoderStats = { framesIn: 0, framesOut: 0, dropped: 0, bytesIn: 0, restarts: 0, reconfigures: 0 };
  /** The newest decoded frame (possibly from before a resize, at the old size); null before the first. */
  latest: I420Frame | null = null;
  /** performance.now() of the newest frame. */
  latestAtMs = 0;
  /** True from (re)start until a keyframe has been fed. */
  needsKeyframe = true;

  private width: number;
  private height: number;
  private readonly fit: 'stretch' | 'fit';
  private sourceWidth: number;
  private sourceHeight: number;
  private readonly threads: number;
  private readonly poolSize: number;
  private pool: PooledFrame[] = [];
  private poolNext = 0;
  private writing: PooledFrame | null = null;
  private pts = 0;
  private readonly process: FfmpegProcess;
  private readonly reader: Y4mReader;
  private closed = false;

  constructor(opts: VideoDecoderOptions) {
    super();
    if (opts.codec !== 'vp8' && opts.codec !== 'h264') throw new RangeError(`unsupported video codec ${String(opts.codec)}`);
    checkSize(opts.width, opts.height);
    this.codec = opts.codec;
    this.width = opts.width;
    this.height = opts.height;
    this.fit = opts.fit ?? 'stretch';
    this.sourceWidth = opts.sourceWidth ?? opts.width;
    this.sourceHeight = opts.sourceHeight ?? opts.height;
    this.threads = opts.threads ?? 1;
    this.poolSize = Math.max(3, opts.poolSize ?? 3);
    this.reader = new Y4mReader(
      (bytes, w, h) => this.acquire(bytes, w, h),
      (buffer) => this.frameDone(buffer),
    );
    this.process = new FfmpegProcess({
      name: opts.name ?? `decoder ${opts.codec}`,
      maxQueuedBytes: opts.maxQueuedBytes ?? 4 << 20,
      niceness: opts.niceness ?? 0,
      log: opts.log,
      configure: (cmd) => this.configure(cmd),
      onStdout: (chunk) => this.reader.push(chunk),
      onSpawn: () => {
        this.reader.reset();
        this.pts = 0;
        this.process.write(ivfFileHeader(this.codec === 'vp8' ? 'VP80' : 'H264', this.sourceWidth, this.sourceHeight));
      },
    });
    this.process.on('exit', () => {
      this.needsKeyframe = true;
    });
    this.process.on('restart', (n) => {
      this.stats.restarts = n;
      this.needsKeyframe = true;
      this.emit('restart', n);
      this.emit('keyframeNeeded');
    });
    this.process.start();
  }

  /** Output size of the current process. */
  get outputWidth(): number {
    return this.width;
  }

  get outputHeight(): number {
    return this.height;
  }

  get pid(): number | null {
    return this.process.pid;
  }

  get restarts(): number {
    return this.process.restarts;
  }

  stderrTail(): string[] {
    return this.process.stderrTail();
  }

  cpuTimeMs(): number {
    return this.process.cpuTimeMs();
  }

  /**
   * Feeds one compressed frame (a VP8 frame, or an H.264 access unit in Annex-B); the bytes are
   * copied. Returns false when the frame was dropped: a delta frame while a keyframe is needed,
   * or ffmpeg not keeping up (then a keyframe is needed too).
   */
  decode(frame: Uint8Array, length: number = frame.length, keyframe = false): boolean {
    if (this.closed) return false;
    this.stats.framesIn++;
    if (this.needsKeyframe && !keyframe) {
      this.stats.dropped++;
      return false;
    }
    const packet = Buffer.allocUnsafe(IVF_FRAME_HEADER_BYTES + length);
    writeIvfFrameHeader(packet, 0, length, this.pts);
    packet.set(frame.subarray(0, length), IVF_FRAME_HEADER_BYTES);
    // Our own pts, 1/30 s apart in a 1/90000 time base: ffmpeg passes frames through untimed anyway.
    this.pts += 3000;
    if (!this.process.write(packet)) {
      this.stats.dropped++;
      this.needsKeyframe = true;
      this.emit('keyframeNeeded');
      return false;
    }
    this.stats.bytesIn += length;
    if (keyframe) this.needsKeyframe = false;
    return true;
  }

  /**
   * New output size (a new tile size) or source size: replaces the ffmpeg process, which then
   * needs a keyframe. `latest` keeps the last frame at the old size until the new one delivers.
   */
  resize(width: number, height: number, sourceWidth = this.sourceWidth, sourceHeight = this.sourceHeight): void {
    checkSize(width, height);
    if (width === this.width && height === this.height && sourceWidth === this.sourceWidth && sourceHeight === this.sourceHeight) return;
    if (this.closed) return;
    this.width = width;
    this.height = height;
    this.sourceWidth = sourceWidth;
    this.sourceHeight = sourceHeight;
    this.needsKeyframe = true;
    this.process.reconfigure();
    this.stats.reconfigures = this.process.reconfigures;
    this.emit('keyframeNeeded');
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.process.close();
    this.emit('close');
    this.removeAllListeners();
  }

  private configure(cmd: FfmpegCommand): void {
    const w = this.width;
    const h = this.height;
    const scale =
      this.fit === 'stretch'
        ? `scale=${w}:${h}:flags=bilinear`
        : `scale=${w}:${h}:flags=bilinear:force_original_aspect_ratio=decrease,pad=${w}:${h}:-1:-1:black`;
    cmd
      .inputOptions(['-hide_banner', '-nostats', '-loglevel', 'error'])
      .inputOptions(['-probesize', '32', '-analyzeduration', '0', '-flags', 'low_delay', '-threads', String(this.threads)])
      .inputFormat('ivf')
      .outputOptions(['-vf', `${scale},format=yuv420p`, ...passthroughTimingArgs(resolveFfmpeg()), '-flush_packets', '1'])
      .format('yuv4mpegpipe');
  }

  private acquire(bytes: number, width: number, height: number): Uint8Array {
    let pool = this.pool;
    if (pool.length === 0 || pool[0].width !== width || pool[0].height !== height || pool[0].data.length < bytes) {
      pool = [];
      for (let i = 0; i < this.poolSize; i++) pool.push(new PooledFrame(new Uint8Array(bytes), width, height));
      this.pool = pool;
      this.poolNext = 0;
    }
    // Never hand out the buffer behind `latest`.
    let f = pool[this.poolNext];
    if (f === this.latest) {
      this.poolNext = (this.poolNext + 1) % pool.length;
      f = pool[this.poolNext];
    }
    this.poolNext = (this.poolNext + 1) % pool.length;
    this.writing = f;
    return f.data;
  }

  private frameDone(buffer: Uint8Array): void {
    const f = this.writing;
    if (!f || f.data !== buffer) return;
    this.writing = null;
    this.latest = f;
    this.latestAtMs = performance.now();
    this.stats.framesOut++;
    this.emit('frame', f);
  }
}

function checkSize(width: number, height: number): void {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 2 || height < 2 || width > 8192 || height > 8192) {
    throw new RangeError(`decoder output size ${width}x${height} is not a valid picture size`);
  }
}

