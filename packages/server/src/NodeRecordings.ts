/**
 * Recordings on a node: the HTTP routes (RecordingApi.ts documents them), the Recorder over the
 * node's store (`recordingsDir`; a cluster swaps in the Object Store), recordings that start when
 * an event's first presenter joins (`"record"` at creation), and their metrics.
 */
import type { IncomingMessage } from 'node:http';
import { Counter, Gauge } from 'prom-client';
import type { Registry } from 'prom-client';
import { ConflictError, NotFoundError, ValidationError } from '@mcu/control';
import type { Logger } from '@mcu/control';
import { programTapOf } from '@mcu/mixer';
import { DirectoryStore, ObjectStoreStore, Recorder, checkRecipients } from '@mcu/recording';
import type { RecordingCounters, RecordingDefinition, RecordingStore, StartRecordingRequest } from '@mcu/recording';
import type { Auth } from './Auth.js';
import type { EventRecord, EventRegistry } from './EventRegistry.js';
import { json } from './HttpFront.js';
import { startRecordingBody } from './RecordingApi.js';
import type { Router } from './Router.js';

export interface NodeRecordingsOptions {
  router: Router;
  auth: Auth;
  registry: EventRegistry;
  metricsRegistry: Registry;
  dir: string;
  defaultRecipients?: readonly string[];
  log: Logger;
  readJson: <T>(req: IncomingMessage, schema: import('zod').ZodType<T>) => Promise<T>;
  /** Overrides segment length (tests). */
  segmentMs?: number;
}

/** How often an armed event is checked for its first presenter. */
const ARM_POLL_MS = 200;

function recordingMetrics(registry: Registry, running: () => number, log: Logger): RecordingCounters {
  new Gauge({ name: 'mcu_recordings_running', help: 'Recordings running on this node', registers: [registry], collect() { this.set(running()); } });
  const bytes = new Counter({ name: 'mcu_recording_bytes_written_total', help: 'Encrypted recording bytes stored', registers: [registry] });
  const segments = new Counter({ name: 'mcu_recording_segments_written_total', help: 'Recording segments completed', registers: [registry] });
  const errors = new Counter({ name: 'mcu_recording_write_errors_total', help: 'Recording write failures (the segment ends there)', registers: [registry] });
  const dropped = new Counter({ name: 'mcu_recording_frames_dropped_total', help: 'Frames a recording dropped, by reason (queue_full: it could not keep up)', labelNames: ['reason'], registers: [registry] });
  void log;
  return {
    bytesWritten: (n) => bytes.inc(n),
    segmentWritten: () => segments.inc(),
    writeError: () => errors.inc(),
    dropped: (reason, n = 1) => dropped.inc({ reason }, n),
  };
}

export class NodeRecordings {
  private recorderValue: Recorder;
  private readonly counters: RecordingCounters;
  /** Events that ended here: a new recording on one is a 409 (its recordings stay listed). */
  private readonly ended = new Set<string>();
  /** Events armed to record on their first presenter: the poll and the request (recipients resolved). */
  private readonly armed = new Map<string, { timer: NodeJS.Timeout; req: StartRecordingRequest }>();
  private closed = false;

  constructor(private readonly opts: NodeRecordingsOptions, store?: RecordingStore) {
    this.counters = recordingMetrics(opts.metricsRegistry, () => this.recorder.runningCount, opts.log);
    this.recorderValue = this.recorderFor(store ?? new DirectoryStore(opts.dir));
    opts.registry.on('ending', (e) => {
      this.ended.add(e.id);
      this.disarm(e.id);
      void this.recorder.stopEvent(e.id);
    });
    this.routes();
  }

  get recorder(): Recorder {
    return this.recorderValue;
  }

  private recorderFor(store: RecordingStore): Recorder {
    return new Recorder({ store, defaultRecipients: this.opts.defaultRecipients, counters: this.counters, log: this.opts.log, segmentMs: this.opts.segmentMs });
  }

  /**
   * In a cluster: keep recordings in the cluster's JetStream Object Store (segments spooled in
   * `recordingsDir` while written), so that they outlive this node and any node serves them.
   */
  useObjectStore(os: ConstructorParameters<typeof ObjectStoreStore>[0]): void {
    if (this.recorderValue.runningCount > 0) throw new Error('recordings are running: the store cannot change now');
    const old = this.recorderValue;
    this.recorderValue = this.recorderFor(new ObjectStoreStore(os, this.opts.dir));
    void old.close();
  }

  /** The event's running recordings as another node would continue them (a cluster stores them with the event). */
  definitionsOf(eventId: string): RecordingDefinition[] {
    return this.recorder.definitions(eventId);
  }

  /**
   * This node took the event over: it continues the recordings another node was making (their
   * next part). `waitMs`: how long an open part is waited for (a planned handover closes it).
   */
  resume(e: EventRecord, defs: readonly RecordingDefinition[], waitMs: number): Promise<void> {
    return Promise.all(
      defs.map((def) =>
        this.recorder.resume(programTapOf(e.mixer), def, waitMs).then(
          (r) => this.opts.log.info({ event: e.id, recording: r.id, part: r.partNumber, state: r.state }, 'recording taken over'),
          (err: Error) => this.opts.log.error({ event: e.id, recording: def.id, err: err.message }, 'recording could not be taken over'),
        ),
      ),
    ).then(() => undefined);
  }

  /** A planned handover of the event: its recordings close their parts for the next holder. */
  handOver(eventId: string): Promise<void> {
    return this.recorder.handOver(eventId);
  }

  /** The event is held by another node now: its recordings stop writing here at once (that node continues them). */
  abandon(eventId: string): void {
    this.recorder.abandon(eventId);
  }

  /** Checks a `"record"` request before the event exists (400 on bad recipients). */
  async checkRecordOnJoin(req: StartRecordingRequest): Promise<void> {
    await checkRecipients(req.recipients && req.recipients.length > 0 ? req.recipients : (this.opts.defaultRecipients ?? []));
  }

  /** Starts recording `e` when its first presenter joins. */
  recordOnJoin(e: EventRecord, req: StartRecordingRequest): void {
    if (this.closed) return;
    this.disarm(e.id);
    // The recipients it will record to, fixed now: a new holder (failover) records to the same ones.
    const recipients = req.recipients && req.recipients.length > 0 ? req.recipients : this.opts.defaultRecipients;
    if (recipients && recipients.length > 0) req = { ...req, recipients: [...recipients] };
    const timer = setInterval(() => {
      if (e.mixer.isClosed) return this.disarm(e.id);
      if (e.mixer.mixer.size === 0) return;
      this.disarm(e.id);
      this.recorder.start(programTapOf(e.mixer), req).then(
        (r) => this.opts.log.info({ event: e.id, recording: r.id }, 'recording started on the first presenter'),
        (err: Error) => this.opts.log.error({ event: e.id, err: err.message }, 'recording on the first presenter failed to start'),
      );
    }, ARM_POLL_MS);
    this.armed.set(e.id, { timer, req });
  }

  /** The request an event is armed with (to record on its first presenter), if it is. */
  armedOf(id: string): StartRecordingRequest | undefined {
    return this.armed.get(id)?.req;
  }

  private disarm(id: string): void {
    const a = this.armed.get(id);
    if (a) clearInterval(a.timer);
    this.armed.delete(id);
  }

  private authorize(req: IncomingMessage, id: string, token?: string | null): void {
    this.opts.auth.authorize(req.headers.authorization, { event: id, roles: ['admin', 'producer'] }, token);
  }

  /** A known event (running, or ended here, or with recordings in the store). */
  private async known(id: string): Promise<void> {
    if (this.opts.registry.has(id) || this.ended.has(id)) return;
    if ((await this.recorder.list(id)).length > 0) return;
    throw new NotFoundError(`event ${id} not found`, 'event_not_found');
  }

  private routes(): void {
    const r = this.opts.router;
    r.on('POST', '/api/events/:id/recordings', async ({ req, res, params }) => {
      this.authorize(req, params.id);
      if (!this.opts.registry.has(params.id)) {
        await this.known(params.id);
        throw new ConflictError(`event ${params.id} has ended: it cannot be recorded`, 'event_ended');
      }
      const e = this.opts.registry.get(params.id);
      const body = await this.opts.readJson(req, startRecordingBody);
      const rec = await this.recorder.start(programTapOf(e.mixer), body);
      res.setHeader('location', `/api/events/${e.id}/recordings/${rec.id}`);
      json(res, 201, { id: rec.id, state: rec.state, startedAt: rec.startedAt, rendition: rec.summary().rendition });
    });
    r.on('GET', '/api/events/:id/recordings', async ({ req, res, params }) => {
      this.authorize(req, params.id);
      await this.known(params.id);
      json(res, 200, { recordings: await this.recorder.list(params.id) });
    });
    r.on('GET', '/api/events/:id/recordings/:rid', async ({ req, res, params }) => {
      this.authorize(req, params.id);
      json(res, 200, await this.recorder.get(params.id, params.rid));
    });
    r.on('GET', '/api/events/:id/recordings/:rid/manifest', async ({ req, res, params }) => {
      this.authorize(req, params.id);
      const m = await this.recorder.manifest(params.id, params.rid);
      if (!m) throw new NotFoundError(`recording ${params.rid} not found`, 'recording_not_found');
      json(res, 200, m);
    });
    r.on('DELETE', '/api/events/:id/recordings/:rid', async ({ req, res, params }) => {
      this.authorize(req, params.id);
      await this.recorder.stop(params.id, params.rid);
      json(res, 200, { recording: await this.recorder.get(params.id, params.rid), recordings: await this.recorder.list(params.id) });
    });
    r.on('GET', '/api/events/:id/recordings/:rid/segments/:n', async ({ req, res, params, url }) => {
      this.authorize(req, params.id, url.searchParams.get('token'));
      if (!/^\d{1,6}$/.test(params.n)) throw new ValidationError('segment index must be a whole number', 'n');
      const seg = await this.recorder.segment(params.id, params.rid, Number(params.n));
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': seg.size,
        'content-disposition': `attachment; filename="${seg.name}"`,
        'cache-control': 'no-store',
      });
      seg.stream.on('error', () => res.destroy());
      seg.stream.pipe(res);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const id of [...this.armed.keys()]) this.disarm(id);
    await this.recorder.close();
  }
}
