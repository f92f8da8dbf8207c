/**
 * The serving commands log as JSON lines on stderr at --log-level, and SIGTERM drains before
 * exiting 0 (an orchestrator's stop), while stdout keeps only the command's own output.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { cleanEnv, killAll, listening, serve } from './cli.js';

afterAll(killAll);

function collect(stream: NodeJS.ReadableStream | null): () => string {
  let text = '';
  stream?.on('data', (b: Buffer) => (text += b.toString()));
  return () => text;
}

const exitOf = (child: import('node:child_process').ChildProcess) =>
  new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

describe('signals and logs of mcu up', () => {
  it('SIGTERM drains the node (its event ends within the drain timeout) and exits 0, with JSON log lines on stderr', async () => {
    const admin = 'signals-test-admin-token-0123456789';
    const { child, info } = await serve(['up', '--port', '0', '--log-level', 'debug', '--drain-timeout-ms', '1500'], cleanEnv({ MCU_ADMIN_TOKEN: admin }));
    const stderr = collect(child.stderr);
    const stdout = collect(child.stdout);
    const res = await fetch(`${info.url}/api/events`, { method: 'POST', headers: { authorization: `Bearer ${admin}` } });
    expect(res.status).toBe(201);
    const exited = exitOf(child);
    const t0 = performance.now();
    child.kill('SIGTERM');
    // Draining: not ready for new work, still alive.
    await new Promise((r) => setTimeout(r, 300));
    const ready = await fetch(`${info.url}/readyz`).catch(() => null);
    expect(ready?.status).toBe(503);
    expect(await exited).toBe(0);
    const took = performance.now() - t0;
    // The running event held the drain until the timeout, then the node closed.
    expect(took).toBeGreaterThanOrEqual(1400);
    expect(took).toBeLessThan(10_000);
    expect(await listening(Number(new URL(info.url).port))).toBe(false);
    const lines = stderr()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level: string; msg: string; event?: string });
    const msgs = lines.map((l) => l.msg);
    expect(msgs).toContain('event created');
    expect(msgs).toContain('shutting down: draining');
    expect(msgs).toContain('drained, exiting');
    expect(stdout()).not.toContain('"msg"');
  }, 20_000);

  it('--log-level silent writes no log lines', async () => {
    const { child } = await serve(['up', '--port', '0', '--log-level', 'silent']);
    const stderr = collect(child.stderr);
    const exited = exitOf(child);
    child.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(stderr().split('\n').filter((l) => l.startsWith('{'))).toEqual([]);
  }, 20_000);
});
