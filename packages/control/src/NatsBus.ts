/**
 * The bus for a cluster: core NATS for pub/sub and request/reply, JetStream
 * KV for state that must outlive a node (event definitions, tree
 * assignments). nats.js reconnects on its own and re-creates subscriptions;
 * this class maps its errors and status events onto the Bus vocabulary and
 * guarantees that `close()` ends every iterator it handed out.
 */
import { readFile } from 'node:fs/promises';
import {
  connect,
  credsAuthenticator,
  DebugEvents,
  Events,
  KvWatchInclude,
  type ConnectionOptions,
  type KV,
  type KvEntry as NatsKvEntry,
  type Msg,
  type NatsConnection,
  type ObjectStore,
  type QueuedIterator,
  type Subscription,
} from 'nats';
import { AsyncQueue, type Endable } from './AsyncQueue.js';
import {
  assertBucket,
  assertKey,
  assertRevision,
  assertTimeout,
  checkKvOptions,
  decodeJson,
  encodePayload,
  type Bus,
  type BusMessage,
  type BusStatus,
  type BusSubscription,
  type KvEntry,
  type KvOptions,
  type KvStore,
  type KvWatchOptions,
} from './Bus.js';
import { controlDefaults } from './Defaults.js';
import { BusError, ConflictError } from './Errors.js';
import { assertSubject } from './Subjects.js';
import { createLogger, type Logger } from './Log.js';

export interface NatsBusOptions {
  servers: string | string[];
  /** Connection name shown by the server (`nats server report connections`). */
  name?: string;
  user?: string;
  pass?: string;
  token?: string;
  /** NATS decentralized-auth credentials (JWT + nkey seed). */
  credsFile?: string;
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
  /** -1 (default) = retry forever: a node outlives a NATS restart. */
  maxReconnectAttempts?: number;
  reconnectTimeWaitMs?: number;
  /** How long the first connect may take. */
  connectTimeoutMs?: number;
  /** Connects, disconnects and reconnects are logged here; default: a logger at MCU_LOG_LEVEL / info. */
  log?: Logger;
}

export type BusConnectErrorReason = 'auth' | 'unreachable' | 'timeout' | 'tls' | 'other';

/** The first connect failed; the message says why and what to check. */
export class BusConnectError extends Error {
  readonly reason: BusConnectErrorReason;

  constructor(reason: BusConnectErrorReason, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BusConnectError';
    this.reason = reason;
  }
}

interface NatsLikeError {
  code?: string;
  message?: string;
  api_error?: { err_code?: number; code?: number; description?: string };
}

const wrongLastSequence = 10071;

function natsCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null ? (err as NatsLikeError).code : undefined;
}

function jsErrCode(err: unknown): number | undefined {
  return typeof err === 'object' && err !== null ? (err as NatsLikeError).api_error?.err_code : undefined;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Errors common to every operation on a connection. Returns undefined for ones the caller should rethrow as is. */
function mapBusError(err: unknown, what: string): BusError | undefined {
  switch (natsCode(err)) {
    case 'TIMEOUT':
      return new BusError('timeout', `${what}: timed out`);
    case '503':
      return new BusError('unavailable', `${what}: no responders (is JetStream enabled on the NATS server?)`);
    case 'CONNECTION_CLOSED':
    case 'CONNECTION_DRAINING':
      return new BusError('closed', `${what}: bus is closed`);
    case 'DISCONNECT':
      return new BusError('unavailable', `${what}: disconnected from NATS`);
    default:
      return undefined;
  }
}

class NatsMessage implements BusMessage {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly reply: string | undefined;

  constructor(
    private readonly msg: Msg,
    private readonly bus: NatsBus,
  ) {
    this.subject = msg.subject;
    this.data = msg.data;
    this.reply = msg.reply ? msg.reply : undefined;
  }

  json<T = unknown>(): T {
    return decodeJson<T>(this.data, `message on ${this.subject}`);
  }

  respond(data: Uint8Array | object): boolean {
    if (this.reply === undefined || this.bus.closed) return false;
    try {
      return this.msg.respond(encodePayload(data));
    } catch {
      return false;
    }
  }
}

class NatsSubscription extends AsyncQueue<BusMessage> implements BusSubscription {
  constructor(
    readonly subject: string,
    onEnd: () => void,
  ) {
    super(onEnd);
  }

  unsubscribe(): void {
    this.end();
  }
}

export class NatsBus implements Bus {
  readonly #nc: NatsConnection;
  readonly #queues = new Set<Endable>();
  readonly #statusQueues = new Set<AsyncQueue<BusStatus>>();
  readonly #stores = new Map<string, NatsKv>();
  readonly #reconnectListeners = new Set<() => void>();
  #connected = true;
  #closed = false;
  #closing: Promise<void> | undefined;
  readonly #log: Logger;

  private constructor(nc: NatsConnection, log: Logger) {
    this.#nc = nc;
    this.#log = log;
    void this.#pumpStatus();
    nc.closed().then(
      (err) => this.#shutdown(err ? messageOf(err) : undefined),
      (err: unknown) => this.#shutdown(messageOf(err)),
    );
  }

  static async connect(opts: NatsBusOptions): Promise<NatsBus> {
    const servers = opts.servers;
    const where = Array.isArray(servers) ? servers.join(', ') : servers;
    const options: ConnectionOptions = {
      servers,
      name: opts.name,
      user: opts.user,
      pass: opts.pass,
      token: opts.token,
      maxReconnectAttempts: opts.maxReconnectAttempts ?? -1,
      reconnectTimeWait: opts.reconnectTimeWaitMs ?? controlDefaults.reconnectTimeWaitMs,
      timeout: opts.connectTimeoutMs ?? controlDefaults.connectTimeoutMs,
    };
    if (opts.tls) options.tls = { ...opts.tls };
    if (opts.credsFile) {
      let creds: Buffer;
      try {
        creds = await readFile(opts.credsFile);
      } catch (err) {
        throw new BusConnectError('auth', `cannot read NATS credentials file ${opts.credsFile}: ${messageOf(err)}`, { cause: err });
      }
      options.authenticator = credsAuthenticator(new Uint8Array(creds));
    }
    let nc: NatsConnection;
    try {
      nc = await connect(options);
    } catch (err) {
      throw connectError(err, where);
    }
    const log = opts.log ?? createLogger({ name: 'nats' });
    log.info({ server: nc.getServer() }, 'NATS connected');
    return new NatsBus(nc, log);
  }

  get connected(): boolean {
    return this.#connected && !this.#closed;
  }

  /** @internal */
  get closed(): boolean {
    return this.#closed;
  }

  publish(subject: string, data: Uint8Array | object): void {
    this.#assertOpen();
    assertSubject(subject, false);
    const payload = encodePayload(data);
    try {
      this.#nc.publish(subject, payload);
    } catch (err) {
      throw mapBusError(err, `publish to ${subject}`) ?? err;
    }
  }

  subscribe(subject: string, opts: { queue?: string; signal?: AbortSignal } = {}): BusSubscription {
    this.#assertOpen();
    assertSubject(subject, true);
    if (opts.queue !== undefined) assertSubject(opts.queue, false);
    const signal = opts.signal;
    let natsSub: Subscription | undefined;
    const onAbort = () => sub.end();
    const sub = new NatsSubscription(subject, () => {
      this.#queues.delete(sub);
      signal?.removeEventListener('abort', onAbort);
      if (natsSub && !natsSub.isClosed() && !this.#nc.isClosed()) natsSub.unsubscribe();
    });
    try {
      natsSub = this.#nc.subscribe(subject, {
        queue: opts.queue,
        callback: (err, msg) => {
          if (err) sub.end(mapBusError(err, `subscription ${subject}`) ?? err);
          else sub.push(new NatsMessage(msg, this));
        },
      });
    } catch (err) {
      throw mapBusError(err, `subscribe to ${subject}`) ?? err;
    }
    natsSub.closed.then(
      () => sub.end(),
      (err: unknown) => sub.end(err),
    );
    this.#queues.add(sub);
    if (signal?.aborted) sub.end();
    else signal?.addEventListener('abort', onAbort, { once: true });
    return sub;
  }

  async request(subject: string, data: Uint8Array | object, opts: { timeoutMs?: number } = {}): Promise<BusMessage> {
    const timeoutMs = opts.timeoutMs ?? controlDefaults.requestTimeoutMs;
    assertTimeout(timeoutMs);
    if (this.#closed) throw new BusError('closed', `request to ${subject}: bus is closed`);
    assertSubject(subject, false);
    try {
      const msg = await this.#nc.request(subject, encodePayload(data), { timeout: timeoutMs });
      return new NatsMessage(msg, this);
    } catch (err) {
      switch (natsCode(err)) {
        case '503':
          throw new BusError('no_responders', `request to ${subject}: no responders`);
        case 'TIMEOUT':
          throw new BusError('timeout', `request to ${subject}: no reply within ${timeoutMs} ms`);
        default:
          throw mapBusError(err, `request to ${subject}`) ?? err;
      }
    }
  }

  /** A JetStream Object Store bucket (created when absent): large objects such as recordings. */
  async objectStore(bucket: string): Promise<ObjectStore> {
    this.#assertOpen();
    assertBucket(bucket);
    try {
      return await this.#nc.jetstream().views.os(bucket);
    } catch (err) {
      throw mapBusError(err, `open object store ${bucket}`) ?? err;
    }
  }

  async kv(bucket: string, opts?: KvOptions): Promise<KvStore> {
    this.#assertOpen();
    assertBucket(bucket);
    const { history, ttlMs } = checkKvOptions(opts);
    const cached = this.#stores.get(bucket);
    if (cached) return cached;
    let kv: KV;
    try {
      kv = await this.#nc.jetstream().views.kv(bucket, { history, ttl: ttlMs });
    } catch (err) {
      throw mapBusError(err, `open kv bucket ${bucket}`) ?? err;
    }
    const store = this.#stores.get(bucket) ?? new NatsKv(this, bucket, kv);
    this.#stores.set(bucket, store);
    return store;
  }

  status(): AsyncIterable<BusStatus> {
    const q = new AsyncQueue<BusStatus>(() => this.#statusQueues.delete(q));
    if (this.#closed) {
      q.end();
      return q;
    }
    this.#statusQueues.add(q);
    if (this.connected) q.push({ type: 'connected', detail: this.#nc.getServer() });
    return q;
  }

  async flush(): Promise<void> {
    this.#assertOpen();
    try {
      await this.#nc.flush();
    } catch (err) {
      throw mapBusError(err, 'flush') ?? err;
    }
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed = true;
      try {
        await this.#nc.close();
      } catch {
        // already closed by nats.js (e.g. out of reconnect attempts)
      }
      this.#shutdown(undefined);
    })();
    return this.#closing;
  }

  /** @internal */
  track(q: Endable): void {
    this.#queues.add(q);
  }

  /** @internal */
  untrack(q: Endable): void {
    this.#queues.delete(q);
  }

  /** @internal Calls `listener` after every reconnect; returns the unsubscribe. */
  onReconnect(listener: () => void): () => void {
    this.#reconnectListeners.add(listener);
    return () => this.#reconnectListeners.delete(listener);
  }

  /** @internal */
  forgetStore(bucket: string): void {
    this.#stores.delete(bucket);
  }

  /** @internal */
  assertOpen(): void {
    this.#assertOpen();
  }

  #assertOpen(): void {
    if (this.#closed) throw new BusError('closed', 'bus is closed');
  }

  async #pumpStatus(): Promise<void> {
    try {
      for await (const s of this.#nc.status()) {
        const detail = typeof s.data === 'string' || typeof s.data === 'number' ? String(s.data) : undefined;
        let status: BusStatus | undefined;
        switch (s.type) {
          case Events.Disconnect:
            this.#connected = false;
            status = { type: 'disconnected', detail };
            this.#log.warn({ server: detail }, 'NATS disconnected');
            break;
          case DebugEvents.Reconnecting:
            status = { type: 'reconnecting', detail };
            break;
          case Events.Reconnect:
            this.#connected = true;
            status = { type: 'reconnected', detail };
            this.#log.info({ server: detail }, 'NATS reconnected');
            for (const listener of [...this.#reconnectListeners]) listener();
            break;
          case Events.Error:
            status = { type: 'error', detail: detail ?? messageOf(s.data) };
            break;
          default:
            // cluster updates, lame duck mode, ping timers: not connection changes
            break;
        }
        if (status) for (const q of this.#statusQueues) q.push(status);
      }
    } catch {
      // the status iterator ends with the connection; #shutdown does the rest
    }
  }

  #shutdown(error: string | undefined): void {
    const unexpected = !this.#closed;
    this.#closed = true;
    this.#connected = false;
    if (unexpected) {
      this.#log.error({ error }, 'NATS connection closed');
      const status: BusStatus = { type: 'error', detail: `connection closed${error ? `: ${error}` : ''}` };
      for (const q of this.#statusQueues) q.push(status);
    }
    for (const q of [...this.#statusQueues]) q.end();
    for (const q of [...this.#queues]) q.end();
    this.#reconnectListeners.clear();
  }
}

function connectError(err: unknown, where: string): BusConnectError {
  const code = natsCode(err);
  const detail = messageOf(err);
  switch (code) {
    case 'AUTHORIZATION_VIOLATION':
    case 'BAD_AUTHENTICATION':
    case 'BAD_CREDS':
    case 'AUTHENTICATION_EXPIRED':
    case 'AUTHENTICATION_TIMEOUT':
      return new BusConnectError('auth', `NATS at ${where} refused the credentials (check user/pass, token or creds file): ${detail}`, { cause: err });
    case 'CONNECTION_REFUSED':
      return new BusConnectError('unreachable', `cannot reach NATS at ${where}: connection refused`, { cause: err });
    case 'CONNECTION_TIMEOUT':
      return new BusConnectError('timeout', `cannot reach NATS at ${where}: connect timed out`, { cause: err });
    case 'TLS':
    case 'SERVER_OPT_NA':
      return new BusConnectError('tls', `TLS with NATS at ${where} failed: ${detail}`, { cause: err });
    default:
      return new BusConnectError('other', `cannot connect to NATS at ${where}: ${detail}`, { cause: err });
  }
}

function toEntry(e: NatsKvEntry): KvEntry {
  return { key: e.key, value: e.value, revision: e.revision, operation: e.operation === 'PUT' ? 'PUT' : 'DEL' };
}

class NatsKv implements KvStore {
  constructor(
    private readonly bus: NatsBus,
    readonly bucket: string,
    private readonly kv: KV,
  ) {}

  async get(key: string): Promise<KvEntry | null> {
    this.bus.assertOpen();
    assertKey(key);
    try {
      const e = await this.kv.get(key);
      return e && e.operation === 'PUT' ? toEntry(e) : null;
    } catch (err) {
      throw this.#mapError(err, `get ${key}`);
    }
  }

  async put(key: string, value: Uint8Array | object): Promise<number> {
    this.bus.assertOpen();
    assertKey(key);
    try {
      return await this.kv.put(key, encodePayload(value));
    } catch (err) {
      throw this.#mapError(err, `put ${key}`);
    }
  }

  async create(key: string, value: Uint8Array | object): Promise<number> {
    this.bus.assertOpen();
    assertKey(key);
    try {
      return await this.kv.create(key, encodePayload(value));
    } catch (err) {
      if (jsErrCode(err) === wrongLastSequence) throw new ConflictError(`key ${key} already exists`, 'kv_key_exists');
      throw this.#mapError(err, `create ${key}`);
    }
  }

  async update(key: string, value: Uint8Array | object, expectedRevision: number): Promise<number> {
    this.bus.assertOpen();
    assertKey(key);
    assertRevision(expectedRevision);
    try {
      return await this.kv.update(key, encodePayload(value), expectedRevision);
    } catch (err) {
      if (jsErrCode(err) === wrongLastSequence) {
        throw new ConflictError(`key ${key} changed: expected revision ${expectedRevision}`, 'kv_wrong_revision');
      }
      throw this.#mapError(err, `update ${key}`);
    }
  }

  async delete(key: string): Promise<void> {
    this.bus.assertOpen();
    assertKey(key);
    try {
      await this.kv.delete(key);
    } catch (err) {
      throw this.#mapError(err, `delete ${key}`);
    }
  }

  async keys(filter = '>'): Promise<string[]> {
    this.bus.assertOpen();
    assertKey(filter, true);
    try {
      const out: string[] = [];
      for await (const k of await this.kv.keys(filter)) out.push(k);
      return out.sort();
    } catch (err) {
      throw this.#mapError(err, 'keys');
    }
  }

  /**
   * nats.js re-creates an ordered consumer only after missing two idle
   * heartbeats (about 10 s) once the server comes back. Watches are the
   * control plane's view of the cluster, so on reconnect each one is
   * re-established at once, resuming after the last revision it delivered
   * (no change lost, none repeated).
   */
  watch(opts: KvWatchOptions = {}): AsyncIterable<KvEntry> {
    this.bus.assertOpen();
    const pattern = opts.key ?? '>';
    assertKey(pattern, true);
    const signal = opts.signal;
    let iter: QueuedIterator<NatsKvEntry> | undefined;
    let lastRevision = 0;
    let generation = 0;
    const onAbort = () => queue.end();
    const stopListening = this.bus.onReconnect(() => {
      const old = iter;
      iter = undefined;
      void run(true);
      old?.stop();
    });
    const queue = new AsyncQueue<KvEntry>(() => {
      this.bus.untrack(queue);
      stopListening();
      signal?.removeEventListener('abort', onAbort);
      generation++;
      iter?.stop();
    });

    const run = async (afterReconnect: boolean): Promise<void> => {
      const gen = ++generation;
      const current = () => gen === generation && !queue.ended;
      for (let attempt = 0; ; attempt++) {
        try {
          const it = await this.kv.watch(
            lastRevision > 0
              ? { key: pattern, resumeFromRevision: lastRevision + 1 }
              : { key: pattern, include: KvWatchInclude.LastValue },
          );
          if (!current()) {
            it.stop();
            return;
          }
          iter = it;
          for await (const e of it) {
            if (!current()) return;
            if (e.revision <= lastRevision) continue;
            lastRevision = e.revision;
            queue.push(toEntry(e));
          }
          if (current()) queue.end();
          return;
        } catch (err) {
          if (!current()) return;
          // Right after a reconnect JetStream may still be recovering its streams: retry, bounded by close().
          if (afterReconnect && !this.bus.closed && attempt < 100) {
            await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** attempt, 2000)));
            if (!current()) return;
            continue;
          }
          queue.end(this.#mapError(err, `watch ${pattern}`));
          return;
        }
      }
    };

    this.bus.track(queue);
    if (signal?.aborted) queue.end();
    else {
      signal?.addEventListener('abort', onAbort, { once: true });
      void run(false);
    }
    return queue;
  }

  async destroy(): Promise<void> {
    this.bus.assertOpen();
    try {
      await this.kv.destroy();
    } catch (err) {
      throw this.#mapError(err, `destroy bucket ${this.bucket}`);
    }
    this.bus.forgetStore(this.bucket);
  }

  #mapError(err: unknown, what: string): unknown {
    return mapBusError(err, `kv ${this.bucket}: ${what}`) ?? err;
  }
}
