/**
 * Registration, heartbeats, death detection and the leader lease on a manual
 * clock over the InProcessBus: deterministic, no sleeping.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  InProcessBus,
  Lease,
  ManualClock,
  NodeAgent,
  NodeRegistry,
  controlDefaults,
  subjects,
  type NodeAgentOptions,
} from '../src/index.js';

const cluster = 'unit';
const s = subjects(cluster);

function setup() {
  const clock = new ManualClock();
  const bus = new InProcessBus({ clock: () => clock.now() });
  const closers: Array<() => Promise<void> | void> = [];
  const agent = (id: string, extra: Partial<NodeAgentOptions> = {}) => {
    const a = new NodeAgent({
      bus,
      cluster,
      clock,
      node: { id, role: 'relay', http: `http://127.0.0.1:80/${id}`, media: { host: '127.0.0.1', port: 5000 }, capacity: { viewers: 100, children: 4 } },
      ...extra,
    });
    closers.push(() => a.close());
    return a;
  };
  const registry = () => {
    const r = new NodeRegistry({ bus, cluster, clock });
    closers.push(() => r.close());
    const log: string[] = [];
    r.on('nodeJoined', (info) => log.push(`joined ${info.id}`));
    r.on('nodeLeft', (id) => log.push(`left ${id}`));
    r.on('nodeDead', (id) => log.push(`dead ${id}`));
    return { r, log };
  };
  const closeAll = async () => {
    for (const c of closers.reverse()) await c();
    await bus.close();
  };
  return { clock, bus, agent, registry, closeAll };
}

let cleanup: (() => Promise<void>) | undefined;
afterEach(async () => {
  await cleanup?.();
  cleanup = undefined;
});

describe('NodeAgent and NodeRegistry', () => {
  it('a node joins, stays alive while it beats, and is dead 1.0–1.1 s after its last beat', async () => {
    const t = setup();
    cleanup = t.closeAll;
    const { r, log } = t.registry();
    await r.start();
    let viewers = 0;
    const a = t.agent('r1', { load: () => ({ viewers, children: 0 }) });
    await a.start();
    await t.clock.advance(0);
    expect(log).toEqual(['joined r1']);
    viewers = 7;
    await t.clock.advance(5_000);
    expect(log).toEqual(['joined r1']);
    expect(r.get('r1')?.viewers).toBe(7);
    expect(a.stats.heartbeats).toBe(1 + 5_000 / controlDefaults.heartbeatIntervalMs);

    a.abandon();
    const silentSince = t.clock.now();
    let diedAt: number | undefined;
    r.once('nodeDead', () => (diedAt = t.clock.now()));
    await t.clock.advance(2_000);
    expect(log).toEqual(['joined r1', 'dead r1']);
    // the last beat went out at silentSince (the interval fires on multiples of 250 ms)
    expect(diedAt! - silentSince).toBeGreaterThanOrEqual(controlDefaults.deadAfterMs);
    expect(diedAt! - silentSince).toBeLessThanOrEqual(controlDefaults.deadAfterMs + controlDefaults.livenessCheckIntervalMs);
    expect(r.has('r1')).toBe(false);
    // A dead node's KV entry is pruned, so a restarted controller does not resurrect it.
    expect(await (await t.bus.kv(s.buckets.nodes)).keys()).toEqual([]);
  });

  it('a parent a child reports silent is dead two beats after its last one; a parent that beats, a report from a stranger or one just after a reconnect kill nobody', async () => {
    const t = setup();
    cleanup = t.closeAll;
    const { r, log } = t.registry();
    await t.clock.advance(2_000); // the registry's own connection is older than deadAfterMs
    await r.start();
    await t.clock.advance(2_000);
    const parent = t.agent('p1');
    const child = t.agent('c1');
    await parent.start();
    await child.start();
    await t.clock.advance(1_000);
    const report = (from: string, about: string) =>
      t.bus.publish(s.node.silent(about), { v: 1, id: from, event: 'ev1', parent: about, silentMs: 300, at: Date.now() });

    // Alive and beating: reports change nothing, however many.
    for (let i = 0; i < 8; i++) {
      report('c1', 'p1');
      await t.clock.advance(250);
    }
    expect(log).toEqual(['joined p1', 'joined c1']);
    expect(r.stats.silenceReports).toBe(8);

    // A stranger's report is dropped and counted.
    report('nobody', 'p1');
    await t.clock.advance(0);
    expect(r.drops.of('unknown_reporter')).toBe(1);
    // A report on another node's subject is refused.
    t.bus.publish(s.node.silent('c1'), { v: 1, id: 'c1', event: 'ev1', parent: 'p1', silentMs: 300, at: Date.now() });
    await t.clock.advance(0);
    expect(r.drops.of('id_mismatch')).toBe(1);

    // The parent dies; its child notices 300 ms later and reports: dead at 500 ms, not 1,000.
    parent.abandon();
    const lastBeat = t.clock.now();
    let diedAt: number | undefined;
    r.once('nodeDead', () => (diedAt = t.clock.now()));
    await t.clock.advance(300);
    report('c1', 'p1');
    await t.clock.advance(0);
    expect(log).toEqual(['joined p1', 'joined c1']); // 300 ms: one beat late is no proof
    await t.clock.advance(300);
    expect(log).toEqual(['joined p1', 'joined c1', 'dead p1']);
    expect(diedAt! - lastBeat).toBeGreaterThanOrEqual(controlDefaults.suspectDeadAfterMs);
    expect(diedAt! - lastBeat).toBeLessThanOrEqual(controlDefaults.suspectDeadAfterMs + controlDefaults.livenessCheckIntervalMs);
    expect(r.stats.deadBySilence).toBe(1);
    expect(r.stats.dead).toBe(1);
  });

  it('silence reports are ignored for deadAfterMs after the registry (re)connects', async () => {
    const t = setup();
    cleanup = t.closeAll;
    const { r, log } = t.registry();
    await r.start();
    const parent = t.agent('p1');
    const child = t.agent('c1');
    await parent.start();
    await child.start();
    await t.clock.advance(250);
    parent.abandon();
    await t.clock.advance(500);
    t.bus.publish(s.node.silent('p1'), { v: 1, id: 'c1', event: 'ev1', parent: 'p1', silentMs: 500, at: Date.now() });
    await t.clock.advance(100);
    expect(log).toEqual(['joined p1', 'joined c1']);
    expect(r.stats.silenceReports).toBe(0);
    // Only the missed beats kill it, at deadAfterMs.
    await t.clock.advance(controlDefaults.deadAfterMs);
    expect(log).toEqual(['joined p1', 'joined c1', 'dead p1']);
    expect(r.stats.deadBySilence).toBe(0);
  });

  it('a graceful close removes the node at once and deletes its KV entry', async () => {
    const t = setup();
    cleanup = t.closeAll;
    const { r, log } = t.registry();
    await r.start();
    const a = t.agent('r1');
    await a.start();
    await t.clock.advance(300);
    await a.close();
    await a.close();
    await t.clock.advance(0);
    expect(log).toEqual(['joined r1', 'left r1']);
    expect(await (await t.bus.kv(s.buckets.nodes)).get('r1')).toBeNull();
    await t.clock.advance(3_000);
    expect(log).toEqual(['joined r1', 'left r1']);
  });

  it('a registry started later finds registered nodes in KV', async () => {
    const t = setup();
    cleanup = t.closeAll;
    await t.agent('r1').start();
    await t.agent('r2').start();
    await t.clock.advance(1_000);
    const { r, log } = t.registry();
    await r.start();
    expect(log).toEqual(['joined r1', 'joined r2']);
    await t.clock.advance(3_000);
    expect(r.nodes().map((n) => n.info.id)).toEqual(['r1', 'r2']);
  });

  it('a node whose entry was lost is asked to register again when it keeps beating', async () => {
    const t = setup();
    cleanup = t.closeAll;
    const a = t.agent('r1');
    await a.start();
    // Its KV entry disappears (e.g. pruned after a false death) before any registry runs.
    await (await t.bus.kv(s.buckets.nodes)).delete('r1');
    const { r, log } = t.registry();
    await r.start();
    expect(log).toEqual([]);
    await t.clock.advance(300);
    expect(r.stats.reregisterRequests).toBe(1);
    expect(a.stats.registrations).toBe(2);
    expect(log).toEqual(['joined r1']);
    expect(await (await t.bus.kv(s.buckets.nodes)).get('r1')).not.toBeNull();
  });

  it('counts and ignores malformed register, heartbeat and leave messages', async () => {
    const t = setup();
    cleanup = t.closeAll;
    const { r, log } = t.registry();
    await r.start();
    const a = t.agent('r1');
    await a.start();
    const enc = (x: string) => new TextEncoder().encode(x);
    const info = a.info;
    t.bus.publish(s.node.register, enc('{garbage'));
    t.bus.publish(s.node.register, { ...info, v: 2 });
    t.bus.publish(s.node.register, { ...info, id: undefined });
    t.bus.publish(s.node.register, { ...info, id: 'bad id' });
    t.bus.publish(s.node.register, { ...info, cluster: 'other' });
    t.bus.publish(s.node.register, { ...info, media: { host: '127.0.0.1', port: 70_000 } });
    t.bus.publish(s.node.heartbeat('r1'), { v: 1, id: 'r1', viewers: -1, children: 0, seq: 9, at: 1 });
    t.bus.publish(s.node.heartbeat('r1'), { v: 1, id: 'r2', viewers: 1, children: 0, seq: 9, at: 1 });
    t.bus.publish(s.node.heartbeat('r1'), [1, 2, 3]);
    t.bus.publish(s.node.heartbeat('r1'), enc('null'));
    t.bus.publish(s.node.leave('r1'), { v: 1, id: 'r2', at: 1 });
    t.bus.publish(s.node.leave('r1'), { v: 1 });
    await t.clock.advance(0);
    expect(r.drops.byReason()).toEqual({ not_json: 1, wrong_version: 1, invalid: 7, wrong_cluster: 1, id_mismatch: 2 });
    expect(r.drops.total).toBe(12);
    // None of it changed the registry's view.
    expect(log).toEqual(['joined r1']);
    expect(r.get('r1')?.info).toEqual(info);
    await t.clock.advance(1_500);
    expect(log).toEqual(['joined r1']);
  });

  it('closes idempotently and leaves no timer behind', async () => {
    const t = setup();
    const { r } = t.registry();
    await r.start();
    const a = t.agent('r1');
    await a.start();
    const b = t.agent('r2');
    await b.start();
    b.abandon();
    b.abandon();
    await a.close();
    await r.close();
    await r.close();
    expect(t.clock.pendingTimers).toBe(0);
    await t.bus.close();
  });
});

describe('Lease', () => {
  async function leases() {
    const clock = new ManualClock();
    const bus = new InProcessBus({ clock: () => clock.now() });
    const kv = await bus.kv('leases');
    const make = (holder: string) => new Lease({ kv, key: 'tree.leader', holder, clock, ttlMs: 2_000, renewIntervalMs: 500 });
    return { clock, bus, kv, make };
  }

  it('only one of two contenders holds it; the holder keeps it by renewing', async () => {
    const { clock, bus, make } = await leases();
    const a = make('a');
    const b = make('b');
    await Promise.all([a.start(), b.start()]);
    expect([a.held, b.held].filter(Boolean).length).toBe(1);
    const holder = a.held ? a : b;
    await clock.advance(10_000);
    expect(holder.held).toBe(true);
    expect((holder === a ? b : a).held).toBe(false);
    await a.close();
    await b.close();
    expect(clock.pendingTimers).toBe(0);
    await bus.close();
  });

  it('a standby takes over a crashed holder only after the ttl, and a released lease at once', async () => {
    const { clock, bus, make } = await leases();
    const a = make('a');
    await a.start();
    expect(a.held).toBe(true);
    const b = make('b');
    let bAt: number | undefined;
    b.on('acquired', () => (bAt = clock.now()));
    await b.start();
    expect(b.held).toBe(false);

    const crashAt = clock.now();
    a.abandon();
    await clock.advance(1_900);
    expect(b.held).toBe(false);
    await clock.advance(1_000);
    expect(b.held).toBe(true);
    // Never before the crashed holder's last renewal + ttl; at most ttl + two checks after the crash.
    expect(bAt! - crashAt).toBeGreaterThanOrEqual(2_000);
    expect(bAt! - crashAt).toBeLessThanOrEqual(3_000);

    const c = make('c');
    await c.start();
    expect(c.held).toBe(false);
    await b.close();
    await clock.advance(500);
    expect(c.held).toBe(true);
    await c.close();
    await bus.close();
  });

  it('a holder that cannot renew for a ttl stops holding, and a conflicting writer makes it step down', async () => {
    const { clock, bus, kv, make } = await leases();
    const a = make('a');
    const events: string[] = [];
    a.on('acquired', () => events.push('acquired'));
    a.on('lost', () => events.push('lost'));
    await a.start();
    // Someone else overwrites the record (e.g. an operator, or a standby that won a race).
    const entry = await kv.get('tree.leader');
    await kv.update('tree.leader', { v: 1, holder: 'z', instance: 'other', ttlMs: 2_000, at: clock.now() }, entry!.revision);
    await clock.advance(500);
    expect(a.held).toBe(false);
    expect(events).toEqual(['acquired', 'lost']);
    await a.close();
    await bus.close();
  });
});
