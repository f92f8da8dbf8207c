/**
 * The recordings of one node: starts and stops them on events' program taps, lists them (running
 * ones from memory, finished ones from the store, so that a recording outlives its event), and
 * reads stored segments back. Recipients are checked before anything starts.
 */
import { Encrypter } from 'age-encryption';
import { ConflictError, NotFoundError, ValidationError } from '@mcu/control';
import type { Logger } from '@mcu/control';
import type { ProgramTap } from '@mcu/mixer';
import type { Readable } from 'node:stream';
import { parseManifest } from './Manifest.js';
import type { Manifest, ManifestSegment } from './Manifest.js';
import { Recording } from './Recording.js';
import type { RecordingCounters, RecordingOptions, RecordingSummary } from './Recording.js';
import type { RecordingStore } from './RecordingStore.js';

/** An X25519 age recipient: "age1" and 58 Bech32 characters (32 bytes). */
const RECIPIENT = /^age1[02-9ac-hj-np-z]{58}$/;

export interface RecorderOptions {
  store: RecordingStore;
  /** Used when a request names none (node config `recordingRecipients`). */
  defaultRecipients?: readonly string[];
  counters?: RecordingCounters;
  log?: Logger;
  /** Overrides segmentMinutes for every recording (tests, benchmarks). */
  segmentMs?: number;
}

export interface StartRecordingRequest {
  recipients?: readonly string[];
  /** Rendition id; undefined: the highest; false: audio only. */
  rendition?: string | false;
  segmentMinutes?: number;
}

/**
 * What another node needs to continue a running recording (a mixer failover or handover): public
 * values only — the recipients are age public keys, the chain key never leaves the recorder.
 */
export interface RecordingDefinition {
  id: string;
  recipients: string[];
  /** Rendition id, or false: audio only. */
  rendition: string | false;
  segmentMinutes: number;
  startedAt: string;
}

export interface RecordingView extends RecordingSummary {
  recipients: string[];
  segments: ManifestSegment[];
}

/** Checks each recipient by parsing it and wrapping a key for it, as a segment will. */
export async function checkRecipients(recipients: readonly string[]): Promise<void> {
  if (recipients.length === 0) throw new ValidationError('recipients: at least one age recipient (age1…) is required', 'recipients', 'recipients_required');
  for (const r of recipients) {
    const bad = () => new ValidationError(`recipients: ${JSON.stringify(r.length > 80 ? `${r.slice(0, 80)}…` : r)} is not an X25519 age recipient (age1…, from age-keygen -y)`, 'recipients', 'bad_recipient');
    if (!RECIPIENT.test(r)) throw bad();
    try {
      const e = new Encrypter();
      e.addRecipient(r);
      await e.encrypt(new Uint8Array(0));
    } catch {
      throw bad();
    }
  }
}

function summaryOfManifest(m: Manifest): RecordingSummary {
  const size = m.segments.reduce((n, s) => n + s.size, 0);
  const first = m.segments[0];
  const last = m.segments.at(-1);
  return {
    id: m.id,
    eventId: m.eventId,
    // A manifest left 'recording' by a node that is gone: the recording ended there.
    state: m.state,
    startedAt: m.startedAt,
    stoppedAt: m.stoppedAt,
    rendition: m.rendition,
    durationMs: first && last ? Math.round(last.startMediaMs + last.durationMs - first.startMediaMs) : 0,
    size,
    segmentCount: m.segments.length,
    dropped: { queueFull: 0, waitingKeyframe: 0 },
    writeErrors: 0,
    frames: { audio: 0, video: 0 },
  };
}

export class Recorder {
  private readonly running = new Map<string, Recording>();
  private closed = false;

  constructor(private readonly opts: RecorderOptions) {}

  get store(): RecordingStore {
    return this.opts.store;
  }

  /** Recordings running on this node. */
  get runningCount(): number {
    return this.running.size;
  }

  runningOf(eventId: string): Recording[] {
    return [...this.running.values()].filter((r) => r.eventId === eventId);
  }

  async start(tap: ProgramTap, req: StartRecordingRequest): Promise<Recording> {
    if (this.closed) throw new ConflictError('the node is closing', 'closing');
    const recipients = req.recipients && req.recipients.length > 0 ? [...req.recipients] : [...(this.opts.defaultRecipients ?? [])];
    await checkRecipients(recipients);
    const recording = this.create(tap, { recipients, rendition: req.rendition, segmentMinutes: req.segmentMinutes });
    try {
      await recording.start();
    } catch (err) {
      this.running.delete(recording.id);
      await recording.stop().catch(() => undefined);
      throw err;
    }
    return recording;
  }

  /**
   * Continues a recording another node was making of this event (its definition from the
   * cluster's store): registered at once (so that `definitions` lists it), its next part written
   * once the earlier parts are read (a part still open is waited for up to `waitMs`). Resolves
   * when it writes, or has found the recording stopped.
   */
  async resume(tap: ProgramTap, def: RecordingDefinition, waitMs: number): Promise<Recording> {
    if (this.closed) throw new ConflictError('the node is closing', 'closing');
    const existing = this.running.get(def.id);
    if (existing) return existing;
    const recording = this.create(tap, def, { id: def.id, startedAt: def.startedAt, resume: { waitMs } });
    try {
      await recording.start();
    } finally {
      if (recording.state !== 'recording') this.running.delete(recording.id);
    }
    return recording;
  }

  /** The running recordings of an event as another node would continue them. */
  definitions(eventId: string): RecordingDefinition[] {
    return this.runningOf(eventId).map((r) => r.definition());
  }

  private create(tap: ProgramTap, req: StartRecordingRequest & { recipients: string[] }, extra: Partial<RecordingOptions> = {}): Recording {
    const recipients = req.recipients;
    const renditions = tap.renditions();
    let rendition: string | false = false;
    let videoCodec = null;
    if (req.rendition !== false) {
      const r = req.rendition === undefined ? renditions[0] : renditions.find((x) => x.id === req.rendition);
      if (!r) {
        if (req.rendition === undefined) {
          rendition = false;
        } else {
          throw new NotFoundError(`rendition ${req.rendition} not found: the event has ${renditions.map((x) => x.id).join(', ') || 'none'}`, 'rendition_not_found');
        }
      } else {
        rendition = r.id;
        videoCodec = r.codec;
      }
    }
    const recording = new Recording({
      tap,
      store: this.opts.store,
      recipients,
      rendition,
      videoCodec,
      segmentMinutes: req.segmentMinutes,
      segmentMs: this.opts.segmentMs,
      counters: this.opts.counters,
      log: this.opts.log,
      ...extra,
    });
    this.running.set(recording.id, recording);
    recording.on('error', () => undefined);
    return recording;
  }

  /** Stops a running recording; its final manifest. */
  async stop(eventId: string, id: string): Promise<Manifest> {
    const r = this.running.get(id);
    if (!r || r.eventId !== eventId) {
      const m = await this.manifest(eventId, id);
      if (m) return m;
      throw new NotFoundError(`recording ${id} not found`, 'recording_not_found');
    }
    try {
      return await r.stop();
    } finally {
      this.running.delete(id);
    }
  }

  /** Stops every recording of an event (it ends). */
  async stopEvent(eventId: string): Promise<void> {
    await Promise.all(this.runningOf(eventId).map((r) => this.stop(eventId, r.id).catch(() => undefined)));
  }

  /** A planned handover: every recording of the event closes its part (its segment ended, its manifest written) for the next holder. */
  async handOver(eventId: string): Promise<void> {
    await Promise.all(
      this.runningOf(eventId).map(async (r) => {
        try {
          await r.stop({ handOver: true });
        } catch {
          // its write error is logged and counted; the next holder continues from what is stored
        } finally {
          this.running.delete(r.id);
        }
      }),
    );
  }

  /** The event is held by another node now (this one was cut off): its recordings stop writing at once, for that node to continue. */
  abandon(eventId: string): void {
    for (const r of this.runningOf(eventId)) {
      r.abandon();
      this.running.delete(r.id);
    }
  }

  async manifest(eventId: string, id: string): Promise<Manifest | null> {
    let text: string | null;
    try {
      text = await this.opts.store.getManifest(eventId, id);
    } catch (err) {
      if (err instanceof RangeError) return null;
      throw err;
    }
    return text === null ? null : parseManifest(text);
  }

  async list(eventId: string): Promise<RecordingSummary[]> {
    const out = new Map<string, RecordingSummary>();
    let ids: string[] = [];
    try {
      ids = await this.opts.store.listRecordings(eventId);
    } catch (err) {
      if (!(err instanceof RangeError)) throw err;
    }
    for (const id of ids) {
      const m = await this.manifest(eventId, id).catch(() => null);
      if (m) out.set(id, summaryOfManifest(m));
    }
    for (const r of this.runningOf(eventId)) out.set(r.id, r.summary());
    return [...out.values()].sort((a, b) => (a.startedAt < b.startedAt ? -1 : 1));
  }

  async get(eventId: string, id: string): Promise<RecordingView> {
    const r = this.running.get(id);
    if (r && r.eventId === eventId) return { ...r.summary(), recipients: r.manifest().recipients, segments: r.segmentList() };
    const m = await this.manifest(eventId, id);
    if (!m) throw new NotFoundError(`recording ${id} not found`, 'recording_not_found');
    return { ...summaryOfManifest(m), recipients: m.recipients, segments: m.segments };
  }

  /** A segment's stored bytes (ciphertext). */
  async segment(eventId: string, id: string, index: number): Promise<{ name: string; size: number; stream: Readable }> {
    const view = await this.get(eventId, id);
    const seg = view.segments.find((s) => s.index === index);
    if (!seg) throw new NotFoundError(`recording ${id} has no segment ${index}`, 'segment_not_found');
    const stored = await this.opts.store.readSegment(eventId, id, seg.name);
    if (!stored) throw new NotFoundError(`segment ${index} of recording ${id} is missing from the store`, 'segment_missing');
    return { name: seg.name, ...stored };
  }

  /** Stops every recording (their last segments are ended properly). Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.running.values()].map((r) => this.stop(r.eventId, r.id).catch(() => undefined)));
    await this.opts.store.close();
  }
}
