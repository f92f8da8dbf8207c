/**
 * One recording of an event's program: subscribes to the ProgramTap, cuts the frames into
 * segments of `segmentMs` (at a video keyframe, asked for at the boundary), writes each through a
 * SegmentWriter (remux + age) into the store, and keeps the manifest beside them.
 *
 * The tap calls in synchronously from the mixer's hot path; frames are copied into a bounded queue
 * that one async pump drains, so a slow disk never stalls the mix. A queue that overflows drops
 * frames, counted and logged (video then waits for the next keyframe, which is asked for).
 *
 * Audio comes out of the mixer before video of the same media time (video has an encode to go
 * through), so audio is held until a video frame with a later time has arrived (or `audioHoldMs`
 * has passed): frames reach the pump in media-time order and a cut at a keyframe splits audio
 * exactly there.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Logger } from '@mcu/control';
import type { ProgramTap, ProgramTapSink } from '@mcu/mixer';
import type { VideoCodec } from '@mcu/rtp';
import { segmentComment, signManifest } from './Manifest.js';
import type { Manifest, ManifestSegment, UnsignedManifest } from './Manifest.js';
import type { RecordingStore } from './RecordingStore.js';
import { SegmentWriter, containerFor } from './SegmentWriter.js';

export const RECORDING_DEFAULTS = Object.freeze({
  segmentMinutes: 10,
  /** Frames queued between the tap and the writer (about 15 s of audio and 30 fps video). */
  maxQueueFrames: 1500,
  /** Audio waits this long at most for video of the same time before it is written anyway. */
  audioHoldMs: 300,
  /** A recording with video waits this long for a first keyframe before starting a segment without video. */
  videoWaitMs: 1500,
  /** After a write error, a new segment is tried no sooner than this. */
  retryAfterMs: 1000,
});

export type RecordingState = 'recording' | 'stopped' | 'failed';

export interface RecordingCounters {
  bytesWritten(n: number): void;
  segmentWritten(): void;
  writeError(): void;
  dropped(reason: 'queue_full' | 'waiting_keyframe', n?: number): void;
}

export interface RecordingOptions {
  id?: string;
  tap: ProgramTap;
  store: RecordingStore;
  recipients: readonly string[];
  /** A rendition id, or false for audio only (resolve "the highest" before). */
  rendition: string | false;
  videoCodec: VideoCodec | null;
  segmentMinutes?: number;
  /** Overrides segmentMinutes (tests, benchmarks). */
  segmentMs?: number;
  maxQueueFrames?: number;
  audioHoldMs?: number;
  videoWaitMs?: number;
  counters?: RecordingCounters;
  log?: Logger;
  now?: () => number;
}

interface QueuedFrame {
  video: boolean;
  data: Uint8Array;
  mediaMs: number;
  durationMs: number;
  keyframe: boolean;
  width: number;
  height: number;
}

interface OpenSegment {
  entry: ManifestSegment;
  writer: SegmentWriter;
  keyframeAsked: boolean;
  /** Stored bytes already reported to the counters. */
  counted: number;
}

export interface RecordingEvents {
  segment: [ManifestSegment];
  error: [Error];
  stopped: [Manifest];
}

export interface RecordingSummary {
  id: string;
  eventId: string;
  state: RecordingState;
  startedAt: string;
  stoppedAt: string | null;
  rendition: string | null;
  durationMs: number;
  size: number;
  segmentCount: number;
  dropped: { queueFull: number; waitingKeyframe: number };
  writeErrors: number;
  /** Frames written into segments. */
  frames: { audio: number; video: number };
}

export class Recording extends EventEmitter<RecordingEvents> {
  readonly id: string;
  readonly eventId: string;
  readonly startedAt = new Date().toISOString();
  private stoppedAt: string | null = null;
  private stateValue: RecordingState = 'recording';
  private readonly segmentMs: number;
  private readonly segmentMinutes: number;
  private readonly maxQueue: number;
  private readonly audioHoldMs: number;
  private readonly videoWaitMs: number;
  /** Known only here and inside the segments (Manifest.ts). */
  private readonly chainKey = randomBytes(32);
  private readonly segments: ManifestSegment[] = [];
  private current: OpenSegment | null = null;
  private readonly queue: QueuedFrame[] = [];
  private readonly heldAudio: QueuedFrame[] = [];
  /** Audio that came before the first keyframe of a segment with video (at most videoWaitMs). */
  private preroll: QueuedFrame[] = [];
  private pumping: Promise<void> | null = null;
  private unsubscribe: (() => void) | null = null;
  private videoNeedsKeyframe = true;
  private retryAt = 0;
  private stopping: Promise<Manifest> | null = null;
  private manifestWrite: Promise<void> = Promise.resolve();
  private firstMediaMs = NaN;
  private lastMediaMs = NaN;
  private readonly counts = { queueFull: 0, waitingKeyframe: 0, writeErrors: 0, audio: 0, video: 0 };
  private readonly now: () => number;

  constructor(private readonly opts: RecordingOptions) {
    super();
    this.id = opts.id ?? randomUUID();
    this.eventId = opts.tap.eventId;
    this.segmentMinutes = opts.segmentMinutes ?? RECORDING_DEFAULTS.segmentMinutes;
    this.segmentMs = opts.segmentMs ?? this.segmentMinutes * 60_000;
    this.maxQueue = opts.maxQueueFrames ?? RECORDING_DEFAULTS.maxQueueFrames;
    this.audioHoldMs = opts.audioHoldMs ?? RECORDING_DEFAULTS.audioHoldMs;
    this.videoWaitMs = opts.videoWaitMs ?? RECORDING_DEFAULTS.videoWaitMs;
    this.now = opts.now ?? (() => performance.now());
    if (opts.rendition !== false && opts.videoCodec === null) throw new RangeError('a recording with video needs its codec');
  }

  get state(): RecordingState {
    return this.stateValue;
  }

  private get withVideo(): boolean {
    return this.opts.rendition !== false;
  }

  /** Writes the first manifest and subscribes to the program. */
  async start(): Promise<void> {
    await this.saveManifest();
    const sink: ProgramTapSink = {
      audio: (f) => this.onAudio(f.data, f.mediaMs, f.durationMs),
      video: (f) => this.onVideo(f.data, f.mediaMs, f.keyframe, f.width, f.height),
    };
    this.unsubscribe = this.opts.tap.subscribe(sink, { rendition: this.opts.rendition });
    this.opts.log?.info({ event: this.eventId, recording: this.id, rendition: this.opts.rendition, recipients: this.opts.recipients.length }, 'recording started');
  }

  // --- tap side (synchronous, from the mixer) ---

  private onAudio(data: Uint8Array, mediaMs: number, durationMs: number): void {
    if (this.stateValue !== 'recording' || this.stopping) return;
    const f: QueuedFrame = { video: false, data: new Uint8Array(data), mediaMs, durationMs, keyframe: true, width: 0, height: 0 };
    if (!this.withVideo) {
      this.enqueue(f);
      return;
    }
    this.heldAudio.push(f);
    while (this.heldAudio.length > 0 && this.heldAudio[0].mediaMs < mediaMs - this.audioHoldMs) this.enqueue(this.heldAudio.shift()!);
  }

  private onVideo(data: Uint8Array, mediaMs: number, keyframe: boolean, width: number, height: number): void {
    if (this.stateValue !== 'recording' || this.stopping) return;
    while (this.heldAudio.length > 0 && this.heldAudio[0].mediaMs < mediaMs) this.enqueue(this.heldAudio.shift()!);
    if (this.videoNeedsKeyframe && !keyframe) {
      this.counts.waitingKeyframe++;
      this.opts.counters?.dropped('waiting_keyframe');
      return;
    }
    this.videoNeedsKeyframe = false;
    this.enqueue({ video: true, data: new Uint8Array(data), mediaMs, durationMs: 0, keyframe, width, height });
  }

  private enqueue(f: QueuedFrame): void {
    if (this.queue.length >= this.maxQueue) {
      this.counts.queueFull++;
      this.opts.counters?.dropped('queue_full');
      if (this.counts.queueFull === 1 || this.counts.queueFull % 500 === 0) {
        this.opts.log?.warn({ event: this.eventId, recording: this.id, dropped: this.counts.queueFull, queued: this.queue.length }, 'recording cannot keep up: frames dropped');
      }
      if (f.video && this.withVideo) {
        this.videoNeedsKeyframe = true;
        this.opts.tap.requestKeyframe(this.opts.rendition as string);
      }
      return;
    }
    this.queue.push(f);
    this.pumping ??= this.pump().finally(() => {
      this.pumping = null;
      if (this.queue.length > 0 && this.stateValue === 'recording') this.pumping ??= this.pump();
    });
  }

  // --- writer side (one async pump) ---

  private async pump(): Promise<void> {
    while (this.queue.length > 0) {
      const f = this.queue.shift()!;
      try {
        await this.handle(f);
      } catch (err) {
        await this.writeFailed(err as Error);
      }
    }
  }

  private async handle(f: QueuedFrame): Promise<void> {
    if (Number.isNaN(this.firstMediaMs)) this.firstMediaMs = f.mediaMs;
    this.lastMediaMs = Math.max(Number.isNaN(this.lastMediaMs) ? f.mediaMs : this.lastMediaMs, f.mediaMs + f.durationMs);
    let seg = this.current;
    if (seg !== null) {
      const elapsed = f.mediaMs - seg.entry.startMediaMs;
      if (this.withVideo) {
        if (f.video && f.keyframe && (!seg.entry.video || elapsed >= this.segmentMs)) {
          await this.finishSegment();
          seg = null;
        } else if (seg.entry.video && elapsed >= this.segmentMs && !seg.keyframeAsked) {
          seg.keyframeAsked = true;
          this.opts.tap.requestKeyframe(this.opts.rendition as string);
        }
      } else if (elapsed >= this.segmentMs) {
        await this.finishSegment();
        seg = null;
      }
    }
    if (seg === null) {
      if (this.now() < this.retryAt) return;
      if (this.withVideo && !f.video) {
        this.preroll.push(f);
        if (this.preroll[this.preroll.length - 1].mediaMs - this.preroll[0].mediaMs < this.videoWaitMs) return;
        // No picture in time: this segment is sound only; the first keyframe starts the next.
        seg = await this.openSegment(this.preroll[0].mediaMs, false);
        const frames = this.preroll;
        this.preroll = [];
        for (const a of frames) await this.write(seg, a);
        return;
      }
      if (this.withVideo && f.video && !f.keyframe) return;
      seg = await this.openSegment(this.withVideo && this.preroll.length > 0 ? Math.min(this.preroll[0].mediaMs, f.mediaMs) : f.mediaMs, this.withVideo && f.video);
      const frames = this.preroll;
      this.preroll = [];
      for (const a of frames) await this.write(seg, a);
    }
    if (f.video && !seg.entry.video) return;
    await this.write(seg, f);
  }

  private async write(seg: OpenSegment, f: QueuedFrame): Promise<void> {
    const seconds = (f.mediaMs - seg.entry.startMediaMs) / 1000;
    if (f.video) {
      await seg.writer.addVideo(f.data, seconds, f.keyframe, f.width, f.height);
      this.counts.video++;
    } else {
      await seg.writer.addAudio(f.data, seconds, f.durationMs / 1000);
      this.counts.audio++;
    }
    if (seg.writer.error) throw seg.writer.error;
    this.countBytes(seg, seg.writer.bytesStored);
  }

  /** Reports what the segment stored since the last report (its writes complete between frames too). */
  private countBytes(seg: OpenSegment, stored: number): void {
    if (stored > seg.counted) this.opts.counters?.bytesWritten(stored - seg.counted);
    seg.counted = Math.max(seg.counted, stored);
  }

  private async openSegment(startMediaMs: number, video: boolean): Promise<OpenSegment> {
    const index = this.segments.length;
    const videoCodec = video ? this.opts.videoCodec : null;
    const container = containerFor(videoCodec);
    const name = `segment-${String(index).padStart(5, '0')}.${container}.age`;
    const sink = await this.opts.store.openSegment(this.eventId, this.id, name);
    const prev = index === 0 ? '-' : (this.segments[index - 1].sha256 ?? '-');
    const writer = new SegmentWriter({
      recipients: this.opts.recipients,
      videoCodec,
      sink,
      comment: segmentComment({ recording: this.id, segment: index, prev, key: this.chainKey.toString('hex') }),
      title: `event ${this.eventId} recording ${this.id} segment ${index}`,
    });
    const entry: ManifestSegment = {
      index,
      name,
      container,
      video,
      start: new Date(startMediaMs).toISOString(),
      startMediaMs,
      durationMs: 0,
      size: 0,
      sha256: null,
      complete: false,
    };
    this.segments.push(entry);
    this.current = { entry, writer, keyframeAsked: false, counted: 0 };
    await this.saveManifest();
    return this.current;
  }

  private async finishSegment(): Promise<void> {
    const seg = this.current;
    if (!seg) return;
    this.current = null;
    const result = await seg.writer.finish();
    this.countBytes(seg, result.size);
    Object.assign(seg.entry, { durationMs: result.durationMs, size: result.size, sha256: result.sha256, complete: true });
    this.opts.counters?.segmentWritten();
    await this.saveManifest();
    this.emit('segment', { ...seg.entry });
  }

  private async writeFailed(err: Error): Promise<void> {
    this.counts.writeErrors++;
    this.opts.counters?.writeError();
    this.opts.log?.error({ event: this.eventId, recording: this.id, err: err.message }, 'recording write failed: the segment ends here');
    const seg = this.current;
    this.current = null;
    if (seg) {
      seg.entry.size = seg.writer.bytesStored;
      this.countBytes(seg, seg.entry.size);
      await seg.writer.abort();
    }
    this.retryAt = this.now() + RECORDING_DEFAULTS.retryAfterMs;
    this.videoNeedsKeyframe = true;
    if (this.withVideo) this.opts.tap.requestKeyframe(this.opts.rendition as string);
    await this.saveManifest().catch(() => undefined);
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  /** Stops: the queued frames are written, the last segment is ended, the manifest is final. Idempotent. */
  stop(): Promise<Manifest> {
    this.stopping ??= (async () => {
      this.unsubscribe?.();
      this.unsubscribe = null;
      for (const a of this.heldAudio.splice(0)) this.enqueue(a);
      while (this.pumping) await this.pumping;
      try {
        if (this.current === null && this.preroll.length > 0) {
          const seg = await this.openSegment(this.preroll[0].mediaMs, false);
          for (const a of this.preroll.splice(0)) await this.write(seg, a);
        }
        await this.finishSegment();
      } catch (err) {
        await this.writeFailed(err as Error);
      }
      this.stateValue = this.counts.writeErrors > 0 && this.segments.every((s) => !s.complete) ? 'failed' : 'stopped';
      this.stoppedAt = new Date().toISOString();
      const manifest = await this.saveManifest();
      this.opts.log?.info({ event: this.eventId, recording: this.id, segments: this.segments.length, bytes: this.summary().size }, 'recording stopped');
      this.emit('stopped', manifest);
      return manifest;
    })();
    return this.stopping;
  }

  manifest(): Manifest {
    const unsigned: UnsignedManifest = {
      version: 1,
      id: this.id,
      eventId: this.eventId,
      state: this.stateValue,
      startedAt: this.startedAt,
      stoppedAt: this.stoppedAt,
      recipients: [...this.opts.recipients],
      rendition: this.opts.rendition === false ? null : this.opts.rendition,
      segmentMinutes: this.segmentMinutes,
      segments: this.segments.map((s) => ({ ...s })),
    };
    return signManifest(unsigned, this.chainKey);
  }

  /** Saves writes in order (a later manifest never overtaken by an earlier one). */
  private saveManifest(): Promise<Manifest> {
    const m = this.manifest();
    const text = JSON.stringify(m, null, 2);
    const write = this.manifestWrite.then(() => this.opts.store.putManifest(this.eventId, this.id, text));
    this.manifestWrite = write.catch(() => undefined);
    return write.then(() => m);
  }

  /** The segments with the one being written (its size so far). */
  segmentList(): ManifestSegment[] {
    return this.segments.map((s) => (s === this.current?.entry ? { ...s, size: this.current.writer.bytesStored, durationMs: Math.max(0, Math.round(this.lastMediaMs - s.startMediaMs)) } : { ...s }));
  }

  summary(): RecordingSummary {
    const segments = this.segmentList();
    return {
      id: this.id,
      eventId: this.eventId,
      state: this.stateValue,
      startedAt: this.startedAt,
      stoppedAt: this.stoppedAt,
      rendition: this.opts.rendition === false ? null : this.opts.rendition,
      durationMs: Number.isNaN(this.firstMediaMs) ? 0 : Math.round(this.lastMediaMs - this.firstMediaMs),
      size: segments.reduce((n, s) => n + s.size, 0),
      segmentCount: segments.length,
      dropped: { queueFull: this.counts.queueFull, waitingKeyframe: this.counts.waitingKeyframe },
      writeErrors: this.counts.writeErrors,
      frames: { audio: this.counts.audio, video: this.counts.video },
    };
  }

  get queued(): number {
    return this.queue.length;
  }
}
