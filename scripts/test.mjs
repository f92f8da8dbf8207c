#!/usr/bin/env node
/**
 * `npm test`: makes sure of what the suites need, then type-checks and runs vitest with the
 * arguments given (`npm test -- --project main` runs the fast subset without browsers).
 *
 * What the suites need from the machine (see docs/contributing.md):
 *  - Debian packages: chromium, firefox-esr and pulseaudio (browser tests; Firefox plays audio
 *    only against a sound server), ffmpeg (video), nats-server, and those listed in
 *    `scripts/test-packages.json` (age, the RTMP server, …).
 *  - a NATS server with JetStream on 127.0.0.1:4222 (started here when it is not up).
 * When something is missing and this runs as root with apt-get, it is installed; otherwise the
 * run stops before any test with one line naming the command to run. MCU_TEST_SETUP=0 skips it all.
 */
import { spawnSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, mkdirSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const NATS_PORT = 4222;

/** The projects this run selects (`--project X`, `--project=X`); all when none is named. */
function selectedProjects() {
  const out = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--project' && args[i + 1]) out.push(args[++i]);
    else if (args[i].startsWith('--project=')) out.push(args[i].slice('--project='.length));
  }
  return out;
}

/** Each requirement: the Debian package and how to tell it is here. `browser` ones only serve the timing project. */
function requirements() {
  const reqs = [
    { pkg: 'chromium', present: () => existsSync(process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'), browser: true },
    { pkg: 'firefox-esr', present: () => existsSync(process.env.FIREFOX_PATH ?? '/usr/bin/firefox-esr'), browser: true },
    { pkg: 'pulseaudio', present: () => onPath('pulseaudio'), browser: true },
    { pkg: 'ffmpeg', present: () => onPath('ffmpeg') },
    { pkg: 'nats-server', present: () => existsSync(process.env.NATS_SERVER_BIN ?? '/usr/sbin/nats-server') || onPath('nats-server') },
  ];
  const extra = join(root, 'scripts', 'test-packages.json');
  if (existsSync(extra)) {
    for (const { pkg, binary, file } of JSON.parse(readFileSync(extra, 'utf8'))) {
      reqs.push({ pkg, present: () => (file ? existsSync(file) : onPath(binary ?? pkg)) });
    }
  }
  return reqs;
}

function onPath(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function natsUp() {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port: NATS_PORT });
    const done = (ok) => {
      s.destroy();
      resolve(ok);
    };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
    s.setTimeout(1000, () => done(false));
  });
}

function fail(line) {
  console.error(`npm test: ${line}`);
  process.exit(1);
}

async function ensure() {
  const projects = selectedProjects();
  const browsers = projects.length === 0 || projects.includes('timing');
  const missing = requirements().filter((r) => (browsers || !r.browser) && !r.present()).map((r) => r.pkg);
  if (missing.length > 0) {
    const isRoot = process.getuid?.() === 0;
    const cmd = `apt-get install -y --no-install-recommends ${missing.join(' ')}`;
    if (!isRoot || !onPath('apt-get')) {
      fail(`missing ${missing.join(', ')}; install with: ${isRoot ? '' : 'sudo '}${cmd}${onPath('apt-get') ? '' : ' (or your system\'s equivalent)'}  (or run the fast subset: npm test -- --project main)`);
    }
    console.error(`npm test: installing ${missing.join(' ')} (apt-get)`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const update = spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
    const install = update.status === 0 && spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { stdio: ['ignore', 'ignore', 'inherit'], env });
    if (!install || install.status !== 0) fail(`apt-get could not install ${missing.join(' ')}; run: ${cmd}`);
    const still = requirements().filter((r) => missing.includes(r.pkg) && !r.present()).map((r) => r.pkg);
    if (still.length > 0) fail(`${still.join(', ')} still missing after apt-get install; run: ${cmd}`);
  }
  if (!(await natsUp())) {
    const bin = existsSync('/usr/sbin/nats-server') ? '/usr/sbin/nats-server' : 'nats-server';
    const store = process.getuid?.() === 0 ? '/var/lib/nats-server' : join(root, '.nats-test');
    mkdirSync(store, { recursive: true });
    console.error(`npm test: starting NATS with JetStream on 127.0.0.1:${NATS_PORT} (store ${store})`);
    const child = spawn(bin, ['-a', '127.0.0.1', '-p', String(NATS_PORT), '-js', '-sd', store], { detached: true, stdio: 'ignore' });
    child.on('error', () => {});
    child.unref();
    for (let i = 0; i < 50 && !(await natsUp()); i++) await new Promise((r) => setTimeout(r, 200));
    if (!(await natsUp())) fail(`NATS did not start on 127.0.0.1:${NATS_PORT}; run: ${bin} -a 127.0.0.1 -p ${NATS_PORT} -js`);
  }
}

function run(cmd, cmdArgs) {
  const r = spawnSync(cmd, cmdArgs, { stdio: 'inherit', cwd: root });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

if (process.env.MCU_TEST_SETUP !== '0') await ensure();
const bin = (name) => join(root, 'node_modules', '.bin', name);
run(bin('tsc'), ['-p', 'tsconfig.json', '--noEmit']);
run(bin('vitest'), ['run', ...args]);
