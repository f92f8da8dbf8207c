import dgram from 'node:dgram';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenIssuer } from '@mcu/control';
import { McuNode } from '../src/index.js';

const ADMIN = 'test-admin-token-0123456789abcdef';
const SECRET = 'test-secret-0123456789abcdef0123456789abcdef';
let node: McuNode;
let base: string;

async function api(method: string, path: string, opts: { token?: string; body?: unknown; raw?: string; type?: string } = {}) {
  const headers: Record<string, string> = {};
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  let body: string | undefined;
  if (opts.raw !== undefined) body = opts.raw;
  else if (opts.body !== undefined) body = JSON.stringify(opts.body);
  if (body !== undefined) headers['content-type'] = opts.type ?? 'application/json';
  const res = await fetch(`${base}${path}`, { method, headers, body });
  const text = await res.text();
  let json: any = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = text;
  }
  return { status: res.status, json, headers: res.headers };
}

beforeAll(async () => {
  node = new McuNode({ port: 0, adminToken: ADMIN, tokenSecret: SECRET });
  base = (await node.listen()).url;
});
afterAll(async () => {
  await node.close();
});

describe('HTTP API', () => {
  it('creates an event with absolute WHIP/WHEP URLs and scoped tokens', async () => {
    const r = await api('POST', '/api/events', { token: ADMIN, body: { name: 'keynote', maxSpeakers: 4 } });
    expect(r.status).toBe(201);
    expect(r.json).toMatchObject({ name: 'keynote', maxSpeakers: 4 });
    expect(r.json.whip).toBe(`${base}/whip/${r.json.id}`);
    expect(r.json.whep).toBe(`${base}/whep/${r.json.id}`);
    expect(r.headers.get('location')).toBe(`/api/events/${r.json.id}`);
    const issuer = new TokenIssuer({ secret: SECRET });
    for (const role of ['producer', 'presenter', 'viewer'] as const) {
      const claims = issuer.verify(r.json.tokens[role]);
      expect(claims).toMatchObject({ evt: r.json.id, role });
    }
    const got = await api('GET', `/api/events/${r.json.id}`, { token: r.json.tokens.producer });
    expect(got.status).toBe(200);
    expect(got.json.id).toBe(r.json.id);
    const list = await api('GET', '/api/events', { token: ADMIN });
    expect(list.json.events.map((e: { id: string }) => e.id)).toContain(r.json.id);
  });

  it('answers 401 without or with a bad token, 403 for a wrong role or event, 404 for an unknown event', async () => {
    const a = (await api('POST', '/api/events', { token: ADMIN })).json;
    const b = (await api('POST', '/api/events', { token: ADMIN })).json;
    expect((await api('POST', '/api/events')).status).toBe(401);
    expect((await api('POST', '/api/events', { token: 'garbage' })).status).toBe(401);
    expect((await api('GET', `/api/events/${a.id}`, { token: `${a.tokens.producer}x` })).status).toBe(401);
    const expired = new TokenIssuer({ secret: SECRET, clock: () => Date.now() - 3 * 86_400_000 }).issue({ event: a.id, role: 'producer', ttlSeconds: 60 });
    const exp = await api('GET', `/api/events/${a.id}`, { token: expired });
    expect(exp.status).toBe(401);
    expect(exp.json.error.code).toBe('token_expired');
    const forged = new TokenIssuer({ secret: 'another-secret-0123456789abcdef0123456789' }).issue({ event: a.id, role: 'producer' });
    expect((await api('GET', `/api/events/${a.id}`, { token: forged })).status).toBe(401);
    // valid tokens, wrong role or wrong event
    expect((await api('POST', '/api/events', { token: a.tokens.producer })).status).toBe(403);
    expect((await api('GET', `/api/events/${a.id}`, { token: a.tokens.viewer })).status).toBe(403);
    expect((await api('GET', `/api/events/${b.id}`, { token: a.tokens.producer })).status).toBe(403);
    expect((await api('DELETE', `/api/events/${b.id}`, { token: a.tokens.producer })).status).toBe(403);
    expect((await api('POST', `/api/events/${a.id}/rtp-participants`, { token: a.tokens.viewer, body: { host: '127.0.0.1', port: 5000, payloadType: 111 } })).status).toBe(403);
    // unknown
    const nf = await api('GET', '/api/events/nope', { token: ADMIN });
    expect(nf.status).toBe(404);
    expect(nf.json.error.code).toBe('event_not_found');
    expect((await api('GET', '/api/nothing-here', { token: ADMIN })).status).toBe(404);
    expect((await api('PUT', '/api/events', { token: ADMIN })).status).toBe(405);
    // a producer lists only its own event
    const mine = await api('GET', '/api/events', { token: a.tokens.producer });
    expect(mine.json.events.map((e: { id: string }) => e.id)).toEqual([a.id]);
  });

  it('rejects bad bodies with 400 naming the field, 415 for a wrong content type', async () => {
    const bad = await api('POST', '/api/events', { token: ADMIN, body: { maxSpeakers: 'x' } });
    expect(bad.status).toBe(400);
    expect(bad.json.error.field).toBe('maxSpeakers');
    expect(bad.json.error.message).toMatch(/maxSpeakers/);
    const badJson = await api('POST', '/api/events', { token: ADMIN, raw: '{"name":' });
    expect(badJson.status).toBe(400);
    const unknownField = await api('POST', '/api/events', { token: ADMIN, body: { colour: 'red' } });
    expect(unknownField.status).toBe(400);
    const wrongType = await api('POST', '/api/events', { token: ADMIN, raw: 'name=x', type: 'text/plain' });
    expect(wrongType.status).toBe(415);
    const ev = (await api('POST', '/api/events', { token: ADMIN })).json;
    const badPort = await api('POST', `/api/events/${ev.id}/rtp-participants`, { token: ev.tokens.presenter, body: { host: '127.0.0.1', port: 70000, payloadType: 111 } });
    expect(badPort.status).toBe(400);
    expect(badPort.json.error.field).toBe('port');
    // Never a stack trace in a response.
    expect(JSON.stringify(badPort.json)).not.toMatch(/at .*\.ts:\d+/);
  });

  it('adds and removes plain-RTP participants; ending the event frees every socket', async () => {
    const ev = (await api('POST', '/api/events', { token: ADMIN })).json;
    const add = await api('POST', `/api/events/${ev.id}/rtp-participants`, {
      token: ev.tokens.presenter,
      body: { host: '127.0.0.1', port: 40_123, payloadType: 111, audioLevelExtId: 1 },
    });
    expect(add.status).toBe(201);
    expect(add.json).toMatchObject({ host: '127.0.0.1', remotePort: 40_123 });
    const port: number = add.json.port;
    const second = await api('POST', `/api/events/${ev.id}/rtp-participants`, {
      token: ev.tokens.producer,
      body: { host: '127.0.0.1', port: 40_124, payloadType: 111 },
    });
    const parts = await api('GET', `/api/events/${ev.id}/participants`, { token: ev.tokens.producer });
    expect(parts.json.participants).toHaveLength(2);
    expect((await api('DELETE', `/api/events/${ev.id}/rtp-participants/${second.json.id}`, { token: ev.tokens.presenter })).status).toBe(204);
    expect((await api('DELETE', `/api/events/${ev.id}/rtp-participants/${second.json.id}`, { token: ev.tokens.presenter })).status).toBe(404);
    // The port is in use while the event runs...
    const probe = dgram.createSocket('udp4');
    const bindErr = await new Promise<Error | null>((resolve) => {
      probe.once('error', resolve);
      probe.bind(port, '127.0.0.1', () => resolve(null));
    });
    expect(bindErr).not.toBeNull();
    probe.close();
    expect((await api('DELETE', `/api/events/${ev.id}`, { token: ev.tokens.producer })).status).toBe(204);
    expect((await api('GET', `/api/events/${ev.id}`, { token: ADMIN })).status).toBe(404);
    // ...and free once it ended.
    const again = dgram.createSocket('udp4');
    again.bind(port, '127.0.0.1');
    await once(again, 'listening');
    again.close();
  });

  it('streams the dominant speaker as it changes', async () => {
    const ev = (await api('POST', '/api/events', { token: ADMIN })).json;
    const res = await fetch(`${base}/api/events/${ev.id}/stream`, { headers: { authorization: `Bearer ${ev.tokens.producer}` } });
    const reader = res.body!.getReader();
    const { RtpPeer, pace } = await import('../../mixer/test/peer.js');
    const peer = await RtpPeer.open({ freq: 500, audioLevelExtId: 1 });
    const add = await api('POST', `/api/events/${ev.id}/rtp-participants`, {
      token: ev.tokens.presenter,
      body: { host: '127.0.0.1', port: peer.port, payloadType: 111, audioLevelExtId: 1 },
    });
    peer.connect(add.json.host, add.json.port);
    await pace([peer], 800);
    let text = '';
    const deadline = Date.now() + 3000;
    while (!text.includes('event: dominantSpeaker') && Date.now() < deadline) {
      const chunk = await reader.read();
      if (chunk.done) break;
      text += new TextDecoder().decode(chunk.value);
    }
    expect(text).toMatch(new RegExp(`event: dominantSpeaker\ndata: \{"dominantSpeaker":"${add.json.id}"\}`));
    expect(text).toMatch(/event: speakers/);
    await reader.cancel();
    peer.close();
    await api('DELETE', `/api/events/${ev.id}`, { token: ADMIN });
  });

  it('exports Prometheus metrics that follow the media', async () => {
    const ev = (await api('POST', '/api/events', { token: ADMIN })).json;
    const { RtpPeer, pace } = await import('../../mixer/test/peer.js');
    const peer = await RtpPeer.open({ freq: 300, audioLevelExtId: 1 });
    const add = await api('POST', `/api/events/${ev.id}/rtp-participants`, {
      token: ev.tokens.presenter,
      body: { host: '127.0.0.1', port: peer.port, payloadType: 111, audioLevelExtId: 1 },
    });
    peer.connect(add.json.host, add.json.port);
    await pace([peer], 500);
    for (let i = 0; i < 10; i++) peer.sendRaw(Buffer.from([0x40, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]));
    await new Promise((r) => setTimeout(r, 100));
    const value = (text: string, name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
    const text = await (await fetch(`${base}/metrics`)).text();
    expect(value(text, 'mcu_mixer_tick_seconds_count')).toBeGreaterThan(10);
    expect(value(text, 'mcu_rtp_packets_in_total')).toBeGreaterThan(10);
    expect(value(text, 'mcu_rtp_packets_out_total')).toBeGreaterThan(10);
    expect(value(text, 'mcu_rtp_dropped_total{reason="bad_version"}')).toBe(10);
    expect(value(text, 'mcu_participants{kind="rtp"}')).toBe(1);
    expect(text).toMatch(/mcu_process_cpu_seconds_total/);
    // Totals survive the end of the event.
    await api('DELETE', `/api/events/${ev.id}`, { token: ADMIN });
    const after = await (await fetch(`${base}/metrics`)).text();
    expect(value(after, 'mcu_rtp_dropped_total{reason="bad_version"}')).toBe(10);
    expect(value(after, 'mcu_rtp_packets_in_total')).toBeGreaterThanOrEqual(value(text, 'mcu_rtp_packets_in_total'));
    peer.close();
  });

  it('switches the video layout live and rejects bad layouts', async () => {
    const ev = (await api('POST', '/api/events', { token: ADMIN })).json;
    const ok = await api('PUT', `/api/events/${ev.id}/layout`, { token: ev.tokens.producer, body: { kind: 'speaker' } });
    expect(ok.status).toBe(200);
    expect(node.registry.get(ev.id).mixer.layout).toEqual({ kind: 'speaker' });
    const custom = { kind: 'custom', regions: [{ sourceId: 'a', x: 0, y: 0, width: 0.5, height: 1 }] };
    expect((await api('PUT', `/api/events/${ev.id}/layout`, { token: ADMIN, body: custom })).status).toBe(200);
    expect((await api('GET', `/api/events/${ev.id}`, { token: ADMIN })).json.layout).toEqual(custom);
    const bad = await api('PUT', `/api/events/${ev.id}/layout`, { token: ADMIN, body: { kind: 'mosaic' } });
    expect(bad.status).toBe(400);
    expect(bad.json.error.field).toBe('kind');
    const outside = await api('PUT', `/api/events/${ev.id}/layout`, {
      token: ADMIN,
      body: { kind: 'custom', regions: [{ sourceId: 'a', x: 0.8, y: 0, width: 0.5, height: 1 }] },
    });
    expect(outside.status).toBe(400);
    expect(outside.json.error.message).toMatch(/past the canvas/);
    expect((await api('PUT', `/api/events/${ev.id}/layout`, { token: ev.tokens.viewer, body: { kind: 'grid' } })).status).toBe(403);
    await api('DELETE', `/api/events/${ev.id}`, { token: ADMIN });
  });

  it('streams speaker changes as server-sent events', async () => {
    const ev = (await api('POST', '/api/events', { token: ADMIN })).json;
    const ac = new AbortController();
    const res = await fetch(`${base}/api/events/${ev.id}/stream?token=${ev.tokens.viewer}`, { signal: ac.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const reader = res.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    expect(first).toMatch(/event: state/);
    await api('DELETE', `/api/events/${ev.id}`, { token: ADMIN });
    let rest = '';
    for (let i = 0; i < 5 && !rest.includes('event: ended'); i++) {
      const chunk = await reader.read();
      if (chunk.done) break;
      rest += new TextDecoder().decode(chunk.value);
    }
    expect(rest).toMatch(/event: ended/);
    ac.abort();
  });
});
