import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { McuNode } from '@mcu/server';
import { cleanEnv, killAll, run } from './cli.js';
import { BeepFlashPresenter, audioPeaks, flashClip, onsets, videoLuma } from '../../recording/test/beepFlash.js';
import { sleep } from '../../mixer/test/videoMedia.js';

/** `mcu recording …` against a node recording a beeping, flashing presenter in 3-second segments. */
const ADMIN = 'cli-recording-admin-token-0123456789';
let node: McuNode;
let dir: string;
let identity: string;
let recipient: string;
let env: NodeJS.ProcessEnv;
let presenter: BeepFlashPresenter | null = null;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mcu-cli-rec-'));
  identity = join(dir, 'key.txt');
  expect(spawnSync('age-keygen', ['-o', identity]).status).toBe(0);
  recipient = spawnSync('age-keygen', ['-y', identity]).stdout.toString().trim();
  node = new McuNode({ port: 0, adminToken: ADMIN, recordingsDir: join(dir, 'store'), videoRenditions: [{ id: 'main', width: 320, height: 180, bitrateKbps: 400 }] });
  env = cleanEnv({ MCU_URL: (await node.listen()).url, MCU_ADMIN_TOKEN: ADMIN });
});
afterAll(async () => {
  presenter?.stop();
  killAll();
  await node.close();
  rmSync(dir, { recursive: true, force: true });
});

async function mcu(...args: string[]) {
  return run(args, env);
}

describe('mcu recording', () => {
  it('starts, stops, lists, downloads one playable file, and verify catches a swapped or missing segment', async () => {
    const e = node.registry.create({ maxSpeakers: 3 });
    presenter = new BeepFlashPresenter(e.mixer, 'p1', flashClip(320, 180)).start();
    await sleep(1000);
    const started = await mcu('recording', 'start', e.id, '--recipient', recipient, '--segment-minutes', '0.05', '--json');
    expect(started.code, started.stderr).toBe(0);
    const rid = JSON.parse(started.stdout).id as string;
    await sleep(7500);
    const stopped = await mcu('recording', 'stop', e.id, rid);
    expect(stopped.code, stopped.stderr).toBe(0);
    expect(stopped.stdout).toMatch(/stopped: 0:00:[0-5][0-9], [0-9]+ KiB in [0-9]+ segment/);
    const list = await mcu('recording', 'list', e.id);
    expect(list.stdout).toContain(rid);
    expect(list.stdout).toContain('stopped');

    const verified = await mcu('recording', 'verify', e.id, rid, '--identity', identity, '--json');
    expect(verified.code, verified.stdout + verified.stderr).toBe(0);
    const v = JSON.parse(verified.stdout);
    expect(v.ok).toBe(true);
    expect(v.manifestAuthentic).toBe(true);
    expect(v.segments.length).toBeGreaterThanOrEqual(2);

    // One decrypted, joined, playable file: about 7.5 s of flashes and beeps.
    const out = join(dir, 'out');
    const dl = await mcu('recording', 'download', e.id, '--identity', identity, '--out', out, '--json');
    expect(dl.code, dl.stderr).toBe(0);
    const joined = JSON.parse(dl.stdout).joined as string;
    expect(joined).toBe(join(out, `${rid}.webm`));
    const flashes = onsets(videoLuma(joined), 120);
    const beeps = onsets(audioPeaks(joined), -12);
    expect(flashes.length).toBeGreaterThanOrEqual(6);
    expect(beeps.length).toBeGreaterThanOrEqual(6);
    expect(flashes.at(-1)! - flashes[0]).toBeGreaterThan(5);

    // Without the identity: the ciphertext as stored, which age opens.
    const enc = join(dir, 'enc');
    expect((await mcu('recording', 'download', e.id, rid, '--out', enc)).code).toBe(0);
    const manifest = JSON.parse(readFileSync(join(enc, 'manifest.json'), 'utf8'));
    const first = join(enc, manifest.segments[0].name);
    expect(spawnSync('age', ['-d', '-i', identity, '-o', join(dir, 'first.webm'), first]).status).toBe(0);

    // Tampering with the store: a swapped segment, a removed one, a rewritten manifest.
    const stored = join(dir, 'store', e.id, rid);
    const seg0 = join(stored, manifest.segments[0].name);
    const seg1 = join(stored, manifest.segments[1].name);
    const original1 = readFileSync(seg1);
    copyFileSync(seg0, seg1);
    const swapped = await mcu('recording', 'verify', e.id, rid);
    expect(swapped.code).toBe(1);
    expect(swapped.stdout).toMatch(/segment 1 was changed or swapped/);
    unlinkSync(seg1);
    const missing = await mcu('recording', 'verify', e.id, rid);
    expect(missing.code).toBe(1);
    expect(missing.stdout).toMatch(/segment 1 is missing/);
    writeFileSync(seg1, original1);
    // Dropping segment 1 from the manifest passes the hash check, not the chain and MAC.
    const manifestFile = join(stored, 'manifest.json');
    const m = JSON.parse(readFileSync(manifestFile, 'utf8'));
    m.segments = m.segments.filter((s: { index: number }) => s.index !== 1).map((s: { index: number }, i: number) => ({ ...s, index: i }));
    writeFileSync(manifestFile, JSON.stringify(m));
    const rewritten = await mcu('recording', 'verify', e.id, rid, '--identity', identity);
    expect(rewritten.code).toBe(1);
    expect(rewritten.stdout).toMatch(/not in its place|NOT authentic/);
  }, 90_000);
});
