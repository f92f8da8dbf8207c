/**
 * The producer's workflow of issue #14 in Chromium, four pages on one node, every step measured on
 * the decoded audio of a page (an AnalyserNode, dB at a tone's frequency):
 *  1. presenter A (440 Hz) joins backstage (the event's presentersJoin): the viewers do not hear it,
 *     the producer's `?source=` preview of A in the console does;
 *  2. the producer clicks Go live: the second viewer hears A within a second of the click;
 *  3. the first viewer (a public link: it types its name) raises its hand on the watch page, the
 *     producer invites it backstage from the console: its page publishes a 1250 Hz tone over WHIP
 *     with the invitation's grant, out of the program (the second viewer does not hear it), hearing
 *     the program without itself; Go live on the guest's row: the second viewer hears both tones;
 *  4. the guest leaves the stage: its session and hand end, it watches (and hears) the program again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { McuNode } from '@mcu/server';
import { launchChromium, LOOPBACK_NODE, waitFor } from './chromium.js';

const ADMIN = 'production-browser-admin-token-0123456789';
const A = 440;
const GUEST = 1250;
/** A tone present in a page's program is above this (dB); absent tones measure below -100. */
const PRESENT = -70;

let node: McuNode;
let browser: Browser;

beforeAll(async () => {
  // One small rendition: four Chromium pages share two cores with the mixer.
  node = new McuNode({ port: 0, adminToken: ADMIN, ...LOOPBACK_NODE, videoRenditions: [{ id: '180p', width: 320, height: 180, fps: 15 }] });
  await node.listen();
  browser = await launchChromium();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await node?.close();
});

const power = (p: Page, expr: string, f: number) => p.evaluate(`${expr}.powerAt(${f})`) as Promise<number>;

/** Notes in the page when `expr` first hears `freq` (checked every 20 ms in the page): `window.heard[freq]`. */
async function noteWhenHeard(p: Page, expr: string, freq: number): Promise<void> {
  await p.evaluate(`(window.heard ??= {})[${freq}] = 0; { const w = setInterval(() => { if (${expr} && ${expr}.powerAt(${freq}) > ${PRESENT}) { window.heard[${freq}] = Date.now(); clearInterval(w); } }, 20); }`);
}

describe("the producer's workflow in Chromium: backstage, on air, a guest from the audience", () => {
  it('A joins backstage (previewed, not heard), goes live (heard within 1 s); a viewer raises its hand, is invited backstage then live, is heard with A by another viewer, leaves and watches again', async () => {
    const res = await fetch(`${node.url}/api/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'production-test', presentersJoin: 'backstage' }),
    });
    const ev = (await res.json()) as { id: string; tokens: Record<string, string> };
    const ctx = await browser.newContext();
    const t0 = performance.now();
    try {
      const presenter = await ctx.newPage();
      await presenter.goto(`${node.url}/publish/${ev.id}?token=${ev.tokens.presenter}&source=test&tone=${A}&size=320x180&autostart=1`);
      // The first viewer's link has no name in its token: the page asks for one when it raises its hand.
      const guest = await ctx.newPage();
      await guest.goto(`${node.url}/watch/${ev.id}?token=${ev.tokens.viewer}&guestTone=${GUEST}`);
      const viewer = await ctx.newPage();
      await viewer.goto(`${node.url}/watch/${ev.id}?token=${ev.tokens.viewer}`);
      for (const p of [presenter, guest, viewer]) await waitFor(p, 'window.mcu && (window.mcu.connected || window.mcu.error)');
      for (const p of [presenter, guest, viewer]) expect(await p.evaluate('window.mcu.error')).toBeNull();
      for (const p of [guest, viewer]) await waitFor(p, 'window.mcu.probe !== null && window.mcu.nodeOrigin !== null');

      // The producer's console (the producer token opens its one event); its program preview off: two cores.
      const producer = await ctx.newPage();
      await producer.goto(node.url);
      await producer.fill('#token', ev.tokens.producer);
      await producer.click('#login');
      const backstageRows = '#participants-backstage tr[data-testid="participant"]';
      await producer.waitForSelector(backstageRows, { timeout: 15_000 });
      if ((await producer.textContent('#preview-toggle')) === 'Stop preview') await producer.click('#preview-toggle');
      expect(await producer.locator('#participants-live tr[data-testid="participant"]').count()).toBe(0);
      const pidA = (await producer.getAttribute(backstageRows, 'data-id'))!;

      // 1. A backstage: the producer's preview of A hears it, neither viewer does.
      await producer.click(`${backstageRows} [data-testid="preview"]`);
      const previewA = `window.mcuConsole.sourcePreviews.get(${JSON.stringify(pidA)}).probe`;
      await waitFor(producer, `window.mcuConsole.sourcePreviews.get(${JSON.stringify(pidA)})?.probe != null`);
      await waitFor(producer, `${previewA}.powerAt(${A}) > ${PRESENT}`, 15_000);
      // The preview shows A's picture too (its own video, forwarded); A is in no composite.
      await waitFor(producer, `(() => { const v = document.querySelector('${backstageRows} video[data-testid="source-preview"]'); return v && v.videoWidth > 0; })()`, 15_000);
      const mixerEvent = node.registry.get(ev.id).mixer;
      expect(mixerEvent.videoMixer!.regions.map((r) => r.sourceId)).toEqual([]);
      await new Promise((r) => setTimeout(r, 1000));
      const [previewHears, viewerHears, guestHears] = await Promise.all([power(producer, previewA, A), power(viewer, 'window.mcu.probe', A), power(guest, 'window.mcu.probe', A)]);
      console.log(`A backstage: producer's preview ${previewHears.toFixed(1)} dB at ${A} Hz, viewers ${viewerHears.toFixed(1)} / ${guestHears.toFixed(1)} dB`);
      expect(previewHears).toBeGreaterThan(PRESENT);
      expect(viewerHears).toBeLessThan(-100);
      expect(guestHears).toBeLessThan(-100);
      expect((await viewer.evaluate('window.mcu.getStats()')) as { packetsReceived: number }).toMatchObject({ packetsReceived: expect.any(Number) });

      // 2. Go live from the console: timed from the click as the page sees it to the first 20 ms
      //    check in the viewer's page that hears A.
      await producer.evaluate(`document.addEventListener('click', () => { window.clickedAt ??= Date.now(); }, true)`);
      await noteWhenHeard(viewer, 'window.mcu.probe', A);
      await producer.click(`${backstageRows}[data-id="${pidA}"] [data-testid="go-live"]`);
      await waitFor(viewer, `window.heard[${A}] > 0`, 5000);
      const onAirMs = ((await viewer.evaluate(`window.heard[${A}]`)) as number) - ((await producer.evaluate('window.clickedAt')) as number);
      console.log(`on air: the viewer heard A ${onAirMs} ms after the Go live click`);
      expect(onAirMs).toBeLessThan(1000);
      await producer.waitForSelector(`#participants-live tr[data-id="${pidA}"]`, { timeout: 5000 });
      expect(mixerEvent.videoMixer!.regions.map((r) => r.sourceId)).toEqual([pidA]);
      await waitFor(guest, `window.mcu.probe.powerAt(${A}) > ${PRESENT}`, 5000);
      // What the viewer measures at the guest's frequency with A alone in the program (Opus's noise
      // around a loud tone): the floor the guest backstage is compared with.
      await new Promise((r) => setTimeout(r, 500));
      const floorGuest = await power(viewer, 'window.mcu.probe', GUEST);

      // 3. The first viewer raises its hand from the watch page.
      expect(await guest.isVisible('[data-testid="viewer-name"]')).toBe(true);
      await guest.fill('[data-testid="viewer-name"]', 'Quinn');
      await guest.click('[data-testid="raise-hand"]');
      await waitFor(guest, 'window.mcu.hand && window.mcu.hand.state === "raised"');
      expect(await guest.isVisible('[data-testid="lower-hand"]')).toBe(true);
      await producer.waitForSelector('[data-testid="hand"]', { timeout: 10_000 });
      expect(await producer.textContent('[data-testid="hand"] [data-testid="hand-name"]')).toBe('Quinn');
      await producer.waitForFunction(`/\\d+ s/.test(document.querySelector('[data-testid="hand-waiting"]')?.textContent ?? '')`);

      // The producer invites it backstage: its page publishes its tone, out of the program.
      const tInvite = performance.now();
      await producer.click('[data-testid="hand"] [data-testid="invite"][data-stage="backstage"]');
      await waitFor(guest, 'window.mcu.stage && window.mcu.stage.connected', 15_000);
      console.log(`invite click → guest connected backstage: ${((performance.now() - tInvite) / 1000).toFixed(2)} s`);
      expect(await guest.isVisible('[data-testid="leave-stage"]')).toBe(true);
      expect(await guest.textContent('#stage-name')).toBe('backstage');
      expect(await viewer.evaluate('[window.mcu.stage, window.mcu.connected]')).toEqual([null, true]);
      const guestRow = producer.locator(backstageRows, { hasText: 'Quinn' });
      await guestRow.waitFor({ timeout: 10_000 });
      const pidGuest = (await guestRow.getAttribute('data-id'))!;
      expect(pidGuest).toMatch(/^guest-/);
      await producer.waitForSelector('[data-testid="hand"][data-state="on_stage"]');
      // On stage its hand is neither invited again nor lowered from the queue (Kick ends it).
      expect(await producer.isDisabled('[data-testid="hand"] [data-testid="lower-hand"]')).toBe(true);
      expect(await producer.isDisabled('[data-testid="hand"] [data-testid="invite"][data-stage="live"]')).toBe(true);
      // Backstage the guest hears the program (A), not itself; the viewer hears A, not the guest.
      await waitFor(guest, `window.mcu.probe && window.mcu.probe.powerAt(${A}) > ${PRESENT}`, 15_000);
      await new Promise((r) => setTimeout(r, 1500));
      const backstage = {
        viewerA: await power(viewer, 'window.mcu.probe', A),
        viewerGuest: await power(viewer, 'window.mcu.probe', GUEST),
        guestA: await power(guest, 'window.mcu.probe', A),
        guestSelf: await power(guest, 'window.mcu.probe', GUEST),
      };
      console.log(`guest backstage: viewer hears A ${backstage.viewerA.toFixed(1)} dB, the guest ${backstage.viewerGuest.toFixed(1)} dB (${floorGuest.toFixed(1)} dB at ${GUEST} Hz before it joined); the guest hears A ${backstage.guestA.toFixed(1)} dB, itself ${backstage.guestSelf.toFixed(1)} dB`);
      expect(backstage.viewerA).toBeGreaterThan(PRESENT);
      // (Opus's noise around A varies by ±5 dB from one second to the next; a guest in the program is at A's level.)
      expect(backstage.viewerGuest).toBeLessThan(Math.min(PRESENT, floorGuest + 20));
      expect(mixerEvent.mixer.speakerIds).toEqual([pidA]);
      expect(backstage.guestA - backstage.guestSelf).toBeGreaterThan(20);

      // Go live on the guest's row: the second viewer hears both tones.
      await producer.evaluate('window.clickedAt = undefined');
      await noteWhenHeard(viewer, 'window.mcu.probe', GUEST);
      await producer.click(`#participants-backstage tr[data-id="${pidGuest}"] [data-testid="go-live"]`);
      await waitFor(viewer, `window.heard[${GUEST}] > 0`, 5000);
      const guestOnAirMs = ((await viewer.evaluate(`window.heard[${GUEST}]`)) as number) - ((await producer.evaluate('window.clickedAt')) as number);
      console.log(`guest on air: the viewer heard it ${guestOnAirMs} ms after the Go live click`);
      expect(guestOnAirMs).toBeLessThan(1000);
      await new Promise((r) => setTimeout(r, 1000));
      const [bothA, bothGuest, mmA, mmSelf] = [await power(viewer, 'window.mcu.probe', A), await power(viewer, 'window.mcu.probe', GUEST), await power(guest, 'window.mcu.probe', A), await power(guest, 'window.mcu.probe', GUEST)];
      console.log(`guest live: viewer hears A ${bothA.toFixed(1)} dB and the guest ${bothGuest.toFixed(1)} dB; the guest's mix-minus: A ${mmA.toFixed(1)} dB, itself ${mmSelf.toFixed(1)} dB`);
      expect(bothA).toBeGreaterThan(PRESENT);
      expect(bothGuest).toBeGreaterThan(PRESENT);
      expect(bothGuest - backstage.viewerGuest).toBeGreaterThan(40);
      expect(mmA - mmSelf).toBeGreaterThan(20);
      await producer.waitForSelector(`#participants-live tr[data-id="${pidGuest}"]`, { timeout: 5000 });
      // The guest's page shows where it is now.
      await waitFor(guest, 'window.mcu.stage.stage === "live"', 5000);
      expect(await guest.textContent('#stage-name')).toBe('live');

      // 4. The guest leaves: its WHIP session ends, its hand is done, it watches the program again.
      await guest.click('[data-testid="leave-stage"]');
      await waitFor(guest, '!window.mcu.stage && window.mcu.connected && window.mcu.leftStage === 1', 20_000);
      await waitFor(guest, `window.mcu.probe && window.mcu.probe.powerAt(${A}) > ${PRESENT}`, 20_000);
      expect(await guest.isVisible('[data-testid="raise-hand"]')).toBe(true);
      await waitFor(viewer, `window.mcu.probe.powerAt(${GUEST}) < -85`, 20_000);
      expect(node.registry.get(ev.id).mixer.participants().map((p) => p.id)).toEqual([pidA]);
      await producer.waitForFunction(`document.querySelectorAll('[data-testid="hand"]').length === 0`);
      await producer.waitForSelector(`tr[data-testid="participant"][data-id="${pidGuest}"]`, { state: 'detached', timeout: 5000 });
      // Back to backstage for A: the viewers stop hearing it.
      await producer.click(`#participants-live tr[data-id="${pidA}"] [data-testid="to-backstage"]`);
      await waitFor(viewer, `window.mcu.probe.powerAt(${A}) < -100`, 5000);
      await producer.waitForSelector(`#participants-backstage tr[data-id="${pidA}"]`, { timeout: 5000 });
      console.log(`whole flow: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    } finally {
      await ctx.close();
      await fetch(`${node.url}/api/events/${ev.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN}` } });
    }
  }, 90_000);
});
