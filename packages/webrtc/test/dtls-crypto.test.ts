/**
 * The OpenSSL handshake crypto under werift (DtlsCrypto.ts): the same X25519 results as
 * tweetnacl, signatures that verify with the certificate's public key, and real werift peers that
 * complete DTLS-SRTP with it (media decrypts on the far side) and with werift's own functions.
 */
import { createPublicKey, randomBytes, verify, X509Certificate } from 'node:crypto';
import nacl from 'tweetnacl';
import { afterAll, describe, expect, it } from 'vitest';
import { CipherContext, RTCPeerConnection, RtpHeader, RtpPacket } from 'werift';
import { fastDtlsCryptoEnabled, loadSrtpGcm, setFastDtlsCrypto, weriftDtlsCrypto } from '../src/index.js';

afterAll(() => setFastDtlsCrypto(true));

describe('X25519 through OpenSSL (the native addon)', () => {
  it('is on by default and gives the same keys and shared secrets as tweetnacl', () => {
    expect(fastDtlsCryptoEnabled()).toBe(true);
    expect(nacl.scalarMult).not.toBe(weriftDtlsCrypto.scalarMult);
    for (let i = 0; i < 20; i++) {
      const a = nacl.box.keyPair();
      const b = nacl.box.keyPair();
      expect(a.secretKey.length).toBe(32);
      expect(a.secretKey.buffer.byteLength).toBe(32);
      expect(a.publicKey.buffer.byteLength).toBe(32);
      // The public key is the base-point multiple of the secret (tweetnacl's own arithmetic).
      expect(Buffer.from(a.publicKey).equals(Buffer.from(weriftDtlsCrypto.scalarMult.base(a.secretKey)))).toBe(true);
      const ours = Buffer.from(nacl.scalarMult(a.secretKey, b.publicKey));
      expect(ours.equals(Buffer.from(weriftDtlsCrypto.scalarMult(a.secretKey, b.publicKey)))).toBe(true);
      expect(ours.equals(Buffer.from(nacl.scalarMult(b.secretKey, a.publicKey)))).toBe(true);
    }
    // Arbitrary 32-byte scalars and points (clamping and the top bit as RFC 7748 says).
    for (let i = 0; i < 20; i++) {
      const s = new Uint8Array(randomBytes(32));
      const p = new Uint8Array(randomBytes(32));
      expect(Buffer.from(nacl.scalarMult(s, p)).equals(Buffer.from(weriftDtlsCrypto.scalarMult(s, p)))).toBe(true);
    }
    expect(typeof nacl.scalarMult.base).toBe('function');
  });

  it('makes key pairs and secrets by the thousand without blocking the event loop forever', async () => {
    // node:crypto's generateKeyPairSync('x25519') with a JWK export of the key, the way this was
    // done before, deadlocked Node 20 within 2,000 calls (the export's lock against the key
    // generation job's, taken by the garbage collector). The addon's raw keys take no such lock.
    const binding = loadSrtpGcm().binding as unknown as { x25519KeyPair?: unknown } | null;
    expect(typeof binding?.x25519KeyPair).toBe('function');
    let agreed = 0;
    for (let i = 0; i < 5000; i++) {
      const a = nacl.box.keyPair();
      const b = nacl.box.keyPair();
      if (Buffer.from(nacl.scalarMult(a.secretKey, b.publicKey)).equals(Buffer.from(nacl.scalarMult(b.secretKey, a.publicKey)))) agreed++;
      if (i % 500 === 0) await new Promise((r) => setImmediate(r));
    }
    expect(agreed).toBe(5000);
    // A low-order peer key (all zeros) is what OpenSSL refuses: werift's function answers it, as before.
    const s = nacl.box.keyPair().secretKey;
    expect(Buffer.from(nacl.scalarMult(s, new Uint8Array(32))).equals(Buffer.from(weriftDtlsCrypto.scalarMult(s, new Uint8Array(32))))).toBe(true);
  }, 60_000);
});

describe('signatures from a KeyObject made once', () => {
  it('verify with the public key of the certificate werift made', async () => {
    // werift's own ECDSA P-256 / SHA-256 certificate, as a peer connection makes it.
    const { certPem, keyPem, signatureHash } = await CipherContext.createSelfSignedCertificateWithKey({ hash: 4, signature: 3 }, 23);
    const publicKey = createPublicKey(new X509Certificate(certPem).publicKey.export({ format: 'pem', type: 'spki' }));
    const ctx = new CipherContext(1, certPem, keyPem, signatureHash) as unknown as {
      signatureData(data: Buffer, hash: string): Buffer;
      localCert: Buffer;
    };
    const again = new CipherContext(2, certPem, keyPem, signatureHash) as unknown as { localCert: Buffer };
    expect(again.localCert.equals(ctx.localCert)).toBe(true);
    const data = randomBytes(200);
    const sig = ctx.signatureData(data, 'sha256');
    expect(verify('sha256', data, publicKey, sig)).toBe(true);
    expect(verify('sha256', randomBytes(200), publicKey, sig)).toBe(false);
  });
});

/** Two werift peers on loopback; resolves with the payloads the answerer decrypted. */
async function handshake(): Promise<Buffer[]> {
  const config = { iceAdditionalHostAddresses: ['127.0.0.1'], iceUseIpv4: true, iceUseIpv6: false, iceFilterCandidatePair: () => true };
  const a = new RTCPeerConnection(config);
  const b = new RTCPeerConnection(config);
  try {
    const sender = a.addTransceiver('audio', { direction: 'sendonly' });
    b.addTransceiver('audio', { direction: 'recvonly' });
    const got: Buffer[] = [];
    b.onTrack.subscribe((track) => track.onReceiveRtp.subscribe((rtp) => void got.push(Buffer.from(rtp.payload))));
    await a.setLocalDescription(await a.createOffer());
    await b.setRemoteDescription(a.localDescription!);
    await b.setLocalDescription(await b.createAnswer());
    await a.setRemoteDescription(b.localDescription!);
    const connected = (pc: RTCPeerConnection) =>
      new Promise<void>((resolve, reject) => {
        if (pc.connectionState === 'connected') return resolve();
        const t = setTimeout(() => reject(new Error(`not connected: ${pc.connectionState}`)), 15_000);
        pc.connectionStateChange.subscribe((s) => s === 'connected' && (clearTimeout(t), resolve()));
      });
    await Promise.all([connected(a), connected(b)]);
    for (let i = 0; i < 200 && got.length < 5; i++) {
      const header = new RtpHeader({ payloadType: 111, sequenceNumber: 100 + i, timestamp: i * 960, ssrc: 7, marker: false });
      sender.sender.sendRtp(new RtpPacket(header, Buffer.from(`payload ${i}`)));
      await new Promise((r) => setTimeout(r, 20));
    }
    return got;
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
}

describe('werift DTLS-SRTP', () => {
  it('completes, and media decrypts on the far side, with the OpenSSL crypto and with werift own', async () => {
    setFastDtlsCrypto(true);
    // Count the X25519 calls the handshake makes through the OpenSSL function.
    const x25519 = nacl.scalarMult;
    let calls = 0;
    nacl.scalarMult = Object.assign((s: Uint8Array, p: Uint8Array) => (calls++, x25519(s, p)), { base: x25519.base, scalarLength: 32, groupElementLength: 32 });
    const fast = await handshake().finally(() => (nacl.scalarMult = x25519));
    expect(calls).toBe(2);
    expect(fast.length).toBeGreaterThanOrEqual(5);
    expect(fast[0].toString()).toMatch(/^payload \d+$/);
    setFastDtlsCrypto(false);
    expect(nacl.scalarMult).toBe(weriftDtlsCrypto.scalarMult);
    const own = await handshake();
    expect(own.length).toBeGreaterThanOrEqual(5);
    setFastDtlsCrypto(true);
  }, 60_000);
});
