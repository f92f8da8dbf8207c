import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { nodeConfigSchema } from '@mcu/server/config';
import { CliError } from './CliError.js';

/**
 * The settings of every `mcu` command, in one schema: the node's own settings (nodeConfigSchema,
 * without its defaults so that "not given" stays visible and each role applies its own), plus the
 * cluster, client and logging settings of the CLI. Values come from flags, then the environment,
 * then the config file; flag and environment values are strings, so numbers, ranges and lists are
 * read from strings here too.
 */

export const logLevels = ['trace', 'debug', 'info', 'warn', 'error', 'silent'] as const;

const node = nodeConfigSchema.shape;
const safeId = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/);

/** "8080" → 8080 (flags and environment); anything else is left for the schema to reject. */
const intFromString = (v: unknown) => (typeof v === 'string' && /^-?\d+$/.test(v.trim()) ? Number(v) : v);
/** "40000-40999" → [40000, 40999]; a file may also give the array. */
const rangeFromString = (v: unknown) => {
  if (typeof v !== 'string') return v;
  const m = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(v);
  return m ? [Number(m[1]), Number(m[2])] : v;
};
/** "nats://a:4222,nats://b:4222" → ['nats://a:4222', 'nats://b:4222']. */
const listFromString = (v: unknown) => (typeof v === 'string' ? v.split(',').map((s) => s.trim()) : v);

const int = (min: number, max: number) => z.preprocess(intFromString, z.number().int().min(min).max(max));

/** Keys set by flags or environment, with what the user may give (quoted in error messages). */
const cliKeys = {
  host: { schema: node.host.unwrap().optional(), allowed: 'a host name or IP address to listen on' },
  port: { schema: z.preprocess(intFromString, node.port.unwrap()).optional(), allowed: 'an integer 0–65535' },
  publicUrl: { schema: node.publicUrl, allowed: 'an absolute URL such as https://mcu.example.com' },
  publicIp: { schema: node.publicIp, allowed: 'an IP address' },
  tlsCert: { schema: node.tlsCert, allowed: 'a PEM certificate (chain) file' },
  tlsKey: { schema: node.tlsKey, allowed: 'a PEM private key file' },
  rtcPorts: { schema: z.preprocess(rangeFromString, node.rtcPorts), allowed: 'a UDP port range like 40000-40999 (1024–65535, first below second)' },
  rtcPort: { schema: z.preprocess(intFromString, node.rtcPort), allowed: 'a UDP port 1024–65535, e.g. 40000' },
  adminToken: { schema: node.adminToken, allowed: 'a token of at least 16 characters' },
  tokenSecret: { schema: node.tokenSecret, allowed: 'a secret of at least 32 characters' },
  logLevel: { schema: z.enum(logLevels).optional(), allowed: `one of ${logLevels.join(', ')}` },
  nats: { schema: z.preprocess(listFromString, z.array(z.string().min(1)).min(1)).optional(), allowed: 'comma-separated NATS server URLs, e.g. nats://10.0.0.5:4222' },
  cluster: { schema: safeId.optional(), allowed: '1 to 64 characters from A-Z a-z 0-9 _ -' },
  nodeId: { schema: safeId.optional(), allowed: '1 to 64 characters from A-Z a-z 0-9 _ -' },
  creds: { schema: z.string().min(1).optional(), allowed: 'a NATS credentials file' },
  natsUser: { schema: z.string().min(1).optional(), allowed: 'a NATS user name' },
  natsPass: { schema: z.string().min(1).optional(), allowed: 'a NATS password' },
  natsToken: { schema: z.string().min(1).optional(), allowed: 'a NATS token' },
  natsTlsCa: { schema: z.string().min(1).optional(), allowed: 'a PEM file' },
  natsTlsCert: { schema: z.string().min(1).optional(), allowed: 'a PEM file' },
  natsTlsKey: { schema: z.string().min(1).optional(), allowed: 'a PEM file' },
  mediaIp: { schema: z.string().min(1).optional(), allowed: 'an IP address' },
  fanOut: { schema: int(1, 64).optional(), allowed: 'an integer 1–64' },
  drainTimeoutMs: { schema: int(0, 3_600_000).optional(), allowed: 'milliseconds, 0–3600000' },
  // At least 10 s: a rotation announces its key 2 s before use.
  feedKeyRotationMs: { schema: int(10_000, 86_400_000).optional(), allowed: 'milliseconds, 10000–86400000' },
  relays: { schema: int(0, 64).optional(), allowed: 'an integer 0–64' },
  mixers: { schema: int(1, 16).optional(), allowed: 'an integer 1–16' },
  restreamAllow: { schema: z.preprocess(listFromString, node.restreamAllow.unwrap()).optional(), allowed: 'comma-separated ingests a restream may reach: public, host[:port], *.domain[:port], ip[:port], cidr[:port] (IPv6 in [brackets])' },
  url: { schema: z.url({ protocol: /^https?$/ }).optional(), allowed: 'an http(s) URL of a node, e.g. http://127.0.0.1:8080' },
  token: { schema: z.string().min(1).optional(), allowed: 'a bearer token' },
} as const;

type CliKey = keyof typeof cliKeys;

/** Never echoed in an error message. */
const secretKeys = new Set<string>(['adminToken', 'tokenSecret', 'natsPass', 'natsToken', 'token']);

/** Settings only a config file sets (the rest of the node's settings: limits, renditions, ICE). */
const fileOnlyNode = nodeConfigSchema.omit({ host: true, port: true, publicUrl: true, publicIp: true, tlsCert: true, tlsKey: true, rtcPorts: true, rtcPort: true, adminToken: true, tokenSecret: true, restreamAllow: true }).shape;
const withoutDefault = (s: z.ZodType): z.ZodType => (s instanceof z.ZodDefault ? (s.unwrap() as z.ZodType).optional() : s);

export const cliConfigSchema = z
  .object({
    ...(Object.fromEntries(Object.entries(cliKeys).map(([k, v]) => [k, v.schema])) as { [K in CliKey]: (typeof cliKeys)[K]['schema'] }),
    ...(Object.fromEntries(Object.entries(fileOnlyNode).map(([k, v]) => [k, withoutDefault(v as z.ZodType)])) as {
      [K in keyof typeof fileOnlyNode]: z.ZodOptional<z.ZodType<z.output<(typeof fileOnlyNode)[K]>>>;
    }),
  })
  .strict();

export type CliConfig = z.output<typeof cliConfigSchema>;
export const configKeys = Object.keys(cliConfigSchema.shape) as (keyof CliConfig)[];

/** Where each setting is read from, besides the config file (same camelCase key there). */
interface KeySource {
  /** Commander's attribute name equals the key (`--public-url` → publicUrl). */
  flag?: string;
  /** Environment variables, first set one wins (the later ones are older names kept working). */
  env: string[];
}

export const keySources: { [K in CliKey]: KeySource } = {
  host: { flag: '--host', env: ['MCU_HOST', 'HOST'] },
  port: { flag: '--port', env: ['MCU_PORT', 'PORT'] },
  publicUrl: { flag: '--public-url', env: ['MCU_PUBLIC_URL'] },
  publicIp: { flag: '--public-ip', env: ['MCU_PUBLIC_IP'] },
  // Paths only: the key itself never goes on a command line or into the environment.
  tlsCert: { flag: '--tls-cert', env: ['MCU_TLS_CERT'] },
  tlsKey: { flag: '--tls-key', env: ['MCU_TLS_KEY'] },
  rtcPorts: { flag: '--rtc-ports', env: ['MCU_RTC_PORTS'] },
  rtcPort: { flag: '--rtc-port', env: ['MCU_RTC_PORT'] },
  // Secrets have no flag: a command line is visible to every user of the machine (ps).
  adminToken: { env: ['MCU_ADMIN_TOKEN'] },
  tokenSecret: { env: ['MCU_TOKEN_SECRET'] },
  logLevel: { flag: '--log-level', env: ['MCU_LOG_LEVEL'] },
  nats: { flag: '--nats', env: ['MCU_NATS'] },
  cluster: { flag: '--cluster', env: ['MCU_CLUSTER'] },
  nodeId: { flag: '--node-id', env: ['MCU_NODE_ID'] },
  creds: { flag: '--creds', env: ['MCU_NATS_CREDS'] },
  natsUser: { flag: '--nats-user', env: ['MCU_NATS_USER'] },
  natsPass: { flag: '--nats-pass', env: ['MCU_NATS_PASS'] },
  natsToken: { flag: '--nats-token', env: ['MCU_NATS_TOKEN'] },
  natsTlsCa: { flag: '--nats-tls-ca', env: ['MCU_NATS_TLS_CA'] },
  natsTlsCert: { flag: '--nats-tls-cert', env: ['MCU_NATS_TLS_CERT'] },
  natsTlsKey: { flag: '--nats-tls-key', env: ['MCU_NATS_TLS_KEY'] },
  mediaIp: { flag: '--media-ip', env: ['MCU_MEDIA_IP'] },
  fanOut: { flag: '--fan-out', env: ['MCU_FAN_OUT'] },
  drainTimeoutMs: { flag: '--drain-timeout-ms', env: ['MCU_DRAIN_TIMEOUT_MS'] },
  feedKeyRotationMs: { flag: '--feed-key-rotation-ms', env: ['MCU_FEED_KEY_ROTATION_MS'] },
  relays: { flag: '--relays', env: ['MCU_RELAYS'] },
  mixers: { flag: '--mixers', env: ['MCU_MIXERS'] },
  restreamAllow: { flag: '--restream-allow', env: ['MCU_RESTREAM_ALLOW'] },
  url: { flag: '--url', env: ['MCU_URL'] },
  // The client falls back to the admin token, so that one variable serves the node and the client.
  token: { flag: '--token', env: ['MCU_TOKEN', 'MCU_ADMIN_TOKEN'] },
};

export interface ResolvedConfig {
  config: CliConfig;
  /** Where each given value came from: "--port", "MCU_PORT", "file mcu.yaml". */
  sources: Partial<Record<keyof CliConfig, string>>;
  /** The config file, if one was read (children of `mcu cluster` read it too). */
  file: string | undefined;
}

/**
 * flags > environment > config file, validated in one pass. Empty environment variables count as
 * unset. A bad value throws a CliError naming the key, where it came from, the value and what is
 * allowed; nothing has started by then.
 */
export async function resolveConfig(flags: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): Promise<ResolvedConfig> {
  const file = typeof flags.config === 'string' ? flags.config : env.MCU_CONFIG || undefined;
  const fromFile = file === undefined ? {} : await readConfigFile(file);
  const merged: Record<string, unknown> = {};
  const sources: Record<string, string> = {};
  for (const key of configKeys) {
    const src = keySources[key as CliKey] as KeySource | undefined;
    const flagValue = src?.flag ? flags[key] : undefined;
    if (flagValue !== undefined) {
      merged[key] = flagValue;
      sources[key] = src!.flag!;
      continue;
    }
    const envName = src?.env.find((name) => env[name] !== undefined && env[name] !== '');
    if (envName) {
      merged[key] = env[envName];
      sources[key] = envName;
      continue;
    }
    if (key in fromFile) {
      merged[key] = fromFile[key];
      sources[key] = `file ${file}`;
    }
  }
  const parsed = cliConfigSchema.safeParse(merged);
  if (!parsed.success) {
    // One line per setting: a range "5-3" fails in several places but is one bad value.
    const lines = new Set(parsed.error.issues.map((issue) => describeIssue(issue, merged, sources)));
    throw new CliError([...lines].join('\n'), 2);
  }
  return { config: parsed.data, sources, file };
}

function describeIssue(issue: z.core.$ZodIssue, merged: Record<string, unknown>, sources: Record<string, string>): string {
  const key = String(issue.path[0]);
  const allowed = (cliKeys as Record<string, { allowed: string }>)[key]?.allowed;
  // A flag or environment setting is one value; a file's nested setting is named down to the bad part.
  const path = allowed ? [key] : issue.path;
  const where = path.map(String).join('.');
  let value: unknown = merged;
  for (const p of path) value = (value as Record<PropertyKey, unknown> | undefined)?.[p as PropertyKey];
  const shown = secretKeys.has(key) && typeof value === 'string' ? `(a value of ${value.length} characters)` : (JSON.stringify(value) ?? String(value));
  return `config "${where}" (from ${sources[key] ?? 'defaults'}): ${shown} is not valid: ${allowed ? `expected ${allowed}` : issue.message}`;
}

/** A JSON or YAML mapping whose keys are settings; an unknown key is an error naming it. */
export async function readConfigFile(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new CliError(`config file ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, 2);
  }
  const isJson = path.extname(file).toLowerCase() === '.json';
  // YAML 1.2 is a superset of JSON, but a .json file gets JSON's own error messages (and the YAML
  // parser is loaded only when needed: every command pays for what it imports).
  const parse: (text: string) => unknown = isJson ? JSON.parse : (await import('yaml')).parse;
  let data: unknown;
  try {
    data = parse(text);
  } catch (err) {
    throw new CliError(`config file ${file}: not valid ${isJson ? 'JSON' : 'YAML'}: ${(err as Error).message}`, 2);
  }
  if (data === null || data === undefined) return {};
  if (typeof data !== 'object' || Array.isArray(data)) throw new CliError(`config file ${file}: expected a mapping of settings, got ${Array.isArray(data) ? 'a list' : typeof data}`, 2);
  const unknown = Object.keys(data).filter((k) => !(configKeys as string[]).includes(k));
  if (unknown.length > 0) {
    throw new CliError(`config file ${file}: unknown key${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `"${k}"`).join(', ')} (known keys: ${configKeys.join(', ')})`, 2);
  }
  return data as Record<string, unknown>;
}
