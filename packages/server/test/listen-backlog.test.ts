/**
 * A node's HTTP front holds a burst of connections while its event loop is busy: 900 clients
 * connect during a 400 ms stall (as 1,000 viewers arriving together meet a node busy with their
 * handshakes). With Node's default backlog (511) the accept queue overflows, the kernel drops
 * the rest and they wait for a SYN-ACK retransmission (1 s); with the front's, none overflows.
 * Counted by the kernel (TcpExtListenOverflows), with real sockets from a child process.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { describe, expect, it } from 'vitest';
import { listen, LISTEN_BACKLOG } from '../src/HttpFront.js';

/** The kernel's count of connections dropped for a full accept queue (all sockets of the host). */
function listenOverflows(): number {
  const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n');
  const i = lines.findIndex((l) => l.startsWith('TcpExt:'));
  const names = lines[i].split(/\s+/);
  const values = lines[i + 1].split(/\s+/);
  return Number(values[names.indexOf('ListenOverflows')]);
}

const CLIENT = `
const net = require('node:net');
const [port, n] = process.argv.slice(1).map(Number);
process.on('message', () => {
  const t0 = performance.now();
  const answered = [];
  let done = 0;
  for (let i = 0; i < n; i++) {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    s.on('connect', () => s.write('GET / HTTP/1.1\\r\\nhost: x\\r\\nconnection: close\\r\\n\\r\\n'));
    s.on('data', (d) => (got += d));
    s.on('error', () => {});
    s.on('close', () => {
      if (got.startsWith('HTTP/1.1 200')) answered.push(performance.now() - t0);
      if (++done === n) process.send({ answered: answered.length, maxMs: Math.max(...answered) });
    });
  }
});
process.send('ready');
`;
/** `n` connections while this process's event loop is blocked for `stallMs`. */
async function burst(port: number, n: number, stallMs: number): Promise<{ answered: number; maxMs: number; overflows: number }> {
  const child = spawn(process.execPath, ['-e', CLIENT, '--', String(port), String(n)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    await new Promise((r) => child.once('message', r));
    const result = new Promise<{ answered: number; maxMs: number }>((r) => child.once('message', r));
    const before = listenOverflows();
    child.send('go');
    const end = performance.now() + stallMs;
    while (performance.now() < end);
    const r = await result;
    return { ...r, overflows: listenOverflows() - before };
  } finally {
    child.kill();
  }
}

describe('the HTTP front listen backlog', () => {
  it(`keeps 900 connections made during a 400 ms stall (backlog ${LISTEN_BACKLOG}); Node's default overflowed`, async () => {
    // Linux caps every backlog at net.core.somaxconn (4,096 since kernel 5.4; 128 before).
    expect(Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8')), 'net.core.somaxconn').toBeGreaterThanOrEqual(900);
    const ok = (_: http.IncomingMessage, res: http.ServerResponse) => res.end('ok');
    const front = http.createServer(ok);
    const port = await listen(front, 0, '127.0.0.1');
    const ours = await burst(port, 900, 400);
    front.close();
    expect(ours.answered).toBe(900);
    expect(ours.overflows).toBe(0);

    const plain = http.createServer(ok);
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
    const baseline = await burst((plain.address() as { port: number }).port, 900, 400);
    plain.close();
    expect(baseline.answered).toBe(900);
    expect(baseline.overflows).toBeGreaterThan(0);
  }, 30_000);
});
