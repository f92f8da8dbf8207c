/**
 * A presenter page and a viewer page (through a relay) keep going across a SIGKILL of the mixer
 * holding the event, without a reload: the viewer hears the presenter's tone again on the same
 * WHEP session, and the presenter page re-published on its own and says it reconnected.
 *
 * Two mixers on a dedicated nats-server: m1 (a child process, killed) holds the event; the pages
 * are served by m2 and use m2's URLs (as they would a load balancer's): m2 redirects the WHIP offer
 * to m1 while m1 holds the event, places the viewer on the relay, and after the kill holds the event.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NatsBus, type Bus } from '@mcu/control';
import { McuNode } from '@mcu/server';
import { MixerRole, RelayRole } from '@mcu/cluster';
import { NatsServerProcess } from '../../control/test/natsServer.js';
import { launchChromium, LOOPBACK_NODE, waitFor } from './chromium.js';

const SECRET = 'failover-browser-secret-0123456789abcdef';
const ADMIN = 'failover-browser-admin-0123456789';
const TONE = 660;

describe('browsers across a mixer failover', () => {
  let server: NatsServerProcess;
  let storeDir: string;
  let browser: Browser;
  let child: ChildProcess;
  let node2: McuNode;
  let m2: MixerRole;
  let relay: RelayRole;
  const buses: Bus[] = [];

  beforeAll(async () => {
    storeDir = await mkdtemp(join(tmpdir(), 'mcu-fobrowser-'));
    server = await NatsServerProcess.start(['-js', '-sd', storeDir]);
    const cluster = `fb${Date.now().toString(36)}`;
    const bus = async () => {
      const b = await NatsBus.connect({ servers: server.url, name: 'fobrowser', reconnectTimeWaitMs: 100 });
      buses.push(b);
      return b;
    };
    node2 = new McuNode({ port: 0, adminToken: ADMIN, tokenSecret: SECRET, ...LOOPBACK_NODE });
    await node2.listen();
    m2 = await MixerRole.start({ node: node2, bus: await bus(), cluster, nodeId: 'm2', tokenSecret: SECRET });
    relay = await RelayRole.start({ bus: await bus(), cluster, nodeId: 'r1', tokenSecret: SECRET, adminToken: ADMIN, iceAllow: LOOPBACK_NODE.iceAllow, iceHostAddresses: LOOPBACK_NODE.iceHostAddresses });
    const script = fileURLToPath(new URL('../../cluster/test/mixerChild.ts', import.meta.url));
    child = spawn(process.execPath, ['--import', 'tsx', script, server.url, cluster, 'm1', SECRET, ADMIN], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (b: Buffer) => {
        out += b.toString();
        if (/ready m1 /.test(out)) resolve();
      });
      child.once('exit', (code) => reject(new Error(`mixer child exited ${code}`)));
    });
    browser = await launchChromium();
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await relay?.close();
    await m2?.close();
    await node2?.close();
    for (const b of buses) await b.close().catch(() => undefined);
    await server?.kill();
    if (storeDir) await rm(storeDir, { recursive: true, force: true });
  });

  it('the viewer hears the tone again on the same session and the presenter page says it reconnected', async () => {
    for (let i = 0; i < 100 && !(m2.controller.registry.has('m1') && m2.controller.registry.has('r1')); i++) await new Promise((r) => setTimeout(r, 50));
    const m1Url = m2.controller.registry.get('m1')!.info.http;
    const res = await fetch(`${m1Url}/api/events?placed=1`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
    const ev = (await res.json()) as { id: string; tokens: Record<string, string> };
    for (let i = 0; i < 100 && m2.leases.holderOf(ev.id)?.holder !== 'm1'; i++) await new Promise((r) => setTimeout(r, 50));
    expect(m2.leases.holderOf(ev.id)?.holder).toBe('m1');

    const ctx = await browser.newContext();
    const presenter = await ctx.newPage();
    const viewer = await ctx.newPage();
    const whip = `${node2.url}/whip/${ev.id}`;
    await presenter.goto(`${node2.url}/publish/${ev.id}?token=${ev.tokens.presenter}&whip=${encodeURIComponent(whip)}&source=test&tone=${TONE}&autostart=1`);
    await viewer.goto(`${node2.url}/watch/${ev.id}?token=${ev.tokens.viewer}`);
    for (const p of [presenter, viewer]) await waitFor(p, 'window.mcu && (window.mcu.connected || window.mcu.error)', 20_000);
    for (const p of [presenter, viewer]) expect(await p.evaluate('window.mcu.error')).toBeNull();
    const power = (p: Page) => p.evaluate(`window.mcu.probe ? window.mcu.probe.powerAt(${TONE}) : -200`) as Promise<number>;
    await waitFor(viewer, `window.mcu.probe && window.mcu.probe.powerAt(${TONE}) > -70`, 20_000);
    expect(relay.viewers).toBe(1);
    const session = await viewer.evaluate('window.mcu.session');

    const before = await power(viewer);
    // The viewer's level at 660 Hz, sampled from here on: the tone leaves the program (the
    // presenter's session died with m1) and comes back once the page re-published to m2's URL.
    let lowest = before;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        lowest = Math.min(lowest, await power(viewer).catch(() => lowest));
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    // The presenter's participant id on m1: the page comes back under it with its resume grant.
    const participants = async (url: string) =>
      ((await (await fetch(`${url}/api/events/${ev.id}/participants`, { headers: { authorization: `Bearer ${ev.tokens.producer}` } })).json()) as { participants: { id: string }[] }).participants.map((p) => p.id);
    const [presenterId] = await participants(m1Url);
    expect(await presenter.evaluate('window.mcu.resume')).toBeTruthy();
    // The producer's console (on the holder) names the holder, its epoch and the standby mixer.
    const holderText = (p: Page) => `/${p === consoleM1 ? 'held by m1 \\(epoch \\d+\\) · standby: m2' : 'held by m2 \\(epoch \\d+\\)'}/.test(document.getElementById('tree-holder')?.textContent ?? '')`;
    const openConsole = async (url: string) => {
      const page = await ctx.newPage();
      await page.goto(`${url}/`);
      await page.fill('#token', ADMIN);
      await page.click('#login');
      return page;
    };
    const consoleM1 = await openConsole(m1Url);
    await waitFor(consoleM1, holderText(consoleM1), 20_000);
    const killedAt = performance.now();
    child.kill('SIGKILL');
    await waitFor(presenter, 'window.mcu.reconnects >= 1 && window.mcu.connected', 20_000);
    await waitFor(viewer, `window.mcu.probe.powerAt(${TONE}) > -70`, 20_000);
    sampling = false;
    await sampler;
    expect(lowest).toBeLessThan(before - 30);
    const backS = (performance.now() - killedAt) / 1000;
    expect(await presenter.evaluate('document.getElementById("status").textContent')).toMatch(/reconnected/);
    expect(m2.leases.held(ev.id)).toBe(true);
    const consoleM2 = await openConsole(node2.url);
    await waitFor(consoleM2, holderText(consoleM2), 20_000);
    expect(await participants(node2.url)).toEqual([presenterId]);
    // The viewer kept its session on the relay: no reload, no new WHEP session.
    expect(await viewer.evaluate('window.mcu.session')).toBe(session);
    expect(await viewer.evaluate('window.mcu.reconnects')).toBe(0);
    expect(await power(viewer)).toBeGreaterThan(-70);
    console.log(JSON.stringify({ test: 'browser failover', toneBackS: Math.round(backS * 100) / 100, viewerStalls: await viewer.evaluate('window.mcu.stalls') }));
    await ctx.close();
  }, 90_000);
});
