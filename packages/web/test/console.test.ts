/**
 * The producer console in headless Chromium against a real node: log in, create an event, a
 * second page publishes a test tone and pattern over WHIP, the console shows it with a live level
 * and as active speaker, mutes it, switches the layout, previews the program over WHEP, draws the
 * delivery tree and ends the event — each step checked against the HTTP API.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { McuNode } from '@mcu/server';
import { launchChromium, LOOPBACK_NODE, waitFor } from './chromium.js';

const ADMIN = 'console-test-admin-token-0123456789';
let node: McuNode;
let browser: Browser;

async function api(path: string): Promise<{ status: number; json: any }> {
  const res = await fetch(`${node.url}${path}`, { headers: { authorization: `Bearer ${ADMIN}` } });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null };
}

beforeAll(async () => {
  // One small rendition: the preview needs frames, not 720p, on two shared cores.
  node = new McuNode({ port: 0, adminToken: ADMIN, ...LOOPBACK_NODE, videoRenditions: [{ id: '360p', width: 640, height: 360, fps: 15 }] });
  await node.listen();
  browser = await launchChromium();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await node?.close();
});

describe('producer console', () => {
  it('runs an event end to end: create, see a presenter speak, mute, layout, preview, tree, end', async () => {
    const ctx = await browser.newContext();
    await ctx.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: node.url });
    const consolePage = await ctx.newPage();
    consolePage.on('dialog', (d) => void d.accept());
    await consolePage.goto(`${node.url}/`);

    // Log in; the token stays in this tab's sessionStorage.
    await consolePage.fill('#token', ADMIN);
    await consolePage.click('#login');
    await waitFor(consolePage, `!document.getElementById('create').hidden`);
    expect(await consolePage.evaluate(`sessionStorage.getItem('mcu.token')`)).toBe(ADMIN);

    // Create an event in the UI: it opens with its links and tokens.
    await consolePage.fill('#name', 'console-test');
    await consolePage.click('#createBtn');
    await waitFor(consolePage, `!document.getElementById('event').hidden && document.getElementById('whip-url').value !== ''`);
    const eventId = (await consolePage.textContent('#event-id'))!;
    const ev = (await api(`/api/events/${eventId}`)).json;
    expect(ev.name).toBe('console-test');
    expect(await consolePage.inputValue('#whip-url')).toBe(ev.whip);
    expect(await consolePage.inputValue('#whep-url')).toBe(ev.whep);
    expect(await consolePage.textContent('#obs-hint')).toMatch(/WHIP.*Bearer Token = the presenter token/s);
    await consolePage.click('button[data-copy="whip-url"]');
    expect(await consolePage.evaluate('navigator.clipboard.readText()')).toBe(ev.whip);
    const presenterToken = await consolePage.inputValue('#presenter-token');
    expect(presenterToken.length).toBeGreaterThan(20);

    // A presenter publishes the test tone and pattern with the token the console shows.
    const presenter = await ctx.newPage();
    await presenter.goto(`${node.url}/publish/${eventId}?token=${presenterToken}&source=test&size=320x180&tone=440&name=Ada%20Lovelace&autostart=1`);
    await waitFor(presenter, 'window.mcu && (window.mcu.connected || window.mcu.error)');
    expect(await presenter.evaluate('window.mcu.error')).toBeNull();
    // ?name= fills the page's name field, which goes to the node with the WHIP offer.
    expect(await presenter.inputValue('#name')).toBe('Ada Lovelace');

    // The participant appears with a live level and is marked as the active speaker.
    const row = `#participants tr[data-testid="participant"]`;
    await waitFor(consolePage, `(() => { const r = document.querySelector('${row}'); return r && Number(r.dataset.level) > 0 && r.dataset.speaker === 'true'; })()`);
    const pid = (await consolePage.getAttribute(row, 'data-id'))!;
    // The console lists the presenter by the name it gave, not by its session id.
    expect(await consolePage.textContent(`${row} .name`)).toBe('Ada Lovelace');
    expect((await api(`/api/events/${eventId}`)).json.dominantSpeaker).toBe(pid);
    expect(await consolePage.evaluate(`document.querySelector('${row}').classList.contains('active-speaker')`)).toBe(true);
    const meterWidth = await consolePage.evaluate(`parseFloat(document.querySelector('${row} .meter-fill').style.width)`);
    expect(meterWidth).toBeGreaterThan(0);

    // Mute it from the console: the API shows it muted, the row stops being the speaker.
    await consolePage.click(`${row} [data-testid="mute"]`);
    await waitFor(consolePage, `(() => { const r = document.querySelector('${row}'); return r.dataset.muted === 'true' && r.dataset.speaker === 'false'; })()`);
    const afterMute = (await api(`/api/events/${eventId}/participants`)).json.participants;
    expect(afterMute).toEqual([expect.objectContaining({ id: pid, muted: true, speaking: false })]);
    expect((await api(`/api/events/${eventId}`)).json.dominantSpeaker).toBeNull();
    expect(await consolePage.textContent(`${row} [data-testid="mute"]`)).toBe('Unmute');
    expect(await consolePage.evaluate(`document.querySelector('${row}').classList.contains('is-muted')`)).toBe(true);

    // Layout: presentation with the presenter as its source, then the speaker layout.
    await consolePage.selectOption('#layout-kind', 'presentation');
    await consolePage.selectOption('#layout-source', pid);
    await consolePage.click('#layout-apply');
    await waitFor(consolePage, `document.getElementById('layout-current').textContent.includes('presentation')`);
    expect((await api(`/api/events/${eventId}`)).json.layout).toEqual({ kind: 'presentation', sourceId: pid });
    await consolePage.selectOption('#layout-kind', 'speaker');
    await consolePage.click('#layout-apply');
    await waitFor(consolePage, `document.getElementById('layout-current').textContent === 'now: speaker'`);
    expect((await api(`/api/events/${eventId}`)).json.layout).toEqual({ kind: 'speaker' });

    // The program preview plays: decoded frames and advancing time.
    await waitFor(consolePage, `document.getElementById('program').videoWidth > 0`, 30_000);
    const t0 = (await consolePage.evaluate(`document.getElementById('program').currentTime`)) as number;
    await new Promise((r) => setTimeout(r, 1500));
    const t1 = (await consolePage.evaluate(`document.getElementById('program').currentTime`)) as number;
    expect(t1 - t0).toBeGreaterThan(0.5);
    expect(await consolePage.evaluate(`document.getElementById('program').videoWidth`)).toBe(640);

    // The tree: one node, this one, serving the console's own preview.
    await waitFor(consolePage, `document.querySelectorAll('#tree [data-testid="tree-node"]').length === 1 && document.querySelector('#tree [data-testid="tree-node"]').dataset.viewers === '1'`);
    const treeNode = (await consolePage.evaluate(
      `(() => { const g = document.querySelector('#tree [data-testid="tree-node"]'); return { id: g.dataset.id, role: g.dataset.role, text: g.textContent }; })()`,
    )) as { id: string; role: string; text: string };
    expect(treeNode).toMatchObject({ id: new URL(node.url).host, role: 'mixer' });
    expect(treeNode.text).toMatch(/1\/\d+ viewers/);

    // End the event in the UI: the API no longer knows it, the presenter's session is gone.
    await consolePage.click('#end-event');
    await waitFor(consolePage, `document.getElementById('event').hidden`);
    expect((await api(`/api/events/${eventId}`)).status).toBe(404);
    expect(await consolePage.locator(`#events tr[data-id="${eventId}"]`).count()).toBe(0);
    expect(node.edge.size).toBe(0);
    await ctx.close();
  }, 120_000);
});
