/**
 * Where recordings are kept: segments (ciphertext as produced) and each recording's manifest,
 * under `<event>/<recording>/`. One interface, two homes: a directory (DirectoryStore, the
 * single-node default) and the cluster's JetStream Object Store (ObjectStoreStore.ts), so that a
 * recording outlives the node that made it.
 */
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';

/** Where one segment's ciphertext goes as it is produced. */
export interface SegmentSink {
  write(chunk: Uint8Array): Promise<void>;
  /** Idempotent. */
  close(): Promise<void>;
  /** Stops storing anything more of this segment (another node continues the recording); what is stored stays. */
  discard?(): Promise<void>;
}

export interface RecordingStore {
  readonly kind: 'directory' | 'object-store';
  openSegment(eventId: string, recordingId: string, name: string): Promise<SegmentSink>;
  /** The stored bytes of a segment, or null when absent. */
  readSegment(eventId: string, recordingId: string, name: string): Promise<{ size: number; stream: Readable } | null>;
  putManifest(eventId: string, recordingId: string, manifest: string): Promise<void>;
  getManifest(eventId: string, recordingId: string): Promise<string | null>;
  /** Recording ids of an event that have a manifest. */
  listRecordings(eventId: string): Promise<string[]>;
  close(): Promise<void>;
}

/** Names that are safe as one path segment (ids are base64url / uuid). */
export function checkName(name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(name) || name.includes('..')) throw new RangeError(`bad storage name ${JSON.stringify(name)}`);
  return name;
}

class FileSegmentSink implements SegmentSink {
  private closed = false;
  constructor(private readonly fh: FileHandle) {}

  async write(chunk: Uint8Array): Promise<void> {
    let off = 0;
    while (off < chunk.length) {
      const { bytesWritten } = await this.fh.write(chunk, off, chunk.length - off);
      off += bytesWritten;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close();
  }
}

/** `<dir>/<event>/<recording>/segment-00000.webm.age`, `manifest.json`. */
export class DirectoryStore implements RecordingStore {
  readonly kind = 'directory' as const;

  constructor(readonly dir: string) {}

  private path(eventId: string, recordingId: string, name?: string): string {
    const base = join(this.dir, checkName(eventId), checkName(recordingId));
    return name === undefined ? base : join(base, checkName(name));
  }

  async openSegment(eventId: string, recordingId: string, name: string): Promise<SegmentSink> {
    await mkdir(this.path(eventId, recordingId), { recursive: true, mode: 0o700 });
    // 'wx': a segment is written once; an existing one is never overwritten.
    return new FileSegmentSink(await open(this.path(eventId, recordingId, name), 'wx', 0o600));
  }

  async readSegment(eventId: string, recordingId: string, name: string): Promise<{ size: number; stream: Readable } | null> {
    const p = this.path(eventId, recordingId, name);
    try {
      const s = await stat(p);
      return { size: s.size, stream: createReadStream(p) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  /** Removes a stored segment (a spool's copy once the segment is in the Object Store). */
  async removeSegment(eventId: string, recordingId: string, name: string): Promise<void> {
    await rm(this.path(eventId, recordingId, name), { force: true });
  }

  async putManifest(eventId: string, recordingId: string, manifest: string): Promise<void> {
    await mkdir(this.path(eventId, recordingId), { recursive: true, mode: 0o700 });
    // Written aside and renamed: a crash leaves the previous manifest, never half of one.
    const p = this.path(eventId, recordingId, 'manifest.json');
    await writeFile(`${p}.tmp`, manifest, { mode: 0o600 });
    await rename(`${p}.tmp`, p);
  }

  async getManifest(eventId: string, recordingId: string): Promise<string | null> {
    try {
      return await readFile(this.path(eventId, recordingId, 'manifest.json'), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  async listRecordings(eventId: string): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(join(this.dir, checkName(eventId)));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const out: string[] = [];
    for (const n of names) if ((await this.getManifest(eventId, n)) !== null) out.push(n);
    return out;
  }

  async close(): Promise<void> {}
}

export function readableFrom(bytes: Uint8Array): Readable {
  return Readable.from([Buffer.from(bytes)]);
}
