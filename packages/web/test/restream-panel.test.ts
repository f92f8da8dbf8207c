/**
 * The console's Restream panel in headless Chromium against a real node and a real RTMP server
 * (nginx-rtmp): paste the URL, start, watch the row go live, stop. The stream key is in a password
 * field, cleared once sent, and nowhere in the page afterwards.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { McuNode } from '@mcu/server';
import { launchChromium, waitFor } from './chromium.js';
import { NginxRtmp } from '../../server/test/nginxRtmp.js';

const ADMIN = 'restream-panel-admin-token-0123456789';
const KEY = 'panel-stream-key-0123456789';
let node: McuNode;
let nginx: NginxRtmp;
let browser: Browser;

beforeAll(async () => {
  nginx = await NginxRtmp.start();
  node = new McuNode({ port: 0, adminToken: ADMIN, videoRenditions: [{ id: 'main', width: 320, height: 180, fps: 15 }], restreamRendition: { width: 320, height: 180, fps: 15, bitrateKbps: 300 }, restreamAllow: ['127.0.0.1'] });
  await node.listen();
  browser = await launchChromium();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await node?.close();
  await nginx?.close();
});

describe('console restream panel', () => {
  it('starts a restream to an RTMP server, shows it live with the key masked, stops it', async () => {
    const created = await fetch(`${node.url}/api/events`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
    const ev = (await created.json()) as { id: string; tokens: { producer: string } };
    const page = await browser.newPage();
    await page.goto(`${node.url}/`);
    // The producer token is enough: it may restream its own event.
    await page.fill('#token', ev.tokens.producer);
    await page.click('#login');
    await waitFor(page, `document.querySelector('#events tr[data-id="${ev.id}"]') !== null`);
    await page.click(`#events tr[data-id="${ev.id}"] [data-testid="open-event"]`);
    await waitFor(page, `!document.getElementById('event').hidden && document.getElementById('event-id').textContent === '${ev.id}'`);

    expect(await page.getAttribute('#restream-url', 'type')).toBe('password');
    // A bad URL: the node's message, nothing started.
    await page.fill('#restream-url', 'https://example.com/live/x');
    await page.click('#restream-start');
    await waitFor(page, `/rtmp/.test(document.getElementById('restream-status').textContent) && document.getElementById('restream-status').className === 'err'`);

    await page.fill('#restream-url', nginx.url(KEY));
    await page.click('#restream-start');
    const row = '#restreams tbody tr';
    await waitFor(page, `document.querySelector('${row}') !== null`);
    expect(await page.inputValue('#restream-url')).toBe('');
    await waitFor(page, `document.querySelector('${row} td:nth-child(2)')?.textContent === 'live'`, 30_000);
    const api = (await (await fetch(`${node.url}/api/events/${ev.id}/restreams`, { headers: { authorization: `Bearer ${ADMIN}` } })).json()) as { restreams: { id: string; state: string; url: string }[] };
    expect(api.restreams).toHaveLength(1);
    expect(api.restreams[0].state).toBe('live');
    expect(await page.textContent(`${row} td:first-child`)).toBe(api.restreams[0].url);
    expect(api.restreams[0].url).toMatch(/\/live\/••••6789$/);
    expect(await page.textContent('#restream-summary')).toBe('1 of 1 live');
    expect(await page.content()).not.toContain(KEY);

    await page.click(`${row} [data-testid="restream-stop"]`);
    await waitFor(page, `document.querySelector('${row}') === null`);
    const after = (await (await fetch(`${node.url}/api/events/${ev.id}/restreams`, { headers: { authorization: `Bearer ${ADMIN}` } })).json()) as { restreams: unknown[] };
    expect(after.restreams).toEqual([]);
    expect(await page.textContent('#restream-status')).toMatch(/^stopped: rtmp:\/\/127\.0\.0\.1:\d+\/live\/••••6789$/);
    await page.close();
  });
});
