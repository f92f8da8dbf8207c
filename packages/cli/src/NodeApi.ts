import { z } from 'zod';
import { CliError } from './CliError.js';

/**
 * The HTTP API of a node, as `mcu event …` uses it. Every answer is validated (loosely: fields the
 * CLI does not show may come and go), and every failure becomes a CliError saying what was asked,
 * what the node answered and what to check.
 */

const participantSchema = z.looseObject({ id: z.string(), name: z.string().optional(), kind: z.string().optional(), speaking: z.boolean().optional(), muted: z.boolean().optional(), stage: z.string().optional() });

export const eventSchema = z.looseObject({
  id: z.string(),
  name: z.string().optional(),
  maxSpeakers: z.number(),
  createdAt: z.union([z.string(), z.number()]).optional(),
  whip: z.string(),
  whep: z.string(),
  participants: z.number(),
  layout: z.looseObject({ kind: z.string() }).optional(),
  speakers: z.array(z.string()).optional(),
  dominantSpeaker: z.string().nullable().optional(),
  /** In a cluster of several mixers: the mixer holding the event, its lease epoch, the standby mixers. */
  holder: z.string().nullable().optional(),
  epoch: z.number().optional(),
  standby: z.array(z.string()).optional(),
});

export const createdEventSchema = eventSchema.extend({ tokens: z.object({ producer: z.string(), presenter: z.string(), viewer: z.string() }) });
export const eventListSchema = z.object({ events: z.array(eventSchema) });
export const eventDetailSchema = eventSchema.extend({ participants: z.array(participantSchema), stats: z.unknown().optional() });
export const layoutAnswerSchema = z.object({ layout: z.looseObject({ kind: z.string() }) });
export { participantSchema };

const errorBodySchema = z.object({ error: z.object({ code: z.string(), message: z.string() }) });

export type EventInfo = z.output<typeof eventSchema>;

export class NodeApi {
  readonly #base: string;
  readonly #token: string | undefined;

  constructor(baseUrl: string, token: string | undefined) {
    this.#base = baseUrl.replace(/\/+$/, '');
    this.#token = token;
  }

  /** One request; `schema` validates a JSON answer, null expects an empty one (204). */
  async request<T>(method: string, path: string, schema: z.ZodType<T>, body?: unknown): Promise<T>;
  async request(method: string, path: string, schema: null, body?: unknown): Promise<undefined>;
  async request<T>(method: string, path: string, schema: z.ZodType<T> | null, body?: unknown): Promise<T | undefined> {
    const what = `${method} ${path}`;
    const headers: Record<string, string> = {};
    if (this.#token) headers.authorization = `Bearer ${this.#token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(`${this.#base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(15_000) });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const reason = (err as Error).name === 'TimeoutError' ? 'no answer within 15 s' : (cause?.code ?? cause?.message ?? (err as Error).message);
      // A certificate this machine does not trust (a private CA, a self-signed trial) is not a node that is down.
      if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER/.test(reason)) {
        throw new CliError(`${what}: the node at ${this.#base} has a certificate this machine does not trust (${reason}); for a private CA or a self-signed certificate: NODE_EXTRA_CA_CERTS=/path/to/ca.pem mcu …`);
      }
      throw new CliError(`${what}: cannot reach the node at ${this.#base} (${reason}); is it running? Set --url or MCU_URL`);
    }
    const text = await res.text();
    if (!res.ok) {
      let detail = text.slice(0, 200) || res.statusText;
      try {
        const e = errorBodySchema.parse(JSON.parse(text)).error;
        detail = `${e.code}: ${e.message}`;
      } catch {
        // not our error shape (a proxy in between?): show the start of the body as it is
      }
      const hint = res.status === 401 ? ` (check --token, MCU_TOKEN or MCU_ADMIN_TOKEN${this.#token ? '' : ': no token was given'})` : res.status === 403 ? ' (this token may not do that: use the admin token or the event\'s producer token)' : '';
      throw new CliError(`${what}: the node answered ${res.status} ${detail}${hint}`);
    }
    if (schema === null) return undefined;
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      throw new CliError(`${what}: the node answered ${res.status} with a body that is not JSON: ${text.slice(0, 200)}`);
    }
    const parsed = schema.safeParse(data);
    if (!parsed.success) throw new CliError(`${what}: unexpected answer from the node: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    return parsed.data;
  }
}
