import http from 'node:http';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { McuNode } from '@mcu/server';
import { pageFor, staticFile } from '../src/index.js';
import { launchChromium, LOOPBACK_NODE, waitFor } from './chromium.js';

const ADMIN = 'browser-test-admin-token-0123456789';

let node: McuNode;
let other: http.Server;
let otherOrigin: string;
let browser: Browser;

beforeAll(async () => {
  // One 720p rendition: the viewer plays it, and two cores are shared with four Chromium pages.
  node = new McuNode({ port: 0, adminToken: ADMIN, ...LOOPBACK_NODE, videoRenditions: [{ id: '720p', width: 1280, height: 720, fps: 30 }] });
  await node.listen();
  // The publishing page is served from another origin: WHIP must work cross-origin (CORS).
  other = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const name = url.pathname.startsWith('/static/') ? url.pathname.slice(8) : pageFor(url.pathname);
    const file = name ? await staticFile(name) : null;
    if (!file) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': file.type }).end(file.body);
  });
  other.listen(0, '127.0.0.2');
  await once(other, 'listening');
  otherOrigin = `http://127.0.0.2:${(other.address() as { port: number }).port}`;
  browser = await launchChromium();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  other?.close();
  await node?.close();
});

describe('browsers over WHIP and WHEP', () => {
  it('two presenters on another origin publish tones; each hears the other, the viewer hears both', async () => {
    const res = await fetch(`${node.url}/api/events`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
    const ev = (await res.json()) as { id: string; whip: string; tokens: Record<string, string> };
    const ctx = await browser.newContext();
    const publish = (tone: number, color: string) =>
      `${otherOrigin}/publish/${ev.id}?token=${ev.tokens.presenter}&whip=${encodeURIComponent(ev.whip)}&source=test&tone=${tone}&color=${encodeURIComponent(color)}&autostart=1`;
    const a = await ctx.newPage();
    const b = await ctx.newPage();
    const viewer = await ctx.newPage();
    await a.goto(publish(440, '#ff0000'));
    await b.goto(publish(1250, '#0000ff'));
    await viewer.goto(`${node.url}/watch/${ev.id}?token=${ev.tokens.viewer}`);
    for (const p of [a, b, viewer]) await waitFor(p, 'window.mcu && (window.mcu.connected || window.mcu.error)');
    for (const p of [a, b, viewer]) expect(await p.evaluate('window.mcu.error')).toBeNull();
    // Let selection settle and the analysers fill.
    await waitFor(a, 'window.mcu.probe !== null');
    await new Promise((r) => setTimeout(r, 4000));
    const power = (p: Page, f: number) => p.evaluate(`window.mcu.probe.powerAt(${f})`) as Promise<number>;
    const [a440, a1250, b440, b1250, v440, v1250] = await Promise.all([
      power(a, 440), power(a, 1250), power(b, 440), power(b, 1250), power(viewer, 440), power(viewer, 1250),
    ]);
    // dB from the AnalyserNode: presence is well above the floor (~ -140 dB), and a speaker's own
    // tone is at least 20 dB below the other's in its mix-minus.
    expect(a1250).toBeGreaterThan(-70);
    expect(a1250 - a440).toBeGreaterThan(20);
    expect(b440).toBeGreaterThan(-70);
    expect(b440 - b1250).toBeGreaterThan(20);
    expect(v440).toBeGreaterThan(-70);
    expect(v1250).toBeGreaterThan(-70);
    const stats = (await viewer.evaluate('window.mcu.getStats()')) as { packetsReceived: number; packetsLost: number };
    expect(stats.packetsReceived).toBeGreaterThan(100);
    expect(stats.packetsLost / Math.max(1, stats.packetsReceived)).toBeLessThan(0.02);
    const pub = (await a.evaluate('window.mcu.getStats()')) as { packetsSent: number; packetsReceived: number };
    expect(pub.packetsSent).toBeGreaterThan(100);
    expect(pub.packetsReceived).toBeGreaterThan(100);
    await ctx.close();
    // End the event: its video mixer (the test pages publish a canvas too) stops with it.
    await fetch(`${node.url}/api/events/${ev.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN}` } });
  }, 60_000);

  it('a viewer whose session the node ends (a drained or dead relay) plays again within a few seconds', async () => {
    const res = await fetch(`${node.url}/api/events`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
    const ev = (await res.json()) as { id: string; tokens: Record<string, string> };
    const ctx = await browser.newContext();
    const presenter = await ctx.newPage();
    await presenter.goto(`${node.url}/publish/${ev.id}?token=${ev.tokens.presenter}&source=test&tone=440&autostart=1`);
    const viewer = await ctx.newPage();
    await viewer.goto(`${node.url}/watch/${ev.id}?token=${ev.tokens.viewer}`);
    await waitFor(viewer, 'window.mcu && window.mcu.connected');
    await waitFor(viewer, 'window.mcu.getStats().then((s) => s.packetsReceived > 50)');
    const session = (await viewer.evaluate('window.mcu.session')) as string;
    const sid = new URL(session).pathname.split('/').pop()!;
    // The node ends the session without a word to the browser, as a drain or a crash does.
    const t0 = performance.now();
    node.edge.end('whep', ev.id, sid);
    await waitFor(viewer, `window.mcu.reconnects >= 1 && window.mcu.connected && window.mcu.session !== ${JSON.stringify(session)}`, 10_000);
    await waitFor(viewer, 'window.mcu.getStats().then((s) => s.packetsReceived > 20)', 10_000);
    const took = performance.now() - t0;
    console.log(`viewer playing again ${(took / 1000).toFixed(2)} s after its session ended (stalls seen: ${await viewer.evaluate('window.mcu.stalls')})`);
    // Without the stall watchdog Chromium waits for ICE consent to fail (disconnected after ~5 s+).
    expect(took).toBeLessThan(4000);
    await ctx.close();
    await fetch(`${node.url}/api/events/${ev.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN}` } });
  }, 60_000);

  it('two presenters publish red and blue canvases; the viewer decodes a 720p composite showing both', async () => {
    const res = await fetch(`${node.url}/api/events`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
    const ev = (await res.json()) as { id: string; whip: string; tokens: Record<string, string> };
    const ctx = await browser.newContext();
    // Small canvases: two Chromium encoders, a 720p decoder and our pipeline share two cores.
    const publish = (tone: number, color: string, name = '') =>
      `${otherOrigin}/publish/${ev.id}?token=${ev.tokens.presenter}&whip=${encodeURIComponent(ev.whip)}&source=test&size=320x180&tone=${tone}&color=${encodeURIComponent(color)}&name=${encodeURIComponent(name)}&autostart=1`;
    const red = await ctx.newPage();
    // The red presenter gives a name, the blue one none.
    await red.goto(publish(440, '#ff0000', 'Ada'));
    await waitFor(red, 'window.mcu && (window.mcu.connected || window.mcu.error)');
    const blue = await ctx.newPage();
    await blue.goto(publish(1250, '#0000ff'));
    await waitFor(blue, 'window.mcu && (window.mcu.connected || window.mcu.error)');
    const viewer = await ctx.newPage();
    await viewer.goto(`${node.url}/watch/${ev.id}?token=${ev.tokens.viewer}`);
    await waitFor(viewer, 'window.mcu && (window.mcu.connected || window.mcu.error)');
    expect(await viewer.evaluate('window.mcu.error')).toBeNull();
    // Both tiles in the grid: red on the left, blue on the right (the order presenters joined).
    await waitFor(
      viewer,
      `(() => { const s = window.mcu.sample([[0.25, 0.5], [0.75, 0.5]]); if (!s.width) return false;
        const [l, r] = s.colors; return l[0] > 150 && l[2] < 100 && r[2] > 150 && r[0] < 100; })()`,
      30_000,
    );
    const shot = (await viewer.evaluate('window.mcu.sample([[0.25, 0.5], [0.75, 0.5]])')) as { width: number; height: number; colors: number[][] };
    expect(shot.width).toBe(1280);
    expect(shot.height).toBe(720);
    // The red tile's bottom-left corner carries its presenter's name (white on black, 2× glyphs
    // over the letterbox bar); the blue tile's, with no name, stays black.
    const labels = (await viewer.evaluate(`window.mcu.sample([[${30 / 1280}, ${703 / 720}], [${670 / 1280}, ${703 / 720}]])`)) as { colors: number[][] };
    const brightness = (c: number[]) => (c[0] + c[1] + c[2]) / 3;
    expect(brightness(labels.colors[0]), `label area of the named tile: ${labels.colors[0]}`).toBeGreaterThan(45);
    expect(brightness(labels.colors[1]), `label area of the unnamed tile: ${labels.colors[1]}`).toBeLessThan(30);
    // Frame rate as the browser decodes it, over 4 s once the pipeline has settled.
    await new Promise((r) => setTimeout(r, 2000));
    const f0 = (await viewer.evaluate('window.mcu.getStats()')) as { framesDecoded: number };
    await new Promise((r) => setTimeout(r, 4000));
    const f1 = (await viewer.evaluate('window.mcu.getStats()')) as { framesDecoded: number };
    const fps = (f1.framesDecoded - f0.framesDecoded) / 4;
    console.log(`composite: ${shot.width}x${shot.height}, ${fps.toFixed(1)} fps, left ${shot.colors[0]}, right ${shot.colors[1]}`);
    if (fps < 25) {
      const v = node.registry.get(ev.id).mixer.videoMixer?.stats();
      console.log(JSON.stringify({ dropped: v?.dropped, renditions: v?.renditions, sources: Object.values(v?.sources ?? {}).map((x: any) => [x.framesAssembled, x.framesDecoded, x.lost, x.framesDropped]) }));
    }
    expect(fps).toBeGreaterThanOrEqual(25);
    await ctx.close();
    await fetch(`${node.url}/api/events/${ev.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN}` } });
  }, 90_000);
});
