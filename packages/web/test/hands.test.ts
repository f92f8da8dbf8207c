/**
 * A viewer brought on stage, in Chromium: a presenter publishes a 440 Hz tone, a viewer of the
 * public link types its name and raises its hand (with a token of its own), the producer sees it in the console and invites it live, the viewer's
 * page publishes a 1250 Hz tone over WHIP with the invitation's grant (hearing the mix-minus, not
 * itself), a second viewer hears both tones, the guest leaves the stage and watches the program again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { McuNode } from '@mcu/server';
import { launchChromium, LOOPBACK_NODE, waitFor } from './chromium.js';

const ADMIN = 'hands-browser-admin-token-0123456789';

let node: McuNode;
let browser: Browser;

beforeAll(async () => {
  // One small rendition: four pages and the node share two cores.
  node = new McuNode({ port: 0, adminToken: ADMIN, ...LOOPBACK_NODE, videoRenditions: [{ id: '180p', width: 320, height: 180, fps: 15 }] });
  await node.listen();
  browser = await launchChromium();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await node?.close();
});

const power = (p: Page, f: number) => p.evaluate(`window.mcu.probe ? window.mcu.probe.powerAt(${f}) : -Infinity`) as Promise<number>;

/** Waits until the page hears `freq` (dB above `floor`), polling its analyser; returns the time it took. */
async function hears(p: Page, freq: number, floor = -70, timeoutMs = 10_000): Promise<number> {
  const t0 = performance.now();
  await waitFor(p, `window.mcu.probe && window.mcu.probe.powerAt(${freq}) > ${floor}`, timeoutMs);
  return performance.now() - t0;
}

describe('raising a hand and coming on stage (Chromium)', () => {
  it('a viewer raises its hand, is invited from the console, is heard by another viewer, leaves and watches again', async () => {
    const res = await fetch(`${node.url}/api/events`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
    const ev = (await res.json()) as { id: string; tokens: Record<string, string> };
    const ctx = await browser.newContext();

    const presenter = await ctx.newPage();
    await presenter.goto(`${node.url}/publish/${ev.id}?token=${ev.tokens.presenter}&source=test&tone=440&size=320x180&autostart=1`);
    await waitFor(presenter, 'window.mcu && window.mcu.connected');

    // The guest's token carries no name: the page asks for one.
    const guest = await ctx.newPage();
    await guest.goto(`${node.url}/watch/${ev.id}?token=${ev.tokens.viewer}&guestTone=1250`);
    const other = await ctx.newPage();
    await other.goto(`${node.url}/watch/${ev.id}?token=${ev.tokens.viewer}`);
    for (const p of [guest, other]) await waitFor(p, 'window.mcu && window.mcu.connected && window.mcu.nodeOrigin !== null');
    await hears(other, 440);

    expect(await guest.isVisible('[data-testid="viewer-name"]')).toBe(true);
    await guest.fill('[data-testid="viewer-name"]', 'Quinn');
    await guest.click('[data-testid="raise-hand"]');
    await waitFor(guest, 'window.mcu.hand && window.mcu.hand.state === "raised"');
    expect(await guest.isVisible('[data-testid="lower-hand"]')).toBe(true);

    // The producer's console: the hand in the queue with its name and waiting time.
    const console_ = await ctx.newPage();
    await console_.goto(`${node.url}/`);
    await console_.fill('#token', ev.tokens.producer);
    await console_.click('#login');
    await console_.waitForSelector('[data-testid="hand"]', { timeout: 10_000 });
    // Its program preview is not needed here: two cores.
    if ((await console_.textContent('#preview-toggle')) === 'Stop preview') await console_.click('#preview-toggle');
    expect(await console_.textContent('[data-testid="hand"] [data-testid="hand-name"]')).toBe('Quinn');
    await console_.waitForFunction(`/\\d+ s/.test(document.querySelector('[data-testid="hand-waiting"]')?.textContent ?? '')`);

    const tInvite = performance.now();
    await console_.click('[data-testid="hand"] [data-testid="invite"][data-stage="live"]');
    await waitFor(guest, 'window.mcu.stage && window.mcu.stage.connected', 15_000);
    console.log(`invite click → guest on stage (WHIP connected): ${((performance.now() - tInvite) / 1000).toFixed(2)} s`);
    expect(await guest.isVisible('[data-testid="leave-stage"]')).toBe(true);
    // The other page opened the same public link: it has no hand of its own and stays a viewer.
    expect(await other.evaluate('[window.mcu.stage, window.mcu.leftStage ?? 0, window.mcu.connected]')).toEqual([null, 0, true]);
    expect(await guest.isVisible('[data-testid="raise-hand"]')).toBe(false);

    // The other viewer hears both tones; the guest hears the presenter but not itself.
    const tHeard = await hears(other, 1250, -70, 15_000);
    console.log(`guest's tone in the second viewer's program ${(tHeard / 1000).toFixed(2)} s after the guest connected`);
    expect(await power(other, 440)).toBeGreaterThan(-70);
    await hears(guest, 440);
    await new Promise((r) => setTimeout(r, 1500));
    const [g440, g1250] = [await power(guest, 440), await power(guest, 1250)];
    console.log(`guest's mix-minus: 440 Hz ${g440.toFixed(1)} dB, its own 1250 Hz ${g1250.toFixed(1)} dB`);
    expect(g440 - g1250).toBeGreaterThan(20);
    // The console shows the guest by name among the participants, and its hand on stage.
    await console_.waitForFunction(`[...document.querySelectorAll('[data-testid="participant"]')].some((r) => r.textContent.includes('Quinn'))`);
    await console_.waitForSelector('[data-testid="hand"][data-state="on_stage"]');

    // The guest leaves: its WHIP session ends, its hand is done, it watches the program again.
    await guest.click('[data-testid="leave-stage"]');
    await waitFor(guest, '!window.mcu.stage && window.mcu.connected && window.mcu.leftStage === 1', 20_000);
    await hears(guest, 440, -70, 20_000);
    expect(await guest.isVisible('[data-testid="raise-hand"]')).toBe(true);
    // Its tone leaves the program (present is above -70 dB).
    await waitFor(other, `window.mcu.probe.powerAt(1250) < ${-85}`, 20_000);
    expect(node.registry.get(ev.id).mixer.participants().map((p) => p.id).some((id) => id.startsWith('guest-'))).toBe(false);
    await console_.waitForFunction(`document.querySelectorAll('[data-testid="hand"]').length === 0`);
    await ctx.close();
    await fetch(`${node.url}/api/events/${ev.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN}` } });
  }, 120_000);
});
