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
  /** The part (holder) that wrote it; absent: 0. */
  part: z.number().int().min(0).optional(),
});

/**
 * A recording continued by another node (a mixer failover or handover) is made of parts, one per
 * holder. Each part has its own chain key (in its segments) and MAC: the new holder cannot read
 * the old one's key, so it copies the earlier parts' records as they are and binds its first
 * segment to the last stored segment of the part before (`prev`, also inside that segment).
 */
export const manifestPartSchema = z.object({
  part: z.number().int().min(0),
  startedAt: z.string(),
  /** Index of its first segment. */
  firstSegment: z.number().int().min(0),
  /** Its holder ended it (stopped, or handed over): false when the node stopped while writing. */
  closed: z.boolean(),
  /** The last stored segment of the part before, as this part's holder found it in the store. */
  prev: z.object({ segment: z.number().int().min(0), size: z.number().int().min(0), sha256: z.string().regex(/^[0-9a-f]{64}$/) }).nullable(),
  /** HMAC-SHA256 (hex) of `partView` under this part's chain key. */
  mac: z.string().regex(/^[0-9a-f]{64}$/),
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
  /** Absent: one part (written before parts existed). */
  parts: z.array(manifestPartSchema).optional(),
  /** HMAC-SHA256 (hex) of the rest under the chain key of the last part. */
  mac: z.string().regex(/^[0-9a-f]{64}$/),
});

export type ManifestSegment = z.infer<typeof manifestSegmentSchema>;
export type ManifestPart = z.infer<typeof manifestPartSchema>;
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

/** What a part's MAC covers: the recording's identity, the part's record and its own segments. */
export function partView(m: UnsignedManifest, part: Omit<ManifestPart, 'mac'>): unknown {
  const { mac: _ignored, ...record } = part as ManifestPart;
  return {
    id: m.id,
    eventId: m.eventId,
    startedAt: m.startedAt,
    recipients: m.recipients,
    rendition: m.rendition,
    segmentMinutes: m.segmentMinutes,
    part: record,
    segments: m.segments.filter((s) => (s.part ?? 0) === part.part),
  };
}

export function partMac(m: UnsignedManifest, part: Omit<ManifestPart, 'mac'>, chainKey: Uint8Array): string {
  return createHmac('sha256', chainKey).update(canonicalJson(partView(m, part))).digest('hex');
}

export function partMacMatches(m: Manifest, part: ManifestPart, chainKey: Uint8Array): boolean {
  return timingSafeEqual(Buffer.from(partMac(m, part, chainKey), 'hex'), Buffer.from(part.mac, 'hex'));
}

export function parseManifest(text: string): Manifest {
  return manifestSchema.parse(JSON.parse(text));
}

const COMMENT_PREFIX = 'mcu-recording/1';

/** What a segment carries inside its encryption (the container's comment tag). */
export interface SegmentChainLink {
  recording: string;
  segment: number;
  /** The part (holder) that wrote it: 0 when absent. */
  part: number;
  /** SHA-256 of the previous segment's stored bytes, or '-' for the first. */
  prev: string;
  /** The recording's chain key, hex. */
  key: string;
}

export function segmentComment(link: SegmentChainLink): string {
  return `${COMMENT_PREFIX} recording=${link.recording} segment=${link.segment}${link.part > 0 ? ` part=${link.part}` : ''} prev=${link.prev} key=${link.key}`;
}

export function parseSegmentComment(comment: string): SegmentChainLink | null {
  const m = /mcu-recording\/1 recording=(\S+) segment=(\d+)(?: part=(\d+))? prev=([0-9a-f]{64}|-) key=([0-9a-f]{64})/.exec(comment);
  if (!m) return null;
  return { recording: m[1], segment: Number(m[2]), part: m[3] === undefined ? 0 : Number(m[3]), prev: m[4], key: m[5] };
}
