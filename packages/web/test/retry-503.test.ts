/**
 * The pages try again when the node answers 503 (it serves its maximum of sessions, is draining,
 * or closed the session while answering it): the presenter page on its first publish as well as
 * after a failure, the player always. Such a failure is `window.mcu.retrying`, not `error`, which
 * is for what the page gave up on.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { McuNode } from '@mcu/server';
import { WebRtcClient } from '../../webrtc/test/client.js';
import { launchChromium, LOOPBACK_NODE, waitFor } from './chromium.js';

const ADMIN = 'retry-503-admin-token-0123456789';
let node: McuNode;
let browser: Browser;

beforeAll(async () => {
  // One WebRTC session at a time: a second one is a 503 with Retry-After.
  node = new McuNode({ port: 0, adminToken: ADMIN, ...LOOPBACK_NODE, maxRtcSessions: 1 });
  await node.listen();
  browser = await launchChromium();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await node?.close();
});

describe('pages and a 503', () => {
  it('the presenter page and the player wait out a full node and then connect', async () => {
    const res = await fetch(`${node.url}/api/events`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
    const ev = (await res.json()) as { id: string; whip: string; whep: string; tokens: Record<string, string> };
    const holder = await WebRtcClient.connect('whep', ev.whep, ev.tokens.viewer);
    const ctx = await browser.newContext();
    const presenter = await ctx.newPage();
    await presenter.goto(`${node.url}/publish/${ev.id}?token=${ev.tokens.presenter}&source=test&tone=500&autostart=1`);
    await waitFor(presenter, 'window.mcu && window.mcu.retrying !== null', 15_000);
    expect(await presenter.evaluate('window.mcu.retrying')).toMatch(/maximum of 1 WebRTC sessions/);
    expect(await presenter.evaluate('window.mcu.error')).toBeNull();
    expect(await presenter.evaluate('window.mcu.connected')).toBe(false);
    // The slot frees: the page publishes on its next attempt, with nobody clicking anything.
    expect(await holder.hangUp()).toBe(200);
    await waitFor(presenter, 'window.mcu.connected', 20_000);
    expect(await presenter.evaluate('[window.mcu.error, window.mcu.retrying]')).toEqual([null, null]);
    expect(node.edge.sessionCount('whip', ev.id)).toBe(1);

    // Now the presenter holds the one slot: the player waits until the presenter stops.
    const viewer = await ctx.newPage();
    await viewer.goto(`${node.url}/watch/${ev.id}?token=${ev.tokens.viewer}`);
    await waitFor(viewer, 'window.mcu && window.mcu.retrying !== null', 15_000);
    expect(await viewer.evaluate('window.mcu.error')).toBeNull();
    await presenter.click('#stop');
    await waitFor(viewer, 'window.mcu.connected', 20_000);
    expect(await viewer.evaluate('[window.mcu.error, window.mcu.retrying]')).toEqual([null, null]);
    expect(node.edge.sessionCount('whep', ev.id)).toBe(1);
    await ctx.close();
  }, 90_000);
});
