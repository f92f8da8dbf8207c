/**
 * The coordination bus: one interface, two homes. `InProcessBus` serves a
 * single node (`mcu up`); `NatsBus` serves a cluster. The same contract tests
 * run against both, so code above this interface cannot tell them apart
 * (apart from timing).
 *
 * Subjects follow NATS token rules (see Subjects.ts). Payloads are bytes;
 * objects are JSON-encoded on the way in and `json()` decodes them on the way
 * out — callers validate the decoded value with their message schema.
 */
import { ValidationError } from './Errors.js';

export interface BusMessage {
  readonly subject: string;
  readonly data: Uint8Array;
  /** The payload parsed as JSON; throws `ValidationError` if it is not JSON. */
  json<T = unknown>(): T;
  /** Reply subject when the message is a request. */
  readonly reply?: string;
  /** Answer a request; false if the message expects no reply or the bus is closed. */
  respond(data: Uint8Array | object): boolean;
}

/** Ends (the `for await` loop finishes) on `unsubscribe()`, on abort of its signal, and on `bus.close()`. */
export interface BusSubscription extends AsyncIterable<BusMessage> {
  unsubscribe(): void;
  readonly subject: string;
}

export interface KvEntry {
  key: string;
  value: Uint8Array;
  /** Increases with every write to the bucket; `update()` compares it. */
  revision: number;
  operation: 'PUT' | 'DEL';
}

export interface KvWatchOptions {
  /** Key or key pattern (`events.>`); all keys by default. */
  key?: string;
  signal?: AbortSignal;
}

export interface KvStore {
  readonly bucket: string;
  /** The live entry, or null if the key was never written or is deleted. */
  get(key: string): Promise<KvEntry | null>;
  /** Write unconditionally; resolves to the new revision. */
  put(key: string, value: Uint8Array | object): Promise<number>;
  /** Write only if the key does not exist (or is deleted); `ConflictError` otherwise. */
  create(key: string, value: Uint8Array | object): Promise<number>;
  /** Write only if the key's latest revision is `expectedRevision`; `ConflictError` otherwise. */
  update(key: string, value: Uint8Array | object, expectedRevision: number): Promise<number>;
  /** Soft delete: writes a `DEL` tombstone that watchers see. */
  delete(key: string): Promise<void>;
  /** Live keys matching `filter` (default all), sorted. */
  keys(filter?: string): Promise<string[]>;
  /**
   * First the latest entry of every matching key (including `DEL` tombstones
   * of deleted keys), oldest revision first, then every later change. No
   * change is lost between the two, whenever the watch is established; only
   * intermediate values of a key written several times during setup are
   * folded into its latest value. Ends on abort, on `return()` and on close.
   */
  watch(opts?: KvWatchOptions): AsyncIterable<KvEntry>;
  /** Remove the bucket and everything in it. */
  destroy(): Promise<void>;
}

export interface KvOptions {
  /** Revisions kept per key (1–64); default 1. */
  history?: number;
  /** Entries older than this disappear (no watch notification); 0 or absent = forever. */
  ttlMs?: number;
}

export type BusStatusType = 'connected' | 'disconnected' | 'reconnecting' | 'reconnected' | 'error';

export interface BusStatus {
  type: BusStatusType;
  detail?: string;
}

export interface Bus {
  /** Fire and forget. Objects are JSON-encoded. */
  publish(subject: string, data: Uint8Array | object): void;
  /** `subject` may contain `*` and `>`. With `queue`, each message goes to one member of the group. */
  subscribe(subject: string, opts?: { queue?: string; signal?: AbortSignal }): BusSubscription;
  /** Rejects with `BusError` (reason `timeout`, `no_responders` or `closed`). */
  request(subject: string, data: Uint8Array | object, opts?: { timeoutMs?: number }): Promise<BusMessage>;
  kv(bucket: string, opts?: KvOptions): Promise<KvStore>;
  /**
   * Connection changes from now on. A new iterator first yields `connected`
   * if the bus is connected at that moment. Ends on `close()`.
   */
  status(): AsyncIterable<BusStatus>;
  /** Resolves once everything published so far has reached the bus (a server round trip for NATS). */
  flush(): Promise<void>;
  readonly connected: boolean;
  /** Idempotent; ends every subscription, watch and status iterator. */
  close(): Promise<void>;
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

export function encodePayload(data: Uint8Array | object): Uint8Array {
  if (data instanceof Uint8Array) return data;
  const text = JSON.stringify(data);
  if (text === undefined) throw new ValidationError('payload: expected bytes or a JSON-encodable value', 'data');
  return textEncoder.encode(text);
}

export function decodeJson<T = unknown>(data: Uint8Array, what = 'message'): T {
  try {
    return JSON.parse(textDecoder.decode(data)) as T;
  } catch {
    throw new ValidationError(`${what} is not valid JSON`);
  }
}

// NATS KV rules: buckets are [A-Za-z0-9_-]+; keys are dot-separated tokens of [-/_=A-Za-z0-9].
const bucketPattern = /^[A-Za-z0-9_-]{1,200}$/;
const keyToken = /^[-/_=A-Za-z0-9]+$/;

export function assertBucket(bucket: string): void {
  if (typeof bucket !== 'string' || !bucketPattern.test(bucket)) {
    throw new ValidationError(`bucket: expected 1 to 200 characters from A-Z a-z 0-9 _ -, got ${JSON.stringify(String(bucket)).slice(0, 80)}`, 'bucket');
  }
}

/** A literal key, or with `filter` a key pattern where `*` and a final `>` are allowed. */
export function assertKey(key: string, filter = false): void {
  let ok = typeof key === 'string' && key.length > 0 && key.length <= 1024;
  if (ok) {
    const tokens = key.split('.');
    ok = tokens.every(
      (t, i) => keyToken.test(t) || (filter && (t === '*' || (t === '>' && i === tokens.length - 1))),
    );
  }
  if (!ok) {
    throw new ValidationError(`${filter ? 'key filter' : 'key'}: invalid ${JSON.stringify(String(key)).slice(0, 80)}`, 'key');
  }
}

export function assertRevision(revision: number): void {
  if (!Number.isSafeInteger(revision) || revision < 1) {
    throw new ValidationError(`expectedRevision: expected integer >= 1, got ${String(revision)}`, 'expectedRevision');
  }
}

export function checkKvOptions(opts: KvOptions | undefined): { history: number; ttlMs: number } {
  const history = opts?.history ?? 1;
  const ttlMs = opts?.ttlMs ?? 0;
  if (!Number.isInteger(history) || history < 1 || history > 64) {
    throw new ValidationError(`history: expected integer between 1 and 64, got ${String(history)}`, 'history');
  }
  if (!Number.isInteger(ttlMs) || ttlMs < 0) {
    throw new ValidationError(`ttlMs: expected integer >= 0, got ${String(ttlMs)}`, 'ttlMs');
  }
  return { history, ttlMs };
}

export function assertTimeout(timeoutMs: number): void {
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 2_147_483_647) {
    throw new ValidationError(`timeoutMs: expected integer >= 1, got ${String(timeoutMs)}`, 'timeoutMs');
  }
}
