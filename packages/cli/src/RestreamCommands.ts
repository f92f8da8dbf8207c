import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { CliError } from './CliError.js';
import { resolveConfig } from './Config.js';
import { defaultUrl } from './EventCommands.js';
import { NodeApi } from './NodeApi.js';
import { printJson, printLines, printTable } from './Output.js';

/**
 * `mcu restream start|stop|list <event>`: pushes of an event's program to RTMP servers, through a
 * node's HTTP API (docs/restream.md). The ingest URL holds the stream key, so it is read from a
 * file (`--url-file`) or stdin, never from the command line (where `ps` and shell history would
 * show it); the node answers with the key masked.
 */

type Flags = Record<string, unknown> & { json?: boolean };

const restreamSchema = z.looseObject({
  id: z.string(),
  url: z.string(),
  state: z.string(),
  bytes: z.number(),
  reconnects: z.number(),
  rendition: z.string().optional(),
  liveSince: z.string().nullable().optional(),
  lastError: z.string().nullable().optional(),
});
const restreamListSchema = z.object({ restreams: z.array(restreamSchema) });

async function client(flags: Flags): Promise<NodeApi> {
  const { config } = await resolveConfig(flags);
  return new NodeApi(config.url ?? defaultUrl, config.token ?? config.adminToken);
}

const path = (...parts: string[]) => `/${parts.map(encodeURIComponent).join('/')}`;

/** The first non-empty line of the file (`-`: stdin); the URL is never echoed, even in an error. */
async function readUrl(file: string | undefined): Promise<string> {
  let text: string;
  if (file === undefined || file === '-') {
    if (file === undefined && process.stdin.isTTY) process.stderr.write('RTMP URL (rtmp://host/app/streamKey), then Enter: ');
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) {
      chunks.push(chunk as Buffer);
      if (process.stdin.isTTY && Buffer.concat(chunks).includes(10)) break;
    }
    text = Buffer.concat(chunks).toString('utf8');
  } else {
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new CliError(`--url-file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 2);
    }
  }
  const url = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .find((l) => l.length > 0);
  if (!url) throw new CliError(`no RTMP URL in ${file === undefined || file === '-' ? 'stdin' : file}: expected one line rtmp://host/app/streamKey`, 2);
  return url;
}

function ago(iso: string | null | undefined): string {
  if (!iso) return '-';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 120 ? `${s} s` : `${Math.round(s / 60)} min`;
}

export async function start(event: string, flags: Flags): Promise<void> {
  const url = await readUrl(typeof flags.urlFile === 'string' ? flags.urlFile : undefined);
  const r = await (await client(flags)).request('POST', path('api', 'events', event, 'restreams'), restreamSchema, { url });
  if (flags.json) return printJson(r);
  printLines([`restream ${r.id} of event ${event} to ${r.url}: ${r.state}`, `  follow it with: mcu restream list ${event}`]);
}

export async function list(event: string, flags: Flags): Promise<void> {
  const { restreams } = await (await client(flags)).request('GET', path('api', 'events', event, 'restreams'), restreamListSchema);
  if (flags.json) return printJson({ restreams });
  if (restreams.length === 0) return printLines([`event ${event} has no restreams`]);
  printTable(
    ['ID', 'STATE', 'LIVE FOR', 'BYTES', 'RECONNECTS', 'URL', 'LAST ERROR'],
    restreams.map((r) => [r.id, r.state, ago(r.liveSince), String(r.bytes), String(r.reconnects), r.url, r.lastError ?? '-']),
  );
}

/** Stops one restream, or every restream of the event when no id is given. */
export async function stop(event: string, id: string | undefined, flags: Flags): Promise<void> {
  const api = await client(flags);
  const ids = id !== undefined ? [id] : (await api.request('GET', path('api', 'events', event, 'restreams'), restreamListSchema)).restreams.map((r) => r.id);
  const stopped = [];
  for (const rid of ids) stopped.push(await api.request('DELETE', path('api', 'events', event, 'restreams', rid), restreamSchema));
  if (flags.json) return printJson({ restreams: stopped });
  if (stopped.length === 0) return printLines([`event ${event} has no restreams`]);
  printLines(stopped.map((r) => `restream ${r.id} to ${r.url} stopped (${r.bytes} bytes sent, ${r.reconnects} reconnects)`));
}
