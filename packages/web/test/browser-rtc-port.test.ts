/**
 * Chromium publishing and watching over one UDP port (`rtcPort`): every WHIP and WHEP session of
 * the node on the same socket, demultiplexed by ICE username and remote address. The audio each
 * page hears is measured in the page (AnalyserNode), as in browser.test.ts.
 */
import dgram from 'node:dgram';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { McuNode } from '@mcu/server';
import { launchChromium, LOOPBACK_NODE, waitFor } from './chromium.js';

const ADMIN = 'browser-test-admin-token-0123456789';
let node: McuNode;
let browser: Browser;
let rtcPort: number;

beforeAll(async () => {
  const s = dgram.createSocket('udp4');
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  rtcPort = s.address().port;
  s.close();
  // A small rendition: the test pages publish a canvas too, and two cores are shared.
  node = new McuNode({ port: 0, adminToken: ADMIN, ...LOOPBACK_NODE, rtcPort, videoRenditions: [{ id: '180p', width: 320, height: 180, fps: 15 }] });
  await node.listen();
  browser = await launchChromium();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await node?.close();
});

describe('browsers over one WebRTC port', () => {
  it('two presenters and a viewer in Chromium, all through the one UDP port: each presenter hears the other, the viewer both', async () => {
    const res = await fetch(`${node.url}/api/events`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
    const ev = (await res.json()) as { id: string; whip: string; tokens: Record<string, string> };
    const ctx = await browser.newContext();
    const publish = (tone: number) => `${node.url}/publish/${ev.id}?token=${ev.tokens.presenter}&source=test&tone=${tone}&size=160x90&autostart=1`;
    const a = await ctx.newPage();
    const b = await ctx.newPage();
    const viewer = await ctx.newPage();
    await a.goto(publish(440));
    await b.goto(publish(1250));
    await viewer.goto(`${node.url}/watch/${ev.id}?token=${ev.tokens.viewer}`);
    for (const p of [a, b, viewer]) await waitFor(p, 'window.mcu && (window.mcu.connected || window.mcu.error)', 30_000);
    for (const p of [a, b, viewer]) expect(await p.evaluate('window.mcu.error')).toBeNull();
    await waitFor(a, 'window.mcu.probe !== null');
    await new Promise((r) => setTimeout(r, 4000));
    const power = (p: Page, f: number) => p.evaluate(`window.mcu.probe.powerAt(${f})`) as Promise<number>;
    const [a440, a1250, b440, b1250, v440, v1250] = await Promise.all([power(a, 440), power(a, 1250), power(b, 440), power(b, 1250), power(viewer, 440), power(viewer, 1250)]);
    expect(a1250).toBeGreaterThan(-70);
    expect(a1250 - a440).toBeGreaterThan(20);
    expect(b440).toBeGreaterThan(-70);
    expect(b440 - b1250).toBeGreaterThan(20);
    expect(v440).toBeGreaterThan(-70);
    expect(v1250).toBeGreaterThan(-70);
    const stats = (await viewer.evaluate('window.mcu.getStats()')) as { packetsReceived: number; packetsLost: number };
    expect(stats.packetsReceived).toBeGreaterThan(100);
    // All three sessions on the one port: each browser's address proved by STUN and routed there.
    const port = node.edge.stats().rtcPort!;
    expect(port.port).toBe(rtcPort);
    expect(port.routes).toBeGreaterThanOrEqual(3);
    expect(port.stunRouted).toBeGreaterThanOrEqual(3);
    expect(port.dropped.bad_integrity ?? 0).toBe(0);
    await ctx.close();
    await fetch(`${node.url}/api/events/${ev.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN}` } });
  }, 90_000);
});
