/**
 * A recording's manifest: its segments (index, start, duration, size, SHA-256 of the stored
 * bytes), stored beside them, and how it is authenticated when no node may hold a key that
 * opens the recording.
 *
 * Each recording has a secret `chainKey` (32 random bytes) that lives only in the recording
 * node's memory and inside every segment's encrypted payload (the container's comment tag, see
 * `segmentComment`), so only the recipients' identities can read it. The manifest carries an
 * HMAC-SHA256 under that key, and each segment's comment names the SHA-256 of the segment before
 * it (a chain). Anyone can check the stored bytes against the manifest's hashes; the producer,
 * after decrypting with the identity, can also check that the manifest is the one the recorder
 * wrote (its MAC) and that every segment is in its place (the chain): a removed, swapped,
 * reordered or truncated segment, or a rewritten manifest, is detected. An age recipient is
 * public, so encryption alone proves nothing about who wrote a segment: the secret key inside is
 * what a forger lacks.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';

export const manifestSegmentSchema = z.object({
  index: z.number().int().min(0),
  name: z.string().min(1),
  container: z.enum(['webm', 'mp4']),
  video: z.boolean(),
  /** Wall time of its first frame (the event's media clock). */
  start: z.string(),
  startMediaMs: z.number(),
  durationMs: z.number().min(0),
  size: z.number().int().min(0),
  /** SHA-256 of the stored bytes (hex); null while it is being written. */
  sha256: z.string().regex(/^[0-9a-f]{64}$/).nullable(),
  complete: z.boolean(),
});

export const manifestSchema = z.object({
  version: z.literal(1),
  id: z.string(),
  eventId: z.string(),
  state: z.enum(['recording', 'stopped', 'failed']),
  startedAt: z.string(),
  stoppedAt: z.string().nullable(),
  recipients: z.array(z.string()),
  rendition: z.string().nullable(),
  segmentMinutes: z.number(),
  segments: z.array(manifestSegmentSchema),
  /** HMAC-SHA256 (hex) of the rest under the recording's chain key. */
  mac: z.string().regex(/^[0-9a-f]{64}$/),
});

export type ManifestSegment = z.infer<typeof manifestSegmentSchema>;
export type Manifest = z.infer<typeof manifestSchema>;
export type UnsignedManifest = Omit<Manifest, 'mac'>;

/** JSON with keys sorted at every level: the bytes the MAC covers. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

export function manifestMac(m: UnsignedManifest, chainKey: Uint8Array): string {
  const { mac: _ignored, ...rest } = m as Manifest;
  return createHmac('sha256', chainKey).update(canonicalJson(rest)).digest('hex');
}

export function signManifest(m: UnsignedManifest, chainKey: Uint8Array): Manifest {
  return { ...m, mac: manifestMac(m, chainKey) };
}

export function macMatches(m: Manifest, chainKey: Uint8Array): boolean {
  const want = Buffer.from(manifestMac(m, chainKey), 'hex');
  return timingSafeEqual(want, Buffer.from(m.mac, 'hex'));
}

export function parseManifest(text: string): Manifest {
  return manifestSchema.parse(JSON.parse(text));
}

const COMMENT_PREFIX = 'mcu-recording/1';

/** What a segment carries inside its encryption (the container's comment tag). */
export interface SegmentChainLink {
  recording: string;
  segment: number;
  /** SHA-256 of the previous segment's stored bytes, or '-' for the first. */
  prev: string;
  /** The recording's chain key, hex. */
  key: string;
}

export function segmentComment(link: SegmentChainLink): string {
  return `${COMMENT_PREFIX} recording=${link.recording} segment=${link.segment} prev=${link.prev} key=${link.key}`;
}

export function parseSegmentComment(comment: string): SegmentChainLink | null {
  const m = /mcu-recording\/1 recording=(\S+) segment=(\d+) prev=([0-9a-f]{64}|-) key=([0-9a-f]{64})/.exec(comment);
  if (!m) return null;
  return { recording: m[1], segment: Number(m[2]), prev: m[3], key: m[4] };
}
