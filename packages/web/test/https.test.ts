/**
 * A presenter on another machine: Chromium publishes its microphone and camera to a node that
 * serves HTTPS at an address that is not loopback, and a viewer hears it. The node (`mcu up`, the
 * real CLI) runs in a network namespace of the test's own, joined to the browser by a veth pair;
 * the page is secure because of TLS (the test's certificate, trusted by its public key), not
 * because of localhost. The same page over plain HTTP at that address is refused the microphone.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueCert, makeTestCa, tlsFetch, type IssuedCert, type TestCa } from '../../server/test/tlsFixture.js';
import { CHROMIUM, CHROMIUM_ARGS, waitFor } from './chromium.js';
import { TestNetwork } from './netns.js';

const ADMIN = 'https-browser-test-admin-token-0123456789';
const mcuBin = fileURLToPath(new URL('../../cli/bin/mcu.js', import.meta.url));
/** The tone the fake microphone plays (a frequency no other test source uses). */
const MIC_HZ = 660;
const HTTPS_PORT = 8443;
const HTTP_PORT = 8080;

let net: TestNetwork;
let ca: TestCa;
let cert: IssuedCert;
let browser: Browser;

/** 10 s of a sine at `freq` Hz, 48 kHz mono 16-bit PCM WAV (Chromium loops it as the microphone). */
function writeToneWav(file: string, freq: number): void {
  const rate = 48_000;
  const samples = rate * 10;
  const data = Buffer.alloc(samples * 2);
  for (let i = 0; i < samples; i++) data.writeInt16LE(Math.round(12_000 * Math.sin((2 * Math.PI * freq * i) / rate)), i * 2);
  const header = Buffer.alloc(44);
  header.write('RIFF', 0);
  header.writeUInt32LE(36 + data.length, 4);
  header.write('WAVEfmt ', 8);
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * 2, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36);
  header.writeUInt32LE(data.length, 40);
  writeFileSync(file, Buffer.concat([header, data]));
}

/** Starts `mcu up --json` inside the namespace; resolves with the URL it printed. */
async function startNode(args: string[]): Promise<string> {
  const child = net.spawn(process.execPath, [mcuBin, 'up', '--json', '--host', net.nsAddress, '--public-ip', net.nsAddress, ...args], {
    env: { ...process.env, MCU_ADMIN_TOKEN: ADMIN, MCU_LOG_LEVEL: 'warn' },
  });
  let out = '';
  let err = '';
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const started = new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line && out.includes('\n')) resolve((JSON.parse(line) as { url: string }).url);
    });
    child.once('exit', (code) => reject(new Error(`mcu up ${args.join(' ')} in ${net.name} exited (${code}): ${err}`)));
  });
  const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`mcu up in ${net.name} did not start in 30 s: ${out}${err}`)), 30_000).unref());
  return Promise.race([started, timeout]);
}

beforeAll(async () => {
  net = TestNetwork.create('http');
  ca = makeTestCa();
  cert = issueCert(ca, 'node', [net.nsAddress]);
  const config = join(ca.dir, 'node.yaml');
  // ICE on the veth pair only: the node's candidates and the browser's it answers stay in the /30.
  writeFileSync(config, `iceAllow: ['${net.subnet}']\nvideoRenditions: [{ id: '360p', width: 640, height: 360, fps: 15 }]\n`);
  const mic = join(ca.dir, 'mic.wav');
  writeToneWav(mic, MIC_HZ);
  const [httpsUrl, httpUrl] = await Promise.all([
    startNode(['--port', String(HTTPS_PORT), '--config', config, '--tls-cert', cert.certFile, '--tls-key', cert.keyFile]),
    startNode(['--port', String(HTTP_PORT), '--config', config]),
  ]);
  expect(httpsUrl).toBe(`https://${net.nsAddress}:${HTTPS_PORT}`);
  expect(httpUrl).toBe(`http://${net.nsAddress}:${HTTP_PORT}`);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      ...CHROMIUM_ARGS,
      // Trust the node's certificate by its public key (no certificate error, so a secure context).
      `--ignore-certificate-errors-spki-list=${cert.spki256}`,
      // The fake microphone plays the tone from the file (the fake camera draws its test pattern).
      `--use-file-for-fake-audio-capture=${mic}`,
    ],
  });
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await net?.close();
  ca?.remove();
}, 30_000);

const origin = (scheme: 'https' | 'http') => `${scheme}://${net.nsAddress}:${scheme === 'https' ? HTTPS_PORT : HTTP_PORT}`;

async function createEvent(scheme: 'https' | 'http'): Promise<{ id: string; whip: string; whep: string; tokens: Record<string, string> }> {
  const res = await tlsFetch(ca.pem)(`${origin(scheme)}/api/events`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: '{"name":"over https"}' });
  expect(res.status).toBe(201);
  return (await res.json()) as { id: string; whip: string; whep: string; tokens: Record<string, string> };
}

describe(`a node at an address that is not loopback (a network namespace, 10.213.0.0/16)`, () => {
  it('over HTTPS the page is a secure context: Chromium publishes its microphone and the viewer hears its tone', async () => {
    const ev = await createEvent('https');
    expect(ev.whip).toBe(`${origin('https')}/whip/${ev.id}`);
    const ctx = await browser.newContext();
    try {
      const presenter = await ctx.newPage();
      const page = await presenter.goto(`${origin('https')}/publish/${ev.id}?token=${ev.tokens.presenter}&source=devices&autostart=1`);
      // Served over TLS with the node's certificate, issued by the test's CA.
      const tls = await page!.securityDetails();
      expect(tls?.subjectName).toBe('node');
      expect(tls?.issuer).toBe('mcu test CA');
      expect(tls?.protocol).toMatch(/^TLS 1\.[23]$/);
      expect(await presenter.evaluate('window.isSecureContext')).toBe(true);
      expect(await presenter.evaluate('location.protocol')).toBe('https:');
      await waitFor(presenter, 'window.mcu && (window.mcu.connected || window.mcu.error)', 30_000);
      expect(await presenter.evaluate('window.mcu.error')).toBeNull();
      // The microphone really was opened (not the page's own test tone).
      const tracks = (await presenter.evaluate(`document.getElementById('preview').srcObject.getAudioTracks().map((t) => t.label)`)) as string[];
      expect(tracks.length).toBe(1);

      const viewer = await ctx.newPage();
      await viewer.goto(`${origin('https')}/watch/${ev.id}?token=${ev.tokens.viewer}`);
      expect(await viewer.evaluate('window.isSecureContext')).toBe(true);
      await waitFor(viewer, 'window.mcu && (window.mcu.connected || window.mcu.error)', 30_000);
      expect(await viewer.evaluate('window.mcu.error')).toBeNull();
      await waitFor(viewer, 'window.mcu.probe !== null');
      // Media can only flow over the veth pair: the node's namespace has no other interface but
      // its own loopback, and its ICE is limited to the /30.
      await waitFor(viewer, 'window.mcu.getStats().then((s) => s.packetsReceived > 100)', 20_000);
      // Let the analyser fill with the mixed program.
      const power = (p: Page, f: number) => p.evaluate(`window.mcu.probe.powerAt(${f})`) as Promise<number>;
      let tone = -Infinity;
      let other = -Infinity;
      const deadline = performance.now() + 15_000;
      while (performance.now() < deadline) {
        [tone, other] = await Promise.all([power(viewer, MIC_HZ), power(viewer, 1250)]);
        if (tone > -70 && tone - other > 20) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      expect(tone).toBeGreaterThan(-70);
      expect(tone - other).toBeGreaterThan(20);
      // Still there a second later, once the analyser is full: the tone is heard, not a blip.
      await new Promise((r) => setTimeout(r, 1000));
      [tone, other] = await Promise.all([power(viewer, MIC_HZ), power(viewer, 1250)]);
      console.log(`viewer over https://${net.nsAddress}: ${MIC_HZ} Hz at ${tone.toFixed(1)} dB, 1250 Hz at ${other.toFixed(1)} dB`);
      expect(tone).toBeGreaterThan(-70);
      expect(tone - other).toBeGreaterThan(20);
      const pub = (await presenter.evaluate('window.mcu.getStats()')) as { packetsSent: number };
      expect(pub.packetsSent).toBeGreaterThan(50);
    } finally {
      await ctx.close();
      await tlsFetch(ca.pem)(`${origin('https')}/api/events/${ev.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN}` } }).catch(() => undefined);
    }
  }, 90_000);

  it('over plain HTTP the same page at that address is refused the microphone', async () => {
    const ev = await createEvent('http');
    const ctx = await browser.newContext();
    try {
      const page = await ctx.newPage();
      await page.goto(`${origin('http')}/publish/${ev.id}?token=${ev.tokens.presenter}&source=devices&autostart=1`);
      expect(await page.evaluate('location.protocol')).toBe('http:');
      expect(await page.evaluate('window.isSecureContext')).toBe(false);
      // The browser hides the API altogether on an insecure page.
      expect(await page.evaluate('typeof navigator.mediaDevices')).toBe('undefined');
      await waitFor(page, 'window.mcu && (window.mcu.connected || window.mcu.error)', 15_000);
      expect(await page.evaluate('window.mcu.connected')).toBe(false);
      expect(await page.evaluate('window.mcu.error')).toContain('the camera and microphone need a secure page');
      // Not the page's doing: the browser itself refuses, whatever the page tries.
      const direct = await page.evaluate(`(async () => {
        try { await navigator.mediaDevices.getUserMedia({ audio: true }); return 'granted'; }
        catch (err) { return 'refused: ' + err.message; } })()`);
      expect(direct).toMatch(/^refused: /);
      // Nothing reached the node.
      const res = await tlsFetch(ca.pem)(`${origin('http')}/api/events/${ev.id}`, { headers: { authorization: `Bearer ${ADMIN}` } });
      expect(((await res.json()) as { participants: unknown[] }).participants).toEqual([]);
    } finally {
      await ctx.close();
    }
  }, 60_000);
});
