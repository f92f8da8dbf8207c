/**
 * The Bus contract: every implementation must pass these, so code written
 * against the interface behaves the same on one node and on a cluster.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { BusError, ConflictError, ValidationError, decodeJson, type Bus, type BusMessage, type KvEntry, type KvStore } from '../src/index.js';
import { Collector, sleep } from './helpers.js';

export function busContract(name: string, makeBus: () => Promise<Bus>): void {
  describe(`Bus contract: ${name}`, () => {
    // Unique per run, so concurrent runs against one NATS server do not collide.
    const prefix = `t${randomBytes(5).toString('hex')}`;
    const open: Bus[] = [];
    const buckets = new Set<string>();
    let seq = 0;

    const bus = async () => {
      const b = await makeBus();
      open.push(b);
      return b;
    };
    const subject = (rest: string) => `${prefix}.${rest}`;
    const kvOf = async (b: Bus): Promise<KvStore> => {
      const bucket = `${prefix}_kv${seq++}`;
      buckets.add(bucket);
      return b.kv(bucket);
    };
    /** After this, anything still in flight has been delivered (or never will be). */
    const settle = async (b: Bus) => {
      await b.flush();
      await sleep(50);
    };

    afterEach(async () => {
      for (const b of open.splice(0)) await b.close();
    });

    afterAll(async () => {
      const b = await makeBus();
      try {
        for (const bucket of buckets) await (await b.kv(bucket)).destroy();
      } finally {
        await b.close();
      }
    });

    it('delivers published messages in order, JSON objects and raw bytes alike', async () => {
      const b = await bus();
      const got = new Collector(b.subscribe(subject('pubsub')));
      b.publish(subject('pubsub'), { n: 1, text: 'héllo' });
      b.publish(subject('pubsub'), new Uint8Array([0, 1, 255]));
      b.publish(subject('pubsub'), { n: 3 });
      const [first, second, third] = await got.count(3);
      expect(first.subject).toBe(subject('pubsub'));
      expect(first.json()).toEqual({ n: 1, text: 'héllo' });
      expect([...second.data]).toEqual([0, 1, 255]);
      expect(third.json()).toEqual({ n: 3 });
      expect(first.reply).toBeUndefined();
      expect(first.respond({})).toBe(false);
    });

    it('json() on a non-JSON payload throws ValidationError', async () => {
      const b = await bus();
      const got = new Collector(b.subscribe(subject('notjson')));
      b.publish(subject('notjson'), new TextEncoder().encode('{nope'));
      const [m] = await got.count(1);
      expect(() => m.json()).toThrow(ValidationError);
    });

    it('"*" matches exactly one token and ">" one or more', async () => {
      const b = await bus();
      const star = new Collector(b.subscribe(subject('wild.*')));
      const tail = new Collector(b.subscribe(subject('wild.>')));
      const mid = new Collector(b.subscribe(subject('wild.*.end')));
      for (const s of ['wild', 'wild.a', 'wild.a.b', 'wild.a.end', 'other.a']) b.publish(subject(s), { s });
      await tail.count(3);
      await settle(b);
      const subjectsOf = (c: Collector<BusMessage>) => c.items.map((m) => m.subject);
      expect(subjectsOf(star)).toEqual([subject('wild.a')]);
      expect(subjectsOf(tail)).toEqual([subject('wild.a'), subject('wild.a.b'), subject('wild.a.end')]);
      expect(subjectsOf(mid)).toEqual([subject('wild.a.end')]);
    });

    it('a queue group delivers each message to exactly one member, beside plain subscribers', async () => {
      const b = await bus();
      const members = [1, 2, 3].map(() => new Collector(b.subscribe(subject('work.*'), { queue: 'workers' })));
      const other = new Collector(b.subscribe(subject('work.>'), { queue: 'auditors' }));
      const plain = new Collector(b.subscribe(subject('work.job')));
      const total = 30;
      for (let i = 0; i < total; i++) b.publish(subject('work.job'), { i });
      await plain.count(total);
      await other.count(total);
      await settle(b);
      const received = members.flatMap((m) => m.items.map((msg) => msg.json<{ i: number }>().i));
      expect(received.length).toBe(total);
      expect(new Set(received).size).toBe(total);
      expect(other.items.length).toBe(total);
    });

    it('request gets the reply of a responder', async () => {
      const b = await bus();
      const service = b.subscribe(subject('svc.echo'));
      void (async () => {
        for await (const m of service) m.respond({ echo: [...m.data], to: m.subject });
      })();
      const reply = await b.request(subject('svc.echo'), { hello: 'world' }, { timeoutMs: 2000 });
      const { echo, to } = reply.json<{ echo: number[]; to: string }>();
      expect(to).toBe(subject('svc.echo'));
      expect(decodeJson(new Uint8Array(echo))).toEqual({ hello: 'world' });
      const bytes = await b.request(subject('svc.echo'), new Uint8Array([1, 2]), { timeoutMs: 2000 });
      expect(bytes.json()).toEqual({ echo: [1, 2], to: subject('svc.echo') });
      service.unsubscribe();
    });

    it('request rejects with BusError "timeout" when the responder stays silent', async () => {
      const b = await bus();
      const silent = new Collector(b.subscribe(subject('svc.silent')));
      const started = Date.now();
      const err = await b.request(subject('svc.silent'), {}, { timeoutMs: 200 }).catch((e: unknown) => e);
      const elapsed = Date.now() - started;
      expect(err).toBeInstanceOf(BusError);
      expect((err as BusError).reason).toBe('timeout');
      expect((err as BusError).status).toBe(503);
      expect((err as BusError).message).toMatch(/svc\.silent/);
      expect(elapsed).toBeGreaterThanOrEqual(150);
      expect(elapsed).toBeLessThan(2000);
      expect(silent.items.length).toBe(1);
    });

    it('request rejects with BusError "no_responders" at once when nobody listens', async () => {
      const b = await bus();
      const started = Date.now();
      const err = await b.request(subject('svc.nobody'), {}, { timeoutMs: 5000 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BusError);
      expect((err as BusError).reason).toBe('no_responders');
      expect(Date.now() - started).toBeLessThan(2000);
    });

    it('unsubscribe and an aborted signal end the iterator and stop delivery', async () => {
      const b = await bus();
      const ac = new AbortController();
      const bySignal = new Collector(b.subscribe(subject('stop'), { signal: ac.signal }));
      const sub = b.subscribe(subject('stop'));
      const byCall = new Collector(sub);
      const control = new Collector(b.subscribe(subject('stop')));
      b.publish(subject('stop'), { n: 1 });
      await bySignal.count(1);
      await byCall.count(1);
      ac.abort();
      sub.unsubscribe();
      await bySignal.ended();
      await byCall.ended();
      b.publish(subject('stop'), { n: 2 });
      await control.count(2);
      expect(bySignal.items.length).toBe(1);
      expect(byCall.items.length).toBe(1);
      expect(sub.subject).toBe(subject('stop'));
      const pre = new AbortController();
      pre.abort();
      await new Collector(b.subscribe(subject('stop'), { signal: pre.signal })).ended();
    });

    it('breaking out of for-await unsubscribes', async () => {
      const b = await bus();
      const sub = b.subscribe(subject('svc.once'));
      const served = (async () => {
        for await (const m of sub) {
          m.respond({ ok: true });
          break;
        }
      })();
      expect((await b.request(subject('svc.once'), {}, { timeoutMs: 2000 })).json()).toEqual({ ok: true });
      await served;
      await b.flush();
      const err = await b.request(subject('svc.once'), {}, { timeoutMs: 2000 }).catch((e: unknown) => e);
      expect((err as BusError).reason).toBe('no_responders');
    });

    it('rejects malformed subjects with ValidationError', async () => {
      const b = await bus();
      expect(() => b.publish(subject('a.*'), {})).toThrow(ValidationError);
      expect(() => b.publish(subject('a..b'), {})).toThrow(ValidationError);
      expect(() => b.publish('', {})).toThrow(ValidationError);
      expect(() => b.publish(subject('a b'), {})).toThrow(ValidationError);
      expect(() => b.subscribe(subject('a.>.b'))).toThrow(ValidationError);
      await expect(b.request(subject('x.>'), {})).rejects.toThrow(ValidationError);
    });

    it('KV: put and get round-trip values; revisions increase', async () => {
      const b = await bus();
      const kv = await kvOf(b);
      expect(await kv.get('events.e1')).toBeNull();
      const r1 = await kv.put('events.e1', { name: 'keynote', maxSpeakers: 4 });
      const r2 = await kv.put('events.e1', { name: 'keynote', maxSpeakers: 6 });
      const r3 = await kv.put('raw', new Uint8Array([9, 8, 7]));
      expect(r2).toBeGreaterThan(r1);
      expect(r3).toBeGreaterThan(r2);
      const e = await kv.get('events.e1');
      expect(e).not.toBeNull();
      expect(e!.key).toBe('events.e1');
      expect(e!.revision).toBe(r2);
      expect(e!.operation).toBe('PUT');
      expect(decodeJson(e!.value)).toEqual({ name: 'keynote', maxSpeakers: 6 });
      expect([...(await kv.get('raw'))!.value]).toEqual([9, 8, 7]);
      expect(await b.kv(kv.bucket)).toBeDefined();
    });

    it('KV: create fails with ConflictError when the key exists, and succeeds after delete', async () => {
      const b = await bus();
      const kv = await kvOf(b);
      const r1 = await kv.create('tree.e1', { parent: 'r1' });
      const err = await kv.create('tree.e1', { parent: 'r2' }).catch((x: unknown) => x);
      expect(err).toBeInstanceOf(ConflictError);
      expect((err as ConflictError).status).toBe(409);
      expect(decodeJson((await kv.get('tree.e1'))!.value)).toEqual({ parent: 'r1' });
      await kv.delete('tree.e1');
      const r2 = await kv.create('tree.e1', { parent: 'r3' });
      expect(r2).toBeGreaterThan(r1);
      expect(decodeJson((await kv.get('tree.e1'))!.value)).toEqual({ parent: 'r3' });
    });

    it('KV: update succeeds only at the expected revision (optimistic concurrency)', async () => {
      const b = await bus();
      const kv = await kvOf(b);
      const r1 = await kv.put('nodes.n1', { load: 1 });
      const r2 = await kv.update('nodes.n1', { load: 2 }, r1);
      expect(r2).toBeGreaterThan(r1);
      // A writer that read r1 lost the race.
      await expect(kv.update('nodes.n1', { load: 99 }, r1)).rejects.toBeInstanceOf(ConflictError);
      await expect(kv.update('nodes.absent', { load: 1 }, r2)).rejects.toBeInstanceOf(ConflictError);
      expect(decodeJson((await kv.get('nodes.n1'))!.value)).toEqual({ load: 2 });
      await expect(kv.update('nodes.n1', { load: 3 }, 0)).rejects.toBeInstanceOf(ValidationError);
    });

    it('KV: delete hides the key from get and keys; keys filters with wildcards', async () => {
      const b = await bus();
      const kv = await kvOf(b);
      await kv.put('events.e1', { a: 1 });
      await kv.put('events.e2', { a: 2 });
      await kv.put('events.e2.tree', { a: 3 });
      await kv.put('nodes.n1', { a: 4 });
      expect(await kv.keys()).toEqual(['events.e1', 'events.e2', 'events.e2.tree', 'nodes.n1']);
      expect(await kv.keys('events.*')).toEqual(['events.e1', 'events.e2']);
      expect(await kv.keys('events.>')).toEqual(['events.e1', 'events.e2', 'events.e2.tree']);
      await kv.delete('events.e1');
      expect(await kv.get('events.e1')).toBeNull();
      expect(await kv.keys('events.*')).toEqual(['events.e2']);
      await expect(kv.put('bad key', {})).rejects.toBeInstanceOf(ValidationError);
      await expect(kv.put('.lead', {})).rejects.toBeInstanceOf(ValidationError);
      await expect(kv.keys('a.>.b')).rejects.toBeInstanceOf(ValidationError);
    });

    it('KV: watch yields current values (with tombstones) then every later change, filtered by key', async () => {
      const b = await bus();
      const kv = await kvOf(b);
      await kv.put('events.gone', { v: 0 });
      await kv.put('events.a', { v: 1 });
      await kv.delete('events.gone');
      await kv.put('nodes.n1', { v: 9 });
      const watch = new Collector<KvEntry>(kv.watch({ key: 'events.>' }));
      const initial = await watch.count(2);
      expect(initial.map((e) => [e.key, e.operation])).toEqual([
        ['events.a', 'PUT'],
        ['events.gone', 'DEL'],
      ]);
      expect(decodeJson(initial[0].value)).toEqual({ v: 1 });
      await kv.put('events.b', { v: 2 });
      await kv.put('nodes.n2', { v: 3 });
      await kv.delete('events.a');
      const rev = await kv.update('events.b', { v: 4 }, (await kv.get('events.b'))!.revision);
      const all = await watch.count(5);
      await settle(b);
      expect(all.slice(2).map((e) => [e.key, e.operation])).toEqual([
        ['events.b', 'PUT'],
        ['events.a', 'DEL'],
        ['events.b', 'PUT'],
      ]);
      expect(all[4].revision).toBe(rev);
      expect(decodeJson(all[4].value)).toEqual({ v: 4 });
      expect(watch.items.length).toBe(5);
      const revisions = all.map((e) => e.revision);
      expect([...revisions].sort((x, y) => x - y)).toEqual(revisions);
    });

    it('KV: a watch ends when its signal aborts', async () => {
      const b = await bus();
      const kv = await kvOf(b);
      await kv.put('k', { v: 1 });
      const ac = new AbortController();
      const watch = new Collector(kv.watch({ signal: ac.signal }));
      await watch.count(1);
      ac.abort();
      await watch.ended();
      await kv.put('k', { v: 2 });
      await settle(b);
      expect(watch.items.length).toBe(1);
    });

    it('status() reports connected; close() is idempotent and ends every iterator', async () => {
      const b = await bus();
      expect(b.connected).toBe(true);
      const status = new Collector(b.status());
      expect((await status.count(1))[0].type).toBe('connected');
      const kv = await kvOf(b);
      await kv.put('k', { v: 1 });
      const sub = new Collector(b.subscribe(subject('closing')));
      const queued = new Collector(b.subscribe(subject('closing'), { queue: 'q' }));
      const watch = new Collector(kv.watch());
      await watch.count(1);
      const responder = b.subscribe(subject('never'));
      const pending = b.request(subject('never'), {}, { timeoutMs: 10_000 }).catch((e: unknown) => e);
      await new Collector(responder).count(1);
      await Promise.all([b.close(), b.close()]);
      await b.close();
      await Promise.all([sub.ended(), queued.ended(), watch.ended(), status.ended()]);
      expect(b.connected).toBe(false);
      const err = await pending;
      expect(err).toBeInstanceOf(BusError);
      expect(() => b.publish(subject('closing'), {})).toThrow(BusError);
      expect(() => b.subscribe(subject('closing'))).toThrow(BusError);
      await expect(b.request(subject('closing'), {})).rejects.toBeInstanceOf(BusError);
      await expect(b.kv(kv.bucket)).rejects.toBeInstanceOf(BusError);
      await new Collector(b.status()).ended();
    });
  });
}
