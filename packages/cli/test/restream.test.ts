import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bin, cleanEnv, freePort, killAll, run, serve, type Ran } from './cli.js';

const adminToken = 'cli-restream-admin-token-0123456789';
const KEY = 'cli-secret-stream-key-0123456789';
let url = '';
let env: NodeJS.ProcessEnv;
let dir = '';
let rtmpPort = 0;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mcu-cli-restream-'));
  // Small renditions: the restream's H.264 encoder and the event's VP8 one cost little here.
  writeFileSync(join(dir, 'node.json'), JSON.stringify({ videoRenditions: [{ id: 'main', width: 160, height: 90, fps: 10 }], restreamRendition: { width: 160, height: 90, fps: 10, bitrateKbps: 100 } }));
  // The ingest is on loopback: allowed through the environment, as an operator would.
  const up = await serve(['up', '--port', '0', '--config', join(dir, 'node.json')], cleanEnv({ MCU_ADMIN_TOKEN: adminToken, MCU_RESTREAM_ALLOW: 'public,127.0.0.1' }));
  url = up.info.url;
  env = cleanEnv({ MCU_URL: url, MCU_ADMIN_TOKEN: adminToken });
  rtmpPort = await freePort(); // nobody listens: the restream retries
});
afterAll(() => {
  killAll();
  rmSync(dir, { recursive: true, force: true });
});

/** `mcu args…` with `input` on its stdin. */
function runWithStdin(args: string[], input: string): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(input);
  });
}

async function newEvent(): Promise<string> {
  const res = await fetch(`${url}/api/events`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}` } });
  return ((await res.json()) as { id: string }).id;
}

describe('mcu restream', () => {
  it('start reads the URL from a file or stdin (never argv), list shows it masked, stop stops one or all', async () => {
    const ev = await newEvent();
    const file = join(dir, 'ingest.url');
    writeFileSync(file, `\nrtmp://127.0.0.1:${rtmpPort}/live/${KEY}\n`, { mode: 0o600 });
    const fromFile = await run(['restream', 'start', ev, '--url-file', file, '--json'], env);
    expect(fromFile.code, fromFile.stderr).toBe(0);
    const started = JSON.parse(fromFile.stdout);
    expect(started).toMatchObject({ url: `rtmp://127.0.0.1:${rtmpPort}/live/••••6789`, state: 'connecting', reconnects: 0 });
    const fromStdin = await runWithStdin(['restream', 'start', ev], `rtmps://127.0.0.1:${rtmpPort}/app/${KEY}-2\n`);
    expect(fromStdin.code, fromStdin.stderr).toBe(0);
    expect(fromStdin.stdout).toMatch(/^restream \S+ of event \S+ to rtmps:\/\/127\.0\.0\.1:\d+\/app\/••••89-2: connecting/);

    const list = await run(['restream', 'list', ev], env);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^ID\s+STATE\s+LIVE FOR\s+BYTES\s+RECONNECTS\s+URL/);
    expect(list.stdout).toContain(started.id);
    expect(list.stdout.split('\n').filter((l) => l.includes('••••')).length).toBe(2);
    for (const r of [fromFile, fromStdin, list]) expect(r.stdout + r.stderr).not.toContain(KEY);

    const one = await run(['restream', 'stop', ev, started.id], env);
    expect(one.code, one.stderr).toBe(0);
    expect(one.stdout).toMatch(new RegExp(`restream ${started.id} to rtmp://\\S+/live/••••6789 stopped`));
    const all = await run(['restream', 'stop', ev, '--json'], env);
    expect(JSON.parse(all.stdout).restreams.map((r: { state: string }) => r.state)).toEqual(['stopped']);
    expect((await run(['restream', 'list', ev], env)).stdout).toBe(`event ${ev} has no restreams\n`);
  });

  it('a missing file or an empty one is a usage error; a bad URL is the node\'s 400, the key not echoed', async () => {
    const ev = await newEvent();
    const missing = await run(['restream', 'start', ev, '--url-file', join(dir, 'nope.url')], env);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('ENOENT');
    writeFileSync(join(dir, 'empty.url'), '\n\n');
    const empty = await run(['restream', 'start', ev, '--url-file', join(dir, 'empty.url')], env);
    expect(empty.code).toBe(2);
    expect(empty.stderr).toMatch(/no RTMP URL/);
    const bad = await runWithStdin(['restream', 'start', ev, '--url-file', '-'], `https://example.com/live2/${KEY}\n`);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/400 invalid_restream_url: url: scheme https/);
    expect(bad.stderr).not.toContain(KEY);
    const unknown = await run(['restream', 'list', 'no-such-event'], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/404 event_not_found/);
  });
});
