/**
 * The publish and watch pages in headless Firefox (Debian's firefox-esr over WebDriver BiDi): a
 * presenter publishes a test tone and canvas over WHIP, a viewer plays the program over WHEP,
 * hears the tone and plays the video.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'puppeteer-core';
import { McuNode } from '@mcu/server';
import { LOOPBACK_NODE } from './chromium.js';
import { launchFirefox, waitFor, type FirefoxSession } from './firefox.js';

const ADMIN = 'firefox-test-admin-token-0123456789';
let node: McuNode;
let firefox: FirefoxSession;

beforeAll(async () => {
  // One small rendition: the viewer needs frames, not 720p, on two shared cores.
  node = new McuNode({ port: 0, adminToken: ADMIN, ...LOOPBACK_NODE, videoRenditions: [{ id: '360p', width: 640, height: 360, fps: 15 }] });
  await node.listen();
  firefox = await launchFirefox();
}, 60_000);

afterAll(async () => {
  await firefox?.close();
  await node?.close();
});

describe('Firefox over WHIP and WHEP', () => {
  it('a Firefox presenter publishes a 440 Hz tone; a Firefox viewer hears it and plays the program video', async () => {
    const res = await fetch(`${node.url}/api/events`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
    const ev = (await res.json()) as { id: string; tokens: Record<string, string> };
    const errors: string[] = [];
    const open = async (url: string): Promise<Page> => {
      const page = await firefox.browser.newPage();
      page.on('pageerror', (e) => errors.push(String(e)));
      await page.goto(url);
      await waitFor(page, 'window.mcu && (window.mcu.connected || window.mcu.error)');
      return page;
    };
    const presenter = await open(`${node.url}/publish/${ev.id}?token=${ev.tokens.presenter}&source=test&size=320x180&tone=440&autostart=1`);
    expect(await presenter.evaluate('window.mcu.error')).toBeNull();
    const viewer = await open(`${node.url}/watch/${ev.id}?token=${ev.tokens.viewer}`);
    expect(await viewer.evaluate('window.mcu.error')).toBeNull();
    expect(errors).toEqual([]);

    // The tone, heard by the viewer: well above the floor (~ -140 dB) at 440 Hz, and 20 dB above a
    // frequency nobody sends.
    await waitFor(viewer, 'window.mcu.probe !== null && window.mcu.probe.powerAt(440) > -70', 20_000);
    const power = (f: number) => viewer.evaluate(`window.mcu.probe.powerAt(${f})`) as Promise<number>;
    const [v440, v1250] = [await power(440), await power(1250)];
    console.log(`firefox viewer: 440 Hz ${v440.toFixed(1)} dB, 1250 Hz ${v1250.toFixed(1)} dB`);
    expect(v440).toBeGreaterThan(-70);
    expect(v440 - v1250).toBeGreaterThan(20);

    // The program video plays: decoded at the rendition's size, its clock advancing.
    await waitFor(viewer, `document.getElementById('player').videoWidth > 0`, 20_000);
    const t0 = (await viewer.evaluate(`document.getElementById('player').currentTime`)) as number;
    await new Promise((r) => setTimeout(r, 2000));
    const video = (await viewer.evaluate(`(() => { const v = document.getElementById('player');
      return { width: v.videoWidth, height: v.videoHeight, time: v.currentTime, paused: v.paused }; })()`)) as { width: number; height: number; time: number; paused: boolean };
    console.log(`firefox viewer video: ${video.width}x${video.height}, currentTime ${t0.toFixed(2)} -> ${video.time.toFixed(2)}`);
    expect(video.width).toBe(640);
    expect(video.height).toBe(360);
    expect(video.paused).toBe(false);
    expect(video.time - t0).toBeGreaterThan(1);

    const stats = (await viewer.evaluate('window.mcu.getStats()')) as { packetsReceived: number; packetsLost: number; framesDecoded: number };
    expect(stats.packetsReceived).toBeGreaterThan(100);
    expect(stats.framesDecoded).toBeGreaterThan(10);
    const pub = (await presenter.evaluate('window.mcu.getStats()')) as { packetsSent: number };
    expect(pub.packetsSent).toBeGreaterThan(100);
    expect(errors).toEqual([]);
    await presenter.close();
    await viewer.close();
    await fetch(`${node.url}/api/events/${ev.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN}` } });
  }, 60_000);
});
