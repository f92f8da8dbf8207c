/**
 * Recordings in the cluster's JetStream Object Store (one bucket per cluster), so that a recording
 * outlives the node that made it and any node serves it.
 *
 * A segment is written to the node's local spool directory as it is produced (ciphertext, as in
 * DirectoryStore) and, while it is written, its new ciphertext goes to the bucket every
 * `chunkMs` as a chunk object (`<file>.chunk-000000`, …): a node that dies loses at most the
 * last `chunkMs` of what it had encrypted, and the next holder of the event continues the
 * recording from what the bucket has. A segment ends with its last chunk (so ending one, and a
 * handover, does not wait for an upload); then it is put as one object, its spooled copy deleted,
 * and its chunks deleted 30 s later. Manifests go to the bucket at every change. Reads come from
 * the whole object, else the chunks joined in order, else the local spool. Object names:
 * `<event>/<recording>/<file>`.
 */
import { Readable } from 'node:stream';
import type { ObjectStore } from 'nats';
import { DirectoryStore, checkName } from './RecordingStore.js';
import type { RecordingStore, SegmentSink } from './RecordingStore.js';

const MANIFEST = 'manifest.json';

export const OBJECT_STORE_DEFAULTS = Object.freeze({
  /** An in-progress segment's new ciphertext reaches the bucket this often. */
  chunkMs: 1000,
  /** Ciphertext kept for chunks the bucket did not take (NATS away): beyond it, the segment waits for its end. */
  maxUnsentBytes: 64 << 20,
});

/**
 * An object's bytes, or null when absent. nats.js's get() waits forever for the chunks of an
 * object replaced (its chunks purged) between reading its info and subscribing to them — a
 * manifest rewritten as it is read: the read is given up after `timeoutMs` and tried again.
 */
async function getBlob(os: ObjectStore, name: string, timeoutMs = 3000, attempts = 4): Promise<Uint8Array | null> {
  for (let attempt = 1; ; attempt++) {
    const got = await os.get(name);
    if (got === null) return null;
    const reader = got.data.getReader();
    const parts: Uint8Array[] = [];
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    try {
      for (;;) {
        const r = await Promise.race([reader.read(), timedOut]);
        if (r === 'timeout') break;
        if (r.done) return Buffer.concat(parts);
        parts.push(r.value);
      }
    } finally {
      clearTimeout(timer);
    }
    await reader.cancel().catch(() => undefined);
    if (attempt >= attempts) throw new Error(`object ${name}: no data within ${timeoutMs} ms (${attempts} tries)`);
  }
}

/** Chunks of a segment put whole are deleted this long after (readers going through them finish). */
const CHUNK_GRACE_MS = 30_000;

function chunkName(object: string, n: number): string {
  return `${object}.chunk-${String(n).padStart(6, '0')}`;
}

export class ObjectStoreStore implements RecordingStore {
  readonly kind = 'object-store' as const;
  private readonly spool: DirectoryStore;
  private readonly uploads = new Set<Promise<void>>();
  /** Chunk deletions waiting for readers that may be going through the chunks. */
  private readonly pending = new Map<NodeJS.Timeout, () => Promise<void>>();
  private readonly chunkMs: number;

  private bucket: Promise<ObjectStore> | null = null;

  /** `os`: the bucket, or how to open it (on first use: a node that never records creates none). */
  constructor(
    private readonly os: ObjectStore | (() => Promise<ObjectStore>),
    spoolDir: string,
    opts: { chunkMs?: number } = {},
  ) {
    this.spool = new DirectoryStore(spoolDir);
    this.chunkMs = opts.chunkMs ?? OBJECT_STORE_DEFAULTS.chunkMs;
  }

  private store(): Promise<ObjectStore> {
    if (this.bucket === null) {
      const os = this.os;
      this.bucket = typeof os === 'function' ? os() : Promise.resolve(os);
      this.bucket.catch(() => {
        this.bucket = null;
      });
    }
    return this.bucket;
  }

  private name(eventId: string, recordingId: string, file: string): string {
    return `${checkName(eventId)}/${checkName(recordingId)}/${checkName(file)}`;
  }

  async openSegment(eventId: string, recordingId: string, name: string): Promise<SegmentSink> {
    const local = await this.spool.openSegment(eventId, recordingId, name);
    const object = this.name(eventId, recordingId, name);
    // Ciphertext not yet in a chunk object, in order; a chunk that fails is tried again next time.
    let unsent: Buffer[] = [];
    let unsentBytes = 0;
    let chunks = 0;
    let chunking = true;
    let sending: Promise<void> | null = null;
    const sendChunk = (): Promise<void> => {
      sending ??= (async () => {
        if (!chunking || unsent.length === 0) return;
        const take = unsent.length;
        const bytes = take === 1 ? unsent[0] : Buffer.concat(unsent.slice(0, take));
        try {
          await (await this.store()).putBlob({ name: chunkName(object, chunks) }, bytes);
          chunks++;
          unsent = unsent.slice(take);
          unsentBytes -= bytes.length;
        } catch {
          // kept for the next try
        }
      })().finally(() => {
        sending = null;
      });
      return sending;
    };
    const timer = setInterval(() => void sendChunk(), this.chunkMs);
    timer.unref();
    const stopChunks = async () => {
      clearInterval(timer);
      chunking = false;
      unsent = [];
      await sending;
    };
    let closing: Promise<void> | null = null;
    return {
      write: async (chunk) => {
        await local.write(chunk);
        if (!chunking) return;
        unsent.push(Buffer.from(chunk));
        unsentBytes += chunk.length;
        // NATS away for long: the segment is stored when it ends (the spool has it all).
        if (unsentBytes > OBJECT_STORE_DEFAULTS.maxUnsentBytes) await stopChunks();
      },
      close: () => {
        closing ??= (async () => {
          clearInterval(timer);
          await sending;
          await local.close();
          // The rest as a last chunk: then the chunks hold the whole segment, and the segment is
          // complete without waiting for it to be put whole (a handover waits for this).
          if (chunking && unsent.length > 0) await sendChunk();
          const chunked = chunking && unsent.length === 0;
          chunking = false;
          unsent = [];
          // Put whole, then its chunks (a little later: a reader may be going through them) and the spool's copy go.
          const upload = this.upload(eventId, recordingId, name).then(async () => {
            await this.spool.removeSegment(eventId, recordingId, name);
            this.later(() => this.deleteChunks(object, chunks));
          });
          this.uploads.add(upload);
          const done = upload.finally(() => this.uploads.delete(upload));
          if (chunked) {
            // Failing, the chunks stay what readers get.
            done.catch(() => undefined);
            return;
          }
          await done;
        })();
        return closing;
      },
      discard: () => {
        closing ??= (async () => {
          await stopChunks();
          await local.close();
        })();
        return closing;
      },
    };
  }

  /** Runs `fn` after `CHUNK_GRACE_MS`, or when the store closes. */
  private later(fn: () => Promise<void>): void {
    const timer = setTimeout(() => {
      this.pending.delete(timer);
      void fn();
    }, CHUNK_GRACE_MS);
    timer.unref();
    this.pending.set(timer, fn);
  }

  /** The whole segment is in the bucket: its chunks go (best effort; readers take the whole object first). */
  private async deleteChunks(object: string, count: number): Promise<void> {
    const os = await this.store();
    for (let n = 0; n < count; n++) await os.delete(chunkName(object, n)).catch(() => undefined);
  }

  private async upload(eventId: string, recordingId: string, name: string): Promise<void> {
    const stored = await this.spool.readSegment(eventId, recordingId, name);
    if (!stored) return;
    await (await this.store()).put({ name: this.name(eventId, recordingId, name) }, Readable.toWeb(stored.stream) as ReadableStream<Uint8Array>);
  }

  async readSegment(eventId: string, recordingId: string, name: string): Promise<{ size: number; stream: Readable } | null> {
    const key = this.name(eventId, recordingId, name);
    const os = await this.store();
    const info = await os.info(key);
    if (info && !info.deleted) {
      const got = await os.get(key);
      if (got) return { size: info.size, stream: Readable.fromWeb(got.data as import('node:stream/web').ReadableStream<Uint8Array>) };
    }
    // Being written (here or on another node), or left by a node that stopped while writing it: its chunks.
    const sizes: number[] = [];
    for (;;) {
      const c = await os.info(chunkName(key, sizes.length));
      if (!c || c.deleted) break;
      sizes.push(c.size);
    }
    if (sizes.length > 0) {
      async function* chunks(): AsyncGenerator<Uint8Array> {
        for (let n = 0; n < sizes.length; n++) {
          const blob = await getBlob(os, chunkName(key, n));
          if (blob === null) throw new Error(`chunk ${n} of ${key} is gone`);
          yield blob;
        }
      }
      return { size: sizes.reduce((a, b) => a + b, 0), stream: Readable.from(chunks()) };
    }
    // Written here and not uploaded (NATS was away).
    return this.spool.readSegment(eventId, recordingId, name);
  }

  async putManifest(eventId: string, recordingId: string, manifest: string): Promise<void> {
    await (await this.store()).putBlob({ name: this.name(eventId, recordingId, MANIFEST) }, new TextEncoder().encode(manifest));
  }

  async getManifest(eventId: string, recordingId: string): Promise<string | null> {
    const blob = await getBlob(await this.store(), this.name(eventId, recordingId, MANIFEST));
    return blob === null ? null : new TextDecoder().decode(blob);
  }

  async listRecordings(eventId: string): Promise<string[]> {
    const prefix = `${checkName(eventId)}/`;
    const out: string[] = [];
    for (const info of await (await this.store()).list()) {
      if (info.deleted || !info.name.startsWith(prefix) || !info.name.endsWith(`/${MANIFEST}`)) continue;
      out.push(info.name.slice(prefix.length, -(MANIFEST.length + 1)));
    }
    return out;
  }

  /** Waits for segment uploads in flight, and deletes the chunks of those put whole. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.uploads]);
    const pending = [...this.pending];
    this.pending.clear();
    for (const [timer] of pending) clearTimeout(timer);
    await Promise.allSettled(pending.map(([, fn]) => fn()));
  }
}
