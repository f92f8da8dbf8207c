/**
 * werift's DTLS handshake with OpenSSL (node:crypto) doing the public-key work.
 *
 * werift 0.24 runs X25519 in tweetnacl (pure JavaScript: about 1.3 ms to make a key pair and
 * 0.5 ms for the shared secret), parses its own certificate and key from PEM for every session,
 * and signs (ServerKeyExchange, CertificateVerify) from a PEM string that node parses again each
 * time. Together that is about 3 ms of the event loop per handshake, on both ends; with OpenSSL
 * it is about 0.2 ms. X25519 runs in the native addon (OpenSSL's raw keys), werift's tweetnacl
 * where the addon is not built. The results are the same bytes: X25519 is RFC 7748 either way, the
 * signatures are DER ECDSA (or PKCS#1 v1.5 for an RSA key) from the same key.
 *
 * What is replaced, all through objects werift exports or imports (no file of werift is changed):
 * - tweetnacl's `box.keyPair` and `scalarMult` (werift's only X25519 calls);
 * - `CipherContext.prototype.parseX509`: the parsed certificate and key are kept per PEM pair;
 * - `CipherContext.prototype.signatureData` and `generateKeySignature`: the key is a KeyObject
 *   made once per parsed key.
 *
 * On by default from the first import of @mcu/webrtc; `setFastDtlsCrypto(false)` (or
 * MCU_FAST_DTLS_CRYPTO=0) puts werift's own functions back, for comparison.
 */
import { createPrivateKey, sign as cryptoSign } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import nacl from 'tweetnacl';
import { CipherContext } from 'werift';
import { loadSrtpGcm } from './SrtpGcm.js';

interface PemPrivateKey {
  toDER(): Buffer;
  sign(data: Buffer, hashAlgorithm: string): Buffer;
}
interface CipherContextLike {
  sessionType: number;
  localRandom: { serialize(): Buffer };
  remoteRandom: { serialize(): Buffer };
  localKeyPair: { publicKey: Buffer };
  namedCurve: number;
  localCert?: Buffer;
  localPrivateKey?: PemPrivateKey;
  signatureHashAlgorithm?: unknown;
  valueKeySignature(clientRandom: Buffer, serverRandom: Buffer, publicKey: Buffer, namedCurve: number): Buffer;
}
type CipherProto = {
  parseX509(this: CipherContextLike, certPem: string, keyPem: string, signatureHash: unknown): void;
  signatureData(this: CipherContextLike, data: Buffer, hash: string): Buffer;
  generateKeySignature(this: CipherContextLike, hashAlgorithm: string): Buffer;
};

const proto = (CipherContext as unknown as { prototype: CipherProto }).prototype;
const original = {
  keyPair: nacl.box.keyPair,
  scalarMult: nacl.scalarMult,
  parseX509: proto.parseX509,
  signatureData: proto.signatureData,
  generateKeySignature: proto.generateKeySignature,
};

interface X25519Binding {
  x25519KeyPair(publicOut: Uint8Array, secretOut: Uint8Array): number;
  x25519(secret: Uint8Array, peer: Uint8Array, out: Uint8Array): number;
}

/**
 * X25519 in the native addon (OpenSSL's raw keys). Not node:crypto's KeyObjects: a JWK export of
 * a key from generateKeyPairSync deadlocks Node 20 now and then (native/srtp_addon.c says how),
 * and importing a raw secret as PKCS#8 costs about 0.4 ms. Without the addon, werift's tweetnacl.
 */
let x25519Binding: X25519Binding | null | undefined;
function x25519Native(): X25519Binding | null {
  if (x25519Binding === undefined) {
    const b = loadSrtpGcm().binding as unknown as Partial<X25519Binding> | null;
    x25519Binding = b && typeof b.x25519KeyPair === 'function' && typeof b.x25519 === 'function' ? (b as X25519Binding) : null;
  }
  return x25519Binding;
}

function x25519KeyPair(): { publicKey: Uint8Array; secretKey: Uint8Array } {
  const native = x25519Native();
  // Own 32-byte buffers: werift reads `keys.secretKey.buffer`.
  const publicKey = new Uint8Array(32);
  const secretKey = new Uint8Array(32);
  if (native === null || native.x25519KeyPair(publicKey, secretKey) !== 0) return original.keyPair();
  return { publicKey, secretKey };
}

function x25519(secret: Uint8Array, peer: Uint8Array): Uint8Array {
  const native = x25519Native();
  const out = new Uint8Array(32);
  // What OpenSSL refuses (a low-order peer key: an all-zero secret) werift's function answers as before.
  if (native === null || secret.length !== 32 || peer.length !== 32 || native.x25519(secret, peer, out) !== 0) return original.scalarMult(secret, peer);
  return out;
}

// tweetnacl hangs `base` and the lengths on scalarMult, and fromSecretKey on keyPair; the replacements keep them.
Object.assign(x25519, { base: original.scalarMult.base, scalarLength: 32, groupElementLength: 32 });
Object.assign(x25519KeyPair, { fromSecretKey: original.keyPair.fromSecretKey });

/** One KeyObject per parsed key (werift keeps the parsed key on each session's CipherContext). */
const keyObjects = new WeakMap<object, KeyObject>();
function keyObjectOf(key: PemPrivateKey): KeyObject {
  let k = keyObjects.get(key);
  if (!k) {
    k = createPrivateKey({ key: key.toDER(), format: 'der', type: 'pkcs8' });
    keyObjects.set(key, k);
  }
  return k;
}

/** Parsed certificate and key per PEM pair; a node has one or two (its DTLS certificate). */
const parsed = new Map<string, { localCert: Buffer; localPrivateKey: PemPrivateKey }>();
const PARSED_MAX = 16;

const fast: CipherProto = {
  parseX509(certPem, keyPem, signatureHash) {
    const id = `${certPem}\n${keyPem}`;
    let p = parsed.get(id);
    if (!p) {
      original.parseX509.call(this, certPem, keyPem, signatureHash);
      p = { localCert: this.localCert!, localPrivateKey: this.localPrivateKey! };
      if (parsed.size >= PARSED_MAX) parsed.delete(parsed.keys().next().value!);
      parsed.set(id, p);
    }
    this.localCert = p.localCert;
    this.localPrivateKey = p.localPrivateKey;
    this.signatureHashAlgorithm = signatureHash;
  },
  signatureData(data, hash) {
    return cryptoSign(hash, data, keyObjectOf(this.localPrivateKey!));
  },
  generateKeySignature(hashAlgorithm) {
    // SessionType.CLIENT is 1 in werift (dtls/src/cipher/suites/abstract.ts).
    const client = this.sessionType === 1;
    const clientRandom = (client ? this.localRandom : this.remoteRandom).serialize();
    const serverRandom = (client ? this.remoteRandom : this.localRandom).serialize();
    const data = this.valueKeySignature(clientRandom, serverRandom, this.localKeyPair.publicKey, this.namedCurve);
    return cryptoSign(hashAlgorithm, data, keyObjectOf(this.localPrivateKey!));
  },
};

let enabled = false;

/** Turns the OpenSSL handshake crypto on (the default) or back to werift's own. */
export function setFastDtlsCrypto(on: boolean): void {
  enabled = on;
  nacl.box.keyPair = on ? (x25519KeyPair as typeof nacl.box.keyPair) : original.keyPair;
  nacl.scalarMult = on ? (x25519 as typeof nacl.scalarMult) : original.scalarMult;
  proto.parseX509 = on ? fast.parseX509 : original.parseX509;
  proto.signatureData = on ? fast.signatureData : original.signatureData;
  proto.generateKeySignature = on ? fast.generateKeySignature : original.generateKeySignature;
  if (!on) parsed.clear();
}

export function fastDtlsCryptoEnabled(): boolean {
  return enabled;
}

/** werift's own functions, for tests that compare results. */
export const weriftDtlsCrypto = { keyPair: original.keyPair, scalarMult: original.scalarMult } as const;

setFastDtlsCrypto(process.env.MCU_FAST_DTLS_CRYPTO !== '0');
