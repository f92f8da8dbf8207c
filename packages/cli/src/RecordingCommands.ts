import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { z } from 'zod';
import { Decrypter } from 'age-encryption';
import { macMatches, manifestSchema, parseSegmentComment, partMacMatches, type Manifest } from '@mcu/recording';
import { CliError } from './CliError.js';
import { resolveConfig } from './Config.js';
import { NodeApi } from './NodeApi.js';
import { printJson, printLines, printTable } from './Output.js';
import { defaultUrl } from './EventCommands.js';

/** `mcu recording …`: start, stop, list, download and verify an event's recordings over a node's API. */

type Flags = Record<string, unknown> & { json?: boolean };

const recordingSchema = z.looseObject({
  id: z.string(),
  state: z.string(),
  startedAt: z.string(),
  durationMs: z.number().optional(),
  size: z.number().optional(),
  segmentCount: z.number().optional(),
  rendition: z.string().nullable().optional(),
});
const listSchema = z.object({ recordings: z.array(recordingSchema) });
const startedSchema = z.looseObject({ id: z.string(), state: z.string(), startedAt: z.string() });
const stoppedSchema = z.looseObject({ recording: recordingSchema, recordings: z.array(recordingSchema) });

const path = (...parts: string[]) => `/${parts.map(encodeURIComponent).join('/')}`;

async function connect(flags: Flags): Promise<{ api: NodeApi; base: string; token: string | undefined }> {
  const { config } = await resolveConfig(flags);
  const base = (config.url ?? defaultUrl).replace(/\/+$/, '');
  const token = config.token ?? config.adminToken;
  return { api: new NodeApi(base, token), base, token };
}

function sizeText(bytes: number | undefined): string {
  if (bytes === undefined) return '-';
  return bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(1)} MiB` : `${(bytes / 1024).toFixed(0)} KiB`;
}

function durationText(ms: number | undefined): string {
  if (ms === undefined) return '-';
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 3600)}:${String(Math.floor(s / 60) % 60).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
}

function recipientsOf(flags: Flags): string[] | undefined {
  const r = flags.recipient;
  if (r === undefined) return undefined;
  return (Array.isArray(r) ? r : [r]).map(String);
}

export async function start(event: string, flags: Flags): Promise<void> {
  const { api } = await connect(flags);
  const body: Record<string, unknown> = {};
  const recipients = recipientsOf(flags);
  if (recipients) body.recipients = recipients;
  if (flags.audioOnly === true) body.rendition = false;
  else if (typeof flags.rendition === 'string') body.rendition = flags.rendition;
  if (flags.segmentMinutes !== undefined) {
    const n = Number(flags.segmentMinutes);
    if (!Number.isFinite(n) || n <= 0) throw new CliError(`--segment-minutes: ${JSON.stringify(flags.segmentMinutes)} is not a positive number`, 2);
    body.segmentMinutes = n;
  }
  const r = await api.request('POST', path('api', 'events', event, 'recordings'), startedSchema, body);
  if (flags.json) return printJson(r);
  printLines([`recording ${r.id} of event ${event} started at ${r.startedAt}`]);
}

export async function stop(event: string, recording: string, flags: Flags): Promise<void> {
  const { api } = await connect(flags);
  const r = await api.request('DELETE', path('api', 'events', event, 'recordings', recording), stoppedSchema);
  if (flags.json) return printJson(r);
  printLines([`recording ${recording} stopped: ${durationText(r.recording.durationMs)}, ${sizeText(r.recording.size)} in ${r.recording.segmentCount ?? 0} segment(s)`]);
}

export async function list(event: string, flags: Flags): Promise<void> {
  const { api } = await connect(flags);
  const { recordings } = await api.request('GET', path('api', 'events', event, 'recordings'), listSchema);
  if (flags.json) return printJson({ recordings });
  if (recordings.length === 0) return printLines([`event ${event} has no recordings`]);
  printTable(
    ['ID', 'STATE', 'STARTED', 'DURATION', 'SIZE', 'SEGMENTS', 'VIDEO'],
    recordings.map((r) => [r.id, r.state, r.startedAt, durationText(r.durationMs), sizeText(r.size), String(r.segmentCount ?? '-'), r.rendition ?? 'audio only']),
  );
}

/** The recording named, or the event's only / latest one. */
async function pick(api: NodeApi, event: string, recording: string | undefined): Promise<string> {
  if (recording) return recording;
  const { recordings } = await api.request('GET', path('api', 'events', event, 'recordings'), listSchema);
  if (recordings.length === 0) throw new CliError(`event ${event} has no recordings`);
  return recordings[recordings.length - 1].id;
}

async function fetchManifest(api: NodeApi, event: string, recording: string): Promise<Manifest> {
  return api.request('GET', path('api', 'events', event, 'recordings', recording, 'manifest'), manifestSchema);
}

/** The stored bytes of a segment, or null when the node has none (404). */
async function fetchSegment(base: string, token: string | undefined, event: string, recording: string, index: number): Promise<Buffer | null> {
  const url = `${base}${path('api', 'events', event, 'recordings', recording, 'segments', String(index))}`;
  const res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  if (res.status === 404) return null;
  if (!res.ok) throw new CliError(`GET ${url}: the node answered ${res.status} ${(await res.text()).slice(0, 200)}`);
  return Buffer.from(await res.arrayBuffer());
}

/** Identities (AGE-SECRET-KEY-1…) from a file written by age-keygen: never from the command line. */
async function readIdentities(file: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new CliError(`--identity: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 2);
  }
  const ids = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('AGE-SECRET-KEY-1'));
  if (ids.length === 0) throw new CliError(`--identity: ${file} holds no age identity (AGE-SECRET-KEY-1…, as written by age-keygen)`, 2);
  return ids;
}

async function decryptTo(ciphertext: Buffer, identities: string[], out: string): Promise<{ ok: boolean; head: Buffer; error?: string }> {
  const d = new Decrypter();
  for (const id of identities) d.addIdentity(id);
  const fh = await open(out, 'w', 0o600);
  const head: Buffer[] = [];
  let headLength = 0;
  try {
    const plain = await d.decrypt(Readable.toWeb(Readable.from([ciphertext])) as ReadableStream<Uint8Array>);
    for await (const chunk of plain as unknown as AsyncIterable<Uint8Array>) {
      if (headLength < 65_536) {
        head.push(Buffer.from(chunk));
        headLength += chunk.length;
      }
      await fh.write(chunk);
    }
    return { ok: true, head: Buffer.concat(head) };
  } catch (err) {
    return { ok: false, head: Buffer.concat(head), error: (err as Error).message };
  } finally {
    await fh.close();
  }
}

interface SegmentCheck {
  index: number;
  name: string;
  part: number;
  /** `cut`: its node stopped while writing it; kept as stored, and the next part names those bytes. */
  stored: 'ok' | 'missing' | 'size differs' | 'hash differs' | 'incomplete' | 'cut' | 'nothing stored';
  chain: 'ok' | 'broken' | 'unchecked' | 'cannot decrypt';
  file?: string;
  bytes?: Buffer;
  /** Media duration of the decrypted segment (cut ones: as far as it was stored). */
  mediaMs?: number;
  /** Decrypted to nothing (a cut segment whose first 64 KiB age chunk never reached the store). */
  empty?: boolean;
}

interface PartReport {
  part: number;
  segments: [number, number] | null;
  /** Ended by its holder (stopped or handed over); false: its node stopped while writing. */
  closed: boolean;
  startMediaMs: number | null;
  /** End of its last frame; for a cut segment, as far as decrypting it showed (null: unknown without --identity). */
  endMediaMs: number | null;
  /** Media time between the end of the part before and this part's first frame. */
  gapBeforeMs: number | null;
  mac: 'ok' | 'mismatch' | 'unchecked';
}

/** Media duration (ms) of a decrypted segment from its last packet, or null (ffprobe missing, nothing readable). */
function mediaDurationMs(file: string): number | null {
  const r = spawnSync('ffprobe', ['-v', 'error', '-show_entries', 'packet=pts_time,duration_time', '-of', 'csv=p=0', file], { maxBuffer: 64 << 20 });
  if (r.status !== 0 && !r.stdout?.length) return null;
  let end = 0;
  for (const line of r.stdout.toString().split('\n')) {
    const [pts, dur] = line.split(',').map(Number);
    if (Number.isFinite(pts)) end = Math.max(end, pts + (Number.isFinite(dur) ? dur : 0));
  }
  return end > 0 ? Math.round(end * 1000) : null;
}

/**
 * Checks every segment against the manifest (present, size, SHA-256); with identities, decrypts
 * each and checks the chain inside (index, part, previous segment's hash, one key per part) and
 * the MACs under those keys (Manifest.ts): each part's own, and the manifest's under the last
 * part's key. A recording continued by other nodes (a failover or handover) is made of parts: the
 * first segment of a part follows the last segment the part before had stored, which the new
 * part's record names (size and hash). Decrypted segments are written to `outDir` when given.
 */
async function check(base: string, token: string | undefined, m: Manifest, identities: string[] | null, outDir: string | null): Promise<{ segments: SegmentCheck[]; parts: PartReport[]; manifestAuthentic: boolean | null; problems: string[] }> {
  const problems: string[] = [];
  const segments: SegmentCheck[] = [];
  const keys = new Map<number, string>();
  const parts = m.parts ?? [];
  const partOf = (n: number) => parts.find((p) => p.part === n);
  let prev = '-';
  m.segments.forEach((s, i) => {
    if (s.index !== i) problems.push(`the manifest's segment ${i} says index ${s.index}`);
  });
  for (let i = 1; i < parts.length; i++) if (parts[i].part !== parts[i - 1].part + 1) problems.push(`the manifest's parts skip from ${parts[i - 1].part} to ${parts[i].part}`);
  for (const s of m.segments) {
    const part = s.part ?? 0;
    const record = partOf(part);
    if (m.parts && !record) problems.push(`segment ${s.index} names part ${part}, which the manifest does not list`);
    // The first segment of a part follows what its record names (the part before's last stored segment).
    if (record && s.index === record.firstSegment) prev = record.prev?.sha256 ?? '-';
    // A later part that continued from this segment: it names the bytes it found stored.
    const namedBy = parts.find((p) => p.prev?.segment === s.index && p.part > part);
    const continuedAfter = parts.some((p) => p.part > part);
    const c: SegmentCheck = { index: s.index, name: s.name, part, stored: 'ok', chain: identities ? 'ok' : 'unchecked' };
    segments.push(c);
    const bytes = await fetchSegment(base, token, m.eventId, m.id, s.index);
    if (bytes === null) {
      if (!s.complete && continuedAfter && !namedBy) {
        // Its node stopped before any of it reached the store; the next part follows the one before.
        c.stored = 'nothing stored';
        c.chain = 'unchecked';
        continue;
      }
      c.stored = 'missing';
      c.chain = identities ? 'broken' : 'unchecked';
      problems.push(`segment ${s.index} is missing from the store`);
      prev = s.sha256 ?? '-';
      continue;
    }
    c.bytes = bytes;
    const sha = createHash('sha256').update(bytes).digest('hex');
    if (!s.complete || s.sha256 === null) {
      if (namedBy && namedBy.prev) {
        c.stored = bytes.length === namedBy.prev.size && sha === namedBy.prev.sha256 ? 'cut' : 'hash differs';
        if (c.stored !== 'cut') problems.push(`segment ${s.index} was changed or swapped: it is not what part ${namedBy.part} found stored after it`);
      } else {
        c.stored = 'incomplete';
        problems.push(`segment ${s.index} was never completed (the recording node stopped while writing it)`);
      }
    } else if (bytes.length !== s.size) {
      c.stored = 'size differs';
      problems.push(`segment ${s.index} was changed or swapped: it is ${bytes.length} bytes, the manifest says ${s.size}`);
    } else if (sha !== s.sha256) {
      c.stored = 'hash differs';
      problems.push(`segment ${s.index} was changed or swapped: its SHA-256 differs from the manifest`);
    }
    if (identities) {
      const file = join(outDir ?? '.', `${s.name.replace(/\.age$/, '')}`);
      const dec = await decryptTo(bytes, identities, file);
      c.file = file;
      const link = parseSegmentComment(dec.head.toString('latin1'));
      if (c.stored === 'cut' && dec.head.length === 0) {
        // Cut before its first 64 KiB age chunk reached the store: only its header (no chain to read).
        c.chain = 'unchecked';
      } else if (!dec.ok && c.stored !== 'incomplete' && c.stored !== 'cut') {
        c.chain = 'cannot decrypt';
        problems.push(`segment ${s.index} does not decrypt with the identity: ${dec.error}`);
      } else if (!link || link.recording !== m.id || link.segment !== s.index || link.part !== part || link.prev !== prev || (keys.has(part) && link.key !== keys.get(part))) {
        c.chain = 'broken';
        problems.push(`segment ${s.index} is not in its place: the chain inside it does not follow ${record && s.index === record.firstSegment && part > 0 ? `the last segment part ${part - 1} stored` : `segment ${s.index - 1}`}`);
      }
      if (link && link.part === part && !keys.has(part)) keys.set(part, link.key);
      c.empty = dec.head.length === 0;
      if (c.stored === 'cut') c.mediaMs = c.empty ? 0 : (mediaDurationMs(file) ?? 0);
      if (outDir === null) await rm(file, { force: true });
    }
    prev = sha;
  }
  let manifestAuthentic: boolean | null = null;
  const macs = new Map<number, PartReport['mac']>();
  if (identities) {
    manifestAuthentic = true;
    for (const p of parts) {
      const key = keys.get(p.part);
      const has = m.segments.some((s) => (s.part ?? 0) === p.part);
      if (!key) {
        macs.set(p.part, 'unchecked');
        if (has) {
          manifestAuthentic = false;
          problems.push(`part ${p.part}: no segment of it decrypts, so its MAC cannot be checked`);
        }
        continue;
      }
      const ok = partMacMatches(m, p, Buffer.from(key, 'hex'));
      macs.set(p.part, ok ? 'ok' : 'mismatch');
      if (!ok) {
        manifestAuthentic = false;
        problems.push(`part ${p.part}'s MAC does not match: its record or segment list was rewritten`);
      }
    }
    const lastKey = keys.get(parts.at(-1)?.part ?? 0);
    if (!lastKey || !macMatches(m, Buffer.from(lastKey, 'hex'))) {
      manifestAuthentic = false;
      problems.push("the manifest's MAC does not match: it was not written by the recorder (edited, or a segment list rewritten)");
    }
  }
  const reports: PartReport[] = (parts.length > 0 ? parts.map((p) => p.part) : [0]).map((n) => {
    const segs = m.segments.filter((s) => (s.part ?? 0) === n);
    const last = segs.at(-1);
    const lastCheck = last && segments.find((c) => c.index === last.index);
    let endMediaMs: number | null = null;
    if (last) {
      if (last.complete) endMediaMs = last.startMediaMs + last.durationMs;
      else if (lastCheck?.mediaMs !== undefined) endMediaMs = last.startMediaMs + lastCheck.mediaMs;
    }
    return {
      part: n,
      segments: segs.length > 0 ? ([segs[0].index, last!.index] as [number, number]) : null,
      closed: partOf(n)?.closed ?? m.state !== 'recording',
      startMediaMs: segs[0]?.startMediaMs ?? null,
      endMediaMs,
      gapBeforeMs: null,
      mac: identities ? (macs.get(n) ?? 'unchecked') : 'unchecked',
    };
  });
  for (let i = 1; i < reports.length; i++) {
    const before = reports.slice(0, i).reverse().find((r) => r.segments !== null);
    if (before && before.endMediaMs !== null && reports[i].startMediaMs !== null) reports[i].gapBeforeMs = Math.round(reports[i].startMediaMs! - before.endMediaMs);
  }
  return { segments, parts: reports, manifestAuthentic, problems };
}

/** One line per part: its segments, how it ended, the gap before it. */
function partLines(parts: PartReport[]): string[] {
  if (parts.length < 2) return [];
  return parts.map((p) => {
    const segs = p.segments ? `segments ${p.segments[0]}–${p.segments[1]}` : 'no segments';
    const ended = p.closed ? 'closed by its node' : 'its node stopped while writing (kept as stored)';
    const gap = p.part === parts[0].part ? '' : p.gapBeforeMs === null ? ', gap before it unknown (give --identity FILE)' : `, gap before it ${(p.gapBeforeMs / 1000).toFixed(2)} s`;
    return `part ${p.part}: ${segs}, ${ended}${gap}`;
  });
}

export async function verify(event: string, recording: string | undefined, flags: Flags): Promise<void> {
  const { api, base, token } = await connect(flags);
  const rid = await pick(api, event, recording);
  const m = await fetchManifest(api, event, rid);
  const identities = typeof flags.identity === 'string' ? await readIdentities(flags.identity) : null;
  const r = await check(base, token, m, identities, null);
  const ok = r.problems.length === 0;
  if (flags.json) {
    printJson({ id: rid, ok, state: m.state, manifestAuthentic: r.manifestAuthentic, parts: r.parts, segments: r.segments.map(({ bytes: _b, file: _f, ...s }) => s), problems: r.problems });
  } else {
    printTable(['SEGMENT', 'PART', 'NAME', 'STORED', 'CHAIN'], r.segments.map((s) => [String(s.index), String(s.part), s.name, s.stored, s.chain]));
    printLines([
      ...partLines(r.parts),
      `manifest: ${m.segments.length} segment(s) in ${r.parts.length} part(s), ${m.state}; ${r.manifestAuthentic === null ? 'authenticity not checked (give --identity FILE)' : r.manifestAuthentic ? 'authentic (MACs under the keys inside the segments)' : 'NOT authentic'}`,
      ok ? `recording ${rid}: ok` : `recording ${rid}: ${r.problems.length} problem(s):`,
      ...r.problems.map((p) => `  - ${p}`),
    ]);
  }
  if (!ok) process.exitCode = 1;
}

export async function download(event: string, recording: string | undefined, flags: Flags): Promise<void> {
  const { api, base, token } = await connect(flags);
  const rid = await pick(api, event, recording);
  const m = await fetchManifest(api, event, rid);
  const out = resolve(typeof flags.out === 'string' ? flags.out : rid);
  await mkdir(out, { recursive: true });
  await writeFile(join(out, 'manifest.json'), JSON.stringify(m, null, 2));
  const identities = typeof flags.identity === 'string' ? await readIdentities(flags.identity) : null;
  const r = await check(base, token, m, identities, identities ? out : null);
  const lines: string[] = [];
  for (const s of r.segments) {
    if (s.bytes && !identities) await writeFile(join(out, s.name), s.bytes);
  }
  const joined: string[] = [];
  if (identities) {
    const usable = r.segments.filter((c) => c.file && c.chain !== 'cannot decrypt' && !c.empty);
    for (const c of r.segments) if (c.file && c.empty) await rm(c.file, { force: true });
    // Runs of segments of one kind (container, with or without video) are joined with ffmpeg's
    // concat demuxer (stream copy, not re-encoded), across parts too: one file per run.
    const runs: SegmentCheck[][] = [];
    for (const c of usable) {
      const seg = m.segments[c.index];
      const last = runs.at(-1)?.at(-1);
      const lastSeg = last && m.segments[last.index];
      if (lastSeg && lastSeg.container === seg.container && lastSeg.video === seg.video) runs.at(-1)!.push(c);
      else runs.push([c]);
    }
    for (const [i, run] of runs.entries()) {
      const list = join(out, 'segments.txt');
      await writeFile(list, run.map((c) => `file '${c.file!.replace(/'/g, "'\\''")}'`).join('\n'));
      const file = join(out, `${rid}${runs.length > 1 ? `-${i + 1}` : ''}.${m.segments[run[0].index].container}`);
      const ff = spawnSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', '-f', 'concat', '-safe', '0', '-i', list, '-c', 'copy', file]);
      await rm(list, { force: true });
      if (ff.status !== 0) throw new CliError(`joining the segments with ffmpeg failed: ${ff.stderr?.toString().trim() || ff.error?.message}`);
      for (const c of run) await rm(c.file!, { force: true });
      joined.push(file);
    }
    lines.push(`recording ${rid}: ${usable.length} segment(s) decrypted and joined into ${joined.join(', ')}${runs.length > 1 ? ' (segments with and without video are kept apart)' : ''}`);
    lines.push(...partLines(r.parts));
  } else {
    lines.push(`recording ${rid}: ${r.segments.filter((s) => s.bytes).length} encrypted segment(s) saved in ${out} (open each with: age -d -i key.txt -o out.webm <segment>)`);
  }
  if (flags.json) printJson({ id: rid, out, joined: joined[0] ?? null, files: joined, parts: r.parts, problems: r.problems });
  else printLines([...lines, ...r.problems.map((p) => `  warning: ${p}`)]);
  if (r.problems.length > 0) process.exitCode = 1;
}
