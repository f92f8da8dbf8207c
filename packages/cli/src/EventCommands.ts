import { z } from 'zod';
import { CliError } from './CliError.js';
import { resolveConfig } from './Config.js';
import { createdEventSchema, eventDetailSchema, eventListSchema, layoutAnswerSchema, NodeApi, participantSchema, type EventInfo } from './NodeApi.js';
import { printJson, printLines, printTable } from './Output.js';

/** `mcu event …`: a client of a node's HTTP API (see README "HTTP API"). */

type Flags = Record<string, unknown> & { json?: boolean };

export const defaultUrl = 'http://127.0.0.1:8080';

async function client(flags: Flags): Promise<NodeApi> {
  const { config } = await resolveConfig(flags);
  // MCU_TOKEN, then MCU_ADMIN_TOKEN (keySources), then the config file's token or adminToken.
  return new NodeApi(config.url ?? defaultUrl, config.token ?? config.adminToken);
}

const path = (...parts: string[]) => `/${parts.map(encodeURIComponent).join('/')}`;

function optionValue<T>(flag: string, value: unknown, schema: z.ZodType<T>, allowed: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new CliError(`${flag}: ${JSON.stringify(value)} is not valid: expected ${allowed}`, 2);
  return parsed.data;
}

/** Where the node serves its pages: the WHIP URL without /whip/<id> (a public URL may have a path). */
function baseOf(e: EventInfo): string {
  return e.whip.replace(/\/whip\/[^/]+$/, '');
}

function layoutText(layout: { kind: string; sourceId?: unknown; regions?: unknown } | undefined): string {
  if (!layout) return '-';
  if (layout.kind === 'presentation') return `presentation (source ${String(layout.sourceId)})`;
  if (layout.kind === 'custom' && Array.isArray(layout.regions)) return `custom (${layout.regions.length} region${layout.regions.length === 1 ? '' : 's'})`;
  return layout.kind;
}

export async function create(name: string | undefined, flags: Flags): Promise<void> {
  const api = await client(flags);
  const body: { name?: string; maxSpeakers?: number; presentersJoin?: string } = {};
  if (name !== undefined) body.name = name;
  if (flags.presentersJoin !== undefined) body.presentersJoin = optionValue('--presenters-join', flags.presentersJoin, z.enum(['live', 'backstage']), 'live or backstage');
  if (flags.maxSpeakers !== undefined) body.maxSpeakers = optionValue('--max-speakers', flags.maxSpeakers, z.coerce.number().int().min(1).max(16), 'an integer 1–16');
  const e = await api.request('POST', '/api/events', createdEventSchema, body);
  if (flags.json) return printJson(e);
  const base = baseOf(e);
  printLines([
    `event ${e.id} created${e.name ? ` ("${e.name}")` : ''}, up to ${e.maxSpeakers} speakers`,
    `  WHIP (presenters publish): ${e.whip}`,
    `  WHEP (viewers play):       ${e.whep}`,
    `  producer token:  ${e.tokens.producer}`,
    `  presenter token: ${e.tokens.presenter}`,
    `  viewer token:    ${e.tokens.viewer}`,
    `  publish page:    ${base}/publish/${e.id}?token=${e.tokens.presenter}`,
    `  watch page:      ${base}/watch/${e.id}?token=${e.tokens.viewer}`,
    `OBS: Settings → Stream → Service "WHIP", Server = ${e.whip}, Bearer Token = the presenter token above`,
  ]);
}

export async function list(flags: Flags): Promise<void> {
  const { events } = await (await client(flags)).request('GET', '/api/events', eventListSchema);
  if (flags.json) return printJson({ events });
  if (events.length === 0) return printLines(['no events']);
  printTable(
    ['ID', 'NAME', 'PARTICIPANTS', 'SPEAKERS', 'LAYOUT', 'CREATED'],
    events.map((e) => [e.id, e.name ?? '', String(e.participants), (e.speakers ?? []).join(',') || '-', layoutText(e.layout), e.createdAt === undefined ? '' : new Date(e.createdAt).toISOString()]),
  );
}

export async function show(id: string, flags: Flags): Promise<void> {
  const e = await (await client(flags)).request('GET', path('api', 'events', id), eventDetailSchema);
  if (flags.json) return printJson(e);
  printLines([
    `event ${e.id}${e.name ? ` ("${e.name}")` : ''}`,
    `  created:      ${e.createdAt === undefined ? '-' : new Date(e.createdAt).toISOString()}`,
    `  max speakers: ${e.maxSpeakers}`,
    `  layout:       ${layoutText(e.layout)}`,
    `  speakers:     ${(e.speakers ?? []).join(', ') || '-'}${e.dominantSpeaker ? ` (dominant ${e.dominantSpeaker})` : ''}`,
    `  WHIP:         ${e.whip}`,
    `  WHEP:         ${e.whep}`,
    `  participants: ${e.participants.length}`,
    ...(e.holder !== undefined ? [`  held by:      ${e.holder ?? '-'} (epoch ${e.epoch ?? 0}); standby: ${(e.standby ?? []).join(', ') || '-'}`] : []),
  ]);
  if (e.participants.length > 0) {
    printTable(
      ['  ID', 'KIND', 'SPEAKING', 'MUTED', 'STAGE', 'NAME'],
      e.participants.map((p) => [`  ${p.id}`, p.kind ?? '-', p.speaking ? 'yes' : 'no', p.muted === undefined ? '-' : p.muted ? 'yes' : 'no', p.stage ?? '-', p.name ?? '-']),
    );
  }
}

const moveAnswerSchema = z.object({ id: z.string(), from: z.string(), to: z.string(), epoch: z.number(), gapMs: z.number().optional() });

/** Hands the event to another mixer (POST /api/events/:id/move, answered by its holder). */
export async function move(id: string, flags: Flags): Promise<void> {
  const to = flags.to === undefined ? undefined : optionValue('--to', flags.to, z.string().regex(/^[A-Za-z0-9_-]{1,64}$/), 'a mixer node id');
  const moved = await (await client(flags)).request('POST', path('api', 'events', id, 'move'), moveAnswerSchema, to ? { to } : {});
  if (flags.json) return printJson(moved);
  printLines([`event ${moved.id} moved from ${moved.from} to ${moved.to} (epoch ${moved.epoch})`]);
}

export async function end(id: string, flags: Flags): Promise<void> {
  await (await client(flags)).request('DELETE', path('api', 'events', id), null);
  if (flags.json) return printJson({ id, ended: true });
  printLines([`event ${id} ended`]);
}

const regionsSchema = z.array(z.object({ sourceId: z.string().min(1), x: z.number(), y: z.number(), width: z.number(), height: z.number() }).strict()).min(1).max(64);

export async function layout(id: string, kind: 'grid' | 'speaker' | 'presentation' | 'custom', flags: Flags): Promise<void> {
  const body: { kind: string; sourceId?: string; regions?: unknown } = { kind };
  if (kind === 'presentation') {
    if (typeof flags.source !== 'string') throw new CliError('layout presentation needs --source <participant id> (the participant shown large)', 2);
    body.sourceId = flags.source;
  }
  if (kind === 'custom') {
    if (typeof flags.regions !== 'string') throw new CliError('layout custom needs --regions \'[{"sourceId":"p1","x":0,"y":0,"width":0.5,"height":1}, …]\' (fractions of the canvas)', 2);
    let regions: unknown;
    try {
      regions = JSON.parse(flags.regions);
    } catch (err) {
      throw new CliError(`--regions: not valid JSON: ${(err as Error).message}`, 2);
    }
    body.regions = optionValue('--regions', regions, regionsSchema, 'a JSON array of 1–64 {sourceId, x, y, width, height} (fractions 0–1)');
  }
  if (kind !== 'presentation' && flags.source !== undefined) throw new CliError(`--source applies to the presentation layout only, not ${kind}`, 2);
  if (kind !== 'custom' && flags.regions !== undefined) throw new CliError(`--regions applies to the custom layout only, not ${kind}`, 2);
  const answer = await (await client(flags)).request('PUT', path('api', 'events', id, 'layout'), layoutAnswerSchema, body);
  if (flags.json) return printJson({ id, ...answer });
  printLines([`event ${id} layout: ${layoutText(answer.layout)}`]);
}

export async function mute(id: string, participant: string, flags: Flags): Promise<void> {
  const muted = flags.off !== true;
  const answer = await (await client(flags)).request('PATCH', path('api', 'events', id, 'participants', participant), participantSchema, { muted });
  if (flags.json) return printJson(answer);
  printLines([`participant ${participant} of event ${id} ${muted ? 'muted' : 'unmuted'}`]);
}

/** Puts a presenter on air (`live`) or takes it off (`backstage`): from the next tick, no renegotiation. */
export async function stage(id: string, participant: string, where: 'live' | 'backstage', flags: Flags): Promise<void> {
  const answer = await (await client(flags)).request('PATCH', path('api', 'events', id, 'participants', participant), participantSchema, { stage: where });
  if (flags.json) return printJson(answer);
  printLines([`participant ${participant} of event ${id} is ${where === 'live' ? 'live (on air)' : 'backstage'}`]);
}

export async function kick(id: string, participant: string, flags: Flags): Promise<void> {
  await (await client(flags)).request('DELETE', path('api', 'events', id, 'participants', participant), null);
  if (flags.json) return printJson({ id, participant, kicked: true });
  printLines([`participant ${participant} removed from event ${id}`]);
}
