import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { z } from 'zod';
import { Decrypter } from 'age-encryption';
import { macMatches, manifestSchema, parseSegmentComment, type Manifest } from '@mcu/recording';
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
  stored: 'ok' | 'missing' | 'size differs' | 'hash differs' | 'incomplete';
  chain: 'ok' | 'broken' | 'unchecked' | 'cannot decrypt';
  file?: string;
  bytes?: Buffer;
}

/**
 * Checks every segment against the manifest (present, size, SHA-256); with identities, decrypts
 * each and checks the chain inside (index, previous segment's hash, one key) and the manifest's
 * MAC under that key (Manifest.ts). Decrypted segments are written to `outDir` when given.
 */
async function check(base: string, token: string | undefined, m: Manifest, identities: string[] | null, outDir: string | null): Promise<{ segments: SegmentCheck[]; manifestAuthentic: boolean | null; problems: string[] }> {
  const problems: string[] = [];
  const segments: SegmentCheck[] = [];
  let key: string | null = null;
  let prev = '-';
  m.segments.forEach((s, i) => {
    if (s.index !== i) problems.push(`the manifest's segment ${i} says index ${s.index}`);
  });
  for (const s of m.segments) {
    const c: SegmentCheck = { index: s.index, name: s.name, stored: 'ok', chain: identities ? 'ok' : 'unchecked' };
    segments.push(c);
    const bytes = await fetchSegment(base, token, m.eventId, m.id, s.index);
    if (bytes === null) {
      c.stored = 'missing';
      c.chain = identities ? 'broken' : 'unchecked';
      problems.push(`segment ${s.index} is missing from the store`);
      prev = s.sha256 ?? '-';
      continue;
    }
    c.bytes = bytes;
    const sha = createHash('sha256').update(bytes).digest('hex');
    if (!s.complete || s.sha256 === null) {
      c.stored = 'incomplete';
      problems.push(`segment ${s.index} was never completed (the recording node stopped while writing it)`);
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
      if (!dec.ok && c.stored !== 'incomplete') {
        c.chain = 'cannot decrypt';
        problems.push(`segment ${s.index} does not decrypt with the identity: ${dec.error}`);
      } else if (!link || link.recording !== m.id || link.segment !== s.index || link.prev !== prev || (key !== null && link.key !== key)) {
        c.chain = 'broken';
        problems.push(`segment ${s.index} is not in its place: the chain inside it does not follow segment ${s.index - 1}`);
      }
      if (link && key === null) key = link.key;
      if (outDir === null) await rm(file, { force: true });
    }
    prev = sha;
  }
  let manifestAuthentic: boolean | null = null;
  if (identities) {
    manifestAuthentic = key !== null && macMatches(m, Buffer.from(key, 'hex'));
    if (!manifestAuthentic) problems.push("the manifest's MAC does not match: it was not written by the recorder (edited, or a segment list rewritten)");
  }
  return { segments, manifestAuthentic, problems };
}

export async function verify(event: string, recording: string | undefined, flags: Flags): Promise<void> {
  const { api, base, token } = await connect(flags);
  const rid = await pick(api, event, recording);
  const m = await fetchManifest(api, event, rid);
  const identities = typeof flags.identity === 'string' ? await readIdentities(flags.identity) : null;
  const r = await check(base, token, m, identities, null);
  const ok = r.problems.length === 0;
  if (flags.json) {
    printJson({ id: rid, ok, state: m.state, manifestAuthentic: r.manifestAuthentic, segments: r.segments.map(({ bytes: _b, file: _f, ...s }) => s), problems: r.problems });
  } else {
    printTable(['SEGMENT', 'NAME', 'STORED', 'CHAIN'], r.segments.map((s) => [String(s.index), s.name, s.stored, s.chain]));
    printLines([
      `manifest: ${m.segments.length} segment(s), ${m.state}; ${r.manifestAuthentic === null ? 'authenticity not checked (give --identity FILE)' : r.manifestAuthentic ? 'authentic (MAC under the key inside the segments)' : 'NOT authentic'}`,
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
  let joined: string | null = null;
  if (identities) {
    const files = r.segments.filter((s) => s.file && s.chain !== 'cannot decrypt').map((s) => s.file!);
    const kinds = new Set(m.segments.map((s) => `${s.container}/${s.video}`));
    if (files.length > 0 && kinds.size === 1) {
      // ffmpeg's concat demuxer, stream copy: segments are joined, not re-encoded.
      const list = join(out, 'segments.txt');
      await writeFile(list, files.map((f) => `file '${f.replace(/'/g, "'\\''")}'`).join('\n'));
      joined = join(out, `${rid}.${m.segments[0].container}`);
      const ff = spawnSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', '-f', 'concat', '-safe', '0', '-i', list, '-c', 'copy', joined]);
      await rm(list, { force: true });
      if (ff.status !== 0) throw new CliError(`joining the segments with ffmpeg failed: ${ff.stderr?.toString().trim() || ff.error?.message}`);
      for (const f of files) await rm(f, { force: true });
      lines.push(`recording ${rid}: ${files.length} segment(s) decrypted and joined into ${joined}`);
    } else {
      lines.push(`recording ${rid}: ${files.length} segment(s) decrypted into ${out}${kinds.size > 1 ? ' (segments with and without video are kept apart)' : ''}`);
    }
  } else {
    lines.push(`recording ${rid}: ${r.segments.filter((s) => s.bytes).length} encrypted segment(s) saved in ${out} (open each with: age -d -i key.txt -o out.webm <segment>)`);
  }
  if (flags.json) printJson({ id: rid, out, joined, problems: r.problems });
  else printLines([...lines, ...r.problems.map((p) => `  warning: ${p}`)]);
  if (r.problems.length > 0) process.exitCode = 1;
}
