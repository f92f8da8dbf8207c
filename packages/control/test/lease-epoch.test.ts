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

  it('takeOverFrom skips the ttl only when the record still names the dead holder', async () => {
    const { clock, bus, make } = await setup();
    const a = make('a');
    await a.start();
    const b = make('b');
    await b.start();
    await b.takeOverFrom('someone-else');
    expect(b.held).toBe(false);
    a.abandon();
    await b.takeOverFrom('a');
    expect(b.held).toBe(true);
    expect(b.epoch).toBe(2);
    // The old holder, had it only been cut off, loses on its next renewal (its revision conflicts).
    expect(a.held).toBe(false);
    await b.close();
    await bus.close();
  });

  it('a live holder whose lease was taken over stops holding at its next renewal', async () => {
    const { clock, bus, make } = await setup();
    const a = make('a');
    await a.start();
    const b = make('b');
    await b.start();
    await b.takeOverFrom('a');
    expect(b.held).toBe(true);
    await clock.advance(300);
    expect(a.held).toBe(false);
    expect(b.held).toBe(true);
    await a.close();
    await b.close();
    await bus.close();
  });
});
