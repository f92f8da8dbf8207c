import { parseArgs } from 'node:util';
import { spawn, type ChildProcess } from 'node:child_process';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { McuNode } from '@mcu/server';
import { NatsBus, generateSecret, type Bus } from '@mcu/control';
import { MixerRole, RelayRole, requireTokenSecret } from '@mcu/cluster';

const USAGE = `Usage: mcu <command> [options]

Commands:
  up        run the all-in-one node (mixer + HTTP API) on one process, no NATS needed
  mixer     run a mixer node of a cluster (HTTP API, mixing, tree controller; viewers go to relays)
  relay     run a relay node of a cluster (receives the program feed, forwards it, serves WHEP viewers)
  cluster   start a mixer and N relay processes on this machine over NATS and print their URLs

Options for "up":
  --host <addr>        address to listen on            (env HOST, default 127.0.0.1)
  --port <n>           HTTP port                        (env PORT, default 8080)
  --public-url <url>   base of the URLs handed out      (env MCU_PUBLIC_URL)
  --public-ip <addr>   address advertised for RTP and ICE host candidates (1:1 NAT) (env MCU_PUBLIC_IP)
  --rtc-ports <a-b>    UDP port range for WebRTC ICE   (env MCU_RTC_PORTS, default: any ephemeral port)
  -h, --help           show this help

Options for "mixer", "relay" and "cluster" (besides those of "up"):
  --nats <url,…>       NATS server(s)                   (env MCU_NATS, default nats://127.0.0.1:4222)
  --cluster <name>     cluster name (subjects mcu.<name>.…) (env MCU_CLUSTER, default "default")
  --node-id <id>       this node's id                   (default <role>-<host>-<random>)
  --creds <file>       NATS credentials file (JWT + nkey)
  --nats-user <u> --nats-pass <p>   NATS user and password (env MCU_NATS_USER, MCU_NATS_PASS)
  --nats-token <t>     NATS token                       (env MCU_NATS_TOKEN)
  --nats-tls-ca <file> CA for NATS over TLS (also --nats-tls-cert, --nats-tls-key)
  --media-ip <addr>    address other nodes send/receive the program feed at (env MCU_MEDIA_IP;
                       default: the listen address, or this machine's IPv4 when listening on 0.0.0.0)
  --fan-out <n>        "mixer": children per parent in the relay tree (default 8)
  --relays <n>         "cluster": relay processes to start (default 2)

Environment:
  MCU_ADMIN_TOKEN      admin bearer token (generated and printed when unset)
  MCU_TOKEN_SECRET     HMAC secret for event tokens, ≥ 32 chars (random per start when unset;
                       required by "mixer" and "relay": every node of a cluster needs the same one.
                       It also seals the feed keys the mixer hands to relays over NATS.)

Examples:
  npm start
  MCU_TOKEN_SECRET=… mcu mixer --nats nats://10.0.0.5:4222 --cluster prod --nats-tls-ca ca.pem
  MCU_TOKEN_SECRET=… mcu relay --nats nats://10.0.0.5:4222 --cluster prod --public-ip 203.0.113.8 --rtc-ports 40000-40999
  mcu cluster --relays 3
  mcu up --host 0.0.0.0 --port 8080 --public-ip 203.0.113.7 --rtc-ports 40000-40999
`;

function fail(message: string): never {
  process.stderr.write(`mcu: ${message}\n\n${USAGE}`);
  process.exit(2);
}

function portRange(value: string | undefined): [number, number] | undefined {
  if (value === undefined || value === '') return undefined;
  const m = /^(\d+)-(\d+)$/.exec(value);
  if (!m) fail(`rtc-ports: expected a range like 40000-40999, got "${value}"`);
  return [Number(m[1]), Number(m[2])];
}

function intOption(name: string, value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = Number(value);
  if (!Number.isInteger(n)) fail(`${name}: expected an integer, got "${value}"`);
  return n;
}

const nodeOptions = {
  host: { type: 'string' },
  port: { type: 'string' },
  'public-url': { type: 'string' },
  'public-ip': { type: 'string' },
  'rtc-ports': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

const clusterOptions = {
  ...nodeOptions,
  nats: { type: 'string' },
  cluster: { type: 'string' },
  'node-id': { type: 'string' },
  creds: { type: 'string' },
  'nats-user': { type: 'string' },
  'nats-pass': { type: 'string' },
  'nats-token': { type: 'string' },
  'nats-tls-ca': { type: 'string' },
  'nats-tls-cert': { type: 'string' },
  'nats-tls-key': { type: 'string' },
  relays: { type: 'string' },
  'media-ip': { type: 'string' },
  'fan-out': { type: 'string' },
} as const;

function parse<T extends typeof nodeOptions | typeof clusterOptions>(argv: string[], options: T) {
  try {
    return parseArgs({ args: argv, options }).values;
  } catch (err) {
    fail((err as Error).message);
  }
}

type ClusterValues = ReturnType<typeof parse<typeof clusterOptions>>;

async function connectBus(values: ClusterValues, role: string, nodeId: string): Promise<Bus> {
  const env = process.env;
  const ca = values['nats-tls-ca'];
  const cert = values['nats-tls-cert'];
  const key = values['nats-tls-key'];
  try {
    return await NatsBus.connect({
      servers: (values.nats ?? env.MCU_NATS ?? 'nats://127.0.0.1:4222').split(','),
      name: `mcu-${role}-${nodeId}`,
      user: values['nats-user'] ?? env.MCU_NATS_USER,
      pass: values['nats-pass'] ?? env.MCU_NATS_PASS,
      token: values['nats-token'] ?? env.MCU_NATS_TOKEN,
      credsFile: values.creds,
      tls: ca || cert || key ? { caFile: ca, certFile: cert, keyFile: key } : undefined,
    });
  } catch (err) {
    fail(`cannot connect to NATS: ${(err as Error).message}`);
  }
}

function clusterName(values: ClusterValues): string {
  return values.cluster ?? process.env.MCU_CLUSTER ?? 'default';
}

function nodeIdOf(values: ClusterValues, role: string): string {
  const host = hostname().replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 40);
  return values['node-id'] ?? `${role}-${host}-${randomBytes(3).toString('hex')}`;
}

function secretOrFail(): string {
  try {
    return requireTokenSecret(process.env.MCU_TOKEN_SECRET);
  } catch (err) {
    fail((err as Error).message);
  }
}

function onStop(stop: () => Promise<void>): void {
  let stopping = false;
  const handler = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`mcu: ${signal}, stopping\n`);
    await stop().catch(() => undefined);
    process.exit(0);
  };
  process.on('SIGINT', () => void handler('SIGINT'));
  process.on('SIGTERM', () => void handler('SIGTERM'));
}

/** The node of `mcu up` and `mcu mixer`: flags first, then environment, then defaults (validated). */
function nodeFromOptions(
  values: { host?: string; port?: string; 'public-url'?: string; 'public-ip'?: string; 'rtc-ports'?: string },
  tokenSecret: string | undefined,
): McuNode {
  const env = process.env;
  try {
    return new McuNode({
      host: values.host ?? env.HOST ?? undefined,
      port: intOption('port', values.port ?? env.PORT),
      publicUrl: values['public-url'] ?? env.MCU_PUBLIC_URL,
      publicIp: values['public-ip'] ?? env.MCU_PUBLIC_IP,
      rtcPorts: portRange(values['rtc-ports'] ?? env.MCU_RTC_PORTS),
      adminToken: env.MCU_ADMIN_TOKEN || undefined,
      tokenSecret,
    });
  } catch (err) {
    fail((err as Error).message);
  }
}

async function mixer(argv: string[]): Promise<void> {
  const values = parse(argv, clusterOptions);
  if (values.help) return void process.stdout.write(USAGE);
  const secret = secretOrFail();
  const env = process.env;
  const nodeId = nodeIdOf(values, 'mixer');
  const bus = await connectBus(values, 'mixer', nodeId);
  const node = nodeFromOptions(values, secret);
  const info = await node.listen();
  const role = await MixerRole.start({ node, bus, cluster: clusterName(values), nodeId, tokenSecret: secret, advertiseHost: values['media-ip'] ?? env.MCU_MEDIA_IP, relayFanOut: intOption('fan-out', values['fan-out']) });
  role.on('error', (err) => process.stderr.write(`mcu: clustering an event failed: ${err.message}\n`));
  const lines = [
    `mcu: mixer ${nodeId} up at ${info.url} (cluster "${clusterName(values)}")`,
    `  API:        ${info.url}/api/events`,
    `  console:    ${info.url}/`,
    info.adminTokenGenerated
      ? `  admin token (generated, shown once; set MCU_ADMIN_TOKEN to fix it): ${info.adminToken}`
      : '  admin token: from MCU_ADMIN_TOKEN',
    `  viewers POST ${info.url}/whep/<event> and are redirected (307) to a relay`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  onStop(async () => {
    await role.close();
    await node.close();
    await bus.close();
  });
}

async function relay(argv: string[]): Promise<void> {
  const values = parse(argv, clusterOptions);
  if (values.help) return void process.stdout.write(USAGE);
  const secret = secretOrFail();
  const env = process.env;
  const nodeId = nodeIdOf(values, 'relay');
  const bus = await connectBus(values, 'relay', nodeId);
  let role: RelayRole;
  try {
    role = await RelayRole.start({
      bus,
      cluster: clusterName(values),
      nodeId,
      tokenSecret: secret,
      adminToken: env.MCU_ADMIN_TOKEN || undefined,
      host: values.host ?? env.HOST ?? undefined,
      port: intOption('port', values.port ?? env.PORT) ?? 0,
      publicUrl: values['public-url'] ?? env.MCU_PUBLIC_URL,
      publicIp: values['public-ip'] ?? env.MCU_PUBLIC_IP,
      mediaAdvertiseHost: values['media-ip'] ?? env.MCU_MEDIA_IP,
      rtcPorts: portRange(values['rtc-ports'] ?? env.MCU_RTC_PORTS),
    });
  } catch (err) {
    await bus.close();
    fail((err as Error).message);
  }
  process.stdout.write(`mcu: relay ${nodeId} up at ${role.url} (cluster "${clusterName(values)}")\n  WHEP: ${role.url}/whep/<event>\n`);
  onStop(async () => {
    await role.close();
    await bus.close();
  });
}

/** A mixer and N relays as child processes of this one, sharing a generated secret and admin token. */
async function cluster(argv: string[]): Promise<void> {
  const values = parse(argv, clusterOptions);
  if (values.help) return void process.stdout.write(USAGE);
  const relays = intOption('relays', values.relays) ?? 2;
  if (relays < 0 || relays > 64) fail('relays: expected 0 to 64');
  const env = {
    ...process.env,
    MCU_TOKEN_SECRET: process.env.MCU_TOKEN_SECRET || generateSecret(),
    MCU_ADMIN_TOKEN: process.env.MCU_ADMIN_TOKEN || randomBytes(24).toString('base64url'),
  };
  const shared: string[] = [];
  for (const name of ['nats', 'cluster', 'creds', 'nats-user', 'nats-pass', 'nats-token', 'nats-tls-ca', 'nats-tls-cert', 'nats-tls-key', 'host', 'public-ip', 'media-ip'] as const) {
    const v = values[name];
    if (v !== undefined) shared.push(`--${name}`, v);
  }
  const children: ChildProcess[] = [];
  const start = (name: string, args: string[]) => {
    const child = spawn(process.execPath, [process.argv[1], ...args, ...shared], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const prefix = (b: Buffer) => b.toString().split('\n').filter(Boolean).map((l) => `[${name}] ${l}\n`).join('');
    child.stdout!.on('data', (b: Buffer) => process.stdout.write(prefix(b)));
    child.stderr!.on('data', (b: Buffer) => process.stderr.write(prefix(b)));
    child.on('exit', (code, signal) => process.stdout.write(`[${name}] exited (${signal ?? code})\n`));
    children.push(child);
  };
  start('mixer', ['mixer', ...(values.port ? ['--port', values.port] : [])]);
  for (let i = 1; i <= relays; i++) start(`relay-${i}`, ['relay', '--port', '0']);
  process.stdout.write(`mcu: cluster of 1 mixer and ${relays} relays starting; admin token ${process.env.MCU_ADMIN_TOKEN ? 'from MCU_ADMIN_TOKEN' : env.MCU_ADMIN_TOKEN}\n`);
  onStop(async () => {
    for (const c of children) c.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 1000));
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });
}

async function up(argv: string[]): Promise<void> {
  const values = parse(argv, nodeOptions);
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const env = process.env;
  const node = nodeFromOptions(values, env.MCU_TOKEN_SECRET || undefined);
  const info = await node.listen();
  const lines = [
    `mcu: node up at ${info.url}`,
    `  API:        ${info.url}/api/events`,
    `  console:    ${info.url}/`,
    `  health:     ${info.url}/healthz`,
    info.adminTokenGenerated
      ? `  admin token (generated, shown once; set MCU_ADMIN_TOKEN to fix it): ${info.adminToken}`
      : '  admin token: from MCU_ADMIN_TOKEN',
    `  create an event: curl -X POST -H "Authorization: Bearer <admin token>" ${info.url}/api/events`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  onStop(() => node.close());
}

const [command, ...rest] = process.argv.slice(2);
switch (command) {
  case 'up':
    await up(rest);
    break;
  case 'mixer':
    await mixer(rest);
    break;
  case 'relay':
    await relay(rest);
    break;
  case 'cluster':
    await cluster(rest);
    break;
  case undefined:
  case '-h':
  case '--help':
  case 'help':
    process.stdout.write(USAGE);
    break;
  default:
    fail(`unknown command "${command}"`);
}
