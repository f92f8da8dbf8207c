import { describe, expect, it } from 'vitest';
import { buildNack, buildPli, buildRtp, parseRtcp, RtpHeader } from '@mcu/rtp';
import { FEED_OVERHEAD_BYTES, FeedCipher, ReplayWindow } from '../src/index.js';
import { makeKey, mulberry32 } from './helpers.js';

const key1 = makeKey(1);
const key2 = makeKey(2);

function rtp(seq: number, ssrc = 0x11223344, payload: Uint8Array = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8)): Buffer {
  return buildRtp({ payloadType: 96, sequenceNumber: seq, timestamp: seq * 3000, ssrc, csrcs: [7], extensions: [{ id: 1, data: Uint8Array.of(0x90) }] }, payload);
}

function protect(cipher: FeedCipher, packet: Buffer): Buffer {
  const out = Buffer.alloc(packet.length + FEED_OVERHEAD_BYTES);
  expect(cipher.protect(packet, packet.length, out)).toBe(out.length);
  return out;
}

describe('FeedCipher RTP (RFC 7714-style AES-128-GCM)', () => {
  it('round trip: the header stays readable in clear, the payload is encrypted, decrypting restores the packet', () => {
    const tx = new FeedCipher(key1);
    const rx = new FeedCipher(key1);
    const payload = Buffer.from('the program feed, in confidence');
    const plain = rtp(1000, 0x11223344, payload);
    const sealed = protect(tx, plain);
    const header = new RtpHeader();
    const headerBytes = plain.length - payload.length;
    expect(sealed.subarray(0, headerBytes).equals(plain.subarray(0, headerBytes))).toBe(true);
    expect(sealed.includes(payload)).toBe(false);
    const out = Buffer.alloc(1500);
    const n = rx.unprotect(sealed, sealed.length, out, header);
    expect(n).toBe(plain.length);
    expect(out.subarray(0, plain.length).equals(plain)).toBe(true);
    expect(header.sequenceNumber).toBe(1000);
    expect(header.csrcCount).toBe(1);
    expect(Buffer.from(out.subarray(header.payloadOffset, header.payloadOffset + header.payloadLength)).equals(payload)).toBe(true);
  });

  it('protects in place when out is the packet itself', () => {
    const tx = new FeedCipher(key1);
    const rx = new FeedCipher(key1);
    const plain = rtp(5);
    const buf = Buffer.alloc(plain.length + FEED_OVERHEAD_BYTES);
    plain.copy(buf);
    expect(tx.protect(buf, plain.length, buf)).toBe(buf.length);
    const out = Buffer.alloc(1500);
    expect(rx.unprotect(buf, buf.length, out)).toBe(plain.length);
    expect(out.subarray(0, plain.length).equals(plain)).toBe(true);
  });

  it('flipping any single bit of a protected packet makes it fail authentication', () => {
    const tx = new FeedCipher(key1);
    const sealed = protect(tx, rtp(77));
    const out = Buffer.alloc(1500);
    for (let i = 0; i < sealed.length; i++) {
      for (const bit of [0x01, 0x80]) {
        const rx = new FeedCipher(key1);
        const t = Buffer.from(sealed);
        t[i] ^= bit;
        const r = rx.unprotect(t, t.length, out);
        // Bits of the version field make the header unreadable instead, bits of the key id name
        // a key the receiver does not hold; all are refusals.
        expect(['bad_tag', 'bad_header', 'too_short', 'unknown_key']).toContain(r);
      }
    }
  });

  it('a truncated packet is refused', () => {
    const tx = new FeedCipher(key1);
    const rx = new FeedCipher(key1);
    const sealed = protect(tx, rtp(3));
    const out = Buffer.alloc(1500);
    // One byte short: the trailer is read one byte early, so its key id names no key.
    expect(rx.unprotect(sealed, sealed.length - 1, out)).toBe('unknown_key');
    expect(rx.unprotect(sealed.subarray(0, 20), 20, out)).toBe('too_short');
    expect(rx.unprotect(sealed, sealed.length, out)).toBe(sealed.length - FEED_OVERHEAD_BYTES);
  });

  it('a replayed packet is dropped; reordered packets inside the window are not', () => {
    const tx = new FeedCipher(key1);
    const rx = new FeedCipher(key1);
    const out = Buffer.alloc(1500);
    const sealed = [10, 11, 12, 13].map((s) => protect(tx, rtp(s)));
    expect(rx.unprotect(sealed[0], sealed[0].length, out)).toBeTypeOf('number');
    expect(rx.unprotect(sealed[2], sealed[2].length, out)).toBeTypeOf('number');
    expect(rx.unprotect(sealed[1], sealed[1].length, out)).toBeTypeOf('number'); // late, not a replay
    expect(rx.unprotect(sealed[2], sealed[2].length, out)).toBe('replay');
    expect(rx.unprotect(sealed[0], sealed[0].length, out)).toBe('replay');
    expect(rx.unprotect(sealed[3], sealed[3].length, out)).toBeTypeOf('number');
  });

  it('packets older than the 1024-packet window are replays', () => {
    const tx = new FeedCipher(key1);
    const rx = new FeedCipher(key1);
    const out = Buffer.alloc(1500);
    const old = protect(tx, rtp(0));
    for (let s = 1; s <= 1100; s++) {
      const p = protect(tx, rtp(s));
      expect(rx.unprotect(p, p.length, out)).toBeTypeOf('number');
    }
    expect(rx.unprotect(old, old.length, out)).toBe('replay');
  });

  it('a packet protected with another key is refused: unknown_key for another id, bad_tag for the same id', () => {
    const rx = new FeedCipher(key1);
    const sealed = protect(new FeedCipher(key2), rtp(1));
    expect(rx.unprotect(sealed, sealed.length, Buffer.alloc(1500))).toBe('unknown_key');
    const sameId = protect(new FeedCipher({ ...key2, id: key1.id }), rtp(1));
    expect(rx.unprotect(sameId, sameId.length, Buffer.alloc(1500))).toBe('bad_tag');
  });

  it('key rotation: the receiver takes the new key and, until told otherwise, the previous one', () => {
    const tx = new FeedCipher(key1);
    const rx = new FeedCipher(key1);
    const out = Buffer.alloc(1500);
    const first = protect(tx, rtp(1));
    const beforeRotation = protect(tx, rtp(2));
    tx.setKeys(key2, [key1]);
    expect(tx.currentKeyId).toBe(2);
    const afterRotation = protect(tx, rtp(3));
    expect(rx.unprotect(first, first.length, out)).toBeTypeOf('number');
    // The receiver learns of the new key: old packets in flight still pass.
    rx.setKeys(key2, [key1]);
    expect(rx.unprotect(afterRotation, afterRotation.length, out)).toBeTypeOf('number');
    expect(rx.receivedKeyId).toBe(2);
    expect(rx.unprotect(beforeRotation, beforeRotation.length, out)).toBeTypeOf('number');
    // One switch: a late packet from before it is not a switch of its own.
    expect(rx.keySwitches).toBe(1);
    // Once the previous key is retired its packets are refused as unknown_key, naming the key.
    const stale = protect(new FeedCipher(key1), rtp(5));
    rx.setKeys(key2);
    expect(rx.unprotect(stale, stale.length, out)).toBe('unknown_key');
    expect(rx.lastUnknownKeyId).toBe(1);
    const fresh = protect(tx, rtp(6));
    expect(rx.unprotect(fresh, fresh.length, out)).toBeTypeOf('number');
  });

  it('the key id travels after the tag (RTP and RTCP); the receiver opens the one key it names', () => {
    const key7 = { ...makeKey(3), id: 0xfedc_ba98 };
    const tx = new FeedCipher(key7);
    const sealed = protect(tx, rtp(9));
    expect(sealed.readUInt32BE(sealed.length - 8)).toBe(0xfedc_ba98);
    const pli = buildPli(1, 2);
    const sealedRtcp = Buffer.alloc(pli.length + FEED_OVERHEAD_BYTES);
    tx.protectRtcp(pli, pli.length, sealedRtcp);
    expect(sealedRtcp.readUInt32BE(sealedRtcp.length - 8)).toBe(0xfedc_ba98);
    const out = Buffer.alloc(1500);
    // An announced next key opens its packets before the receiver seals with it.
    const rx = new FeedCipher(key1, [key7]);
    expect(rx.unprotect(sealed, sealed.length, out)).toBeTypeOf('number');
    expect(rx.unprotectRtcp(sealedRtcp, sealedRtcp.length, out)).toBeTypeOf('number');
    // The same id over other key material: a forgery, bad_tag (not unknown_key).
    const impostor = new FeedCipher({ ...makeKey(4), id: 0xfedc_ba98 });
    const forged = protect(impostor, rtp(10));
    expect(rx.unprotect(forged, forged.length, out)).toBe('bad_tag');
    // An id no key has: unknown_key, for RTCP too.
    const relabelled = Buffer.from(sealedRtcp);
    relabelled.writeUInt32BE(5, relabelled.length - 8);
    expect(new FeedCipher(key1).unprotectRtcp(relabelled, relabelled.length, out)).toBe('unknown_key');
  });

  it('a cipher refuses a key set with a repeated id or more than FEED_MAX_KEYS keys', () => {
    expect(() => new FeedCipher(key1, [key1])).toThrow(RangeError);
    expect(() => new FeedCipher(key1, [key2, makeKey(3), makeKey(4), makeKey(5)])).toThrow(/at most 4/);
  });

  it('sequence numbers wrap 65535 → 0 with the rollover counter: IVs stay unique, replay state follows', () => {
    const tx = new FeedCipher(key1);
    const rx = new FeedCipher(key1);
    const out = Buffer.alloc(1500);
    const seqs = [65533, 65534, 65535, 0, 1, 2];
    const sealed = seqs.map((s) => protect(tx, rtp(s)));
    const rocOf = (b: Buffer) => b.readUInt32BE(b.length - 4);
    expect(sealed.map(rocOf)).toEqual([0, 0, 0, 1, 1, 1]);
    for (const p of sealed) expect(rx.unprotect(p, p.length, out)).toBeTypeOf('number');
    // seq 0 of the first cycle is another packet than seq 0 of the second: different ciphertext.
    const firstCycleZero = protect(new FeedCipher(key1), rtp(0));
    expect(firstCycleZero.subarray(0, firstCycleZero.length - 4).equals(sealed[3].subarray(0, sealed[3].length - 4))).toBe(false);
    // Replays from both sides of the wrap are caught.
    expect(rx.unprotect(sealed[2], sealed[2].length, out)).toBe('replay');
    expect(rx.unprotect(sealed[4], sealed[4].length, out)).toBe('replay');
    // A resend of a packet from before the wrap keeps its ROC (0), so it is still authentic.
    const resend = protect(tx, rtp(65535));
    expect(rocOf(resend)).toBe(0);
    expect(new FeedCipher(key1).unprotect(resend, resend.length, out)).toBeTypeOf('number');
  });

  it('a receiver that joins mid-stream, many wraps in, decrypts from its first packet', () => {
    const tx = new FeedCipher(key1);
    let p: Buffer = Buffer.alloc(0);
    for (let i = 0; i < 3 * 65536 + 100; i += 97) p = protect(tx, rtp(i & 0xffff));
    expect(p.readUInt32BE(p.length - 4)).toBe(3);
    expect(new FeedCipher(key1).unprotect(p, p.length, Buffer.alloc(1500))).toBeTypeOf('number');
    // A forged ROC changes the IV: refused.
    p.writeUInt32BE(4, p.length - 4);
    expect(new FeedCipher(key1).unprotect(p, p.length, Buffer.alloc(1500))).toBe('bad_tag');
  });

  it('unprotectCached decrypts an already accepted packet again (for a cached group of pictures)', () => {
    const tx = new FeedCipher(key1);
    const rx = new FeedCipher(key1);
    const sealed = protect(tx, rtp(9));
    const out = Buffer.alloc(1500);
    expect(rx.unprotect(sealed, sealed.length, out)).toBeTypeOf('number');
    expect(rx.unprotect(sealed, sealed.length, out)).toBe('replay');
    expect(rx.unprotectCached(sealed, sealed.length, out)).toBeTypeOf('number');
    sealed[sealed.length - 10] ^= 1; // in the tag
    expect(rx.unprotectCached(sealed, sealed.length, out)).toBe('bad_tag');
  });

  it('never throws on random input', () => {
    const rx = new FeedCipher(key1);
    const rnd = mulberry32(1);
    const out = Buffer.alloc(1500);
    for (let i = 0; i < 3000; i++) {
      const b = Buffer.alloc(Math.floor(rnd() * 200));
      for (let j = 0; j < b.length; j++) b[j] = Math.floor(rnd() * 256);
      if (b.length > 0 && i % 2 === 0) b[0] = 0x80 | (b[0] & 0x3f);
      expect(typeof rx.unprotect(b, b.length, out)).toBe('string');
      expect(typeof rx.unprotectRtcp(b, b.length, out)).toBe('string');
    }
  });
});

describe('FeedCipher RTCP (SRTCP-like, explicit index)', () => {
  it('round trip of a compound NACK + PLI; tampering, replay and a wrong key are refused', () => {
    const tx = new FeedCipher(key1);
    const rx = new FeedCipher(key1);
    const compound = Buffer.concat([buildNack(0xabc, 0x11223344, [5, 6, 9]), buildPli(0xabc, 0x55)]);
    const sealed = Buffer.alloc(compound.length + FEED_OVERHEAD_BYTES);
    expect(tx.protectRtcp(compound, compound.length, sealed)).toBe(sealed.length);
    expect(sealed.subarray(0, 8).equals(compound.subarray(0, 8))).toBe(true); // header + sender SSRC in clear
    const out = Buffer.alloc(1500);
    const n = rx.unprotectRtcp(sealed, sealed.length, out);
    expect(n).toBe(compound.length);
    const { packets, error } = parseRtcp(out.subarray(0, n as number));
    expect(error).toBeNull();
    expect(packets.map((p) => p.type)).toEqual(['nack', 'pli']);
    expect(rx.unprotectRtcp(sealed, sealed.length, out)).toBe('replay');

    for (let i = 0; i < sealed.length; i++) {
      const t = Buffer.from(sealed);
      t[i] ^= 0x04;
      expect(['bad_tag', 'bad_header', 'unknown_key']).toContain(new FeedCipher(key1).unprotectRtcp(t, t.length, out));
    }
    expect(new FeedCipher(key2).unprotectRtcp(sealed, sealed.length, out)).toBe('unknown_key');
    expect(new FeedCipher({ ...key2, id: key1.id }).unprotectRtcp(sealed, sealed.length, out)).toBe('bad_tag');
  });

  it('RTP and RTCP of the same SSRC use different keys (no IV shared between them)', () => {
    const c = new FeedCipher(key1);
    const sr = buildPli(0x11223344, 0x11223344);
    const sealedRtcp = Buffer.alloc(sr.length + FEED_OVERHEAD_BYTES);
    c.protectRtcp(sr, sr.length, sealedRtcp);
    // An RTCP packet can never be taken for RTP by a receiver (and vice versa): the tag fails.
    expect(new FeedCipher(key1).unprotect(sealedRtcp, sealedRtcp.length, Buffer.alloc(1500))).not.toBeTypeOf('number');
  });

  it('each sender SSRC has its own index sequence and replay window', () => {
    const a = new FeedCipher(key1);
    const b = new FeedCipher(key1);
    const rx = new FeedCipher(key1);
    const out = Buffer.alloc(1500);
    for (let i = 0; i < 5; i++) {
      for (const [c, ssrc] of [
        [a, 1],
        [b, 2],
      ] as const) {
        const pli = buildPli(ssrc, 0x55);
        const s = Buffer.alloc(pli.length + FEED_OVERHEAD_BYTES);
        c.protectRtcp(pli, pli.length, s);
        expect(rx.unprotectRtcp(s, s.length, out)).toBe(pli.length);
      }
    }
  });
});

describe('ReplayWindow', () => {
  it('accepts new indices, refuses repeats and those behind the window, across large advances', () => {
    const w = new ReplayWindow(64);
    expect(w.check(100)).toBe(true);
    w.accept(100);
    expect(w.check(100)).toBe(false);
    expect(w.check(99)).toBe(true);
    expect(w.check(37)).toBe(true);
    expect(w.check(36)).toBe(false); // 100 - 36 = 64: out of the window
    w.accept(99);
    w.accept(1000);
    expect(w.check(99)).toBe(false);
    expect(w.check(999)).toBe(true);
    expect(w.check(1000)).toBe(false);
    w.accept(1001);
    expect(w.check(1000)).toBe(false);
    expect(w.check(1000 - 63 + 1)).toBe(true);
    expect(() => new ReplayWindow(10)).toThrow(RangeError);
  });
});
