/**
 * Restreaming to a real RTMP server (nginx + libnginx-mod-rtmp on a loopback port): the stream
 * played back from it is H.264 + AAC, lasts as long as the restream was live, shows the
 * presenter's camera and carries the presenter's tone; killing nginx mid-stream and starting it
 * again, the restream reconnects by itself and the reconnect is counted.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { resolveFfmpeg } from '@mcu/codec';
import { captureLog } from '../../control/test/logCapture.js';
import { McuNode } from '../src/index.js';
import { RtpPeer, tonePower } from '../../mixer/test/peer.js';
import { ClipSender, lavfiClip, meanYuv } from '../../mixer/test/videoMedia.js';
import { isAlive, sleep, until } from '../../codec/test/videoMedia.js';
import { NginxRtmp } from './nginxRtmp.js';

const ADMIN = 'restream-rtmp-admin-token-0123456789abcdef';
const W = 320;
const H = 180;
const TONE_HZ = 440;
const RED = { y: 81, u: 90, v: 240 };
const { lines, logger } = captureLog({ level: 'debug' });
let node: McuNode;
let nginx: NginxRtmp;
const stops: (() => void)[] = [];

async function api(method: string, path: string, body?: unknown) {
  const init = {
    method,
    headers: { authorization: `Bearer ${ADMIN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  };
  let res: Response;
  try {
    res = await fetch(`${node.url}${path}`, init);
  } catch (err) {
    // Seen once: a GET on a pooled keep-alive connection reset (ECONNRESET) while polling; a GET may be repeated.
    if (method !== 'GET') throw err;
    res = await fetch(`${node.url}${path}`, init);
  }
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null };
}

/** An event with a presenter: a 440 Hz tone over plain RTP (real UDP) and a red camera. */
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

function ffprobe(file: string): { streams: { codec_type: string; codec_name: string; width?: number; height?: number; sample_rate?: string }[]; format: { duration: string } } {
  const probe = join(resolveFfmpeg().path, '..', 'ffprobe');
  const r = spawnSync(existsSync(probe) ? probe : 'ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_type,codec_name,width,height,sample_rate:format=duration', '-of', 'json', file], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ffprobe failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** The file's audio, mono 48 kHz. */
function decodeAudio(file: string): Int16Array {
  const r = spawnSync(resolveFfmpeg().path, ['-v', 'error', '-i', file, '-vn', '-ac', '1', '-ar', '48000', '-f', 's16le', 'pipe:1'], { maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`ffmpeg failed: ${r.stderr.toString()}`);
  return new Int16Array(r.stdout.buffer, r.stdout.byteOffset, r.stdout.length >> 1);
}

/** The file's last video frame, I420. */
function lastPicture(file: string): Uint8Array {
  const r = spawnSync(resolveFfmpeg().path, ['-v', 'error', '-sseof', '-0.5', '-i', file, '-an', '-frames:v', '1', '-f', 'rawvideo', '-pix_fmt', 'yuv420p', 'pipe:1'], { maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`ffmpeg failed: ${r.stderr.toString()}`);
  return new Uint8Array(r.stdout);
}

/** Plays the stream back from nginx (a real RTMP play) for `seconds`, into a file. */
function pull(url: string, seconds: number, out: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const ff = spawnAsync(resolveFfmpeg().path, ['-v', 'error', '-y', '-rw_timeout', '10000000', '-i', url, '-t', String(seconds), '-c', 'copy', '-f', 'flv', out]);
    ff.then((code) => (code === 0 ? resolve() : reject(new Error(`pull exited ${code}`))), reject);
  });
}

async function spawnAsync(cmd: string, args: string[]): Promise<number | null> {
  const { spawn } = await import('node:child_process');
  const child = spawn(cmd, args, { stdio: 'ignore' });
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  return new Promise((resolve) => {
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

function toneCheck(pcm: Int16Array): { tone: number; other: number } {
  // Skip the first half second (AAC priming, the mix fading in).
  const body = pcm.subarray(24_000);
  return { tone: tonePower(body, TONE_HZ), other: tonePower(body, 660) };
}

beforeAll(async () => {
  nginx = await NginxRtmp.start();
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
});

describe('restream to a real RTMP server (nginx-rtmp)', () => {
  it('is H.264 + AAC played back, lasts as long as it was live, shows the camera and carries the tone', async () => {
    const eventId = await eventWithPresenter();
    const key = 'test-stream-key-0123456789';
    const created = await api('POST', `/api/events/${eventId}/restreams`, { url: nginx.url(key) });
    expect(created.status).toBe(201);
    const path = `/api/events/${eventId}/restreams/${created.json.id}`;
    const live = await waitState(path, 'live', 20_000);
    expect(live.state).toBe('live');
    const liveAt = performance.now();
    expect(live.liveSince).toBeTruthy();

    // A viewer of the RTMP server: 4 s of the stream, copied as received.
    const pulled = join(nginx.dir, 'pulled.flv');
    await pull(nginx.url(key), 4, pulled);
    const probe = ffprobe(pulled);
    const video = probe.streams.find((s) => s.codec_type === 'video');
    const audio = probe.streams.find((s) => s.codec_type === 'audio');
    expect(video).toMatchObject({ codec_name: 'h264', width: W, height: H });
    expect(audio).toMatchObject({ codec_name: 'aac', sample_rate: '48000' });
    expect(Number(probe.format.duration)).toBeGreaterThan(3.4);
    expect(Number(probe.format.duration)).toBeLessThan(4.6);
    const played = toneCheck(decodeAudio(pulled));
    expect(played.tone).toBeGreaterThan(1000);
    expect(played.tone).toBeGreaterThan(100 * played.other);

    await sleep(Math.max(0, 8000 - (performance.now() - liveAt)));
    const before = (await api('GET', path)).json;
    expect(before.state).toBe('live');
    expect(before.bytes).toBeGreaterThan(50_000);
    const pid = node.restreams.get(eventId, created.json.id).pid;
    const stopped = await api('DELETE', path);
    const liveForS = (performance.now() - liveAt) / 1000;
    expect(stopped.json.state).toBe('stopped');
    if (pid !== null) expect(await until(() => !isAlive(pid))).toBe(true);

    // nginx's own recording of the whole publish: as long as the restream was live (ffmpeg
    // flushes the ~1 s it probed before connecting, so a little longer), H.264 + AAC, the tone
    // throughout, the red camera in the picture.
    const recorded = nginx.recording(key);
    expect(await until(() => existsSync(recorded), 3000)).toBe(true);
    await sleep(300);
    const rec = ffprobe(recorded);
    expect(rec.streams.map((s) => s.codec_name).sort()).toEqual(['aac', 'h264']);
    const duration = Number(rec.format.duration);
    expect(duration).toBeGreaterThan(liveForS - 1);
    expect(duration).toBeLessThan(liveForS + 3);
    const whole = toneCheck(decodeAudio(recorded));
    expect(whole.tone).toBeGreaterThan(1000);
    expect(whole.tone).toBeGreaterThan(100 * whole.other);
    const picture = meanYuv(lastPicture(recorded), W, H, { x: 120, y: 60, w: 80, h: 60 });
    expect(Math.abs(picture.y - RED.y) + Math.abs(picture.u - RED.u) + Math.abs(picture.v - RED.v), JSON.stringify(picture)).toBeLessThan(30);

    expect(JSON.stringify(lines)).not.toContain(key);
    rmSync(pulled, { force: true });
    await api('DELETE', `/api/events/${eventId}`);
  });

  it('reconnects by itself when the RTMP server is killed mid-stream and comes back, and counts it', async () => {
    const eventId = await eventWithPresenter();
    const key = 'reconnect-key-0123456789';
    const created = await api('POST', `/api/events/${eventId}/restreams`, { url: nginx.url(key) });
    const path = `/api/events/${eventId}/restreams/${created.json.id}`;
    expect((await waitState(path, 'live', 20_000)).state).toBe('live');
    await sleep(1500);
    const firstPid = node.restreams.get(eventId, created.json.id).pid;

    await nginx.kill();
    const dropped = await waitState(path, 'retrying', 10_000);
    expect(['retrying', 'connecting']).toContain(dropped.state);
    expect(dropped.lastError).toBeTruthy();
    expect(dropped.lastError).not.toContain(key);
    await sleep(1500); // a retry or two against the dead port
    rmSync(nginx.recording(key), { force: true });
    await nginx.run();

    const back = await waitState(path, 'live', 20_000);
    expect(back.state).toBe('live');
    expect(back.reconnects).toBeGreaterThanOrEqual(1);
    expect(node.restreams.get(eventId, created.json.id).pid).not.toBe(firstPid);
    const bytesBack = back.bytes;
    await sleep(3000);
    const after = (await api('GET', path)).json;
    expect(after.state).toBe('live');
    expect(after.bytes).toBeGreaterThan(bytesBack);
    const metrics = await (await fetch(`${node.url}/metrics`)).text();
    expect(Number(/mcu_restream_reconnects_total (\d+)/.exec(metrics)?.[1])).toBeGreaterThanOrEqual(back.reconnects);
    expect(metrics).toMatch(/mcu_restreams\{state="live"\} 1/);
    expect(Number(/mcu_restream_bytes_total (\d+)/.exec(metrics)?.[1])).toBeGreaterThan(bytesBack);

    await api('DELETE', path);
    // What nginx received after the restart is a playable H.264 + AAC stream with the tone.
    const recorded = nginx.recording(key);
    expect(await until(() => existsSync(recorded), 3000)).toBe(true);
    await sleep(300);
    const rec = ffprobe(recorded);
    expect(rec.streams.map((s) => s.codec_name).sort()).toEqual(['aac', 'h264']);
    expect(Number(rec.format.duration)).toBeGreaterThan(2);
    const tone = toneCheck(decodeAudio(recorded));
    expect(tone.tone).toBeGreaterThan(100 * tone.other);
    expect(JSON.stringify(lines)).not.toContain(key);
    await api('DELETE', `/api/events/${eventId}`);
  });
});
