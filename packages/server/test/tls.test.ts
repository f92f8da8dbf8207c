/**
 * HTTPS on a node: served with the certificate it was given, https URLs handed out, a renewed
 * certificate picked up without a restart (new connections see it, open ones keep theirs), a bad
 * file refused with its name, plain HTTP untouched when no certificate is given.
 */
import { renameSync, symlinkSync, writeFileSync, readFileSync } from 'node:fs';
import https from 'node:https';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { captureLog } from '../../control/test/logCapture.js';
import { McuNode, readTlsPair, ServerCertificate, TlsFileError } from '../src/index.js';
import { issueCert, makeTestCa, tlsFetch, type IssuedCert, type TestCa } from './tlsFixture.js';

const ADMIN = 'tls-test-admin-token-0123456789';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const realSetInterval = setInterval;

let ca: TestCa;
let a: IssuedCert;
let b: IssuedCert;
let c: IssuedCert;

beforeAll(() => {
  ca = makeTestCa();
  a = issueCert(ca, 'a');
  b = issueCert(ca, 'b');
  c = issueCert(ca, 'c');
});
afterAll(() => ca?.remove());

/** The SHA-256 fingerprint a fresh TLS connection to the port is served. */
function servedFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca: ca.pem, servername: 'localhost' }, () => {
      const fp = s.getPeerCertificate().fingerprint256;
      s.end();
      resolve(fp);
    });
    s.on('error', reject);
  });
}

/** GET through `agent`: the status, the certificate of the connection it went over, and whether that connection was reused. */
function getVia(agent: https.Agent, url: string): Promise<{ status: number; fingerprint: string; reused: boolean }> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { agent, ca: ca.pem }, (res) => {
      const fingerprint = (res.socket as tls.TLSSocket).getPeerCertificate().fingerprint256;
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, fingerprint, reused: req.reusedSocket }));
    });
    req.on('error', reject);
  });
}

/** Points `link` at `target` the way certbot renews its `live/` files: a new symlink renamed over the old one. */
function swapLink(link: string, target: string): void {
  const tmp = `${link}.new`;
  symlinkSync(target, tmp);
  renameSync(tmp, link);
}

async function until(cond: () => Promise<boolean>, timeoutMs: number, what: string): Promise<number> {
  const t0 = performance.now();
  while (!(await cond())) {
    if (performance.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
  return performance.now() - t0;
}

describe('a node over HTTPS', () => {
  it('serves its certificate and hands out https URLs (WHIP, WHEP, its own)', async () => {
    const node = new McuNode({ port: 0, adminToken: ADMIN, tlsCert: a.certFile, tlsKey: a.keyFile });
    try {
      const info = await node.listen();
      expect(info.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      const port = Number(new URL(info.url).port);
      expect(await servedFingerprint(port)).toBe(a.fingerprint256);
      const f = tlsFetch(ca.pem);
      const res = await f(`${info.url}/api/events`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
      expect(res.status).toBe(201);
      const ev = (await res.json()) as { id: string; whip: string; whep: string };
      expect(ev.whip).toBe(`${info.url}/whip/${ev.id}`);
      expect(ev.whep).toBe(`${info.url}/whep/${ev.id}`);
      // Without HSTS configured, none is sent.
      expect((await f(`${info.url}/healthz`)).headers.get('strict-transport-security')).toBeNull();
      // Plain HTTP to the HTTPS port gets no answer of ours.
      await expect(fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(3000) })).rejects.toThrow();
    } finally {
      await node.close();
    }
  });

  it('publicUrl still overrides the base of the URLs; HSTS is sent when configured', async () => {
    const node = new McuNode({ port: 0, adminToken: ADMIN, tlsCert: a.certFile, tlsKey: a.keyFile, publicUrl: 'https://mcu.example.com', hstsMaxAgeSeconds: 31_536_000 });
    try {
      const info = await node.listen();
      expect(info.url).toBe('https://mcu.example.com');
      const port = (node as unknown as { server: { address(): { port: number } } }).server.address().port;
      const res = await tlsFetch(ca.pem)(`https://127.0.0.1:${port}/api/events`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
      expect(res.headers.get('strict-transport-security')).toBe('max-age=31536000');
      const ev = (await res.json()) as { id: string; whip: string };
      expect(ev.whip).toBe(`https://mcu.example.com/whip/${ev.id}`);
    } finally {
      await node.close();
    }
  });

  it('without a certificate it stays plain HTTP', async () => {
    const node = new McuNode({ port: 0, adminToken: ADMIN });
    try {
      const info = await node.listen();
      expect(info.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(node.certificate).toBeUndefined();
      expect((await fetch(`${info.url}/healthz`)).status).toBe(200);
    } finally {
      await node.close();
    }
  });

  it('a renewed certificate is served to new connections without a restart; an open connection keeps working', async () => {
    const certLink = join(ca.dir, 'live-cert.pem');
    const keyLink = join(ca.dir, 'live-key.pem');
    swapLink(certLink, a.certFile);
    swapLink(keyLink, a.keyFile);
    const log = captureLog({ name: 'tls' });
    const node = new McuNode({ port: 0, adminToken: ADMIN, tlsCert: certLink, tlsKey: keyLink, tlsReloadIntervalMs: 100 }, { logger: log.logger });
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const info = await node.listen();
      const port = Number(new URL(info.url).port);
      const first = await getVia(agent, `${info.url}/healthz`);
      expect(first).toMatchObject({ status: 200, fingerprint: a.fingerprint256, reused: false });

      // Renewal: new key first, then the certificate (as an ACME client writes them).
      swapLink(keyLink, b.keyFile);
      swapLink(certLink, b.certFile);
      const took = await until(async () => (await servedFingerprint(port)) === b.fingerprint256, 5000, 'the renewed certificate');
      console.log(`renewed certificate served ${took.toFixed(0)} ms after the files changed (polling every 100 ms)`);
      expect(node.certificate!.current.fingerprint256).toBe(b.fingerprint256);
      // The connection opened before the renewal goes on with its own certificate.
      const again = await getVia(agent, `${info.url}/healthz`);
      expect(again).toMatchObject({ status: 200, fingerprint: a.fingerprint256, reused: true });
      expect(log.lines.some((l) => l.msg === 'TLS certificate renewed' && l.fingerprint256 === b.fingerprint256)).toBe(true);
      // The test certificates are valid for two days: the operator is warned at start and at each renewal.
      expect(log.lines.filter((l) => l.msg === 'TLS certificate expires within 7 days').length).toBe(2);

      // Half a renewal (the certificate written, its key not yet): the current pair stays.
      swapLink(certLink, c.certFile);
      await until(async () => log.lines.some((l) => String(l.msg).startsWith('TLS certificate changed on disk but cannot be served')), 5000, 'the warning');
      expect(await servedFingerprint(port)).toBe(b.fingerprint256);
      const warning = log.lines.find((l) => String(l.msg).startsWith('TLS certificate changed'))!;
      expect(String(warning.err)).toContain('does not match');
      // The key arrives: served.
      swapLink(keyLink, c.keyFile);
      await until(async () => (await servedFingerprint(port)) === c.fingerprint256, 5000, 'the completed renewal');
    } finally {
      agent.destroy();
      await node.close();
    }
  });

  it('a certificate rewritten in place (same path, new content) is picked up too', async () => {
    const certFile = join(ca.dir, 'inplace.pem');
    const keyFile = join(ca.dir, 'inplace.key');
    writeFileSync(certFile, readFileSync(a.certFile));
    writeFileSync(keyFile, readFileSync(a.keyFile));
    const node = new McuNode({ port: 0, tlsCert: certFile, tlsKey: keyFile, tlsReloadIntervalMs: 100 });
    try {
      const port = Number(new URL((await node.listen()).url).port);
      expect(await servedFingerprint(port)).toBe(a.fingerprint256);
      writeFileSync(keyFile, readFileSync(b.keyFile));
      writeFileSync(certFile, readFileSync(b.certFile));
      await until(async () => (await servedFingerprint(port)) === b.fingerprint256, 5000, 'the rewritten certificate');
    } finally {
      await node.close();
    }
  });
});

describe('lifecycle', () => {
  it("the certificate's poll timer goes with the node's close; close is idempotent", async () => {
    // The timer is unref'd (it must not keep a process alive), so it is not among the active
    // resources: catch it as it is made.
    const made: NodeJS.Timeout[] = [];
    const spy = vi.spyOn(globalThis, 'setInterval').mockImplementation(((fn: () => void, ms: number) => {
      const t = realSetInterval(fn, ms);
      made.push(t);
      return t;
    }) as typeof setInterval);
    let node: McuNode;
    try {
      node = new McuNode({ port: 0, tlsCert: a.certFile, tlsKey: a.keyFile, tlsReloadIntervalMs: 50 });
    } finally {
      spy.mockRestore();
    }
    await node.listen();
    expect(made.length).toBe(1);
    const destroyed = () => (made[0] as unknown as { _destroyed: boolean })._destroyed;
    expect(destroyed()).toBe(false);
    await node.close();
    await node.close();
    expect(destroyed()).toBe(true);
    // Closed: a change on disk is not read any more.
    expect(node.certificate!.reload()).toBe(false);
  });
});

describe('bad certificate files are refused before anything listens, naming the file', () => {
  it('a file that cannot be read', () => {
    const missing = join(ca.dir, 'nope.pem');
    expect(() => readTlsPair(missing, a.keyFile)).toThrow(`TLS certificate file ${missing}: cannot read it (ENOENT)`);
    expect(() => new McuNode({ port: 0, tlsCert: a.certFile, tlsKey: missing })).toThrow(`TLS key file ${missing}: cannot read it (ENOENT)`);
  });

  it('a key that is not the certificate\'s', () => {
    let err: unknown;
    try {
      new ServerCertificate({ certFile: a.certFile, keyFile: b.keyFile, reloadIntervalMs: 0 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TlsFileError);
    expect((err as TlsFileError).file).toBe(b.keyFile);
    expect((err as Error).message).toBe(`TLS key file ${b.keyFile} does not match the certificate in ${a.certFile} (subject CN=a)`);
  });

  it('files that are not PEM, swapped files, and a certificate without its key', () => {
    const junk = join(ca.dir, 'junk.pem');
    writeFileSync(junk, 'not a certificate\n');
    expect(() => readTlsPair(junk, a.keyFile)).toThrow(`TLS certificate file ${junk}: not a PEM certificate`);
    expect(() => readTlsPair(a.certFile, junk)).toThrow(`TLS key file ${junk}: not a PEM private key`);
    // The two given the wrong way round.
    expect(() => readTlsPair(a.keyFile, a.certFile)).toThrow(`TLS certificate file ${a.keyFile}: not a PEM certificate`);
    expect(() => new McuNode({ port: 0, tlsCert: a.certFile })).toThrow('HTTPS needs both a certificate and its key: tlsKey (--tls-key, MCU_TLS_KEY) is missing');
  });
});
