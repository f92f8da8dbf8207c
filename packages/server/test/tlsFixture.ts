/**
 * Certificates for the HTTPS tests, made with the real `openssl` CLI: a throwaway test CA and
 * server certificates it signs for given IP addresses and names, and a fetch that trusts that CA
 * (Node's global fetch takes no CA option; NODE_EXTRA_CA_CERTS is read only at process start).
 */
import { execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestCa {
  dir: string;
  certFile: string;
  keyFile: string;
  /** The CA certificate (PEM), to trust. */
  pem: string;
  /** Removes the directory and everything issued into it. */
  remove(): void;
}

export interface IssuedCert {
  certFile: string;
  keyFile: string;
  fingerprint256: string;
  /** SHA-256 of the certificate's public key, base64 (Chromium's --ignore-certificate-errors-spki-list). */
  spki256: string;
}

function openssl(args: string[], cwd: string): string {
  try {
    return execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
    if (e.code === 'ENOENT') throw new Error('openssl not found: apt-get install -y openssl (listed in scripts/test-packages.json)');
    throw new Error(`openssl ${args.join(' ')} failed: ${e.stderr?.toString() ?? e.message}`);
  }
}

/** A CA valid for two days, P-256, in a fresh temp dir. */
export function makeTestCa(name = 'mcu test CA'): TestCa {
  const dir = mkdtempSync(join(tmpdir(), 'mcu-tls-'));
  const certFile = join(dir, 'ca.pem');
  const keyFile = join(dir, 'ca.key');
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', `/CN=${name}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  return { dir, certFile, keyFile, pem: readFileSync(certFile, 'utf8'), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

let serial = 0;

/** A server certificate signed by `ca` for these IP addresses (and `localhost`), written as `<name>.pem` and `<name>.key`. */
export function issueCert(ca: TestCa, name: string, ips: string[] = ['127.0.0.1']): IssuedCert {
  const certFile = join(ca.dir, `${name}.pem`);
  const keyFile = join(ca.dir, `${name}.key`);
  const csr = join(ca.dir, `${name}.csr`);
  const ext = join(ca.dir, `${name}.ext`);
  writeFileSync(ext, [`subjectAltName=${[...ips.map((ip) => `IP:${ip}`), 'DNS:localhost'].join(',')}`, 'basicConstraints=CA:FALSE', 'keyUsage=critical,digitalSignature', 'extendedKeyUsage=serverAuth'].join('\n'));
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-out', csr, '-subj', `/CN=${name}`], ca.dir);
  openssl(['x509', '-req', '-in', csr, '-CA', ca.certFile, '-CAkey', ca.keyFile, '-set_serial', String(Date.now() * 100 + serial++), '-days', '2', '-extfile', ext, '-out', certFile], ca.dir);
  const x509 = new X509Certificate(readFileSync(certFile));
  const spkiDer = x509.publicKey.export({ type: 'spki', format: 'der' });
  const spki256 = createHash('sha256').update(spkiDer).digest('base64');
  return { certFile, keyFile, fingerprint256: x509.fingerprint256, spki256 };
}

/**
 * A fetch over https (or http) that trusts `ca` and never follows redirects (a 307 comes back as
 * it is). Enough of fetch for the tests: method, headers, a string body.
 */
export function tlsFetch(ca: string, agent?: https.Agent): (url: string, init?: { method?: string; headers?: Record<string, string>; body?: string }) => Promise<Response> {
  return async (url, init = {}) => {
    const u = new URL(url);
    if (u.protocol === 'http:') return fetch(url, { ...init, redirect: 'manual' });
    return new Promise<Response>((resolve, reject) => {
      const req = https.request(u, { method: init.method ?? 'GET', headers: init.headers, ca, agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const headers = new Headers();
          for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(', ') : v);
          const status = res.statusCode ?? 0;
          resolve(new Response(status === 204 || status === 304 ? null : Buffer.concat(chunks), { status, headers }));
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(init.body);
    });
  };
}
