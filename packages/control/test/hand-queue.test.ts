/**
 * The hand queue's contract on both homes: the InProcessBus's memory (`mcu up`) and JetStream KV
 * on the shared NATS server (a cluster name of its own per run).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { ConflictError, ForbiddenError, HandQueue, InProcessBus, NatsBus, NotFoundError, subjects, type Bus } from '../src/index.js';

const sharedNats = process.env.MCU_TEST_NATS ?? 'nats://127.0.0.1:4222';

function handQueueContract(name: string, connect: () => Promise<Bus>) {
  describe(`HandQueue on ${name}`, () => {
    const cluster = `hq${Date.now().toString(36)}${Math.floor(Math.random() * 1e6)}`;
    const opened: { bus: Bus; queues: HandQueue[] }[] = [];
    const open = async (bus?: Bus) => {
      const b = bus ?? (await connect());
      const q = await HandQueue.open(b, cluster);
      opened.push({ bus: b, queues: [q] });
      return { bus: b, q };
    };
    const until = async (cond: () => boolean) => {
      for (let i = 0; i < 250 && !cond(); i++) await new Promise((r) => setTimeout(r, 20));
      expect(cond()).toBe(true);
    };
    afterAll(async () => {
      const first = opened[0];
      if (first) await (await first.bus.kv(subjects(cluster).buckets.hands)).destroy().catch(() => undefined);
      for (const o of opened) {
        for (const q of o.queues) q.close();
        await o.bus.close();
      }
    });

    it('a second raise is the first; the list is in raise order; a lowered hand is gone and can be raised again at the end', async () => {
      const { q } = await open();
      const first = await q.raise('ev', 'h1', 'One', 1000);
      expect(first.created).toBe(true);
      const again = await q.raise('ev', 'h1', 'Another name', 5000);
      expect(again).toEqual({ hand: first.hand, created: false });
      await q.raise('ev', 'h2', 'Two', 2000);
      await q.raise('ev', 'h0', 'Zero', 500);
      expect(q.list('ev').map((h) => h.id)).toEqual(['h0', 'h1', 'h2']);
      await q.remove('ev', 'h0');
      await expect(q.remove('ev', 'h0')).rejects.toBeInstanceOf(NotFoundError);
      // The watch may still bring the lowered hand's older write: it stays gone.
      await new Promise((r) => setTimeout(r, 100));
      expect(q.list('ev').map((h) => h.id)).toEqual(['h1', 'h2']);
      await q.raise('ev', 'h0', 'Zero again', 3000);
      expect(q.list('ev').map((h) => h.id)).toEqual(['h1', 'h2', 'h0']);
    });

    it('hands raised in the same millisecond keep the order they were raised in, also after one is invited and on another queue', async () => {
      const { q, bus } = await open();
      for (const id of ['zed', 'mid', 'abe']) await q.raise('ev4', id, id, 7000);
      expect(q.list('ev4').map((h) => h.id)).toEqual(['zed', 'mid', 'abe']);
      await q.invite('ev4', 'zed', 'live', 'pz', 60_000);
      expect(q.list('ev4').map((h) => h.id)).toEqual(['zed', 'mid', 'abe']);
      const { q: other } = await open(name === 'InProcessBus' ? bus : undefined);
      await until(() => other.list('ev4').length === 3);
      expect(other.list('ev4').map((h) => h.id)).toEqual(['zed', 'mid', 'abe']);
    });

    it('an invitation is claimed once, by its participant only, before it expires; a replaced one is refused; on stage is a conflict', async () => {
      const { q } = await open();
      await q.raise('ev2', 'g', 'Guest');
      await q.invite('ev2', 'g', 'live', 'p1', 60_000);
      await q.invite('ev2', 'g', 'backstage', 'p2', 60_000);
      await expect(q.claim('ev2', 'g', 'p1')).rejects.toThrow(/withdrawn or replaced/);
      const claims = await Promise.allSettled([q.claim('ev2', 'g', 'p2'), q.claim('ev2', 'g', 'p2'), q.claim('ev2', 'g', 'p2')]);
      expect(claims.filter((c) => c.status === 'fulfilled')).toHaveLength(1);
      for (const c of claims) if (c.status === 'rejected') expect(c.reason).toBeInstanceOf(ForbiddenError);
      await expect(q.invite('ev2', 'g', 'live', 'p3', 60_000)).rejects.toBeInstanceOf(ConflictError);
      expect(q.handOfParticipant('ev2', 'p2')?.id).toBe('g');
      await q.raise('ev2', 'late', 'Late');
      await q.invite('ev2', 'late', 'live', 'p4', 1, Date.now() - 10);
      await expect(q.claim('ev2', 'late', 'p4')).rejects.toThrow(/expired/);
      await expect(q.claim('ev2', 'nobody', 'p5')).rejects.toBeInstanceOf(ForbiddenError);
    });

    it('another queue on the same store (another mixer) sees the hands and their changes; a stale copy loses its race and re-reads', async () => {
      const { q: a, bus } = await open();
      // Another connection to the same NATS server; in one process, the same memory.
      const { q: b } = await open(name === 'InProcessBus' ? bus : undefined);
      await a.raise('ev3', 'x', 'Shared');
      await until(() => b.list('ev3').length === 1);
      await b.invite('ev3', 'x', 'live', 'px', 60_000);
      await until(() => a.list('ev3')[0]?.invitation?.participant === 'px');
      // `a` invites from its copy; were it stale the store refuses the write and `a` reads again.
      const again = await a.invite('ev3', 'x', 'backstage', 'py', 60_000);
      expect(again.invitation).toMatchObject({ stage: 'backstage', participant: 'py' });
      await a.clear('ev3');
      await until(() => b.list('ev3').length === 0);
    });
  });
}

handQueueContract('InProcessBus', async () => new InProcessBus());
handQueueContract('NatsBus (JetStream KV)', () => NatsBus.connect({ servers: sharedNats, name: 'mcu-hand-queue-test' }));
