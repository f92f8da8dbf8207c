import { describe, expect, it } from 'vitest';
import { buildRtp, parseRtp, RetransmissionBuffer, RtpHeader } from '../src/index.js';

function packet(seq: number): Buffer {
  return buildRtp({ payloadType: 96, sequenceNumber: seq, timestamp: seq * 3000, ssrc: 0x1234 }, Uint8Array.of(seq & 0xff, (seq >> 8) & 0xff, 0x55));
}

describe('RetransmissionBuffer', () => {
  it('returns the packets of the last `capacity` sequence numbers across the 65535 → 0 wrap', () => {
    const rtx = new RetransmissionBuffer({ capacity: 512 });
    const first = 65300;
    const total = 600;
    for (let i = 0; i < total; i++) expect(rtx.store((first + i) & 0xffff, packet((first + i) & 0xffff))).toBe(true);
    const header = new RtpHeader();
    for (let i = total - 512; i < total; i++) {
      const seq = (first + i) & 0xffff;
      const stored = rtx.get(seq);
      expect(stored).not.toBeNull();
      expect(Buffer.from(stored!).equals(packet(seq))).toBe(true);
      expect(parseRtp(stored!, header)).toBeNull();
      expect(header.sequenceNumber).toBe(seq);
    }
    // Overwritten by newer packets in the same slots:
    for (let i = 0; i < total - 512; i++) expect(rtx.get((first + i) & 0xffff)).toBeNull();
  });

  it('returns null for a sequence number never stored, even when its slot holds another packet', () => {
    const rtx = new RetransmissionBuffer({ capacity: 8 });
    rtx.store(3, packet(3));
    expect(rtx.get(4)).toBeNull();
    expect(rtx.get(3 + 8)).toBeNull(); // same slot, different packet
    expect(rtx.get(3 + 65536)).not.toBeNull(); // the same 16-bit sequence number
  });

  it('keeps its own copy of each packet', () => {
    const rtx = new RetransmissionBuffer({ capacity: 4 });
    const datagram = packet(1);
    const original = Buffer.from(datagram);
    rtx.store(1, datagram);
    datagram.fill(0);
    expect(Buffer.from(rtx.get(1)!).equals(original)).toBe(true);
  });

  it('stores only the given length of a reused receive buffer', () => {
    const rtx = new RetransmissionBuffer({ capacity: 4 });
    const receive = new Uint8Array(1500).fill(0xee);
    const p = packet(2);
    receive.set(p);
    rtx.store(2, receive, p.length);
    expect(rtx.get(2)!.length).toBe(p.length);
  });

  it('refuses packets larger than a slot without throwing, and forgets everything on clear', () => {
    const rtx = new RetransmissionBuffer({ capacity: 4, maxPacketBytes: 20 });
    expect(rtx.store(1, new Uint8Array(21))).toBe(false);
    expect(rtx.get(1)).toBeNull();
    expect(rtx.store(2, new Uint8Array(20))).toBe(true);
    rtx.clear();
    expect(rtx.get(2)).toBeNull();
  });

  it('requires a power-of-two capacity so slots survive the sequence wrap', () => {
    expect(() => new RetransmissionBuffer({ capacity: 500 })).toThrow(RangeError);
    expect(() => new RetransmissionBuffer({ capacity: 131072 })).toThrow(RangeError);
    expect(new RetransmissionBuffer().capacity).toBe(512);
  });
});
