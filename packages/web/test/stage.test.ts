import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { McuNode } from '@mcu/server';
import { launchChromium, LOOPBACK_NODE, waitFor } from './chromium.js';

/**
 * Backstage and on air in real browsers: a presenter page publishing a 700 Hz tone joins backstage,
 * a viewer page plays the program, and the producer console previews the presenter alone and puts
 * it live. What each page hears is measured on its decoded audio (an AnalyserNode, dB).
 */
const ADMIN = 'stage-browser-admin-token-0123456789';
const TONE = 700;

let node: McuNode;
let browser: Browser;

beforeAll(async () => {
  // One small rendition: three Chromium pages share two cores with the mixer.
  node = new McuNode({ port: 0, adminToken: ADMIN, ...LOOPBACK_NODE, videoRenditions: [{ id: '360p', width: 640, height: 360, fps: 30 }] });
  await node.listen();
  browser = await launchChromium();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await node?.close();
});

const powerOf = (p: Page, expr: string) => p.evaluate(`${expr}.powerAt(${TONE})`) as Promise<number>;

describe('backstage and on air in Chromium', () => {
  it("the viewer does not hear a backstage presenter, the producer's preview does; Go live in the console puts it on air within a second", async () => {
    const res = await fetch(`${node.url}/api/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'stage-test', presentersJoin: 'backstage' }),
    });
    const ev = (await res.json()) as { id: string; tokens: Record<string, string> };
    const ctx = await browser.newContext();
    try {
      const presenter = await ctx.newPage();
      await presenter.goto(`${node.url}/publish/${ev.id}?token=${ev.tokens.presenter}&source=test&tone=${TONE}&size=320x180&autostart=1`);
      const viewer = await ctx.newPage();
      await viewer.goto(`${node.url}/watch/${ev.id}?token=${ev.tokens.viewer}`);
      for (const p of [presenter, viewer]) await waitFor(p, 'window.mcu && (window.mcu.connected || window.mcu.error)');
      for (const p of [presenter, viewer]) expect(await p.evaluate('window.mcu.error')).toBeNull();

      // The producer's console (logged in with the producer token: it opens its one event).
      const producer = await ctx.newPage();
      await producer.goto(node.url);
      await producer.fill('#token', ev.tokens.producer);
      await producer.click('#login');
      const backstageRow = '#participants-backstage tr[data-testid="participant"]';
      await producer.waitForSelector(backstageRow, { timeout: 15_000 });
      expect(await producer.locator('#participants-live tr[data-testid="participant"]').count()).toBe(0);
      const pid = (await producer.getAttribute(backstageRow, 'data-id'))!;
      expect(await producer.getAttribute(backstageRow, 'data-stage')).toBe('backstage');

      // Preview A alone, from its row.
      await producer.click(`${backstageRow} [data-testid="preview"]`);
      const probe = `window.mcuConsole.sourcePreviews.get(${JSON.stringify(pid)}).probe`;
      await waitFor(producer, `window.mcuConsole.sourcePreviews.get(${JSON.stringify(pid)})?.probe != null`);
      await waitFor(producer, `${probe}.powerAt(${TONE}) > -70`, 15_000);
      // The preview shows A's picture too (its own video, forwarded).
      await waitFor(producer, `(() => { const v = document.querySelector('${backstageRow} video[data-testid="source-preview"]'); return v && v.videoWidth > 0; })()`, 15_000);
      await waitFor(viewer, 'window.mcu.probe !== null');
      await new Promise((r) => setTimeout(r, 1500));
      const [previewHears, viewerHearsBackstage] = await Promise.all([powerOf(producer, probe), powerOf(viewer, 'window.mcu.probe')]);
      console.log(`backstage: preview ${previewHears.toFixed(1)} dB at ${TONE} Hz, viewer ${viewerHearsBackstage.toFixed(1)} dB`);
      expect(previewHears).toBeGreaterThan(-70);
      expect(viewerHearsBackstage).toBeLessThan(-100);
      expect(viewerHearsBackstage).toBeLessThan(previewHears - 30);
      // A's camera is in no composite while backstage (its video reaches the mixer, undecoded).
      const mixerEvent = node.registry.get(ev.id).mixer;
      expect(mixerEvent.videoMixer?.stats().sources[pid]).toMatchObject({ visible: false, framesDecoded: 0 });
      expect(mixerEvent.videoMixer!.regions.map((r) => r.sourceId)).toEqual([]);
      // The viewer is playing (the program goes on, silent).
      const before = (await viewer.evaluate('window.mcu.getStats()')) as { packetsReceived: number };
      expect(before.packetsReceived).toBeGreaterThan(50);

      // Go live, from the console; the viewer hears A within a second of the click.
      // Timed from the click as the page sees it (playwright's own click takes a few hundred ms on a
      // loaded machine before the page gets it).
      let onAirAt = 0;
      node.registry.get(ev.id).mixer.mixer.once('speakers', () => (onAirAt = Date.now()));
      await producer.evaluate(`document.addEventListener('click', () => { window.clickedAt ??= Date.now(); }, true)`);
      // The viewer page notes when it first hears the tone (checked every 20 ms, in the page).
      await viewer.evaluate(`window.heardAt = 0; const w = setInterval(() => { if (window.mcu.probe.powerAt(${TONE}) > -70) { window.heardAt = Date.now(); clearInterval(w); } }, 20)`);
      await producer.click(`${backstageRow} [data-testid="go-live"]`);
      await waitFor(viewer, 'window.heardAt > 0', 5000);
      const heardAt = (await viewer.evaluate('window.heardAt')) as number;
      const clickedAt = (await producer.evaluate('window.clickedAt')) as number;
      const tookMs = heardAt - clickedAt;
      console.log(`on air: the viewer heard the presenter ${tookMs} ms after the Go live click (in the program's speakers ${onAirAt - clickedAt} ms after it)`);
      expect(tookMs).toBeLessThan(1000);
      // On air in the composite too, from the next composed frame.
      expect(mixerEvent.videoMixer!.regions.map((r) => r.sourceId)).toEqual([pid]);
      const liveRow = `#participants-live tr[data-id="${pid}"]`;
      await producer.waitForSelector(liveRow, { timeout: 5000 });
      expect(await producer.locator(`${liveRow} [data-testid="to-backstage"]`).count()).toBe(1);
      // The preview went on across the move (same session, its video in the new row).
      expect(await powerOf(producer, probe)).toBeGreaterThan(-70);
      expect(await producer.locator(`${liveRow} video[data-testid="source-preview"]`).count()).toBe(1);

      // Back to backstage: the viewer stops hearing A.
      await producer.click(`${liveRow} [data-testid="to-backstage"]`);
      await waitFor(viewer, `window.mcu.probe.powerAt(${TONE}) < -100`, 5000);
      await producer.waitForSelector(`#participants-backstage tr[data-id="${pid}"]`, { timeout: 5000 });
    } finally {
      await ctx.close();
      await fetch(`${node.url}/api/events/${ev.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN}` } });
    }
  }, 90_000);
});
