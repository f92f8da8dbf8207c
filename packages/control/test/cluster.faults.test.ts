/**
 * The control plane survives a NATS crash: a dedicated nats-server (never the
 * shared one) is killed with SIGKILL mid-run and restarted on the same store
 * directory.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NatsBus, type BusStatus } from '../src/index.js';
import { formTree, kvTree, makeWorld, parentsOf, waitFor, type World } from './clusterWorld.js';
import { Collector, sleep } from './helpers.js';
import { NatsServerProcess } from './natsServer.js';

describe('cluster control plane across a NATS server crash', () => {
  let server: NatsServerProcess;
  let storeDir: string;
  let world: World | undefined;

  beforeAll(async () => {
    storeDir = await mkdtemp(join(tmpdir(), 'mcu-control-cluster-'));
    server = await NatsServerProcess.start(['-js', '-sd', storeDir]);
  });

  afterAll(async () => {
    try {
      await world?.close();
    } finally {
      await server?.kill();
      await rm(storeDir, { recursive: true, force: true });
    }
  });

  it('keeps events and tree assignments, agents re-register, placement and healing work again', async () => {
    world = await makeWorld(() => NatsBus.connect({ servers: server.url, name: 'cluster-fault-test', reconnectTimeWaitMs: 100 }), false);
    const w = world;
    const { event, mixer, relays, controller, store } = await formTree(w, { relays: 3, fanOut: 2 });
    const r3 = await w.client(event, 'r3');
    expect(r3.parent?.id).toBe('r1');
    for (let i = 0; i < 10; i++) expect((await w.place(event)).relay).not.toBeNull();
    const treeBefore = controller.tree(event);
    const agents = [mixer, ...relays];
    const registrationsBefore = agents.map((a) => a.stats.registrations);

    const watchBus = await w.bus();
    const status = new Collector<BusStatus>(watchBus.status());
    await server.kill('SIGKILL');
    await status.until((s) => s.some((x) => x.type === 'disconnected'), 5000, 'disconnected');
    await sleep(500);
    await server.restart();
    await status.until((s) => s.some((x) => x.type === 'reconnected'), 10_000, 'reconnected');

    // Every agent registered again once its connection was back.
    await waitFor(() => agents.every((a, i) => a.stats.registrations > registrationsBefore[i]), 10_000, 'agents to re-register');
    // The registry sees all of them alive, and keeps seeing them past a dead-after period.
    await waitFor(() => agents.every((a) => controller.registry.has(a.id)), 5000, 'the registry to see every node');
    await sleep(controller.registry.deadAfterMs + 300);
    expect(agents.every((a) => controller.registry.has(a.id))).toBe(true);
    expect(controller.registry.stats.dead).toBe(0);

    // State in JetStream survived the crash.
    expect((await store.list()).map((e) => e.id)).toEqual([event]);
    const stored = await kvTree(w, event);
    expect([...stored.values()].sort((a, b) => (a.node < b.node ? -1 : 1))).toEqual(
      [...treeBefore].sort((a, b) => (a.node < b.node ? -1 : 1)),
    );

    // The controller leads again and placement answers.
    await waitFor(() => controller.isLeader, 10_000, 'the controller to lead again');
    const reply = await (async () => {
      for (let attempt = 0; attempt < 50; attempt++) {
        try {
          return await w.place(event, 500);
        } catch {
          await sleep(100);
        }
      }
      throw new Error('placement never answered after the restart');
    })();
    expect(reply.relay?.role).toBe('relay');

    // Healing works after the crash, and r3's client (watching since before it) follows.
    relays[0].abandon();
    await waitFor(() => parentsOf(controller.tree(event)).get('r3') === 'mixer', 5000, 'r3 to re-parent under the mixer');
    await waitFor(() => r3.parent?.id === 'mixer', 5000, 'r3’s client to see the new parent');
    expect(r3.parent?.media).toEqual(mixer.info.media);
  });
});
