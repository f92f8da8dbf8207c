/**
 * bench:tls — what HTTPS costs a node when viewers arrive: CPU of the node's process per new
 * connection that makes one request (`GET /healthz`, then closes), over plain HTTP (the baseline)
 * and over HTTPS with a full handshake for an ECDSA P-256 certificate (what certbot issues by
 * default) and an RSA 2048 one, a resumed TLS session (a returning browser), and a request on a
 * kept-alive HTTPS connection. A viewer's join is a new
 * connection to the mixer (WHEP POST, answered by a 307) and one to a relay, so a flash crowd of
 * 10,000 viewers costs the cluster about 20,000 handshakes; the table says how many seconds of
 * one core that is.
 *
 * The node runs in a child process (bench/tls-node.ts) so that its CPU is its own; clients run
 * here, `--concurrency` connections at a time, TLS 1.3 (Node's default). Rows are measured in
 * alternation, `--rounds` times each; the minimum of the rounds is reported (the machine's noise
 * only adds).
 *
 * Usage: npm run bench:tls -- [--connections 1000] [--concurrency 16] [--rounds 3] [--json]
 */
import { execFileSync, fork } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    connections: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '16' },
    rounds: { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
  },
});
const CONNECTIONS = Number(values.connections);
const CONCURRENCY = Number(values.concurrency);
const ROUNDS = Number(values.rounds);
if (![CONNECTIONS, CONCURRENCY, ROUNDS].every((n) => Number.isInteger(n) && n > 0)) {
  process.stderr.write('bench:tls: --connections, --concurrency and --rounds take positive whole numbers\n');
  process.exit(2);
}

const dir = mkdtempSync(join(tmpdir(), 'mcu-bench-tls-'));
function selfSigned(name: string, keyArgs: string[]): { tlsCert: string; tlsKey: string; ca: string } {
  const tlsCert = join(dir, `${name}.pem`);
  const tlsKey = join(dir, `${name}.key`);
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', ...keyArgs, '-nodes', '-keyout', tlsKey, '-out', tlsCert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  } catch (err) {
    process.stderr.write(`bench:tls: openssl failed (apt-get install -y openssl): ${(err as Error).message}\n`);
    process.exit(2);
  }
  return { tlsCert, tlsKey, ca: readFileSync(tlsCert, 'utf8') };
}
const certs = { ecdsa: selfSigned('ecdsa', ['ec', '-pkeyopt', 'ec_paramgen_curve:P-256']), rsa: selfSigned('rsa', ['rsa:2048']) };

const child = fork(fileURLToPath(new URL('./tls-node.ts', import.meta.url)), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
function ask<T>(msg: Record<string, unknown>, reply: string): Promise<T> {
  return new Promise((resolve) => {
    const on = (m: { cmd: string }) => {
      if (m.cmd !== reply) return;
      child.off('message', on);
      resolve(m as T);
    };
    child.on('message', on);
    child.send(msg);
  });
}
await new Promise((r) => child.once('message', r));

interface Variant {
  name: string;
  cert?: { tlsCert: string; tlsKey: string; ca: string };
  keepAlive?: boolean;
  /** New connections resume a TLS session of an earlier one (a returning browser): no certificate signature. */
  resume?: boolean;
}
const variants: Variant[] = [
  { name: 'http, new connection' },
  { name: 'https ECDSA P-256, full handshake', cert: certs.ecdsa },
  { name: 'https RSA 2048, full handshake', cert: certs.rsa },
  { name: 'https ECDSA P-256, resumed session', cert: certs.ecdsa, resume: true },
  { name: 'https ECDSA P-256, kept-alive connection', cert: certs.ecdsa, keepAlive: true },
];

/** `CONNECTIONS` requests, `CONCURRENCY` at a time; the node's CPU ms and the wall time. */
async function round(v: Variant): Promise<{ cpuMs: number; wallMs: number }> {
  const { url } = await ask<{ url: string }>({ cmd: 'start', tlsCert: v.cert?.tlsCert, tlsKey: v.cert?.tlsKey }, 'started');
  // An agent caches TLS sessions and resumes them on its next connections: a viewer's first join
  // is a full handshake, so only the resumed row may.
  const agent = v.cert ? new https.Agent({ keepAlive: !!v.keepAlive, maxSockets: CONCURRENCY, ca: v.cert.ca, maxCachedSessions: v.resume || v.keepAlive ? 100 : 0 }) : new http.Agent({ keepAlive: false, maxSockets: CONCURRENCY });
  const get = () =>
    new Promise<void>((resolve, reject) => {
      const req = (v.cert ? https : http).get(`${url}/healthz`, { agent, headers: v.keepAlive ? {} : { connection: 'close' } }, (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`status ${res.statusCode}`))));
      });
      req.on('error', reject);
    });
  // Warm-up (JIT, and for kept-alive rows the connections themselves).
  await Promise.all(Array.from({ length: CONCURRENCY * 2 }, get));
  await ask({ cmd: 'mark' }, 'marked');
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next++ < CONNECTIONS) await get();
    }),
  );
  const wallMs = performance.now() - t0;
  const { ms } = await ask<{ ms: number }>({ cmd: 'cpu' }, 'cpu');
  agent.destroy();
  return { cpuMs: ms, wallMs };
}

const best = new Map<string, { cpuMs: number; wallMs: number }>();
for (let r = 0; r < ROUNDS; r++) {
  for (const v of variants) {
    const m = await round(v);
    const b = best.get(v.name);
    if (!b || m.cpuMs < b.cpuMs) best.set(v.name, m);
  }
}
const exited = new Promise((r) => child.once('exit', r));
child.send({ cmd: 'close' });
await exited;
rmSync(dir, { recursive: true, force: true });

const baseline = best.get(variants[0].name)!;
const rows = variants.map((v) => {
  const m = best.get(v.name)!;
  const usPerRequest = (m.cpuMs * 1000) / CONNECTIONS;
  return {
    variant: v.name,
    nodeCpuUsPerRequest: Math.round(usPerRequest),
    perCorePerSecond: Math.round(1e6 / usPerRequest),
    vsHttp: Number((m.cpuMs / baseline.cpuMs).toFixed(2)),
    // 10,000 viewers: a new connection each to the mixer and to a relay.
    flashCrowd10kCoreSeconds: v.keepAlive || v.resume ? null : Number(((2 * 10_000 * usPerRequest) / 1e6).toFixed(1)),
    requestsPerSecondWall: Math.round((CONNECTIONS * 1000) / m.wallMs),
  };
});
process.stdout.write(`${JSON.stringify({ bench: 'tls', connections: CONNECTIONS, concurrency: CONCURRENCY, rounds: ROUNDS, node: process.version, rows })}\n`);
if (!values.json) {
  process.stdout.write(
    [
      '| request | node CPU µs per request | per core per second | vs http | 10,000 viewers join (core-seconds) | wall req/s |',
      '| --- | ---: | ---: | ---: | ---: | ---: |',
      ...rows.map((r) => `| ${r.variant} | ${r.nodeCpuUsPerRequest} | ${r.perCorePerSecond} | ${r.vsHttp}× | ${r.flashCrowd10kCoreSeconds ?? '—'} | ${r.requestsPerSecondWall} |`),
      '',
    ].join('\n'),
  );
}
