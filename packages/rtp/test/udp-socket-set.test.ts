/**
 * UdpSocketSet and UdpSendBatch on real loopback sockets: sockets joining and leaving one at a
 * time, whole datagrams read with their source and arrival time, a batch of datagrams each from
 * its own socket with one shared payload gathered after each head.
 */
import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { ipv4ToInt, nativeUdp, openUdpSocket, UdpSendBatch, UdpSocketSet } from '../src/index.js';

const open: Array<{ close(): void }> = [];
afterEach(() => {
  for (const s of open.splice(0)) s.close();
});

interface Got {
  slot: number;
  bytes: Buffer;
  length: number;
  from: number;
  fromPort: number;
  at: number;
}

async function readUntil(set: UdpSocketSet, want: number, ms = 2000): Promise<Got[]> {
  const got: Got[] = [];
  const start = performance.now();
  while (got.length < want && performance.now() - start < ms) {
    set.read((slot, packet, length, from, fromPort, at) =>
      got.push({ slot, bytes: Buffer.from(packet.subarray(0, Math.min(length, set.slotBytes))), length, from, fromPort, at }),
    );
    await new Promise((r) => setTimeout(r, 5));
  }
  return got;
}

describe.skipIf(nativeUdp() === null)('UdpSocketSet', () => {
  it('reads whole datagrams with slot, source and arrival time; a removed socket is closed and its slot reused', async () => {
    const set = UdpSocketSet.open()!;
    open.push(set);
    const a = set.add('127.0.0.1');
    const b = set.add('127.0.0.1');
    expect(set.size).toBe(2);
    expect(a.port).toBeGreaterThan(0);
    const sender = await openUdpSocket({ host: '127.0.0.1' });
    open.push(sender);
    const before = performance.now();
    const big = Buffer.alloc(1400, 0xab);
    big.writeUInt32BE(0xdeadbeef, 1396);
    sender.send(Buffer.from('hello a'), a.port, '127.0.0.1');
    sender.send(big, b.port, '127.0.0.1');
    sender.send(Buffer.alloc(1600, 1), b.port, '127.0.0.1'); // longer than a slot: real length, cut bytes
    const got = await readUntil(set, 3);
    expect(got.length).toBe(3);
    const fromA = got.find((g) => g.slot === a.slot)!;
    expect(fromA.bytes.toString()).toBe('hello a');
    expect(fromA.from).toBe(ipv4ToInt('127.0.0.1'));
    expect(fromA.fromPort).toBe(sender.address().port);
    expect(fromA.at).toBeGreaterThanOrEqual(before - 1);
    expect(fromA.at).toBeLessThanOrEqual(performance.now());
    const fromB = got.filter((g) => g.slot === b.slot);
    expect(fromB.map((g) => g.length)).toEqual([1400, 1600]);
    expect(fromB[0].bytes.equals(big)).toBe(true);
    expect(fromB[1].bytes.length).toBe(set.slotBytes);

    set.remove(a.slot);
    expect(set.size).toBe(1);
    // The port is free again, and the next socket takes the slot.
    const reuse = dgram.createSocket('udp4');
    open.push(reuse);
    await new Promise<void>((r) => reuse.bind(a.port, '127.0.0.1', r));
    const c = set.add('127.0.0.1');
    expect(c.slot).toBe(a.slot);
    expect(() => set.add('::1')).toThrow(RangeError);
  });

  it.each([
    ['within the call', false],
    ['from a sender thread', true],
  ] as const)('a batch sends each datagram from its own socket, heads with the shared payload gathered, and reports failures by tag (%s)', async (_name, thread) => {
    const set = UdpSocketSet.open()!;
    open.push(set);
    const from = [set.add('127.0.0.1'), set.add('127.0.0.1'), set.add('127.0.0.1')];
    const receiver = UdpSocketSet.open()!;
    open.push(receiver);
    const to = [receiver.add('127.0.0.1'), receiver.add('127.0.0.1'), receiver.add('127.0.0.1')];
    const batch = UdpSendBatch.create({ capacity: 1, thread })!; // grows
    open.push(batch);
    expect(batch.threaded).toBe(thread);
    const shared = Buffer.from('SHARED-PAYLOAD');
    batch.setTail(shared, shared.length);
    const lo = ipv4ToInt('127.0.0.1');
    batch.add(0, from[0].fd, lo, to[0].port, Buffer.from('head0:'), 6, true);
    batch.add(1, from[1].fd, lo, to[1].port, Buffer.from('head1:own'), 9, false);
    batch.add(2, from[2].fd, lo, to[2].port, Buffer.from('head2:'), 6, true);
    batch.add(3, from[2].fd, lo, to[2].port, Buffer.from('again:'), 6, true); // same socket: one sendmmsg
    // A socket that is no longer open: that datagram fails, the others leave.
    batch.add(4, 1_000_000, lo, to[0].port, Buffer.from('x'), 1, false);
    const failures: Array<[number, number]> = [];
    const onFailure = (tag: number, errno: number) => void failures.push([tag, errno]);
    if (thread) {
      // Handed over: the outcome comes with the next hand-over (here a drain). The batch was
      // copied: what the caller writes next does not change what leaves.
      expect(batch.flush(onFailure)).toBe(0);
      shared.write('XXXXXX');
      batch.add(9, from[0].fd, lo, to[0].port, Buffer.from('later'), 5, true);
      expect(batch.drain(onFailure)).toBe(4);
      expect(batch.length).toBe(1);
      batch.clear();
      expect(batch.threadStats!.batches).toBe(1);
    } else {
      expect(batch.flush(onFailure)).toBe(4);
    }
    expect(failures).toEqual([[4, 9 /* EBADF */]]);
    expect(batch.length).toBe(0);
    const got = await readUntil(receiver, 4);
    const text = (slot: number) => got.filter((g) => g.slot === to[slot].slot).map((g) => `${g.bytes.toString()}@${g.fromPort}`);
    expect(text(0)).toEqual([`head0:SHARED-PAYLOAD@${from[0].port}`]);
    expect(text(1)).toEqual([`head1:own@${from[1].port}`]);
    expect(text(2)).toEqual([`head2:SHARED-PAYLOAD@${from[2].port}`, `again:SHARED-PAYLOAD@${from[2].port}`]);
    expect(batch.sent).toBe(4);
    expect(batch.failed).toBe(1);
  });
});

it('is absent without the addon (the caller keeps its dgram sockets)', () => {
  expect(UdpSocketSet.open({ native: false })).toBeNull();
  expect(UdpSendBatch.create({ native: false })).toBeNull();
});
