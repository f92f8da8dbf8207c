import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { NatsBus, subjects } from '@mcu/control';
import { cleanEnv, freePort, killAll, listening, serve } from './cli.js';

/** The shared development NATS (JetStream) on 127.0.0.1:4222, under a cluster name of this run. */
const cluster = `cli${randomBytes(4).toString('hex')}`;

afterAll(async () => {
  await killAll();
  const bus = await NatsBus.connect({ servers: ['nats://127.0.0.1:4222'] });
  for (const b of Object.values(subjects(cluster).buckets)) await (await bus.kv(b)).destroy().catch(() => undefined);
  await bus.close();
});

describe('mcu cluster', () => {
  it('starts a mixer and its relays, returns their URLs once all are up, and stops them with itself', async () => {
    const port = await freePort();
    const { child, info } = await serve<{ cluster: string; mixer: { url: string }; relays: { nodeId: string; url: string }[]; adminToken: string }>(
      ['cluster', '--relays', '2', '--cluster', cluster, '--port', String(port)],
      cleanEnv({ MCU_NATS: 'nats://127.0.0.1:4222' }),
    );
    expect(info.cluster).toBe(cluster);
    expect(info.mixer.url).toBe(`http://127.0.0.1:${port}`);
    expect(info.relays).toHaveLength(2);
    // Every node answers, and the generated admin token is the mixer's.
    for (const url of [info.mixer.url, ...info.relays.map((r) => r.url)]) expect((await fetch(`${url}/healthz`)).status).toBe(200);
    expect((await fetch(`${info.mixer.url}/api/events`, { headers: { authorization: `Bearer ${info.adminToken}` } })).status).toBe(200);
    const relay = (await (await fetch(`${info.relays[0].url}/api/relay`)).json()) as { id: string };
    expect(info.relays.map((r) => r.nodeId)).toContain(relay.id);

    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    for (const url of [info.mixer.url, ...info.relays.map((r) => r.url)]) expect(await listening(Number(new URL(url).port))).toBe(false);
  });
});
