/**
 * One recording of an event's program: subscribes to the ProgramTap, cuts the frames into
 * segments of `segmentMs` (at a video keyframe, asked for at the boundary), writes each through a
 * SegmentWriter (remux + age) into the store, and keeps the manifest beside them.
 *
 * The tap calls in synchronously from the mixer's hot path; frames are copied into a bounded queue
 * that one async pump drains in passes (every `drainMs`, sooner when a quarter of the queue is
 * used: not one promise chain per frame), so a slow disk never stalls the mix. A queue that overflows drops
 * frames, counted and logged (video then waits for the next keyframe, which is asked for).
 *
 * Audio comes out of the mixer before video of the same media time (video has an encode to go
 * through), so audio is held until a video frame with a later time has arrived (or `audioHoldMs`
 * has passed): frames reach the pump in media-time order and a cut at a keyframe splits audio
 * exactly there.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Logger } from '@mcu/control';
import type { ProgramTap, ProgramTapSink } from '@mcu/mixer';
import type { VideoCodec } from '@mcu/rtp';
import { parseManifest, partMac, segmentComment, signManifest } from './Manifest.js';
import type { Manifest, ManifestPart, ManifestSegment, UnsignedManifest } from './Manifest.js';
import type { RecordingStore, SegmentSink } from './RecordingStore.js';
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
  /**
   * Queued frames are written in one pass at most this long after the first of them arrived
   * (sooner once a quarter of the queue is used), not one promise chain per frame as they come.
   */
  drainMs: 100,
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
  /** When the recording started (a continued one keeps its first start). */
  startedAt?: string;
  /**
   * Continue the recording `id` that another node held (a failover or handover): its manifest is
   * read from the store, and this node writes the next part from the next segment index on. A
   * recording whose last part is still open is waited for up to `waitMs` (a planned handover:
   * the old holder is closing its segment), then continued as it is (its node is gone).
   */
  resume?: { waitMs: number };
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
  sink: SegmentSink;
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
  readonly startedAt: string;
  private stoppedAt: string | null = null;
  private stateValue: RecordingState = 'recording';
  private readonly segmentMs: number;
  private readonly segmentMinutes: number;
  private readonly maxQueue: number;
  private readonly audioHoldMs: number;
  private readonly videoWaitMs: number;
  /** Known only here and inside the segments (Manifest.ts). */
  private readonly chainKey = randomBytes(32);
  private segments: ManifestSegment[] = [];
  /** Earlier parts (other holders), as their manifests recorded them. */
  private earlierParts: ManifestPart[] = [];
  /** This node's part of the recording. */
  private part: Omit<ManifestPart, 'mac'>;
  /** Resolves when the segments can be written (a continued recording has read its manifest). */
  private ready: Promise<void> = Promise.resolve();
  private abandoned = false;
  private current: OpenSegment | null = null;
  private readonly queue: QueuedFrame[] = [];
  private readonly heldAudio: QueuedFrame[] = [];
  /** Audio that came before the first keyframe of a segment with video (at most videoWaitMs). */
  private preroll: QueuedFrame[] = [];
  private pumping: Promise<void> | null = null;
  /** The pass that will drain the queue (see RECORDING_DEFAULTS.drainMs). */
  private drainTimer: NodeJS.Timeout | null = null;
  private readonly drainAt: number;
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
    this.startedAt = opts.startedAt ?? new Date().toISOString();
    this.part = { part: 0, startedAt: new Date().toISOString(), firstSegment: 0, closed: false, prev: null };
    this.segmentMinutes = opts.segmentMinutes ?? RECORDING_DEFAULTS.segmentMinutes;
    this.segmentMs = opts.segmentMs ?? this.segmentMinutes * 60_000;
    this.maxQueue = opts.maxQueueFrames ?? RECORDING_DEFAULTS.maxQueueFrames;
    this.audioHoldMs = opts.audioHoldMs ?? RECORDING_DEFAULTS.audioHoldMs;
    this.videoWaitMs = opts.videoWaitMs ?? RECORDING_DEFAULTS.videoWaitMs;
    this.drainAt = Math.max(1, Math.floor(this.maxQueue / 4));
    this.now = opts.now ?? (() => performance.now());
    if (opts.rendition !== false && opts.videoCodec === null) throw new RangeError('a recording with video needs its codec');
  }

  get state(): RecordingState {
    return this.stateValue;
  }

  private get withVideo(): boolean {
    return this.opts.rendition !== false;
  }

  /** What another node needs to continue this recording (public values only). */
  definition(): { id: string; recipients: string[]; rendition: string | false; segmentMinutes: number; startedAt: string } {
    return { id: this.id, recipients: [...this.opts.recipients], rendition: this.opts.rendition, segmentMinutes: this.segmentMinutes, startedAt: this.startedAt };
  }

  /** The part this node writes (0 unless it continues another node's recording). */
  get partNumber(): number {
    return this.part.part;
  }

  /**
   * Writes the first manifest and subscribes to the program. A continued recording subscribes
   * first (frames queue while the earlier parts are read) and resolves once it writes its part.
   */
  async start(): Promise<void> {
    if (!this.opts.resume) await this.saveManifest();
    const sink: ProgramTapSink = {
      audio: (f) => this.onAudio(f.data, f.mediaMs, f.durationMs),
      video: (f) => this.onVideo(f.data, f.mediaMs, f.keyframe, f.width, f.height),
    };
    this.unsubscribe = this.opts.tap.subscribe(sink, { rendition: this.opts.rendition });
    if (this.opts.resume) {
      this.ready = this.continueEarlierParts(this.opts.resume.waitMs);
      await this.ready;
      if (this.stateValue !== 'recording') return;
    }
    this.opts.log?.info({ event: this.eventId, recording: this.id, part: this.part.part, firstSegment: this.part.firstSegment, rendition: this.opts.rendition, recipients: this.opts.recipients.length }, this.part.part > 0 ? 'recording continued' : 'recording started');
  }

  /** Reads the recording's manifest and takes up after its last part (see `resume`). */
  private async continueEarlierParts(waitMs: number): Promise<void> {
    try {
      const deadline = this.now() + waitMs;
      let m: Manifest | null;
      for (;;) {
        const text = await this.opts.store.getManifest(this.eventId, this.id);
        m = text === null ? null : parseManifest(text);
        if (!m || m.state !== 'recording' || (m.parts?.at(-1)?.closed ?? false) || this.now() >= deadline) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      if (m && m.state !== 'recording') {
        // Stopped meanwhile (the cluster's copy of the event lagged behind): nothing to continue.
        this.stateValue = m.state;
        this.stoppedAt = m.stoppedAt;
        this.detach();
        return;
      }
      if (m) {
        this.segments = m.segments.map((s) => ({ ...s }));
        this.earlierParts = m.parts ?? [];
        const lastPart = this.earlierParts.at(-1);
        this.part = { part: lastPart ? lastPart.part + 1 : 1, startedAt: new Date().toISOString(), firstSegment: this.segments.length, closed: false, prev: await this.lastStoredSegment() };
        if (this.segments.length > 0) {
          this.firstMediaMs = this.segments[0].startMediaMs;
          this.lastMediaMs = Math.max(...this.segments.map((s) => s.startMediaMs + s.durationMs));
        }
        if (lastPart && !lastPart.closed) {
          this.opts.log?.warn({ event: this.eventId, recording: this.id, part: lastPart.part, kept: this.part.prev }, 'recording continued after its node stopped while writing: its last segment is kept as far as it was stored');
        }
      }
      await this.saveManifest();
    } catch (err) {
      this.opts.log?.error({ event: this.eventId, recording: this.id, err: (err as Error).message }, 'recording cannot be continued here');
      this.stateValue = 'failed';
      this.detach();
    }
  }

  /** The last segment of the earlier parts that has bytes in the store: what this part's first segment follows. */
  private async lastStoredSegment(): Promise<ManifestPart['prev']> {
    for (let i = this.segments.length - 1; i >= 0; i--) {
      const s = this.segments[i];
      if (s.complete && s.sha256 !== null) return { segment: s.index, size: s.size, sha256: s.sha256 };
      const stored = await this.opts.store.readSegment(this.eventId, this.id, s.name);
      if (!stored) continue;
      const hash = createHash('sha256');
      let size = 0;
      for await (const c of stored.stream) {
        hash.update(c as Uint8Array);
        size += (c as Uint8Array).length;
      }
      if (size > 0) return { segment: s.index, size, sha256: hash.digest('hex') };
    }
    return null;
  }

  private detach(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.queue.length = 0;
    this.cancelDrain();
    this.heldAudio.length = 0;
    this.preroll = [];
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
    if (this.pumping) return;
    if (this.queue.length >= this.drainAt) this.drain();
    else this.drainTimer ??= setTimeout(() => this.drain(), RECORDING_DEFAULTS.drainMs).unref();
  }

  /** Starts the pump now (if it is not running): the queued frames are written in one pass. */
  private drain(): void {
    this.cancelDrain();
    this.pumping ??= this.pump().finally(() => {
      this.pumping = null;
      if (this.queue.length > 0 && this.stateValue === 'recording') this.drain();
    });
  }

  private cancelDrain(): void {
    if (this.drainTimer) clearTimeout(this.drainTimer);
    this.drainTimer = null;
  }

  // --- writer side (one async pump) ---

  private async pump(): Promise<void> {
    await this.ready;
    while (this.queue.length > 0 && !this.abandoned) {
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
    // A part's first segment follows the last one stored by the part before (or none).
    const prev = index === this.part.firstSegment ? (this.part.prev?.sha256 ?? '-') : (this.segments[index - 1].sha256 ?? '-');
    const writer = new SegmentWriter({
      recipients: this.opts.recipients,
      videoCodec,
      sink,
      comment: segmentComment({ recording: this.id, segment: index, part: this.part.part, prev, key: this.chainKey.toString('hex') }),
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
      part: this.part.part,
    };
    this.segments.push(entry);
    this.current = { entry, writer, sink, keyframeAsked: false, counted: 0 };
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

  /**
   * Stops: the queued frames are written, the last segment is ended, the manifest is final.
   * `handOver`: another node continues the recording (a planned move): this part is closed the
   * same way, and the recording stays `recording` for the next part. Idempotent.
   */
  stop(opts: { handOver?: boolean } = {}): Promise<Manifest> {
    this.stopping ??= (async () => {
      this.unsubscribe?.();
      this.unsubscribe = null;
      await this.ready;
      if (this.stateValue !== 'recording') return this.manifest();
      for (const a of this.heldAudio.splice(0)) this.enqueue(a);
      if (this.queue.length > 0) this.drain();
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
      this.part.closed = true;
      if (!opts.handOver) {
        this.stateValue = this.counts.writeErrors > 0 && this.segments.every((s) => !s.complete) ? 'failed' : 'stopped';
        this.stoppedAt = new Date().toISOString();
      }
      const manifest = await this.saveManifest();
      this.opts.log?.info({ event: this.eventId, recording: this.id, part: this.part.part, segments: this.segments.length, bytes: this.summary().size }, opts.handOver ? 'recording handed over: its part is closed' : 'recording stopped');
      this.emit('stopped', manifest);
      return manifest;
    })();
    return this.stopping;
  }

  /**
   * Stops without writing anything more (the event is held by another node now, which continues
   * the recording from what is stored): the segment being written is left as a crash leaves it.
   */
  abandon(): void {
    if (this.abandoned) return;
    this.abandoned = true;
    this.detach();
    const seg = this.current;
    this.current = null;
    if (seg) void seg.sink.discard?.().catch(() => undefined);
    this.stopping ??= Promise.resolve(this.manifest());
    this.opts.log?.warn({ event: this.eventId, recording: this.id, part: this.part.part }, 'recording left to the event\'s new holder');
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
    unsigned.parts = [...this.earlierParts, { ...this.part, mac: partMac(unsigned, this.part, this.chainKey) }];
    return signManifest(unsigned, this.chainKey);
  }

  /** Saves writes in order (a later manifest never overtaken by an earlier one). */
  private saveManifest(): Promise<Manifest> {
    const m = this.manifest();
    if (this.abandoned) return Promise.resolve(m);
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
