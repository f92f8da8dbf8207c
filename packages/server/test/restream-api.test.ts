/**
 * The restream API without an RTMP server: validation, tokens, unknown and ended events, the key
 * masked in every response and log line (ffmpeg really runs and really fails to connect), retries
 * counted, the added H.264 rendition removed when the last restream stops.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureLog } from '../../control/test/logCapture.js';
import { MixerEvent } from '@mcu/mixer';
import { McuNode, Restream, maskKey, parseRestreamUrl, restreamProgramOf, scrubSecrets } from '../src/index.js';
import { isAlive, sleep, until } from '../../codec/test/videoMedia.js';

async function eventually(cond: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const end = performance.now() + timeoutMs;
  while (performance.now() < end) {
    if (await cond()) return true;
    await sleep(100);
  }
  return cond();
}

const ADMIN = 'restream-admin-token-0123456789abcdef';
const KEY = 'abcd-efgh-ijkl-mnop-qrst';
let node: McuNode;
let base: string;
let deadPort: number;
const { lines, logger } = captureLog({ level: 'debug' });

async function api(method: string, path: string, token: string | undefined, body?: unknown) {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null, text, headers: res.headers };
}

/** A loopback TCP port nobody listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

beforeAll(async () => {
  node = new McuNode(
    // Loopback ingests are refused by default (RestreamAllow.ts): this node allows 127.0.0.1 explicitly.
    { port: 0, adminToken: ADMIN, restreamRendition: { width: 320, height: 180, fps: 15, bitrateKbps: 300 }, maxRestreamsPerEvent: 2, restreamAllow: ['127.0.0.1'] },
    { logger },
  );
  node.restreams.restreamOptions = { retryDelayMs: 100, maxRetryDelayMs: 400, maxAttempts: 4 };
  base = (await node.listen()).url;
  deadPort = await closedPort();
});
afterAll(async () => {
  await node.close();
});

describe('restream URLs', () => {
  it('parses host, port, application and key; masks the key; scrubs it out of ffmpeg lines', () => {
    const t = parseRestreamUrl(`rtmp://a.rtmp.youtube.com/live2/${KEY}`);
    expect(t).toMatchObject({ protocol: 'rtmp', host: 'a.rtmp.youtube.com', port: 1935, app: 'live2', key: KEY, masked: 'rtmp://a.rtmp.youtube.com/live2/••••qrst' });
    expect(parseRestreamUrl('rtmps://live.twitch.tv:443/app/live_123_abc')).toMatchObject({ protocol: 'rtmps', port: 443, app: 'app', masked: 'rtmps://live.twitch.tv:443/app/••••' });
    expect(parseRestreamUrl('rtmp://h/app/inst/k?sig=1').app).toBe('app/inst');
    expect(maskKey('short')).toBe('••••');
    const line = `rtmp://127.0.0.1:1935/live2/${KEY}: Connection refused; publish '${KEY}' failed`;
    const scrubbed = scrubSecrets(line, t);
    expect(scrubbed).not.toContain(KEY);
    expect(scrubbed).toContain('rtmp://127.0.0.1:1935/live2/••••qrst');
    for (const [url, why] of [
      ['http://example.com/app/key', /scheme http/],
      ['rtmp://example.com', /application/],
      ['rtmp://example.com/live2', /stream key is missing/],
      ['rtmp:///live2/key', /./],
      ['rtmp://user:pw@example.com/live2/key', /credentials/],
      ['rtmp://example.com/live2/key with space', /whitespace/],
      ['notaurl', /not a URL/],
    ] as const) {
      expect(() => parseRestreamUrl(url), url).toThrow(why);
    }
  });
});

describe('restream API', () => {
  it('400 for a bad URL (never echoing it), 401/403 for tokens, 404 unknown event, 409 ended event', async () => {
    const ev = (await api('POST', '/api/events', ADMIN)).json;
    const path = `/api/events/${ev.id}/restreams`;
    const bad = await api('POST', path, ev.tokens.producer, { url: `http://example.com/live2/${KEY}` });
    expect(bad.status).toBe(400);
    expect(bad.json.error).toMatchObject({ code: 'invalid_restream_url', field: 'url' });
    expect(bad.text).not.toContain(KEY);
    expect((await api('POST', path, ev.tokens.producer, { url: 'rtmp://example.com/live2' })).json.error.message).toMatch(/stream key is missing/);
    expect((await api('POST', path, ev.tokens.producer, {})).status).toBe(400);
    expect((await api('POST', path, ev.tokens.producer, { url: 'rtmp://h/a/k', extra: 1 })).status).toBe(400);
    expect((await api('POST', path, undefined, { url: `rtmp://127.0.0.1:${deadPort}/live/${KEY}` })).status).toBe(401);
    expect((await api('POST', path, ev.tokens.presenter, { url: `rtmp://127.0.0.1:${deadPort}/live/${KEY}` })).status).toBe(403);
    expect((await api('POST', path, ev.tokens.viewer, {})).status).toBe(403);
    expect((await api('GET', path, ev.tokens.viewer)).status).toBe(403);
    expect((await api('POST', '/api/events/nope/restreams', ADMIN, { url: `rtmp://127.0.0.1:${deadPort}/live/${KEY}` })).status).toBe(404);
    expect((await api('GET', '/api/events/nope/restreams', ADMIN)).status).toBe(404);
    expect((await api('GET', `${path}/nope`, ADMIN)).json.error.code).toBe('restream_not_found');
    expect((await api('DELETE', `${path}/nope`, ADMIN)).status).toBe(404);
    expect((await api('DELETE', `/api/events/${ev.id}`, ADMIN)).status).toBe(204);
    const ended = await api('POST', path, ADMIN, { url: `rtmp://127.0.0.1:${deadPort}/live/${KEY}` });
    expect(ended.status).toBe(409);
    expect(ended.json.error.code).toBe('event_ended');
    expect((await api('GET', path, ADMIN)).json).toEqual({ restreams: [] });
  });

  it('starts (masked), retries a refused connection with backoff and counts it, fails after maxAttempts, stops; the key never in a log line', async () => {
    const ev = (await api('POST', '/api/events', ADMIN)).json;
    const path = `/api/events/${ev.id}/restreams`;
    const url = `rtmp://127.0.0.1:${deadPort}/live/${KEY}`;
    const created = await api('POST', path, ev.tokens.producer, { url });
    expect(created.status).toBe(201);
    expect(created.json).toMatchObject({ event: ev.id, url: `rtmp://127.0.0.1:${deadPort}/live/••••qrst`, state: 'connecting', bytes: 0, reconnects: 0, rendition: 'restream' });
    expect(created.headers.get('location')).toBe(`${path}/${created.json.id}`);
    expect(created.text).not.toContain(KEY);
    // The event had VP8 only: an H.264 rendition was added for the restream.
    const mixer = node.registry.get(ev.id).mixer;
    expect(mixer.videoRenditions.map((r) => `${r.id}:${r.codec}`)).toEqual(['720p:vp8', '360p:vp8', 'restream:h264']);
    expect((await api('POST', path, ev.tokens.producer, { url })).json.error.code).toBe('restream_exists');
    const second = await api('POST', path, ADMIN, { url: `rtmps://127.0.0.1:${deadPort}/live/other-key-0123456789` });
    expect(second.status).toBe(201);
    expect((await api('POST', path, ADMIN, { url: `rtmp://127.0.0.1:${deadPort}/live/third` })).json.error.code).toBe('restreams_full');

    const id = created.json.id as string;
    const one = () => api('GET', `${path}/${id}`, ev.tokens.producer).then((r) => r.json);
    expect(await eventually(async () => (await one()).reconnects >= 2, 15_000)).toBe(true);
    const retrying = await one();
    expect(['retrying', 'connecting', 'failed']).toContain(retrying.state);
    expect(retrying.lastError).toBeTruthy();
    expect(JSON.stringify(retrying)).not.toContain(KEY);
    expect(await eventually(async () => (await one()).state === 'failed', 15_000)).toBe(true);
    const failed = await one();
    expect(failed.reconnects).toBe(3); // 4 attempts, the last one gave up
    expect(node.restreams.get(ev.id, id).pid).toBeNull();

    const states = (await api('GET', path, ADMIN)).json.restreams.map((r: { state: string }) => r.state);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(Number(/mcu_restreams\{state="failed"\} (\d+)/.exec(metrics)?.[1])).toBe(states.filter((s: string) => s === 'failed').length);
    expect(Number(/mcu_restream_reconnects_total (\d+)/.exec(metrics)?.[1])).toBeGreaterThanOrEqual(3);
    expect(metrics).toMatch(/mcu_restream_bytes_total 0/);

    const list = await api('GET', path, ev.tokens.producer);
    expect(list.json.restreams.map((r: { id: string }) => r.id).sort()).toEqual([id, second.json.id].sort());
    const pid = node.restreams.get(ev.id, second.json.id).pid;
    const stopped = await api('DELETE', `${path}/${id}`, ev.tokens.producer);
    expect(stopped.json).toMatchObject({ id, state: 'failed' });
    const stopped2 = await api('DELETE', `${path}/${second.json.id}`, ADMIN);
    expect(['stopped', 'failed']).toContain(stopped2.json.state); // it may have given up by now too
    if (pid !== null) expect(await until(() => !isAlive(pid))).toBe(true);
    expect((await api('GET', path, ADMIN)).json.restreams).toEqual([]);
    // The last restream out removed the rendition it added.
    expect(mixer.videoRenditions.map((r) => r.id)).toEqual(['720p', '360p']);

    const logged = JSON.stringify(lines);
    expect(logged).toContain('restream dropped');
    expect(logged).toContain('••••qrst');
    expect(logged).not.toContain(KEY);
    expect(logged).not.toContain('other-key-0123456789');
    await api('DELETE', `/api/events/${ev.id}`, ADMIN);
  });

  it('ending the event stops its restreams and frees their ffmpeg', async () => {
    const ev = (await api('POST', '/api/events', ADMIN)).json;
    const r = (await api('POST', `/api/events/${ev.id}/restreams`, ADMIN, { url: `rtmp://127.0.0.1:${deadPort}/live/${KEY}` })).json;
    const restream = node.restreams.get(ev.id, r.id);
    await until(() => restream.pid !== null, 5000);
    const pid = restream.pid;
    await api('DELETE', `/api/events/${ev.id}`, ADMIN);
    expect(restream.isClosed).toBe(true);
    expect(restream.state).not.toBe('live');
    if (pid !== null) expect(await until(() => !isAlive(pid))).toBe(true);
    expect(node.restreams.all()).toEqual([]);
  });

  it('close() is idempotent and leaves no socket, timer or ffmpeg behind (also mid-retry)', async () => {
    const event = new MixerEvent({ id: 'leak', video: { renditions: [{ id: 'main', width: 160, height: 90, fps: 10, bitrateKbps: 100 }] } });
    event.startVideo();
    await sleep(300);
    const count = (kind: string) => process.getActiveResourcesInfo().filter((r) => r === kind).length;
    const before = { udp: count('UDPWrap'), timers: count('Timeout') };
    const program = restreamProgramOf(event, { id: 'restream', width: 160, height: 90, fps: 10, bitrateKbps: 100 });
    const r = new Restream({ id: 'leak', event: 'leak', target: parseRestreamUrl(`rtmp://127.0.0.1:${deadPort}/live/${KEY}`), program, retryDelayMs: 50 });
    expect(await until(() => r.reconnects >= 2, 15_000)).toBe(true);
    const pid = r.pid;
    r.close();
    r.close();
    expect(r.state).toBe('stopped');
    expect(event.videoRenditions.map((x) => x.id)).toEqual(['main']);
    if (pid !== null) expect(await until(() => !isAlive(pid))).toBe(true);
    expect(await until(() => count('UDPWrap') <= before.udp && count('Timeout') <= before.timers, 3000)).toBe(true);
    event.close();
  });
});
