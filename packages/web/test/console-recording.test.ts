/**
 * The console's recordings panel in headless Chromium against a real node: the producer pastes an
 * age recipient, presses Record, sees the running recording grow, stops it, and downloads its
 * segment through the link, which Debian's age opens with the producer's identity.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { McuNode } from '@mcu/server';
import { launchChromium, LOOPBACK_NODE, waitFor } from './chromium.js';

const ADMIN = 'console-rec-admin-token-0123456789';
let node: McuNode;
let browser: Browser;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mcu-console-rec-'));
  node = new McuNode({ port: 0, adminToken: ADMIN, ...LOOPBACK_NODE, recordingsDir: join(dir, 'store'), videoRenditions: [{ id: '360p', width: 640, height: 360, fps: 15 }] });
  await node.listen();
  browser = await launchChromium();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await node?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('producer console: recordings', () => {
  it('records with a remembered recipient, shows duration and size, and links the encrypted segments', async () => {
    const identity = join(dir, 'key.txt');
    expect(spawnSync('age-keygen', ['-o', identity]).status).toBe(0);
    const recipient = spawnSync('age-keygen', ['-y', identity]).stdout.toString().trim();
    const e = node.registry.create({ name: 'rec-console', maxSpeakers: 3 });

    const ctx = await browser.newContext({ acceptDownloads: true });
    const page = await ctx.newPage();
    await page.goto(`${node.url}/`);
    await page.fill('#token', ADMIN);
    await page.click('#login');
    await waitFor(page, `document.querySelector('#events tbody tr[data-id="${e.id}"]') !== null`);
    await page.click(`#events tbody tr[data-id="${e.id}"] [data-testid="open-event"]`);
    await waitFor(page, `!document.getElementById('recordings-section').hidden`);

    // A bad recipient: the node's message is shown, nothing records.
    await page.fill('#record-recipients', 'age1bad');
    await page.click('#record-toggle');
    await waitFor(page, `document.getElementById('record-status').textContent.includes('not an X25519 age recipient')`);
    expect(node.recordings.recorder.runningOf(e.id)).toHaveLength(0);

    await page.fill('#record-recipients', recipient);
    await page.click('#record-toggle');
    await waitFor(page, `document.getElementById('record-toggle').textContent === 'Stop recording'`);
    expect(await page.evaluate(`localStorage.getItem('mcu.recordingRecipients')`)).toBe(recipient);
    await waitFor(page, `/● 0:0[2-9] · [0-9]+ KiB/.test(document.getElementById('record-running').textContent)`, 20_000);
    await page.click('#record-toggle');
    await waitFor(page, `document.getElementById('record-toggle').textContent === 'Record' && document.querySelector('#recordings tbody tr td:nth-child(2)')?.textContent === 'stopped'`);

    // The link downloads the segment as stored; age opens it.
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#recordings tbody tr a')]);
    const saved = join(dir, 'seg.age');
    await download.saveAs(saved);
    expect(readFileSync(saved).subarray(0, 21).toString()).toBe('age-encryption.org/v1');
    const dec = spawnSync('age', ['-d', '-i', identity, '-o', join(dir, 'seg.webm'), saved]);
    expect(dec.status, dec.stderr.toString()).toBe(0);
    const probe = JSON.parse(spawnSync('ffprobe', ['-v', 'error', '-show_streams', '-of', 'json', join(dir, 'seg.webm')]).stdout.toString());
    expect(probe.streams.map((s: { codec_name: string }) => s.codec_name)).toContain('opus');

    // Remembered for the next visit in this browser.
    await page.reload();
    expect(await page.inputValue('#record-recipients')).toBe(recipient);
    await ctx.close();
  }, 60_000);
});
