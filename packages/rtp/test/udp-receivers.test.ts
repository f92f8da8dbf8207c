/**
 * UdpReceivers on real loopback sockets: many receivers read in batches, natively (epoll +
 * recvmmsg, kernel arrival times) where the addon is built, on dgram sockets otherwise; the same
 * records either way.
 */
import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { buildRtp, nativeUdp, openUdpSocket, UdpReceivers } from '../src/index.js';

const open: Array<{ close(): void }> = [];
afterEach(() => {
  for (const s of open.splice(0)) s.close();
});

interface Got {
  index: number;
  length: number;
  seq: number;
  timestamp: number;
  at: number;
}

async function readUntil(r: UdpReceivers, want: number, ms = 3000): Promise<Got[]> {
  const got: Got[] = [];
  const start = performance.now();
  while (got.length < want && performance.now() - start < ms) {
    r.read((index, length, seq, timestamp, at) => got.push({ index, length, seq, timestamp, at }));
    await new Promise((res) => setTimeout(res, 5));
  }
  return got;
}

async function sender(): Promise<dgram.Socket> {
  const s = await openUdpSocket({ host: '127.0.0.1', bufferBytes: 4 << 20 });
  open.push(s);
  return s;
}

const rtp = (seq: number, timestamp: number, payloadBytes = 20) => buildRtp({ payloadType: 111, sequenceNumber: seq, timestamp, ssrc: 0x1234 }, Buffer.alloc(payloadBytes, 7));

describe.each([
  ['native', true],
  ['dgram', false],
] as const)('UdpReceivers (%s)', (_name, native) => {
  const skip = native && nativeUdp() === null;

  it.skipIf(skip)('reads every datagram of 500 receivers: socket index, length, sequence number and timestamp', async () => {
    const r = await UdpReceivers.open({ count: 500, native });
    open.push(r);
    expect(r.native).toBe(native);
    expect(new Set(r.ports).size).toBe(500);
    const s = await sender();
    const before = performance.now();
    // Two packets per receiver, one of them long (only its head is read, its length is the real one).
    for (let i = 0; i < 500; i++) {
      s.send(rtp(i, i * 960), r.ports[i], '127.0.0.1');
      s.send(rtp((i + 30_000) & 0xffff, 0xffff_fff0 + i, 1200), r.ports[i], '127.0.0.1');
    }
    const got = await readUntil(r, 1000);
    const after = performance.now();
    expect(got.length).toBe(1000);
    expect(r.datagrams).toBe(1000);
    for (let i = 0; i < 500; i++) {
      const mine = got.filter((g) => g.index === i);
      expect(mine.map((g) => [g.seq, g.timestamp, g.length])).toEqual([
        [i, i * 960, 32],
        [(i + 30_000) & 0xffff, (0xffff_fff0 + i) >>> 0, 1212],
      ]);
    }
    for (const g of got) {
      expect(g.at).toBeGreaterThanOrEqual(before - 1);
      expect(g.at).toBeLessThanOrEqual(after + 1);
    }
  });

  it.skipIf(skip)('reads more datagrams than one batch holds in a single call, and nothing twice', async () => {
    const r = await UdpReceivers.open({ count: 50, native, bufferBytes: 1 << 20 });
    open.push(r);
    const s = await sender();
    // 6,000 datagrams (the native batch is 4,096), 120 per socket.
    for (let k = 0; k < 120; k++) for (let i = 0; i < 50; i++) s.send(rtp(k, 0), r.ports[i], '127.0.0.1');
    await new Promise((res) => setTimeout(res, 300));
    const seqs: number[][] = Array.from({ length: 50 }, () => []);
    const n = r.read((index, _len, seq) => seqs[index].push(seq));
    expect(n).toBe(6000);
    for (const list of seqs) expect(list).toEqual(Array.from({ length: 120 }, (_, k) => k));
    expect(r.read(() => undefined)).toBe(0);
  });

  it.skipIf(skip)('a datagram shorter than an RTP header has its length and no sequence number', async () => {
    const r = await UdpReceivers.open({ count: 1, native });
    open.push(r);
    const s = await sender();
    s.send(Buffer.from([1, 2, 3]), r.ports[0], '127.0.0.1');
    const [g] = await readUntil(r, 1);
    expect(g).toMatchObject({ index: 0, length: 3, seq: -1, timestamp: -1 });
  });

  it.skipIf(skip)('close is idempotent and a closed set reads nothing', async () => {
    const r = await UdpReceivers.open({ count: 3, native });
    const s = await sender();
    r.close();
    r.close();
    s.send(rtp(1, 1), r.ports[0], '127.0.0.1');
    await new Promise((res) => setTimeout(res, 20));
    expect(r.read(() => undefined)).toBe(0);
  });
});

describe('UdpReceivers', () => {
  it.runIf(process.platform === 'linux')('natively, a datagram read late still carries the time it arrived (kernel timestamp)', async () => {
    const r = await UdpReceivers.open({ count: 2 });
    open.push(r);
    expect(r.native).toBe(true);
    const s = await sender();
    const sentAt = performance.now();
    s.send(rtp(9, 9), r.ports[1], '127.0.0.1');
    await new Promise((res) => setTimeout(res, 200));
    const got = await readUntil(r, 1);
    const readAt = performance.now();
    expect(got).toHaveLength(1);
    expect(got[0].index).toBe(1);
    // Arrived within a few ms of the send, read about 200 ms later.
    expect(got[0].at - sentAt).toBeGreaterThan(-1);
    expect(got[0].at - sentAt).toBeLessThan(50);
    expect(readAt - got[0].at).toBeGreaterThan(150);
  });

  it('refuses a host that is not an IPv4 literal, and a count that is not a whole number', async () => {
    await expect(UdpReceivers.open({ count: 1, host: '::1' })).rejects.toThrow(RangeError);
    await expect(UdpReceivers.open({ count: 1.5 })).rejects.toThrow(RangeError);
  });

  it.runIf(process.platform === 'linux')('a host it cannot bind fails with the errno and leaves nothing open', async () => {
    // 192.0.2.1 (TEST-NET-1) is not an address of this machine: EADDRNOTAVAIL (99).
    await expect(UdpReceivers.open({ count: 3, host: '192.0.2.1' })).rejects.toThrow(/errno 99/);
  });
});
