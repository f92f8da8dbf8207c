/**
 * Recordings in the cluster's JetStream Object Store (one bucket per cluster), so that a recording
 * outlives the node that made it and any node serves it.
 *
 * A segment is written to the node's local spool directory as it is produced (ciphertext, as in
 * DirectoryStore: a crash leaves it there, playable up to the crash) and put into the bucket when
 * it is complete; manifests go to the bucket at every change. Reads come from the bucket, and from
 * the spool for a segment still being written. Object names: `<event>/<recording>/<file>`.
 */
import { Readable } from 'node:stream';
import type { ObjectStore } from 'nats';
import { DirectoryStore, checkName } from './RecordingStore.js';
import type { RecordingStore, SegmentSink } from './RecordingStore.js';

const MANIFEST = 'manifest.json';

export class ObjectStoreStore implements RecordingStore {
  readonly kind = 'object-store' as const;
  private readonly spool: DirectoryStore;
  private readonly uploads = new Set<Promise<void>>();

  private bucket: Promise<ObjectStore> | null = null;

  /** `os`: the bucket, or how to open it (on first use: a node that never records creates none). */
  constructor(
    private readonly os: ObjectStore | (() => Promise<ObjectStore>),
    spoolDir: string,
  ) {
    this.spool = new DirectoryStore(spoolDir);
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
    let closing: Promise<void> | null = null;
    return {
      write: (chunk) => local.write(chunk),
      close: () => {
        closing ??= (async () => {
          await local.close();
          const upload = this.upload(eventId, recordingId, name);
          this.uploads.add(upload);
          try {
            await upload;
          } finally {
            this.uploads.delete(upload);
          }
        })();
        return closing;
      },
    };
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
    // Still being written here (or not yet uploaded).
    return this.spool.readSegment(eventId, recordingId, name);
  }

  async putManifest(eventId: string, recordingId: string, manifest: string): Promise<void> {
    await (await this.store()).putBlob({ name: this.name(eventId, recordingId, MANIFEST) }, new TextEncoder().encode(manifest));
  }

  async getManifest(eventId: string, recordingId: string): Promise<string | null> {
    const blob = await (await this.store()).getBlob(this.name(eventId, recordingId, MANIFEST));
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

  /** Waits for segment uploads in flight. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.uploads]);
  }
}
