/**
 * The certificate and key a node serves HTTPS with, read from two PEM files and read again when
 * they change on disk, so that a renewed certificate (certbot, lego, cert-manager, the operator's
 * CA) is served without a restart: new TLS connections get the new pair through
 * `server.setSecureContext`, connections already open keep theirs.
 *
 * The files are polled (stat, following symlinks) rather than watched: ACME clients swap a
 * symlink or rename a new file into place, which inotify watches on the old inode miss, and a
 * stat of two files every few seconds costs nothing.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type https from 'node:https';
import { createSecureContext } from 'node:tls';
import type { Logger } from '@mcu/control';

/** How often the files are checked for a renewal unless told otherwise. */
export const defaultTlsReloadIntervalMs = 10_000;

/** A certificate or key file that cannot be served: the message names the file and why. */
export class TlsFileError extends Error {
  constructor(
    message: string,
    readonly file: string,
  ) {
    super(message);
    this.name = 'TlsFileError';
  }
}

export interface TlsPair {
  cert: Buffer;
  key: Buffer;
  /** SHA-256 fingerprint of the leaf certificate, "AB:CD:…" (what `openssl x509 -fingerprint -sha256` prints). */
  fingerprint256: string;
  subject: string;
  validTo: Date;
}

export interface ServerCertificateOptions {
  certFile: string;
  keyFile: string;
  /** How often the files are checked for a renewal (0: never). */
  reloadIntervalMs?: number;
  log?: Logger;
}

function readPem(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new TlsFileError(`TLS ${what} file ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, file);
  }
}

/**
 * Reads and checks a certificate (chain) and its private key: both readable PEM, the key the one
 * the certificate was issued for, and the pair loadable by TLS. Throws a TlsFileError naming the file.
 */
export function readTlsPair(certFile: string, keyFile: string): TlsPair {
  const cert = readPem(certFile, 'certificate');
  const key = readPem(keyFile, 'key');
  let leaf: X509Certificate;
  try {
    // The first certificate of a chain file (fullchain.pem) is the server's own.
    leaf = new X509Certificate(cert);
  } catch (err) {
    throw new TlsFileError(`TLS certificate file ${certFile}: not a PEM certificate (${(err as Error).message})`, certFile);
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    const reason = /passphrase/i.test((err as Error).message) ? 'the key is encrypted; give an unencrypted key file readable only by the node' : (err as Error).message;
    throw new TlsFileError(`TLS key file ${keyFile}: not a PEM private key (${reason})`, keyFile);
  }
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new TlsFileError(`TLS key file ${keyFile} does not match the certificate in ${certFile} (subject ${leaf.subject.replace(/\n/g, ', ')})`, keyFile);
  }
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new TlsFileError(`TLS certificate file ${certFile}: cannot be served with ${keyFile} (${(err as Error).message})`, certFile);
  }
  return { cert, key, fingerprint256: leaf.fingerprint256, subject: leaf.subject.replace(/\n/g, ', '), validTo: new Date(leaf.validTo) };
}

/** Changes when either file is replaced or rewritten (stat follows symlinks, as a renewal swaps them). */
function signatureOf(files: string[]): string {
  return files
    .map((f) => {
      try {
        const s = statSync(f);
        return `${s.ino}:${s.size}:${s.mtimeMs}`;
      } catch {
        return 'missing';
      }
    })
    .join('|');
}

export class ServerCertificate {
  readonly certFile: string;
  readonly keyFile: string;
  #pair: TlsPair;
  #signature: string;
  #timer: NodeJS.Timeout | undefined;
  #servers = new Set<https.Server>();
  readonly #log: Logger | undefined;
  #closed = false;

  /** Reads the pair now (throws a TlsFileError naming the file) and, with an interval, watches it. */
  constructor(opts: ServerCertificateOptions) {
    this.certFile = opts.certFile;
    this.keyFile = opts.keyFile;
    this.#log = opts.log;
    this.#signature = signatureOf([this.certFile, this.keyFile]);
    this.#pair = readTlsPair(this.certFile, this.keyFile);
    this.#warnIfExpiring();
    const every = opts.reloadIntervalMs ?? defaultTlsReloadIntervalMs;
    if (every > 0) {
      this.#timer = setInterval(() => this.reload(), every);
      this.#timer.unref();
    }
  }

  /** The pair served to new connections now. */
  get current(): TlsPair {
    return this.#pair;
  }

  /** Options for `https.createServer`. */
  get serverOptions(): { cert: Buffer; key: Buffer } {
    return { cert: this.#pair.cert, key: this.#pair.key };
  }

  /** New connections to `server` get the pair read at the next renewal. */
  attach(server: https.Server): void {
    this.#servers.add(server);
  }

  /**
   * Reads the files again if they changed since the last look; a new valid pair goes to every
   * attached server. A pair that does not check out (the certificate written but not yet its key)
   * is logged and the old one kept; the next change is tried again. `force`: read them even if
   * they look unchanged (a file system whose mtimes cannot be trusted). Returns true if it switched.
   */
  reload(force = false): boolean {
    if (this.#closed) return false;
    const signature = signatureOf([this.certFile, this.keyFile]);
    if (signature === this.#signature && !force) return false;
    this.#signature = signature;
    let pair: TlsPair;
    try {
      pair = readTlsPair(this.certFile, this.keyFile);
    } catch (err) {
      this.#log?.warn({ err: (err as Error).message }, 'TLS certificate changed on disk but cannot be served: keeping the current one');
      return false;
    }
    if (pair.fingerprint256 === this.#pair.fingerprint256 && pair.key.equals(this.#pair.key)) return false;
    for (const server of this.#servers) server.setSecureContext({ cert: pair.cert, key: pair.key });
    const previous = this.#pair.fingerprint256;
    this.#pair = pair;
    this.#log?.info({ subject: pair.subject, fingerprint256: pair.fingerprint256, previous, validTo: pair.validTo.toISOString() }, 'TLS certificate renewed');
    this.#warnIfExpiring();
    return true;
  }

  #warnIfExpiring(): void {
    const daysLeft = (this.#pair.validTo.getTime() - Date.now()) / 86_400_000;
    if (daysLeft < 0) this.#log?.warn({ certFile: this.certFile, validTo: this.#pair.validTo.toISOString() }, 'TLS certificate has expired: browsers will refuse it');
    else if (daysLeft < 7) this.#log?.warn({ certFile: this.certFile, validTo: this.#pair.validTo.toISOString() }, 'TLS certificate expires within 7 days');
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    this.#servers.clear();
  }
}
