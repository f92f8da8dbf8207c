/** How tests launch Firefox here: Debian's firefox-esr over WebDriver BiDi with puppeteer-core. */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import puppeteer from 'puppeteer-core';
import type { Browser, Page } from 'puppeteer-core';

export const FIREFOX = process.env.FIREFOX_PATH ?? '/usr/bin/firefox-esr';

// The counterpart of the Chromium flags in chromium.ts; each was found necessary here, and no more.
// - For a page that neither captures nor holds a camera or microphone permission (the
//   test-source presenter, the viewer), Firefox gathers host candidates on the default route's
//   address only, never 127.0.0.1, and a loopback-only node then fails ICE. A default microphone
//   permission lifts that (and mDNS obfuscation with it); the loopback pref then adds the
//   127.0.0.1 candidates.
// - Not needed (checked): fake devices (the test source is an oscillator and a canvas, not
//   getUserMedia) and autoplay prefs (an AudioContext runs and an unmuted <video> plays without a
//   gesture here, with or without the permission).
export const FIREFOX_PREFS: Record<string, unknown> = {
  'permissions.default.microphone': 1,
  'media.peerconnection.ice.loopback': true,
};

/** Waits until a JavaScript expression is truthy in the page. */
export async function waitFor(page: Page, predicate: string, timeoutMs = 15_000): Promise<void> {
  await page.waitForFunction(predicate, { timeout: timeoutMs, polling: 100 });
}

export interface FirefoxSession {
  browser: Browser;
  /** Closes the browser and its sound server. Idempotent. */
  close(): Promise<void>;
}

/**
 * Firefox's audio graph runs only while cubeb holds an output stream: with no sound server an
 * AudioContext never leaves "suspended" (resume() never settles), so a private PulseAudio with a
 * null sink stands in for the sound card, as on Mozilla's own Linux test machines.
 */
async function startSoundServer(dir: string): Promise<ChildProcess> {
  const socket = join(dir, 'native');
  const env = { ...process.env, HOME: dir, XDG_RUNTIME_DIR: dir, PULSE_RUNTIME_PATH: dir };
  const args = ['-n', '--daemonize=no', '--exit-idle-time=-1', '--use-pid-file=false', '--log-target=stderr',
    '-L', 'module-null-sink', '-L', `module-native-protocol-unix socket=${socket} auth-anonymous=1`];
  const proc = spawn('pulseaudio', args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr!.on('data', (d: Buffer) => void (log += d.toString()));
  const failed = new Promise<never>((_, reject) => {
    proc.once('error', (e) => reject(new Error(`pulseaudio did not start (${e.message}): apt-get install -y pulseaudio (.ci/run does)`)));
    proc.once('exit', (code) => reject(new Error(`pulseaudio exited with ${code}: ${log.trim()}`)));
  });
  failed.catch(() => {});
  const ready = (async () => {
    for (let i = 0; i < 100 && !existsSync(socket); i++) await new Promise((r) => setTimeout(r, 50));
    if (!existsSync(socket)) throw new Error(`pulseaudio did not open ${socket} in 5 s: ${log.trim()}`);
  })();
  try {
    await Promise.race([ready, failed]);
  } catch (err) {
    proc.kill();
    throw err;
  }
  return proc;
}

export async function launchFirefox(): Promise<FirefoxSession> {
  if (!existsSync(FIREFOX)) throw new Error(`Firefox not found at ${FIREFOX}: apt-get install -y firefox-esr (.ci/run does)`);
  const dir = await mkdtemp(join(tmpdir(), 'mcu-pulse-'));
  let sound: ChildProcess | null = null;
  let browser: Browser | null = null;
  let closing: Promise<void> | null = null;
  const close = () =>
    (closing ??= (async () => {
      await browser?.close().catch(() => {});
      if (sound && sound.exitCode === null && sound.signalCode === null) {
        const exited = once(sound, 'exit');
        sound.kill();
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    })());
  try {
    sound = await startSoundServer(dir);
    browser = await puppeteer.launch({
      browser: 'firefox',
      executablePath: FIREFOX,
      headless: true,
      extraPrefsFirefox: FIREFOX_PREFS,
      env: { ...process.env, PULSE_SERVER: `unix:${join(dir, 'native')}` },
    });
  } catch (err) {
    await close();
    throw err;
  }
  return { browser, close };
}
