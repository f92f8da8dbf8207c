/**
 * The native AEAD_AES_128_GCM sealing (native/srtp_addon.c) gives exactly werift's SRTP output, so
 * any receiver that decrypts werift's packets decrypts ours, across a rollover of the sequence
 * number, with CSRCs and with header extensions.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ProtectionProfileAeadAes128Gcm, RtcpReceiverInfo, RtcpRrPacket, RtcpSrPacket, RtcpSenderInfo, RtpHeader, SrtcpSession, SrtpSession } from 'werift';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { loadSrtpGcm, openSrtcpNatively, socketFd, srtcpInStats, SRTP_GCM_TAG_BYTES } from '../src/SrtpGcm.js';
import { ipv4ToInt } from '../src/Sdp.js';

function sessions() {
  const keys = { localMasterKey: randomBytes(16), localMasterSalt: randomBytes(12), remoteMasterKey: randomBytes(16), remoteMasterSalt: randomBytes(12) };
  // Two werift sessions with the same keys: one to encrypt as werift does, one to keep our rollover state.
  const a = new SrtpSession({ keys, profile: ProtectionProfileAeadAes128Gcm });
  const b = new SrtpSession({ keys, profile: ProtectionProfileAeadAes128Gcm });
  return { a, b };
}

describe('native SRTP AES-GCM', () => {
  const binding = loadSrtpGcm().binding;

  it('is built on this machine', () => {
    expect(loadSrtpGcm().error).toBeNull();
    expect(binding).not.toBeNull();
  });

  it('seals packets byte for byte as werift does, across a sequence-number rollover, with CSRCs and extensions', () => {
    const { a, b } = sessions();
    const cipher = b.localContext.cipher as unknown as { srtpSessionKey: Buffer; srtpSessionSalt: Buffer };
    // werift derives a 14-byte session salt and uses its first 12 bytes (RFC 7714's salt length).
    const native = new binding!.SrtpGcm(cipher.srtpSessionKey, cipher.srtpSessionSalt.subarray(0, 12));
    let compared = 0;
    for (let i = 0; i < 300; i++) {
      const seq = (65_400 + i) & 0xffff; // wraps at i = 136: the rollover counter goes to 1
      const ext = i % 3 === 0 ? [{ id: 3, payload: randomBytes(3) }] : [];
      const header = new RtpHeader({ payloadType: 111, sequenceNumber: seq, timestamp: i * 960, ssrc: 0x1234_5678, marker: i % 7 === 0, csrc: i % 5 === 0 ? [1, 2] : [], extensions: ext });
      const payload = randomBytes(20 + (i % 200));
      const expected = a.encrypt(payload, header);

      const hdr = header.serialize(header.serializeSize);
      const out = Buffer.alloc(hdr.length + payload.length + SRTP_GCM_TAG_BYTES);
      hdr.copy(out);
      payload.copy(out, hdr.length);
      const state = b.localContext.getSrtpSsrcState(header.ssrc);
      b.localContext.updateRolloverCount(seq, state);
      const n = native.protect(out, hdr.length, payload.length, state.rolloverCounter);
      expect(n).toBe(expected.length);
      expect(out.equals(expected), `packet ${i} (seq ${seq}, roc ${state.rolloverCounter})`).toBe(true);
      compared++;
    }
    expect(compared).toBe(300);
    expect(b.localContext.getSrtpSsrcState(0x1234_5678).rolloverCounter).toBe(1);
    native.close();
    expect(() => native.protect(Buffer.alloc(64), 12, 10, 0)).toThrow(/closed/);
  });

  it('opens SRTCP sealed by werift to the same plain RTCP, and refuses a tampered or unsealed packet', () => {
    const keys = { localMasterKey: randomBytes(16), localMasterSalt: randomBytes(12), remoteMasterKey: randomBytes(16), remoteMasterSalt: randomBytes(12) };
    // The peer seals with its local keys; this side opens with the same keys as its remote ones.
    const peer = new SrtcpSession({ keys, profile: ProtectionProfileAeadAes128Gcm });
    const mirrored = { localMasterKey: keys.remoteMasterKey, localMasterSalt: keys.remoteMasterSalt, remoteMasterKey: keys.localMasterKey, remoteMasterSalt: keys.localMasterSalt };
    const here = new SrtcpSession({ keys: mirrored, profile: ProtectionProfileAeadAes128Gcm });
    const cipher = here.remoteContext.cipher as unknown as { srtcpSessionKey: Buffer; srtcpSessionSalt: Buffer };
    const open = new binding!.SrtcpGcmOpen!(cipher.srtcpSessionKey, cipher.srtcpSessionSalt.subarray(0, 12));
    for (let i = 0; i < 50; i++) {
      const rr = new RtcpRrPacket({ ssrc: 0xaabb_0000 + i, reports: [new RtcpReceiverInfo({ ssrc: 7, fractionLost: i, packetsLost: i * 3, highestSequence: 1000 + i, jitter: i, lsr: i * 1000, dlsr: 5 })] });
      const sr = new RtcpSrPacket({ ssrc: 0xaabb_0000 + i, senderInfo: new RtcpSenderInfo({ ntpTimestamp: BigInt(i) << 32n, rtpTimestamp: i * 960, packetCount: i, octetCount: i * 100 }) });
      const plain = Buffer.concat(i % 2 ? [rr.serialize()] : [sr.serialize(), rr.serialize()]);
      const sealed = peer.encrypt(plain);
      const out = Buffer.alloc(sealed.length);
      const n = open.open(sealed, out);
      expect(n).toBe(plain.length);
      expect(out.subarray(0, n).equals(plain), `packet ${i}`).toBe(true);
      expect(out.subarray(0, n).equals(here.decrypt(sealed))).toBe(true);
      // One bit changed anywhere (header, ciphertext, tag, index) and it does not open.
      const bad = Buffer.from(sealed);
      bad[(i * 7) % bad.length] ^= 0x01;
      if ((i * 7) % bad.length === bad.length - 4) bad[bad.length - 4] |= 0x80; // keep the E flag: a flipped E is the next case
      expect(open.open(bad, Buffer.alloc(bad.length))).toBe(-1);
    }
    // E flag clear (authenticated only): left to werift.
    const unsealed = Buffer.from(peer.encrypt(new RtcpRrPacket({ ssrc: 1 }).serialize()));
    unsealed[unsealed.length - 4] &= 0x7f;
    expect(open.open(unsealed, Buffer.alloc(unsealed.length))).toBe(-2);
    expect(open.open(Buffer.alloc(12), Buffer.alloc(12))).toBe(-1); // too short to hold a tag and an index
    expect(() => open.open(peer.encrypt(new RtcpRrPacket({ ssrc: 1 }).serialize()), Buffer.alloc(4))).toThrow(RangeError);
    open.close();
    expect(() => open.open(Buffer.alloc(64), Buffer.alloc(64))).toThrow(/closed/);
  });

  it('a werift SRTCP session opened natively hands werift the same RTCP, and werift still drops what fails', () => {
    const keys = { localMasterKey: randomBytes(16), localMasterSalt: randomBytes(12), remoteMasterKey: randomBytes(16), remoteMasterSalt: randomBytes(12) };
    const peer = new SrtcpSession({ keys, profile: ProtectionProfileAeadAes128Gcm });
    const here = new SrtcpSession({ keys: { localMasterKey: keys.remoteMasterKey, localMasterSalt: keys.remoteMasterSalt, remoteMasterKey: keys.localMasterKey, remoteMasterSalt: keys.localMasterSalt }, profile: ProtectionProfileAeadAes128Gcm });
    const dtls = { srtcp: here };
    expect(openSrtcpNatively(dtls)).toBe(true);
    expect(openSrtcpNatively(dtls)).toBe(false); // once per SRTCP session
    const before = srtcpInStats();
    const plain = new RtcpRrPacket({ ssrc: 5, reports: [new RtcpReceiverInfo({ ssrc: 9, fractionLost: 3, packetsLost: 4, highestSequence: 77, jitter: 2, lsr: 1, dlsr: 2 })] }).serialize();
    const sealed = peer.encrypt(plain);
    expect(here.decrypt(sealed).equals(plain)).toBe(true);
    const bad = Buffer.from(sealed);
    bad[10] ^= 0xff;
    expect(() => here.decrypt(bad)).toThrow(); // werift's own decrypt refuses it, as before
    const after = srtcpInStats();
    expect(after.opened - before.opened).toBe(1);
    expect(after.toWerift - before.toWerift).toBe(1);
  });

  it('refuses bad arguments with an error, not a crash', () => {
    expect(() => new binding!.SrtpGcm(randomBytes(15), randomBytes(12))).toThrow(RangeError);
    expect(() => new binding!.SrtpGcm(randomBytes(16), 'salt' as unknown as Uint8Array)).toThrow(TypeError);
    const s = new binding!.SrtpGcm(randomBytes(16), randomBytes(12));
    expect(() => s.protect(Buffer.alloc(20), 12, 8, 0)).toThrow(RangeError); // no room for the tag
    expect(() => s.protect(Buffer.alloc(40), 8, 4, 0)).toThrow(RangeError); // header shorter than RTP's
    expect(() => s.protect(Buffer.alloc(40), 12, 4, 'x' as unknown as number)).toThrow(TypeError);
    s.close();
  });

  it('sends a datagram with one sendto on a dgram socket\'s own fd, and reports errors as -errno', async () => {
    const from = dgram.createSocket('udp4');
    const to = dgram.createSocket('udp4');
    from.bind(0, '127.0.0.1');
    to.bind(0, '127.0.0.1');
    await Promise.all([once(from, 'listening'), once(to, 'listening')]);
    try {
      const fd = socketFd(from);
      expect(fd).toBeGreaterThan(2);
      expect(ipv4ToInt('127.0.0.1')).toBe(0x7f00_0001);
      expect(ipv4ToInt('::1')).toBe(-1);
      expect(ipv4ToInt('256.0.0.1')).toBe(-1);
      const got = once(to, 'message');
      const payload = Buffer.from('program packet');
      expect(binding!.sendTo(fd, payload, payload.length, 0x7f00_0001, to.address().port)).toBe(payload.length);
      const [msg, rinfo] = (await got) as [Buffer, dgram.RemoteInfo];
      expect(msg.equals(payload)).toBe(true);
      expect(rinfo.port).toBe(from.address().port); // the same socket: the viewer sees the ICE pair's port
      expect(binding!.sendTo(1_000_000, payload, payload.length, 0x7f00_0001, 9)).toBeLessThan(0); // EBADF
      expect(() => binding!.sendTo(fd, payload, payload.length + 1, 0x7f00_0001, 9)).toThrow(RangeError);
    } finally {
      from.close();
      to.close();
    }
  });
});
