import { describe, expect, it } from 'vitest';
import { decodeJson, InProcessBus, Lease, leaseRecordSchema, ManualClock } from '../src/index.js';

async function setup() {
  const clock = new ManualClock();
  const bus = new InProcessBus({ clock: () => clock.now() });
  const kv = await bus.kv('leases');
  const make = (holder: string) => new Lease({ kv, key: 'event.e1', holder, clock, ttlMs: 1_000, renewIntervalMs: 250 });
  const record = async () => leaseRecordSchema.parse(decodeJson((await kv.get('event.e1'))!.value));
  return { clock, bus, make, record };
}

describe('lease epochs and takeover of a dead holder', () => {
  it('the epoch grows by one each time the lease changes hands, and stays while renewed', async () => {
    const { clock, bus, make, record } = await setup();
    const a = make('a');
    await a.start();
    expect(a.epoch).toBe(1);
    await clock.advance(5_000);
    expect((await record()).epoch).toBe(1);
    const b = make('b');
    await b.start();
    a.abandon();
    await clock.advance(3_000);
    expect(b.held).toBe(true);
    expect(b.epoch).toBe(2);
    await b.close();
    const c = make('c');
    await c.start();
    // Released (holder null, epoch kept): taken at once under the next epoch.
    expect(c.held).toBe(true);
    expect(c.epoch).toBe(3);
    await c.close();
    expect(clock.pendingTimers).toBe(0);
    await bus.close();
  });

  it("takeOverFrom takes a dead holder's lease exactly a ttl after the last revision seen, and only from the holder named", async () => {
    const { clock, bus, make } = await setup();
    const a = make('a');
    await a.start();
    const b = make('b');
    await b.start();
    await b.takeOverFrom('someone-else');
    expect(b.held).toBe(false);
    a.abandon();
    const seenAt = clock.now();
    const taking = b.takeOverFrom('a');
    await clock.advance(999);
    expect(b.held).toBe(false);
    await clock.advance(1);
    await taking;
    expect(b.held).toBe(true);
    expect(clock.now() - seenAt).toBe(1000);
    expect(b.epoch).toBe(2);
    await b.close();
    await bus.close();
  });

  it('a holder that still renews keeps its lease: a takeover attempt on a false death gives up', async () => {
    const { clock, bus, make } = await setup();
    const a = make('a');
    await a.start();
    const b = make('b');
    await b.start();
    const taking = b.takeOverFrom('a');
    await clock.advance(1_500);
    await taking;
    expect({ a: a.held, b: b.held, ae: a.epoch, be: b.epoch }).toEqual({ a: true, b: false, ae: 1, be: 0 });
    expect(a.epoch).toBe(1);
    await a.close();
    await b.close();
    await bus.close();
  });

  it('with a hold margin the holder stops counting itself as holding that much before a standby may take over', async () => {
    const clock = new ManualClock();
    const bus = new InProcessBus({ clock: () => clock.now() });
    const kv = await bus.kv('leases');
    const a = new Lease({ kv, key: 'event.e2', holder: 'a', clock, ttlMs: 1_000, renewIntervalMs: 250, holdMarginMs: 150 });
    await a.start();
    expect(a.held).toBe(true);
    // The bus goes away: renewals fail from now on.
    await bus.close();
    await clock.advance(849);
    expect(a.held).toBe(true);
    await clock.advance(1);
    expect(a.held).toBe(false);
    a.abandon();
  });
});
