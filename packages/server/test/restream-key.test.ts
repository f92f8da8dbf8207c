/**
 * The stream key never on ffmpeg's command line: while a restream is live, the restream's ffmpeg
 * has the proxy's placeholder in /proc/<pid>/cmdline and not the key, yet nginx-rtmp received the
 * stream under the real key (played back by it: H.264 + AAC with the presenter's tone), with a
 * 200-byte key (the commands naming it stay one RTMP chunk). And rtmps://: the proxy speaks TLS to
 * a TLS endpoint (Node's TLS server with a test CA, fronting nginx), verifies its certificate, and
 * refuses one it cannot verify.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { resolveFfmpeg } from '@mcu/codec';
import { captureLog } from '../../control/test/logCapture.js';
import { McuNode } from '../src/index.js';
import { RtpPeer, tonePower } from '../../mixer/test/peer.js';
import { ClipSender, lavfiClip } from '../../mixer/test/videoMedia.js';
import { isAlive, sleep, until } from '../../codec/test/videoMedia.js';
import { NginxRtmp } from './nginxRtmp.js';

const ADMIN = 'restream-key-admin-token-0123456789abcdef';
const W = 320;
const H = 180;
const TONE_HZ = 440;
const { lines, logger } = captureLog({ level: 'debug' });
let node: McuNode;
let nginx: NginxRtmp;
let certDir: string;
const stops: (() => void)[] = [];

async function api(method: string, path: string, body?: unknown) {
  const res = await fetch(`${node.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null };
}

/** An event with a presenter: a 440 Hz tone over plain RTP and a camera. */
async function eventWithPresenter(): Promise<string> {
  const ev = (await api('POST', '/api/events')).json as { id: string };
  const peer = await RtpPeer.open({ freq: TONE_HZ, audioLevelExtId: 1 });
  const add = (await api('POST', `/api/events/${ev.id}/rtp-participants`, { host: '127.0.0.1', port: peer.port, payloadType: 111, audioLevelExtId: 1 })).json;
  peer.connect(add.host, add.port);
  const t0 = performance.now();
  let sent = 0;
  const timer = setInterval(() => {
    const due = Math.floor((performance.now() - t0) / 20);
    while (sent < due) {
      peer.sendFrame();
      sent++;
    }
  }, 10);
  const mixer = node.registry.get(ev.id).mixer;
  mixer.addVideoSource(add.id, 'vp8', 'Presenter');
  const clip = new ClipSender(lavfiClip({ source: 'color=red', width: 320, height: 240, frames: 30, codec: 'vp8', gop: 15 }), (p) => {
    if (!mixer.isClosed) mixer.pushVideoRtp(add.id, p);
  }).start();
  mixer.videoMixer?.on('keyframeRequest', () => clip.requestKeyframe());
  stops.push(() => {
    clearInterval(timer);
    clip.stop();
    peer.close();
  });
  return ev.id;
}

async function waitState(path: string, state: string, timeoutMs: number): Promise<Record<string, any>> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const r = (await api('GET', path)).json;
    if (r.state === state || performance.now() > end) return r;
    await sleep(100);
  }
}

function ffprobeCodecs(file: string): string[] {
  const probe = join(resolveFfmpeg().path, '..', 'ffprobe');
  const r = spawnSync(existsSync(probe) ? probe : 'ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_name', '-of', 'csv=p=0', file], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ffprobe failed: ${r.stderr}`);
  return r.stdout.split('\n').filter(Boolean).sort();
}

/** Tone power at 440 Hz and at 660 Hz in the file's audio (mono 48 kHz), the first 0.5 s skipped. */
function toneOf(file: string): { tone: number; other: number } {
  const r = spawnSync(resolveFfmpeg().path, ['-v', 'error', '-i', file, '-vn', '-ac', '1', '-ar', '48000', '-f', 's16le', 'pipe:1'], { maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`ffmpeg failed: ${r.stderr.toString()}`);
  const pcm = new Int16Array(r.stdout.buffer, r.stdout.byteOffset, r.stdout.length >> 1).subarray(24_000);
  return { tone: tonePower(pcm, TONE_HZ), other: tonePower(pcm, 660) };
}

/** A real RTMP play of `url` from nginx for `seconds`, into a file. */
function pull(url: string, seconds: number, out: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(resolveFfmpeg().path, ['-v', 'error', '-y', '-rw_timeout', '10000000', '-i', url, '-t', String(seconds), '-c', 'copy', '-f', 'flv', out], { stdio: 'ignore' });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`pull exited ${code}`));
    });
  });
}

/** A test CA and a certificate for 127.0.0.1 signed by it (openssl, EC P-256). */
function makeCerts(dir: string): { ca: string; cert: string; key: string } {
  const run = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  run(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=mcu test CA', '-days', '2']);
  run(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'leaf.key', '-out', 'leaf.csr', '-subj', '/CN=127.0.0.1']);
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
  run(['x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'leaf.crt', '-days', '2', '-extfile', 'ext.cnf']);
  return { ca: readFileSync(join(dir, 'ca.crt'), 'utf8'), cert: readFileSync(join(dir, 'leaf.crt'), 'utf8'), key: readFileSync(join(dir, 'leaf.key'), 'utf8') };
}

/** An RTMPS endpoint: TLS terminated by Node, the plain bytes relayed to nginx-rtmp. */
async function tlsFront(cert: string, key: string, toPort: number): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = tls.createServer({ cert, key }, (s) => {
    connections++;
    const back = net.connect(toPort, '127.0.0.1');
    sockets.add(s).add(back);
    s.pipe(back).pipe(s);
    const end = () => {
      s.destroy();
      back.destroy();
    };
    s.on('error', end).on('close', end);
    back.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => connections,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

beforeAll(async () => {
  nginx = await NginxRtmp.start();
  certDir = mkdtempSync(join(tmpdir(), 'mcu-rtmps-'));
  node = new McuNode(
    {
      port: 0,
      adminToken: ADMIN,
      videoRenditions: [{ id: 'main', width: W, height: H, fps: 15, bitrateKbps: 300 }],
      restreamRendition: { width: W, height: H, fps: 15, bitrateKbps: 400 },
      // The RTMP servers listen on loopback, which restreams may reach only when allowed.
      restreamAllow: ['127.0.0.1'],
    },
    { logger },
  );
  node.restreams.restreamOptions = { retryDelayMs: 200, maxRetryDelayMs: 1000 };
  await node.listen();
});
afterEach(() => {
  for (const s of stops.splice(0)) s();
});
afterAll(async () => {
  await node?.close();
  await nginx?.close();
  if (certDir) rmSync(certDir, { recursive: true, force: true });
});

describe('the stream key stays off the command line', () => {
  it('ffmpeg has the placeholder in /proc/<pid>/cmdline, not the key; nginx gets the stream under the real 200-byte key', async () => {
    const eventId = await eventWithPresenter();
    const key = `k${'0123456789abcdefghij'.repeat(10)}`.slice(0, 200);
    const created = await api('POST', `/api/events/${eventId}/restreams`, { url: nginx.url(key) });
    expect(created.status).toBe(201);
    const path = `/api/events/${eventId}/restreams/${created.json.id}`;
    expect((await waitState(path, 'live', 20_000)).state).toBe('live');
    const restream = node.restreams.get(eventId, created.json.id);
    const pid = restream.pid!;
    const proxy = restream.proxy!;
    expect(proxy.placeholder).toHaveLength(200);
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    expect(cmdline).toContain(proxy.placeholder);
    expect(cmdline).toContain(`rtmp://127.0.0.1:${proxy.port}/live/${proxy.placeholder}`);
    expect(cmdline).not.toContain(key);
    expect(cmdline).not.toContain(key.slice(0, 40));
    expect(readFileSync(`/proc/${pid}/environ`, 'utf8')).not.toContain(key.slice(0, 40));
    // releaseStream, FCPublish and publish each named the stream: each swapped; bytes relayed both ways.
    expect(proxy.counts.swapsUp).toBeGreaterThanOrEqual(3);
    // 'live' comes with the server's answer to publish, a moment before media has flowed: wait for it (a loaded CI run read 3,999 bytes).
    for (let i = 0; i < 100 && proxy.counts.up <= 10_000; i++) await new Promise((r) => setTimeout(r, 100));
    expect(proxy.counts.up).toBeGreaterThan(10_000);
    expect(proxy.counts.down).toBeGreaterThan(3073);
    expect(proxy.counts.refused).toBe(0);

    // A viewer plays it from nginx by the real key.
    const pulled = join(nginx.dir, 'pulled-key.flv');
    await pull(nginx.url(key), 3, pulled);
    expect(ffprobeCodecs(pulled)).toEqual(['aac', 'h264']);
    const played = toneOf(pulled);
    expect(played.tone).toBeGreaterThan(1000);
    expect(played.tone).toBeGreaterThan(100 * played.other);

    // The proxy takes one connection only: a second one is dropped.
    const intruder = net.connect(proxy.port ?? 1, '127.0.0.1');
    const refused = await new Promise<boolean>((resolve) => {
      intruder.once('error', () => resolve(true));
      intruder.once('close', () => resolve(true));
      setTimeout(() => resolve(false), 2000);
    });
    intruder.destroy();
    expect(refused).toBe(true);

    await api('DELETE', path);
    expect(await until(() => !isAlive(pid))).toBe(true);
    expect(proxy.isClosed).toBe(true);
    expect(JSON.stringify(lines)).not.toContain(key.slice(0, 40));
    rmSync(pulled, { force: true });
    await api('DELETE', `/api/events/${eventId}`);
  });

  it('rtmps://: the proxy speaks TLS to the ingest and verifies its certificate (trusted CA: live; unknown CA: refused)', async () => {
    const { ca, cert, key: tlsKey } = makeCerts(certDir);
    const front = await tlsFront(cert, tlsKey, nginx.port);
    stops.push(() => void front.close());
    const eventId = await eventWithPresenter();

    // Without the test CA: the certificate cannot be verified, the restream never goes live.
    node.restreams.restreamOptions = { retryDelayMs: 200, maxRetryDelayMs: 400, maxAttempts: 2 };
    const untrusted = await api('POST', `/api/events/${eventId}/restreams`, { url: `rtmps://127.0.0.1:${front.port}/live/untrusted-key-0123456789` });
    expect(untrusted.status).toBe(201);
    const failed = await waitState(`/api/events/${eventId}/restreams/${untrusted.json.id}`, 'failed', 20_000);
    expect(failed.state).toBe('failed');
    expect(failed.lastError).toMatch(/CERT|certificate|self.signed/i);
    expect(existsSync(nginx.recording('untrusted-key-0123456789'))).toBe(false);
    await api('DELETE', `/api/events/${eventId}/restreams/${untrusted.json.id}`);

    // With it: live through TLS, the stream on nginx under the real key.
    node.restreams.restreamOptions = { retryDelayMs: 200, maxRetryDelayMs: 1000, tlsCa: ca };
    const key = 'rtmps-key-0123456789abcdef';
    const before = front.connections();
    const created = await api('POST', `/api/events/${eventId}/restreams`, { url: `rtmps://127.0.0.1:${front.port}/live/${key}` });
    expect(created.status).toBe(201);
    expect(created.json.url).not.toContain(key);
    const path = `/api/events/${eventId}/restreams/${created.json.id}`;
    expect((await waitState(path, 'live', 20_000)).state).toBe('live');
    expect(front.connections()).toBeGreaterThan(before);
    const pid = node.restreams.get(eventId, created.json.id).pid!;
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    expect(cmdline).not.toContain(key);
    expect(cmdline).not.toContain('rtmps://127.0.0.1:' + front.port + '/live/');
    const pulled = join(nginx.dir, 'pulled-tls.flv');
    await pull(nginx.url(key), 3, pulled);
    expect(ffprobeCodecs(pulled)).toEqual(['aac', 'h264']);
    const played = toneOf(pulled);
    expect(played.tone).toBeGreaterThan(100 * played.other);
    await api('DELETE', path);
    expect(await until(() => !isAlive(pid))).toBe(true);
    expect(JSON.stringify(lines)).not.toContain(key);
    rmSync(pulled, { force: true });
    await api('DELETE', `/api/events/${eventId}`);
  });
});
