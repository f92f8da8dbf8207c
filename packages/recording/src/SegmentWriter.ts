/**
 * One segment of a recording: the program's encoded frames remuxed (mediabunny, no decode, no
 * encode) into WebM (VP8 + Opus, or Opus alone) or fragmented MP4 (H.264 + Opus), written
 * append-only straight into an age encryption stream (age-encryption.org/v1: a fresh file key
 * wrapped for each recipient, ChaCha20-Poly1305 in 64 KiB chunks), whose ciphertext goes to the
 * store as it is produced. The plaintext exists only in memory, a chunk at a time.
 *
 * Both containers are written in pieces that stand alone (Matroska clusters without a size,
 * MP4 fragments), so a segment cut short by a crash plays up to its last whole age chunk.
 */
import { createHash } from 'node:crypto';
import {
  EncodedAudioPacketSource,
  EncodedPacket,
  EncodedVideoPacketSource,
  Mp4OutputFormat,
  Output,
  StreamTarget,
  WebMOutputFormat,
} from 'mediabunny';
import type { StreamTargetChunk } from 'mediabunny';
import { AgeStreamWriter } from './AgeStream.js';
import type { VideoCodec } from '@mcu/rtp';
import type { SegmentSink } from './RecordingStore.js';

export type SegmentContainer = 'webm' | 'mp4';

/** Plaintext gathered by the muxer before it goes to the age stream (a crash loses at most this and one age chunk). */
const MUX_CHUNK = 16 * 1024;

export interface SegmentWriterOptions {
  recipients: readonly string[];
  /** null: audio only. */
  videoCodec: VideoCodec | null;
  sink: SegmentSink;
  /** Written into the segment's metadata (inside the encryption): see Manifest.ts, the chain. */
  comment: string;
  title?: string;
}

export function containerFor(videoCodec: VideoCodec | null): SegmentContainer {
  return videoCodec === 'h264' ? 'mp4' : 'webm';
}

export interface SegmentResult {
  /** Bytes stored (ciphertext). */
  size: number;
  /** SHA-256 of the stored bytes, hex. */
  sha256: string;
  /** Media duration, ms (last frame's end). */
  durationMs: number;
  frames: { audio: number; video: number };
}

export class SegmentWriter {
  readonly container: SegmentContainer;
  private readonly output: Output;
  private readonly audio: EncodedAudioPacketSource;
  private readonly video: EncodedVideoPacketSource | null;
  private readonly hash = createHash('sha256');
  private stored = 0;
  private audioFrames = 0;
  private videoFrames = 0;
  private endMs = 0;
  private lastAudioS = -Infinity;
  private lastVideoS = -Infinity;
  private heldVideo: { data: Uint8Array; seconds: number; keyframe: boolean; width: number; height: number } | null = null;
  private readonly age: Promise<AgeStreamWriter>;
  private readonly started: Promise<void>;
  private failed: Error | null = null;
  /** `started` has resolved: frames skip awaiting it (one promise hop less per frame). */
  private running = false;

  constructor(private readonly opts: SegmentWriterOptions) {
    this.container = containerFor(opts.videoCodec);
    // The container's bytes go straight into the age stream, whose ciphertext goes to the store;
    // the WritableStream's promises carry the store's backpressure back to the muxer.
    const age = AgeStreamWriter.open(opts.recipients, async (chunk) => {
      this.hash.update(chunk);
      this.stored += chunk.length;
      try {
        await opts.sink.write(chunk);
      } catch (err) {
        this.failed ??= err as Error;
        throw err;
      }
    });
    age.catch((err) => {
      this.failed ??= err as Error;
    });
    this.age = age;
    // The muxer's output is gathered in MUX_CHUNK pieces (mediabunny's chunked StreamTarget) before
    // it reaches the age stream: one stream write per 16 KiB rather than one per frame, which is
    // most of what a recording costs besides the muxing itself. Both containers are written
    // append-only (Matroska clusters without a size, MP4 fragments), checked here.
    let next = 0;
    const plain = new WritableStream<StreamTargetChunk>({
      start: async () => {
        await age;
      },
      write: async (chunk) => {
        if (chunk.position !== next) throw new Error(`muxer wrote at ${chunk.position}, not at the end (${next}): the container must be append-only`);
        next += chunk.data.byteLength;
        await (await age).write(chunk.data);
      },
      close: async () => (await age).end(),
    });
    const format =
      this.container === 'mp4'
        ? new Mp4OutputFormat({ fastStart: 'fragmented', minimumFragmentDuration: 1 })
        : new WebMOutputFormat({ appendOnly: true, minimumClusterDuration: 1 });
    this.output = new Output({ format, target: new StreamTarget(plain, { chunked: true, chunkSize: MUX_CHUNK }) });
    this.audio = new EncodedAudioPacketSource('opus');
    this.video = opts.videoCodec === null ? null : new EncodedVideoPacketSource(opts.videoCodec === 'h264' ? 'avc' : 'vp8');
    if (this.video) this.output.addVideoTrack(this.video, { frameRate: 30 });
    this.output.addAudioTrack(this.audio);
    this.output.setMetadataTags({ comment: opts.comment, ...(opts.title ? { title: opts.title } : {}) });
    this.started = this.output.start();
    this.started.then(
      () => (this.running = true),
      (err) => {
        this.failed ??= err as Error;
      },
    );
  }

  /** Ciphertext bytes stored so far. */
  get bytesStored(): number {
    return this.stored;
  }

  get error(): Error | null {
    return this.failed;
  }

  /** Adds an Opus frame at `seconds` from the segment's start; `data` is the caller's own copy (kept until written). */
  async addAudio(data: Uint8Array, seconds: number, durationS: number): Promise<void> {
    if (!this.running) await this.started;
    // Matroska and MP4 need non-decreasing timestamps per track.
    if (seconds < this.lastAudioS) return;
    this.lastAudioS = seconds;
    const meta = this.audioFrames === 0 ? { decoderConfig: { codec: 'opus', numberOfChannels: 1, sampleRate: 48_000 } } : undefined;
    this.audioFrames++;
    this.endMs = Math.max(this.endMs, (seconds + durationS) * 1000);
    await this.audio.add(new EncodedPacket(data, 'key', seconds, durationS), meta);
  }

  /**
   * Adds a video frame; the first must be a keyframe with its size; `data` as for audio. Each
   * frame is handed to the muxer when the next arrives, with the real gap as its duration: a
   * fragmented MP4 writes sample durations, not timestamps, and a program below 30 fps would
   * otherwise drift ahead of its sound.
   */
  async addVideo(data: Uint8Array, seconds: number, keyframe: boolean, width: number, height: number): Promise<void> {
    if (!this.video) return;
    if (!this.running) await this.started;
    if (seconds <= this.lastVideoS) seconds = this.lastVideoS + 0.001;
    this.lastVideoS = seconds;
    const held = this.heldVideo;
    this.heldVideo = { data, seconds, keyframe, width, height };
    this.endMs = Math.max(this.endMs, seconds * 1000);
    if (held) await this.writeVideo(held, seconds - held.seconds);
  }

  private async writeVideo(f: { data: Uint8Array; seconds: number; keyframe: boolean; width: number; height: number }, durationS: number): Promise<void> {
    const codec = this.opts.videoCodec === 'h264' ? 'avc1.42e01f' : 'vp8';
    const meta = this.videoFrames === 0 ? { decoderConfig: { codec, codedWidth: f.width, codedHeight: f.height } } : undefined;
    this.videoFrames++;
    this.endMs = Math.max(this.endMs, (f.seconds + durationS) * 1000);
    await this.video!.add(new EncodedPacket(f.data, f.keyframe ? 'key' : 'delta', f.seconds, durationS), meta);
  }

  /** Ends the container and the age stream (its last chunk), and closes the stored object. */
  async finish(): Promise<SegmentResult> {
    await this.started;
    const held = this.heldVideo;
    this.heldVideo = null;
    if (held) await this.writeVideo(held, 1 / 30);
    await this.output.finalize();
    // finalize() closes the stream, which seals the last age chunk.
    await (await this.age).end();
    await this.opts.sink.close();
    if (this.failed) throw this.failed;
    return {
      size: this.stored,
      sha256: this.hash.digest('hex'),
      durationMs: Math.round(this.endMs),
      frames: { audio: this.audioFrames, video: this.videoFrames },
    };
  }

  /** Stops without ending the age stream: what is stored stays as a crash would leave it. */
  async abort(): Promise<void> {
    try {
      await this.output.cancel();
    } catch {
      // already failed
    }
    await this.opts.sink.close().catch(() => undefined);
  }
}
