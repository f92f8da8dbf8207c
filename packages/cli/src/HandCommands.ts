import { z } from 'zod';
import { CliError } from './CliError.js';
import { resolveConfig } from './Config.js';
import { NodeApi } from './NodeApi.js';
import { printJson, printLines, printTable } from './Output.js';

/** `mcu event hands` and `mcu event invite`: the raised hands of an event (docs/production.md). */

type Flags = Record<string, unknown> & { json?: boolean };

const handSchema = z.looseObject({
  id: z.string(),
  name: z.string(),
  raisedAt: z.number(),
  waitingMs: z.number(),
  state: z.string(),
  invitation: z.looseObject({ stage: z.string(), participant: z.string(), expiresAt: z.number().optional() }).optional(),
});
const handListSchema = z.object({ hands: z.array(handSchema) });

async function client(flags: Flags): Promise<NodeApi> {
  const { config } = await resolveConfig(flags);
  return new NodeApi(config.url ?? 'http://127.0.0.1:8080', config.token ?? config.adminToken);
}

const path = (...parts: string[]) => `/${parts.map(encodeURIComponent).join('/')}`;

function waiting(ms: number): string {
  const s = Math.floor(ms / 1000);
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

/** The raised hands of an event, in the order they were raised. */
export async function hands(id: string, flags: Flags): Promise<void> {
  const answer = await (await client(flags)).request('GET', path('api', 'events', id, 'hands'), handListSchema);
  if (flags.json) return printJson(answer);
  if (answer.hands.length === 0) return printLines([`no raised hands in event ${id}`]);
  printTable(
    ['HAND', 'NAME', 'STATE', 'WAITING', 'STAGE', 'PARTICIPANT'],
    answer.hands.map((h) => [h.id, h.name, h.state.replace('_', ' '), waiting(h.waitingMs), h.invitation?.stage ?? '-', h.invitation?.participant ?? '-']),
  );
}

/** Invites a hand on stage: the viewer's page joins as a presenter, backstage (the default) or live. */
export async function invite(id: string, hand: string, flags: Flags): Promise<void> {
  const parsed = z.enum(['live', 'backstage']).safeParse(flags.stage ?? 'backstage');
  if (!parsed.success) throw new CliError(`--stage: ${JSON.stringify(flags.stage)} is not valid: expected live or backstage`, 2);
  const answer = await (await client(flags)).request('POST', path('api', 'events', id, 'hands', hand, 'invite'), handSchema, { stage: parsed.data });
  if (flags.json) return printJson(answer);
  printLines([
    `${answer.name} (hand ${answer.id}) invited ${parsed.data === 'live' ? 'live (on air)' : 'backstage'} as participant ${answer.invitation?.participant ?? '?'}`,
    `  the viewer's page joins when its camera and microphone are allowed; the invitation expires at ${answer.invitation?.expiresAt === undefined ? '-' : new Date(answer.invitation.expiresAt).toISOString()}`,
  ]);
}
