import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { McuNode } from '../src/index.js';
import { BeepFlashPresenter, flashClip, onsets, audioPeaks, videoLuma } from '../../recording/test/beepFlash.js';
import { sleep, until } from '../../mixer/test/videoMedia.js';

/** The recording API on a real node: start, list, stop, download the ciphertext, open it with age. */
const ADMIN = 'test-admin-token-0123456789abcdef';
let node: McuNode;
let base: string;
let dir: string;
let identity: string;
let recipient: string;
const presenters: BeepFlashPresenter[] = [];

async function api(method: string, path: string, opts: { token?: string; body?: unknown } = {}) {
  const headers: Record<string, string> = {};
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${base}${path}`, { method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
  const buf = Buffer.from(await res.arrayBuffer());
  let json: any = null;
  try {
    json = JSON.parse(buf.toString());
  } catch {
    json = null;
  }
  return { status: res.status, json, buf, headers: res.headers };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mcu-rec-api-'));
  identity = join(dir, 'key.txt');
  expect(spawnSync('age-keygen', ['-o', identity]).status).toBe(0);
  recipient = spawnSync('age-keygen', ['-y', identity]).stdout.toString().trim();
  node = new McuNode({ port: 0, adminToken: ADMIN, recordingsDir: join(dir, 'recordings'), videoRenditions: [{ id: 'main', width: 320, height: 180, bitrateKbps: 400 }, { id: 'small', width: 160, height: 90, bitrateKbps: 150 }] });
  base = (await node.listen()).url;
});
afterAll(async () => {
  for (const p of presenters) p.stop();
  await node.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('recording API', () => {
  it('records, lists, stops and serves the ciphertext that age opens', async () => {
    const ev = await api('POST', '/api/events', { token: ADMIN, body: { name: 'recorded' } });
    expect(ev.status).toBe(201);
    const { id } = ev.json;
    const producer = ev.json.tokens.producer;
    const presenter = ev.json.tokens.presenter;
    presenters.push(new BeepFlashPresenter(node.registry.get(id).mixer, 'p1', flashClip(320, 180)).start());

    // Bad input first: each with a clear message.
    const noRecipients = await api('POST', `/api/events/${id}/recordings`, { token: producer, body: {} });
    expect(noRecipients.status).toBe(400);
    expect(noRecipients.json.error.message).toMatch(/recipient/);
    const bad = await api('POST', `/api/events/${id}/recordings`, { token: producer, body: { recipients: ['age1notakey'] } });
    expect(bad.status).toBe(400);
    expect(bad.json.error.message).toMatch(/not an X25519 age recipient/);
    const unknown = await api('POST', `/api/events/${id}/recordings`, { token: producer, body: { recipients: [recipient], rendition: 'huge' } });
    expect(unknown.status).toBe(404);
    expect(unknown.json.error.message).toMatch(/rendition huge not found/);
    expect((await api('POST', `/api/events/${id}/recordings`, { token: presenter, body: { recipients: [recipient] } })).status).toBe(403);
    expect((await api('POST', `/api/events/${id}/recordings`, { body: { recipients: [recipient] } })).status).toBe(401);

    const started = await api('POST', `/api/events/${id}/recordings`, { token: producer, body: { recipients: [recipient], rendition: 'small' } });
    expect(started.status).toBe(201);
    expect(started.json.state).toBe('recording');
    expect(typeof started.json.startedAt).toBe('string');
    const rid = started.json.id;
    await sleep(3500);
    const running = await api('GET', `/api/events/${id}/recordings/${rid}`, { token: producer });
    expect(running.status).toBe(200);
    expect(running.json.state).toBe('recording');
    expect(running.json.size).toBeGreaterThan(0);
    expect(running.json.durationMs).toBeGreaterThan(2000);

    const stopped = await api('DELETE', `/api/events/${id}/recordings/${rid}`, { token: producer });
    expect(stopped.status).toBe(200);
    expect(stopped.json.recording.state).toBe('stopped');
    expect(stopped.json.recordings.map((r: { id: string }) => r.id)).toEqual([rid]);
    const seg = stopped.json.recording.segments[0];
    expect(seg.complete).toBe(true);

    const dl = await api('GET', `/api/events/${id}/recordings/${rid}/segments/0?token=${producer}`);
    expect(dl.status).toBe(200);
    expect(dl.headers.get('content-type')).toBe('application/octet-stream');
    expect(dl.buf.length).toBe(seg.size);
    expect(createHash('sha256').update(dl.buf).digest('hex')).toBe(seg.sha256);
    writeFileSync(join(dir, 'seg0.age'), dl.buf);
    const dec = spawnSync('age', ['-d', '-i', identity, '-o', join(dir, 'seg0.webm'), join(dir, 'seg0.age')]);
    expect(dec.status, dec.stderr.toString()).toBe(0);
    // The small rendition (160x90), with the presenter's flashes and beeps.
    const probe = JSON.parse(spawnSync('ffprobe', ['-v', 'error', '-show_streams', '-of', 'json', join(dir, 'seg0.webm')]).stdout.toString());
    expect(probe.streams.find((s: { codec_type: string }) => s.codec_type === 'video')).toMatchObject({ codec_name: 'vp8', width: 160, height: 90 });
    expect(onsets(audioPeaks(join(dir, 'seg0.webm')), -12).length).toBeGreaterThanOrEqual(2);
    expect(onsets(videoLuma(join(dir, 'seg0.webm')), 120).length).toBeGreaterThanOrEqual(2);
    expect((await api('GET', `/api/events/${id}/recordings/${rid}/segments/7`, { token: producer })).status).toBe(404);
    expect((await api('GET', `/api/events/${id}/recordings/nope`, { token: producer })).status).toBe(404);

    // Metrics count what was written.
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/mcu_recording_segments_written_total [1-9]/);
    expect(metrics).toMatch(/mcu_recording_bytes_written_total [1-9]/);

    // The event ends: its recordings stay listed and downloadable; a new one is a 409.
    expect((await api('DELETE', `/api/events/${id}`, { token: ADMIN })).status).toBe(204);
    const after = await api('GET', `/api/events/${id}/recordings`, { token: producer });
    expect(after.status).toBe(200);
    expect(after.json.recordings.map((r: { id: string }) => r.id)).toEqual([rid]);
    const ended = await api('POST', `/api/events/${id}/recordings`, { token: producer, body: { recipients: [recipient] } });
    expect(ended.status).toBe(409);
    expect(ended.json.error.message).toMatch(/has ended/);
    expect((await api('GET', `/api/events/nosuchevent/recordings`, { token: ADMIN })).status).toBe(404);
  }, 40_000);

  it('an event created with "record" starts recording when its first presenter joins', async () => {
    const bad = await api('POST', '/api/events', { token: ADMIN, body: { record: { recipients: ['ssh-rsa AAAA'] } } });
    expect(bad.status).toBe(400);
    const ev = await api('POST', '/api/events', { token: ADMIN, body: { record: { recipients: [recipient], rendition: false } } });
    expect(ev.status).toBe(201);
    const { id } = ev.json;
    const producer = ev.json.tokens.producer;
    await sleep(500);
    expect((await api('GET', `/api/events/${id}/recordings`, { token: producer })).json.recordings).toEqual([]);
    presenters.push(new BeepFlashPresenter(node.registry.get(id).mixer, 'p1', flashClip(320, 180)).start());
    expect(await until(() => node.recordings.recorder.runningOf(id).length === 1, 3000)).toBe(true);
    await sleep(1500);
    const list = await api('GET', `/api/events/${id}/recordings`, { token: producer });
    expect(list.json.recordings).toHaveLength(1);
    expect(list.json.recordings[0]).toMatchObject({ state: 'recording', rendition: null });
    expect((await api('DELETE', `/api/events/${id}`, { token: ADMIN })).status).toBe(204);
    expect(await until(() => node.recordings.recorder.runningOf(id).length === 0, 3000)).toBe(true);
    const done = await api('GET', `/api/events/${id}/recordings/${list.json.recordings[0].id}`, { token: producer });
    expect(done.json.state).toBe('stopped');
    expect(done.json.segments[0]).toMatchObject({ container: 'webm', video: false, complete: true });
    const file = join(dir, 'recordings', id, done.json.id, done.json.segments[0].name);
    expect(readFileSync(file).subarray(0, 21).toString()).toBe('age-encryption.org/v1');
  }, 30_000);
});
