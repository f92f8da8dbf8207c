import { spawn, type ChildProcess } from 'node:child_process';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { McuNode, nodeConfigSchema, readTlsPair, type ServerCertificate } from '@mcu/server';
import type { McuNodeInfo, NodeConfigInput } from '@mcu/server';
import { createLogger, NatsBus, generateSecret, type Bus, type Logger } from '@mcu/control';
import { MixerRole, onShutdownSignals, RelayRole, requireTokenSecret, type Drainable } from '@mcu/cluster';
import { CliError } from './CliError.js';
import { keySources, type CliConfig, type ResolvedConfig } from './Config.js';
import { printJson, printLines, Progress } from './Output.js';

/** `mcu up`, `mcu mixer`, `mcu relay` and `mcu cluster`: the processes that serve. */

/** What every command here gets: its resolved settings (validated before this module loads) and --json. */
interface Run extends ResolvedConfig {
  json: boolean;
}

/**
 * The process's structured log (pino JSON lines) goes to stderr: stdout carries the command's own
 * output (the URLs, or the --json line) that scripts and `mcu cluster` read.
 */
function processLogger(config: CliConfig, name: string): Logger {
  return createLogger({ level: config.logLevel ?? 'info', name, destination: process.stderr });
}

/**
 * SIGTERM (an orchestrator stopping the pod) drains: no new viewers or events, viewers move to
 * other relays, then exit 0; a second signal exits at once. SIGINT (Ctrl-C at a terminal) stops now.
 */
function onSignals(config: CliConfig, target: Drainable, log: Logger, after?: () => Promise<unknown>): void {
  onShutdownSignals(target, log, { signals: ['SIGTERM'], drainTimeoutMs: config.drainTimeoutMs, after });
  onStop(async () => {
    await target.close();
    await after?.();
  }, ['SIGINT']);
}

const defaultNats = ['nats://127.0.0.1:4222'];

/** The node's settings out of the CLI's: every key nodeConfigSchema knows that was given. */
function nodeInput(config: CliConfig): NodeConfigInput {
  const input: Record<string, unknown> = {};
  for (const key of Object.keys(nodeConfigSchema.shape)) {
    const v = config[key as keyof CliConfig];
    if (v !== undefined) input[key] = v;
  }
  return input as NodeConfigInput;
}

function secretOrFail(config: CliConfig): string {
  try {
    return requireTokenSecret(config.tokenSecret);
  } catch (err) {
    throw new CliError((err as Error).message, 2);
  }
}

/**
 * The certificate and key, read and checked before anything starts (NATS, sockets): an unreadable
 * file or a key of another certificate exits 2 with the file's name.
 */
function tlsOrFail(config: CliConfig): void {
  if (config.tlsCert === undefined && config.tlsKey === undefined) return;
  if (config.tlsCert === undefined || config.tlsKey === undefined) {
    throw new CliError(`HTTPS needs both --tls-cert and --tls-key (or MCU_TLS_CERT and MCU_TLS_KEY, or tlsCert and tlsKey in the config file): ${config.tlsCert === undefined ? 'the certificate' : 'the key'} is missing`, 2);
  }
  try {
    readTlsPair(config.tlsCert, config.tlsKey);
  } catch (err) {
    throw new CliError((err as Error).message, 2);
  }
}

/**
 * SIGHUP reads the certificate files now (a renewal hook's `systemctl reload`, or `kill -HUP`),
 * instead of at the next poll; without HTTPS, SIGHUP keeps its default.
 */
function reloadOnHangup(certificate: ServerCertificate | undefined, log: Logger): void {
  if (!certificate) return;
  process.on('SIGHUP', () => {
    if (!certificate.reload(true)) log.info({ fingerprint256: certificate.current.fingerprint256 }, 'SIGHUP: TLS certificate unchanged');
  });
}

function clusterOf(config: CliConfig): string {
  return config.cluster ?? 'default';
}

function nodeIdOf(config: CliConfig, role: string): string {
  const host = hostname().replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 40);
  return config.nodeId ?? `${role}-${host}-${randomBytes(3).toString('hex')}`;
}

async function connectBus(config: CliConfig, role: string, nodeId: string, logger: Logger): Promise<Bus> {
  const { natsTlsCa: caFile, natsTlsCert: certFile, natsTlsKey: keyFile } = config;
  try {
    return await NatsBus.connect({
      servers: config.nats ?? defaultNats,
      name: `mcu-${role}-${nodeId}`,
      user: config.natsUser,
      pass: config.natsPass,
      token: config.natsToken,
      credsFile: config.creds,
      tls: caFile || certFile || keyFile ? { caFile, certFile, keyFile } : undefined,
      log: logger,
    });
  } catch (err) {
    throw new CliError(`cannot connect to NATS at ${(config.nats ?? defaultNats).join(',')}: ${(err as Error).message}`, 2);
  }
}

function newNode(config: CliConfig, tokenSecret: string | undefined, logger: Logger): McuNode {
  try {
    return new McuNode({ ...nodeInput(config), tokenSecret }, { logger });
  } catch (err) {
    throw new CliError((err as Error).message, 2);
  }
}

async function listen(node: McuNode, config: CliConfig): Promise<McuNodeInfo> {
  try {
    return await node.listen();
  } catch (err) {
    await node.close();
    throw new CliError(`cannot listen on ${config.host ?? '127.0.0.1'}:${config.port ?? 8080}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

function onStop(stop: () => Promise<void>, signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM']): void {
  let stopping = false;
  const handler = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`mcu: ${signal}, stopping\n`);
    await stop().catch(() => undefined);
    process.exit(0);
  };
  for (const s of signals) process.on(s, () => void handler(s));
}

function adminTokenLine(info: McuNodeInfo): string {
  return info.adminTokenGenerated ? `  admin token (generated, shown once; set MCU_ADMIN_TOKEN to fix it): ${info.adminToken}` : '  admin token: from MCU_ADMIN_TOKEN or the config file';
}

/** The URLs and token of a started node, as one JSON line. A token the operator set is not echoed. */
function nodeJson(role: string, info: McuNodeInfo, config: CliConfig, extra: Record<string, unknown> = {}) {
  return {
    role,
    ...extra,
    url: info.url,
    api: `${info.url}/api/events`,
    console: `${info.url}/`,
    health: `${info.url}/healthz`,
    adminToken: info.adminTokenGenerated ? info.adminToken : null,
    adminTokenGenerated: info.adminTokenGenerated,
    logLevel: config.logLevel ?? 'info',
  };
}

export async function up({ config, json }: Run): Promise<void> {
  tlsOrFail(config);
  const log = processLogger(config, 'node');
  const node = newNode(config, config.tokenSecret, log);
  const info = await listen(node, config);
  // Handlers first: whoever reads the start line may signal at once (before a handler, the
  // default action would kill the process without a drain).
  onSignals(config, node, log);
  reloadOnHangup(node.certificate, log);
  if (json) printJson(nodeJson('up', info, config));
  else
    printLines([
      `mcu: node up at ${info.url}`,
      `  API:        ${info.url}/api/events`,
      `  console:    ${info.url}/`,
      `  health:     ${info.url}/healthz`,
      adminTokenLine(info),
      `  create an event: mcu event create "My event" --url ${info.url}   (token from MCU_ADMIN_TOKEN or --token)`,
    ]);
}

export async function mixer({ config, json }: Run): Promise<void> {
  const secret = secretOrFail(config);
  tlsOrFail(config);
  const nodeId = nodeIdOf(config, 'mixer');
  const cluster = clusterOf(config);
  const log = processLogger(config, 'mixer');
  const bus = await connectBus(config, 'mixer', nodeId, log);
  let node: McuNode | undefined;
  let info: McuNodeInfo;
  let role: MixerRole;
  try {
    node = newNode(config, secret, log);
    info = await listen(node, config);
    role = await MixerRole.start({ node, bus, cluster, nodeId, tokenSecret: secret, advertiseHost: config.mediaIp, relayFanOut: config.fanOut, feedKeyRotationMs: config.feedKeyRotationMs });
  } catch (err) {
    await node?.close();
    await bus.close();
    throw err;
  }
  role.on('error', (err) => process.stderr.write(`mcu: clustering an event failed: ${err.message}\n`));
  const mixerNode = node;
  onSignals(config, { drain: (o) => role.drain(o), close: async () => { await role.close(); await mixerNode.close(); } }, role.log, () => bus.close());
  reloadOnHangup(mixerNode.certificate, role.log);
  if (json) printJson(nodeJson('mixer', info, config, { nodeId, cluster }));
  else
    printLines([
      `mcu: mixer ${nodeId} up at ${info.url} (cluster "${cluster}")`,
      `  API:        ${info.url}/api/events`,
      `  console:    ${info.url}/`,
      adminTokenLine(info),
      `  viewers POST ${info.url}/whep/<event> and are redirected (307) to a relay`,
    ]);
}

export async function relay({ config, json }: Run): Promise<void> {
  const secret = secretOrFail(config);
  tlsOrFail(config);
  const nodeId = nodeIdOf(config, 'relay');
  const cluster = clusterOf(config);
  const log = processLogger(config, 'relay');
  const bus = await connectBus(config, 'relay', nodeId, log);
  let role: RelayRole;
  try {
    role = await RelayRole.start({
      bus,
      cluster,
      nodeId,
      tokenSecret: secret,
      adminToken: config.adminToken,
      host: config.host,
      port: config.port ?? 0,
      publicUrl: config.publicUrl,
      publicIp: config.publicIp,
      tlsCert: config.tlsCert,
      tlsKey: config.tlsKey,
      tlsReloadIntervalMs: config.tlsReloadIntervalMs,
      hstsMaxAgeSeconds: config.hstsMaxAgeSeconds,
      mediaAdvertiseHost: config.mediaIp,
      rtcPorts: config.rtcPorts,
      rtcPort: config.rtcPort,
      iceAllow: config.iceAllow,
      iceHostAddresses: config.iceHostAddresses,
      logger: log,
    });
  } catch (err) {
    await bus.close();
    throw new CliError(`relay did not start: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 1);
  }
  onSignals(config, role, role.log, () => bus.close());
  reloadOnHangup(role.certificate, role.log);
  if (json) printJson({ role: 'relay', nodeId, cluster, url: role.url, whep: `${role.url}/whep/<event>`, health: `${role.url}/healthz`, logLevel: config.logLevel ?? 'info' });
  else printLines([`mcu: relay ${nodeId} up at ${role.url} (cluster "${cluster}")`, `  WHEP: ${role.url}/whep/<event>`]);
}

/** Settings every process of `mcu cluster` shares, handed down through their environment. */
const sharedKeys = ['host', 'publicIp', 'tlsCert', 'tlsKey', 'mediaIp', 'nats', 'cluster', 'creds', 'natsUser', 'natsPass', 'natsToken', 'natsTlsCa', 'natsTlsCert', 'natsTlsKey', 'fanOut', 'logLevel', 'drainTimeoutMs', 'feedKeyRotationMs', 'restreamAllow'] as const;

interface Started {
  name: string;
  nodeId: string;
  url: string;
}

/**
 * A mixer and N relays as child processes of this one, sharing a generated secret and admin token;
 * returns once every one of them listens (progress on stderr), or fails if one exits first.
 */
export async function cluster({ config, file, json }: Run): Promise<void> {
  tlsOrFail(config);
  const relays = config.relays ?? 2;
  const mixers = config.mixers ?? 1;
  const mixerNames = Array.from({ length: mixers }, (_, i) => (i === 0 ? 'mixer' : `mixer-${i + 1}`));
  const isMixer = (name: string) => name === 'mixer' || name.startsWith('mixer-');
  const adminToken = config.adminToken ?? randomBytes(24).toString('base64url');
  const env: NodeJS.ProcessEnv = { ...process.env, MCU_TOKEN_SECRET: config.tokenSecret ?? generateSecret(), MCU_ADMIN_TOKEN: adminToken };
  if (file) env.MCU_CONFIG = file;
  for (const key of sharedKeys) {
    const v = config[key];
    if (v !== undefined) env[keySources[key].env[0]] = Array.isArray(v) ? v.join(',') : String(v);
  }
  const bin = fileURLToPath(new URL('../bin/mcu.js', import.meta.url));
  const children: ChildProcess[] = [];
  // With --json stdout carries only the summary line; the children's own output goes to stderr.
  const out = json ? process.stderr : process.stdout;
  const progress = new Progress();
  const started = new Map<string, Started>();
  const total = relays + mixers;
  const show = () =>
    progress.update(`mcu cluster: ${started.size}/${total} nodes up (mixers ${[...started.keys()].filter(isMixer).length}/${mixers}, relays ${[...started.keys()].filter((n) => !isMixer(n)).length}/${relays})`);

  const allUp = new Promise<void>((resolve, reject) => {
    const start = (name: string, args: string[]) => {
      const child = spawn(process.execPath, [bin, ...args, '--json'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(child);
      let buffered = '';
      child.stdout!.on('data', (b: Buffer) => {
        buffered += b.toString();
        const lines = buffered.split('\n');
        buffered = lines.pop()!;
        for (const line of lines) {
          if (!started.has(name) && line.startsWith('{')) {
            try {
              const up = JSON.parse(line) as { nodeId: string; url: string };
              started.set(name, { name, nodeId: up.nodeId, url: up.url });
              show();
              if (started.size === total) resolve();
              continue;
            } catch {
              // not the start line: print it as it is
            }
          }
          if (line) out.write(`[${name}] ${line}\n`);
        }
      });
      child.stderr!.on('data', (b: Buffer) => process.stderr.write(b.toString().split('\n').filter(Boolean).map((l) => `[${name}] ${l}\n`).join('')));
      child.on('exit', (code, signal) => {
        if (!started.has(name)) reject(new CliError(`cluster: ${name} exited (${signal ?? code}) before it was up`));
        else process.stderr.write(`[${name}] exited (${signal ?? code})\n`);
      });
    };
    // The first mixer on --port (if given), the others on ports of their own.
    mixerNames.forEach((name, i) => start(name, ['mixer', ...(i > 0 ? ['--port', '0'] : config.port !== undefined ? ['--port', String(config.port)] : [])]));
    for (let i = 1; i <= relays; i++) start(`relay-${i}`, ['relay', '--port', '0']);
    show();
  });
  const stopChildren = async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 1000));
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  };
  onStop(stopChildren);
  // Renewal hooks signal the process they started: pass it on to every node.
  if (config.tlsCert) process.on('SIGHUP', () => children.forEach((c) => c.kill('SIGHUP')));
  try {
    await allUp;
  } catch (err) {
    progress.done();
    await stopChildren();
    throw err;
  }
  progress.done();
  const mixerNode = started.get('mixer')!;
  const byName = (a: Started, b: Started) => a.name.localeCompare(b.name, 'en', { numeric: true });
  const mixerNodes = [...started.values()].filter((s) => isMixer(s.name)).sort(byName);
  const relayNodes = [...started.values()].filter((s) => !isMixer(s.name)).sort(byName);
  const generated = config.adminToken === undefined;
  if (json) {
    printJson({
      cluster: clusterOf(config),
      mixer: { nodeId: mixerNode.nodeId, url: mixerNode.url },
      mixers: mixerNodes.map((m) => ({ nodeId: m.nodeId, url: m.url })),
      relays: relayNodes.map((r) => ({ nodeId: r.nodeId, url: r.url })),
      adminToken: generated ? adminToken : null,
      adminTokenGenerated: generated,
    });
    return;
  }
  printLines([
    `mcu: cluster "${clusterOf(config)}" up: ${mixers} mixer${mixers === 1 ? '' : 's'} and ${relays} relay${relays === 1 ? '' : 's'}`,
    ...mixerNodes.map((m) => `  ${m.name.padEnd(9)} ${m.url}  (${m.nodeId}; API, console, WHIP; any mixer answers for any event; viewers are redirected to relays)`),
    ...relayNodes.map((r) => `  ${r.name.padEnd(9)} ${r.url}  (${r.nodeId})`),
    generated ? `  admin token (generated, shown once; set MCU_ADMIN_TOKEN to fix it): ${adminToken}` : '  admin token: from MCU_ADMIN_TOKEN or the config file',
  ]);
}
