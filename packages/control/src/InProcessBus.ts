/**
 * The bus for a single process (`mcu up`): same semantics as NatsBus —
 * wildcards, queue groups, request/reply with timeout and no-responders, KV
 * with revisions, conflicts and watches — with no network.
 *
 * Delivery is synchronous into each subscriber's queue, so a message published
 * before `publish()` returns is already queued for every matching subscriber.
 * Payloads are copied on publish, as they would be on the wire.
 */
import { randomBytes } from 'node:crypto';
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
import { assertSubject, subjectMatches } from './Subjects.js';

export interface InProcessBusOptions {
  /** Milliseconds; drives KV ttl. Inject a manual clock in tests. */
  clock?: () => number;
}

interface LocalSub {
  pattern: string;
  queue: string | undefined;
  deliver(msg: BusMessage): void;
}

class LocalMessage implements BusMessage {
  constructor(
    private readonly bus: InProcessBus,
    readonly subject: string,
    readonly data: Uint8Array,
    readonly reply: string | undefined,
  ) {}

  json<T = unknown>(): T {
    return decodeJson<T>(this.data, `message on ${this.subject}`);
  }

  respond(data: Uint8Array | object): boolean {
    if (this.reply === undefined || this.bus.closed) return false;
    this.bus.publish(this.reply, data);
    return true;
  }
}

class LocalSubscription extends AsyncQueue<BusMessage> implements BusSubscription {
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

export class InProcessBus implements Bus {
  readonly #subs = new Set<LocalSub>();
  readonly #queues = new Set<Endable>();
  readonly #roundRobin = new Map<string, number>();
  readonly #buckets = new Map<string, LocalKv>();
  /** Cancels for requests still waiting for a reply; close() rejects them. */
  readonly #pendingRequests = new Set<() => void>();
  readonly #clock: () => number;
  #closed = false;

  constructor(opts: InProcessBusOptions = {}) {
    this.#clock = opts.clock ?? Date.now;
  }

  get connected(): boolean {
    return !this.#closed;
  }

  /** @internal */
  get closed(): boolean {
    return this.#closed;
  }

  publish(subject: string, data: Uint8Array | object): void {
    this.#publish(subject, data, undefined);
  }

  #publish(subject: string, data: Uint8Array | object, reply: string | undefined): number {
    this.#assertOpen();
    assertSubject(subject, false);
    const payload = encodePayload(data).slice();
    const msg = new LocalMessage(this, subject, payload, reply);
    let delivered = 0;
    let groups: Map<string, LocalSub[]> | undefined;
    for (const sub of this.#subs) {
      if (!subjectMatches(sub.pattern, subject)) continue;
      if (sub.queue === undefined) {
        sub.deliver(msg);
        delivered++;
      } else {
        groups ??= new Map();
        const members = groups.get(sub.queue);
        if (members) members.push(sub);
        else groups.set(sub.queue, [sub]);
      }
    }
    if (groups) {
      for (const [queue, members] of groups) {
        const turn = this.#roundRobin.get(queue) ?? 0;
        this.#roundRobin.set(queue, turn + 1);
        members[turn % members.length].deliver(msg);
        delivered++;
      }
    }
    return delivered;
  }

  subscribe(subject: string, opts: { queue?: string; signal?: AbortSignal } = {}): BusSubscription {
    this.#assertOpen();
    assertSubject(subject, true);
    if (opts.queue !== undefined) assertSubject(opts.queue, false);
    const local: LocalSub = { pattern: subject, queue: opts.queue, deliver: (m) => sub.push(m) };
    const onAbort = () => sub.end();
    const sub = new LocalSubscription(subject, () => {
      this.#subs.delete(local);
      this.#queues.delete(sub);
      opts.signal?.removeEventListener('abort', onAbort);
    });
    this.#subs.add(local);
    this.#queues.add(sub);
    if (opts.signal?.aborted) sub.end();
    else opts.signal?.addEventListener('abort', onAbort, { once: true });
    return sub;
  }

  request(subject: string, data: Uint8Array | object, opts: { timeoutMs?: number } = {}): Promise<BusMessage> {
    const timeoutMs = opts.timeoutMs ?? controlDefaults.requestTimeoutMs;
    try {
      assertTimeout(timeoutMs);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.#closed) return Promise.reject(new BusError('closed', `request to ${subject}: bus is closed`));
    return new Promise<BusMessage>((resolve, reject) => {
      const inbox = `_INBOX.${randomBytes(11).toString('base64url').replace(/[-_]/g, 'x')}`;
      let timer: NodeJS.Timeout | undefined;
      const finish = () => {
        this.#subs.delete(local);
        this.#pendingRequests.delete(cancel);
        if (timer) clearTimeout(timer);
      };
      const local: LocalSub = {
        pattern: inbox,
        queue: undefined,
        deliver: (m) => {
          finish();
          resolve(m);
        },
      };
      const cancel = () => {
        finish();
        reject(new BusError('closed', `request to ${subject}: bus closed before a reply`));
      };
      this.#subs.add(local);
      this.#pendingRequests.add(cancel);
      let delivered: number;
      try {
        delivered = this.#publish(subject, data, inbox);
      } catch (err) {
        finish();
        reject(err);
        return;
      }
      if (delivered === 0) {
        finish();
        reject(new BusError('no_responders', `request to ${subject}: no responders`));
        return;
      }
      timer = setTimeout(() => {
        finish();
        reject(new BusError('timeout', `request to ${subject}: no reply within ${timeoutMs} ms`));
      }, timeoutMs);
    });
  }

  async kv(bucket: string, opts?: KvOptions): Promise<KvStore> {
    this.#assertOpen();
    assertBucket(bucket);
    const { ttlMs } = checkKvOptions(opts);
    let store = this.#buckets.get(bucket);
    if (!store) {
      store = new LocalKv(this, bucket, ttlMs, this.#clock);
      this.#buckets.set(bucket, store);
    }
    return store;
  }

  status(): AsyncIterable<BusStatus> {
    const q = new AsyncQueue<BusStatus>(() => this.#queues.delete(q));
    if (this.#closed) {
      q.end();
      return q;
    }
    this.#queues.add(q);
    q.push({ type: 'connected' });
    return q;
  }

  async flush(): Promise<void> {
    this.#assertOpen();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const cancel of [...this.#pendingRequests]) cancel();
    for (const q of [...this.#queues]) q.end();
    this.#subs.clear();
    for (const store of this.#buckets.values()) store.closeWatches();
  }

  /** @internal */
  trackQueue(q: Endable): void {
    this.#queues.add(q);
  }

  /** @internal */
  untrackQueue(q: Endable): void {
    this.#queues.delete(q);
  }

  /** @internal */
  dropBucket(bucket: string): void {
    this.#buckets.delete(bucket);
  }

  #assertOpen(): void {
    if (this.#closed) throw new BusError('closed', 'bus is closed');
  }
}

interface StoredEntry {
  entry: KvEntry;
  writtenAtMs: number;
}

interface Watcher {
  pattern: string;
  queue: AsyncQueue<KvEntry>;
}

class LocalKv implements KvStore {
  readonly #entries = new Map<string, StoredEntry>();
  readonly #watchers = new Set<Watcher>();
  #revision = 0;
  #destroyed = false;

  constructor(
    private readonly bus: InProcessBus,
    readonly bucket: string,
    private readonly ttlMs: number,
    private readonly clock: () => number,
  ) {}

  async get(key: string): Promise<KvEntry | null> {
    this.#check();
    assertKey(key);
    const e = this.#live(key);
    return e && e.operation === 'PUT' ? copyEntry(e) : null;
  }

  async put(key: string, value: Uint8Array | object): Promise<number> {
    this.#check();
    assertKey(key);
    return this.#write(key, encodePayload(value), 'PUT');
  }

  async create(key: string, value: Uint8Array | object): Promise<number> {
    this.#check();
    assertKey(key);
    const current = this.#live(key);
    if (current && current.operation === 'PUT') throw new ConflictError(`key ${key} already exists`, 'kv_key_exists');
    return this.#write(key, encodePayload(value), 'PUT');
  }

  async update(key: string, value: Uint8Array | object, expectedRevision: number): Promise<number> {
    this.#check();
    assertKey(key);
    assertRevision(expectedRevision);
    const current = this.#live(key);
    if (!current || current.revision !== expectedRevision) {
      throw new ConflictError(`key ${key} changed: expected revision ${expectedRevision}`, 'kv_wrong_revision');
    }
    return this.#write(key, encodePayload(value), 'PUT');
  }

  async delete(key: string): Promise<void> {
    this.#check();
    assertKey(key);
    this.#write(key, new Uint8Array(0), 'DEL');
  }

  async keys(filter = '>'): Promise<string[]> {
    this.#check();
    assertKey(filter, true);
    this.#expire();
    const out: string[] = [];
    for (const [key, { entry }] of this.#entries) {
      if (entry.operation === 'PUT' && subjectMatches(filter, key)) out.push(key);
    }
    return out.sort();
  }

  watch(opts: KvWatchOptions = {}): AsyncIterable<KvEntry> {
    this.#check();
    const pattern = opts.key ?? '>';
    assertKey(pattern, true);
    const signal = opts.signal;
    const onAbort = () => queue.end();
    const watcher: Watcher = {
      pattern,
      queue: new AsyncQueue<KvEntry>(() => {
        this.#watchers.delete(watcher);
        this.bus.untrackQueue(queue);
        signal?.removeEventListener('abort', onAbort);
      }),
    };
    const queue = watcher.queue;
    this.#expire();
    const snapshot = [...this.#entries.values()]
      .map((s) => s.entry)
      .filter((e) => subjectMatches(pattern, e.key))
      .sort((a, b) => a.revision - b.revision);
    for (const e of snapshot) queue.push(copyEntry(e));
    this.#watchers.add(watcher);
    this.bus.trackQueue(queue);
    if (signal?.aborted) queue.end();
    else signal?.addEventListener('abort', onAbort, { once: true });
    return queue;
  }

  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#entries.clear();
    this.closeWatches();
    this.bus.dropBucket(this.bucket);
  }

  closeWatches(): void {
    for (const w of [...this.#watchers]) w.queue.end();
  }

  #write(key: string, value: Uint8Array, operation: 'PUT' | 'DEL'): number {
    const revision = ++this.#revision;
    const entry: KvEntry = { key, value: value.slice(), revision, operation };
    this.#entries.set(key, { entry, writtenAtMs: this.clock() });
    for (const w of this.#watchers) {
      if (subjectMatches(w.pattern, key)) w.queue.push(copyEntry(entry));
    }
    return revision;
  }

  /** Latest entry for the key (a tombstone counts), after ttl expiry. */
  #live(key: string): KvEntry | undefined {
    const stored = this.#entries.get(key);
    if (!stored) return undefined;
    if (this.ttlMs > 0 && this.clock() - stored.writtenAtMs >= this.ttlMs) {
      this.#entries.delete(key);
      return undefined;
    }
    return stored.entry;
  }

  #expire(): void {
    if (this.ttlMs <= 0) return;
    const now = this.clock();
    for (const [key, stored] of this.#entries) {
      if (now - stored.writtenAtMs >= this.ttlMs) this.#entries.delete(key);
    }
  }

  #check(): void {
    if (this.bus.closed) throw new BusError('closed', 'bus is closed');
    if (this.#destroyed) throw new BusError('unavailable', `kv bucket ${this.bucket} was destroyed`);
  }
}

function copyEntry(e: KvEntry): KvEntry {
  return { key: e.key, value: e.value.slice(), revision: e.revision, operation: e.operation };
}
