/**
 * FanOut on real loopback sockets: one datagram to many receivers, natively (sendmmsg) when the
 * addon is built and every receiver is IPv4, through socket.send otherwise; same bytes either way.
 */
import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { nativeUdp, openUdpSocket } from '@mcu/rtp';
import { FanOut } from '../src/index.js';

const open: dgram.Socket[] = [];
afterEach(() => {
  for (const s of open.splice(0)) s.close();
});

async function receivers(n: number, type: 'udp4' | 'udp6' = 'udp4'): Promise<{ sockets: dgram.Socket[]; got: Buffer[][] }> {
  const sockets: dgram.Socket[] = [];
  const got: Buffer[][] = [];
  for (let i = 0; i < n; i++) {
    const s = dgram.createSocket(type);
    const list: Buffer[] = [];
    s.on('message', (m) => list.push(m));
    await new Promise<void>((r) => s.bind(0, type === 'udp4' ? '127.0.0.1' : '::1', r));
    sockets.push(s);
    got.push(list);
    open.push(s);
  }
  return { sockets, got };
}

async function until(cond: () => boolean, ms = 2000): Promise<boolean> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > ms) return false;
    await new Promise((r) => setTimeout(r, 5));
  }
  return true;
}

describe('FanOut', () => {
  it.runIf(process.platform === 'linux')('the native addon is built on Linux (npm install builds it)', () => {
    expect(nativeUdp()).not.toBeNull();
  });

  it('sends the same bytes to 600 IPv4 receivers, natively in batches of up to 256 per system call', async () => {
    const { sockets, got } = await receivers(600);
    const sender = await openUdpSocket({ host: '127.0.0.1', bufferBytes: 4 << 20 });
    open.push(sender);
    const fan = new FanOut();
    fan.set(sockets.map((s) => ({ host: '127.0.0.1', port: s.address().port })));
    // A view into a larger buffer: only its bytes go out.
    const backing = Buffer.alloc(300, 0xee);
    const packet = backing.subarray(50, 250);
    for (let i = 0; i < packet.length; i++) packet[i] = i & 0xff;
    for (let k = 0; k < 3; k++) expect(fan.send(sender, packet)).toBe(600);
    expect(await until(() => got.every((g) => g.length === 3))).toBe(true);
    for (const g of got) for (const m of g) expect(m.equals(packet)).toBe(true);
    if (nativeUdp()) expect([fan.nativeSent, fan.dgramSent]).toEqual([1800, 0]);
  });

  it('without the addon (native: false) and with an IPv6 receiver it uses socket.send, same result', async () => {
    const { sockets, got } = await receivers(5);
    const sender = await openUdpSocket({ host: '127.0.0.1' });
    open.push(sender);
    const plain = new FanOut({ native: false });
    plain.set(sockets.map((s) => ({ host: '127.0.0.1', port: s.address().port })));
    plain.send(sender, Buffer.from('hello'));
    expect(await until(() => got.every((g) => g.length === 1))).toBe(true);
    expect([plain.nativeSent, plain.dgramSent]).toEqual([0, 5]);

    const v6 = await receivers(2, 'udp6');
    const sender6 = await openUdpSocket({ host: '::1' });
    open.push(sender6);
    const mixed = new FanOut();
    mixed.set(v6.sockets.map((s) => ({ host: '::1', port: s.address().port })));
    mixed.send(sender6, Buffer.from('v6'));
    expect(await until(() => v6.got.every((g) => g.length === 1))).toBe(true);
    expect(mixed.nativeSent).toBe(0);
  });

  it('add and remove one receiver at a time (the last takes the removed one\'s place), natively or not', async () => {
    const { sockets, got } = await receivers(4);
    const sender = await openUdpSocket({ host: '127.0.0.1' });
    open.push(sender);
    const ep = (i: number) => ({ host: '127.0.0.1', port: sockets[i].address().port });
    for (const fan of [new FanOut(), new FanOut({ native: false })]) {
      for (const g of got) g.length = 0;
      for (let i = 0; i < 4; i++) expect(fan.add(ep(i))).toBe(true);
      expect(fan.add(ep(2))).toBe(false);
      expect(fan.remove(ep(1).host, ep(1).port)).toBe(true);
      expect(fan.remove(ep(1).host, ep(1).port)).toBe(false);
      expect(fan.size).toBe(3);
      expect(fan.has(ep(3).host, ep(3).port)).toBe(true);
      fan.send(sender, Buffer.from('x'));
      expect(await until(() => got[0].length === 1 && got[2].length === 1 && got[3].length === 1)).toBe(true);
      // Removing the one that took the removed place, then adding back: each still gets exactly one.
      fan.remove(ep(3).host, ep(3).port);
      fan.add(ep(1));
      fan.send(sender, Buffer.from('y'));
      expect(await until(() => got[1].length === 1)).toBe(true);
      await new Promise((r) => setTimeout(r, 30));
      expect(got.map((g) => g.map(String))).toEqual([['x', 'y'], ['y'], ['x', 'y'], ['x']]);
    }
  });

  it('a receiver list change takes effect on the next send; an empty list sends nothing', async () => {
    const { sockets, got } = await receivers(3);
    const sender = await openUdpSocket({ host: '127.0.0.1' });
    open.push(sender);
    const fan = new FanOut();
    fan.set(sockets.map((s) => ({ host: '127.0.0.1', port: s.address().port })));
    fan.send(sender, Buffer.from('a'));
    fan.set([{ host: '127.0.0.1', port: sockets[1].address().port }]);
    fan.send(sender, Buffer.from('b'));
    fan.set([]);
    expect(fan.send(sender, Buffer.from('c'))).toBe(0);
    expect(await until(() => got[1].length === 2)).toBe(true);
    await new Promise((r) => setTimeout(r, 50));
    expect(got.map((g) => g.map(String))).toEqual([['a'], ['a', 'b'], ['a']]);
  });
});
