import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { InProcessBus } from '@mcu/control';
import { fetchFeedKeys, generateFeedKey, openFeedKey, sealFeedKey, serveFeedKeys } from '../src/index.js';

const SECRET = 'feed-key-test-secret-0123456789abcdef';

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
