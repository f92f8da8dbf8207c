/** How tests launch Chromium here (playwright-core with the system browser). */
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
// The flags the project runs Chromium with; loopback ICE candidates in the clear (no mDNS) so that
// WebRTC stays on 127.0.0.1, the only address tests may use.
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns,MediaRouter,OptimizationHints,Translate',
  '--disable-domain-reliability',
  '--disable-default-apps',
];

/** Waits until a JavaScript expression is truthy in the page. */
export async function waitFor(page: Page, predicate: string, timeoutMs = 15_000): Promise<void> {
  await page.waitForFunction(predicate, null, { timeout: timeoutMs, polling: 100 });
}

/** Node options that keep ICE on loopback, where the browser's candidates are. */
export const LOOPBACK_NODE = { iceAllow: ['127.0.0.0/8'], iceHostAddresses: ['127.0.0.1'] };

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}: apt-get install -y chromium (.ci/run does)`);
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}
