import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BusConnectError, NatsBus, decodeJson, type BusStatus } from '../src/index.js';
import { Collector, eventually } from './helpers.js';
import { NatsServerProcess, freePort } from './natsServer.js';

describe('NatsBus survives a NATS server crash', () => {
  let server: NatsServerProcess;
  let storeDir: string;
  let bus: NatsBus | undefined;

  beforeAll(async () => {
    storeDir = await mkdtemp(join(tmpdir(), 'mcu-control-nats-'));
    server = await NatsServerProcess.start(['-js', '-sd', storeDir]);
  });

  afterAll(async () => {
    await bus?.close();
    await server?.kill();
    await rm(storeDir, { recursive: true, force: true });
  });

  it('reconnects after kill -9 and restart, keeps KV state and delivers again', async () => {
    bus = await NatsBus.connect({ servers: server.url, name: 'fault-test', reconnectTimeWaitMs: 100 });
    const status = new Collector<BusStatus>(bus.status());
    await status.count(1);
    const kv = await bus.kv('fault_state');
    const written = await kv.put('events.e1', { name: 'keynote' });
    const sub = new Collector(bus.subscribe('fault.feed'));
    bus.publish('fault.feed', { n: 1 });
    await sub.count(1);
    const watch = new Collector(kv.watch({ key: 'events.>' }));
    await watch.count(1);

    await server.kill('SIGKILL');
    await status.until((s) => s.some((x) => x.type === 'disconnected'), 5000, 'disconnected');
    expect(bus.connected).toBe(false);

    await server.restart();
    await status.until((s) => s.some((x) => x.type === 'reconnected'), 10_000, 'reconnected');
    expect(bus.connected).toBe(true);
    const types = status.items.map((s) => s.type);
    expect(types[0]).toBe('connected');
    expect(types.indexOf('disconnected')).toBeLessThan(types.indexOf('reconnected'));
    expect(types).toContain('reconnecting');

    // JetStream may need a moment after the client port opens to recover its streams.
    const entry = await eventually(async () => {
      const e = await kv.get('events.e1');
      if (!e) throw new Error('value not there yet');
      return e;
    }, 10_000);
    expect(entry.revision).toBe(written);
    expect(decodeJson(entry.value)).toEqual({ name: 'keynote' });

    // The subscription made before the crash was re-created by the client.
    bus.publish('fault.feed', { n: 2 });
    const after = await sub.count(2, 5000);
    expect(after[1].json()).toEqual({ n: 2 });
    // And new subscriptions, requests and KV writes work.
    const service = bus.subscribe('fault.svc');
    void (async () => {
      for await (const m of service) m.respond({ ok: true });
    })();
    expect((await bus.request('fault.svc', {}, { timeoutMs: 2000 })).json()).toEqual({ ok: true });
    expect(await kv.update('events.e1', { name: 'keynote', live: true }, written)).toBeGreaterThan(written);
    // A watch made before the crash resumes promptly (nats.js alone would take ~10 s of missed heartbeats),
    // without repeating or losing entries.
    const seen = await watch.count(2, 3000);
    expect(seen.map((e) => [e.key, e.revision])).toEqual([
      ['events.e1', written],
      ['events.e1', written + 1],
    ]);
    expect(decodeJson(seen[1].value)).toEqual({ name: 'keynote', live: true });

    await kv.destroy();
    await bus.close();
    await status.ended();
    await sub.ended();
    await watch.ended();
  });
});

describe('NatsBus with user/password authentication', () => {
  let server: NatsServerProcess;

  beforeAll(async () => {
    server = await NatsServerProcess.start(['--user', 'a', '--pass', 'b']);
  });

  afterAll(async () => {
    await server?.kill();
  });

  it('fails clearly without credentials or with a wrong password', async () => {
    for (const creds of [{}, { user: 'a', pass: 'wrong' }]) {
      const err = await NatsBus.connect({ servers: server.url, ...creds }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BusConnectError);
      expect((err as BusConnectError).reason).toBe('auth');
      expect((err as BusConnectError).message).toMatch(/refused the credentials/);
      expect((err as BusConnectError).message).toContain(`127.0.0.1:${server.port}`);
    }
  });

  it('connects and delivers with the right credentials', async () => {
    const bus = await NatsBus.connect({ servers: server.url, user: 'a', pass: 'b' });
    try {
      const got = new Collector(bus.subscribe('auth.>'));
      bus.publish('auth.hello', { hi: 1 });
      expect((await got.count(1))[0].json()).toEqual({ hi: 1 });
    } finally {
      await bus.close();
    }
  });
});

describe('NatsBus connect errors', () => {
  it('says the server is unreachable when nothing listens', async () => {
    const port = await freePort();
    const err = await NatsBus.connect({ servers: `127.0.0.1:${port}` }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BusConnectError);
    expect((err as BusConnectError).reason).toBe('unreachable');
    expect((err as BusConnectError).message).toContain(String(port));
  });

  it('says when the creds file cannot be read', async () => {
    const err = await NatsBus.connect({ servers: '127.0.0.1:1', credsFile: '/nonexistent/mcu.creds' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BusConnectError);
    expect((err as BusConnectError).message).toMatch(/credentials file/);
  });
});
