import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { InProcessBus } from '@mcu/control';
import type { FeedKey } from '@mcu/relay';
import {
  FeedKeyFollower,
  FeedKeyRotation,
  feedKeyAnnounceSubject,
  fetchFeedKeys,
  generateFeedKey,
  openFeedKey,
  sealFeedKey,
  sealFeedKeySet,
  serveFeedKeys,
} from '../src/index.js';
import { captureLog } from '../../control/test/logCapture.js';

const SECRET = 'feed-key-test-secret-0123456789abcdef';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('feed keys over the control plane', () => {
  it('a sealed key opens only with the cluster secret and for its own event', () => {
    const key = generateFeedKey();
    const sealed = sealFeedKey(SECRET, 'ev1', key);
    const opened = openFeedKey(SECRET, 'ev1', sealed);
    expect(Buffer.from(opened.key).equals(Buffer.from(key.key))).toBe(true);
    expect(Buffer.from(opened.salt).equals(Buffer.from(key.salt))).toBe(true);
    expect(opened.id).toBe(key.id);
    expect(JSON.stringify(sealed)).not.toContain(Buffer.from(key.key).toString('base64url'));
    expect(() => openFeedKey('another-secret-0123456789abcdef-0123', 'ev1', sealed)).toThrow();
    expect(() => openFeedKey(SECRET, 'ev2', sealed)).toThrow();
    expect(() => openFeedKey(SECRET, 'ev1', { ...sealed, id: sealed.id + 1 })).toThrow();
  });

  it('a relay asks until the mixer knows the event, then gets its key', async () => {
    const bus = new InProcessBus();
    const keys = new Map<string, ReturnType<typeof generateFeedKey>>();
    const stop = serveFeedKeys(bus, 'c1', SECRET, (id) => {
      const current = keys.get(id);
      return current ? { current } : undefined;
    });
    const abort = new AbortController();
    const asked = fetchFeedKeys(bus, 'c1', SECRET, 'ev1', { signal: abort.signal, retryMs: 20, timeoutMs: 200 });
    setTimeout(() => keys.set('ev1', generateFeedKey()), 100);
    const got = await asked;
    expect(Buffer.from(got.current.key).equals(Buffer.from(keys.get('ev1')!.key))).toBe(true);
    expect(got.next).toBeUndefined();
    stop();
    await bus.close();
  });
});

describe('feed-key rotation between a FeedKeyRotation and a FeedKeyFollower (in-process bus, real timers)', () => {
  it('the follower takes announced keys, refuses malformed, mis-sealed and misaddressed ones, and no key material reaches the logs', async () => {
    const bus = new InProcessBus();
    const { lines, logger } = captureLog({ level: 'debug' });
    const senderKeys: { current: number; accepted: number[] }[] = [];
    const first = generateFeedKey();
    const rotation = new FeedKeyRotation(
      { bus, cluster: 'c1', secret: SECRET, event: 'ev1', rotationMs: 60_000, graceMs: 80, overlapMs: 80, log: logger, sender: { setKeys: (c, a) => senderKeys.push({ current: c.id, accepted: a.map((k) => k.id) }) } },
      first,
    );
    const stop = serveFeedKeys(bus, 'c1', SECRET, (id) => (id === 'ev1' ? rotation.keys : undefined));
    const follower = new FeedKeyFollower({ bus, cluster: 'c1', secret: SECRET, event: 'ev1', overlapMs: 80, fetchIntervalMs: 50, requestTimeoutMs: 200, log: logger });
    const relayKeys: { current: number; accepted: number[] }[] = [];
    await follower.start({ signal: AbortSignal.timeout(2000), retryMs: 20 });
    follower.attach({ setKeys: (c, a) => relayKeys.push({ current: c.id, accepted: a.map((k) => k.id) }) });
    expect(follower.keyId).toBe(first.id);

    // Rotation: the next key is accepted by both sides before the switch, the previous one for the overlap.
    rotation.rotate('node_dead');
    const next = first.id + 1;
    expect(senderKeys.at(-1)).toEqual({ current: first.id, accepted: [next] });
    await sleep(20);
    expect(relayKeys.at(-1)).toEqual({ current: first.id, accepted: [next] });
    await sleep(100); // past the grace period
    expect(rotation.keyId).toBe(next);
    expect(follower.keyId).toBe(next);
    expect(relayKeys.at(-1)).toEqual({ current: next, accepted: [first.id] });
    await sleep(120); // past the overlap
    expect(relayKeys.at(-1)).toEqual({ current: next, accepted: [] });
    expect(senderKeys.at(-1)).toEqual({ current: next, accepted: [] });

    // Bad announcements change nothing and are counted.
    const subject = feedKeyAnnounceSubject('c1', 'ev1');
    const rogue: FeedKey = generateFeedKey(next + 10);
    bus.publish(subject, { v: 1, event: 'ev1', sealed: { id: 5, iv: 'not base64!', data: 'x', tag: 'y' } });
    bus.publish(subject, sealFeedKeySet('another-secret-0123456789abcdef-0123', 'ev1', { current: rogue }));
    bus.publish(subject, { ...sealFeedKeySet(SECRET, 'ev1', { current: rogue }), event: 'ev2' });
    bus.publish(subject, Buffer.from('{"v":1,'));
    await sleep(30);
    expect(follower.keyId).toBe(next);
    expect(follower.drops.of('invalid')).toBe(1);
    expect(follower.drops.of('not_json')).toBe(1);
    expect(follower.drops.of('id_mismatch')).toBe(1);
    expect(follower.stats.badSeals).toBe(1);

    // An unknown key id makes the follower fetch, at most once per interval.
    for (let i = 0; i < 50; i++) follower.onUnknownKey(12345);
    await sleep(30);
    expect(follower.stats.fetches).toBe(1);

    // Only ids were logged, never key material.
    const logged = JSON.stringify(lines);
    expect(lines.some((l) => l.msg === 'feed key rotation announced' && l.reason === 'node_dead')).toBe(true);
    for (const k of [first, rogue]) {
      expect(logged).not.toContain(Buffer.from(k.key).toString('base64url'));
      expect(logged).not.toContain(Buffer.from(k.key).toString('hex'));
    }
    follower.close();
    rotation.close();
    stop();
    await bus.close();
  });
});

describe('mcu CLI', () => {
  it('mixer and relay refuse to start without MCU_TOKEN_SECRET, saying why', async () => {
    const bin = fileURLToPath(new URL('../../cli/bin/mcu.js', import.meta.url));
    const env = { ...process.env };
    delete env.MCU_TOKEN_SECRET;
    for (const role of ['mixer', 'relay']) {
      const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = execFile(process.execPath, [bin, role, '--nats', 'nats://127.0.0.1:1'], { env, timeout: 20_000 }, (_err, _out, stderr) =>
          resolve({ code: child.exitCode, stderr }),
        );
      });
      expect(code).toBe(2);
      expect(stderr).toMatch(/MCU_TOKEN_SECRET is required when clustering/);
    }
  });
});
