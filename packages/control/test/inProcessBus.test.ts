import { describe, expect, it } from 'vitest';
import { InProcessBus, decodeJson } from '../src/index.js';
import { AsyncQueue } from '../src/AsyncQueue.js';
import { Collector } from './helpers.js';

describe('InProcessBus specifics', () => {
  it('queue groups take turns (round-robin)', async () => {
    const bus = new InProcessBus();
    const members = [0, 1, 2].map(() => new Collector(bus.subscribe('jobs', { queue: 'w' })));
    for (let i = 0; i < 9; i++) bus.publish('jobs', { i });
    await Promise.all(members.map((m) => m.count(3)));
    expect(members.map((m) => m.items.map((x) => x.json<{ i: number }>().i))).toEqual([
      [0, 3, 6],
      [1, 4, 7],
      [2, 5, 8],
    ]);
    await bus.close();
  });

  it('copies payloads on publish, as the wire would', async () => {
    const bus = new InProcessBus();
    const got = new Collector(bus.subscribe('bytes'));
    const payload = new Uint8Array([1, 2, 3]);
    bus.publish('bytes', payload);
    payload[0] = 99;
    expect([...(await got.count(1))[0].data]).toEqual([1, 2, 3]);
    await bus.close();
  });

  it('expires KV entries after ttlMs on a manual clock', async () => {
    let now = 1_000;
    const bus = new InProcessBus({ clock: () => now });
    const kv = await bus.kv('presence', { ttlMs: 3_000 });
    await kv.put('nodes.n1', { load: 1 });
    now += 2_000;
    await kv.put('nodes.n2', { load: 2 });
    expect(await kv.keys()).toEqual(['nodes.n1', 'nodes.n2']);
    now += 1_000;
    expect(await kv.get('nodes.n1')).toBeNull();
    expect(await kv.keys()).toEqual(['nodes.n2']);
    expect(decodeJson((await kv.get('nodes.n2'))!.value)).toEqual({ load: 2 });
    // An expired key can be created again.
    await kv.create('nodes.n1', { load: 3 });
    await bus.close();
  });

  it('rejects KV options NATS would not accept', async () => {
    const bus = new InProcessBus();
    await expect(bus.kv('b', { history: 0 })).rejects.toThrow(/history/);
    await expect(bus.kv('b', { history: 65 })).rejects.toThrow(/history/);
    await expect(bus.kv('b', { ttlMs: -1 })).rejects.toThrow(/ttlMs/);
    await expect(bus.kv('bad.bucket')).rejects.toThrow(/bucket/);
    await bus.close();
  });
});

describe('AsyncQueue', () => {
  it('delivers queued items before ending, then reports the end error once', async () => {
    const q = new AsyncQueue<number>();
    q.push(1);
    q.push(2);
    q.end(new Error('lost'));
    expect(q.push(3)).toBe(false);
    expect(await q.next()).toEqual({ value: 1, done: false });
    expect(await q.next()).toEqual({ value: 2, done: false });
    await expect(q.next()).rejects.toThrow('lost');
    expect(await q.next()).toEqual({ value: undefined, done: true });
  });

  it('runs onEnd exactly once whether the producer or the consumer ends it', async () => {
    let ends = 0;
    const q = new AsyncQueue<number>(() => ends++);
    const consumer = (async () => {
      for await (const n of q) if (n === 2) break;
    })();
    q.push(1);
    q.push(2);
    await consumer;
    q.end();
    expect(ends).toBe(1);
  });
});
