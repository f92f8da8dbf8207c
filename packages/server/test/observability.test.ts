/**
 * What an operator sees of one node: JSON log lines per lifecycle event, the OpenAPI document
 * matching the routes, /healthz and /readyz with their reasons, and the metric names on /metrics.
 */
import dgram from 'node:dgram';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '@mcu/control';
import { captureLog } from '../../control/test/logCapture.js';
import { McuNode, openApiPath, operationKey, Router } from '../src/index.js';
import { LOOPBACK, WebRtcClient } from '../../webrtc/test/client.js';

const ADMIN = 'test-admin-token-0123456789abcdef';
const SECRET = 'test-secret-0123456789abcdef0123456789abcdef';
const nodes: McuNode[] = [];

afterEach(async () => {
  for (const n of nodes.splice(0)) await n.close();
});

function capture() {
  return captureLog({ name: 'test', bindings: { node: 'n1' } });
}

async function startNode(config: ConstructorParameters<typeof McuNode>[0] = {}, opts: ConstructorParameters<typeof McuNode>[1] = {}) {
  const node = new McuNode({ port: 0, adminToken: ADMIN, tokenSecret: SECRET, ...config }, opts);
  nodes.push(node);
  await node.listen();
  return node;
}

async function call(node: McuNode, method: string, path: string, body?: unknown) {
  const res = await fetch(`${node.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as any) : null };
}

describe('structured logs', () => {
  it('an event created, an RTP participant joining and leaving, the event ended: one JSON line each with the ids', async () => {
    const { lines, logger } = capture();
    const node = await startNode({}, { logger });
    const peer = dgram.createSocket('udp4');
    peer.bind(0, '127.0.0.1');
    await once(peer, 'listening');
    try {
      const event = (await call(node, 'POST', '/api/events', { name: 'keynote' })).json as { id: string };
      const p = (await call(node, 'POST', `/api/events/${event.id}/rtp-participants`, { host: '127.0.0.1', port: peer.address().port, payloadType: 111 })).json as { id: string };
      expect((await call(node, 'DELETE', `/api/events/${event.id}/rtp-participants/${p.id}`)).status).toBe(204);
      expect((await call(node, 'DELETE', `/api/events/${event.id}`)).status).toBe(204);

      const find = (msg: string) => lines.find((l) => l.msg === msg);
      expect(find('node listening')).toMatchObject({ level: 'info', name: 'test', node: 'n1', url: node.url });
      expect(find('event created')).toMatchObject({ node: 'n1', event: event.id, name: 'keynote' });
      expect(find('RTP participant joined')).toMatchObject({ event: event.id, participant: p.id, port: peer.address().port });
      expect(find('RTP participant left')).toMatchObject({ event: event.id, participant: p.id, reason: 'deleted' });
      expect(find('event ended')).toMatchObject({ event: event.id });
      const order = ['event created', 'RTP participant joined', 'RTP participant left', 'event ended'].map((m) => lines.findIndex((l) => l.msg === m));
      expect(order).toEqual([...order].sort((a, b) => a - b));
      // Every line is one JSON object with a time and a level name.
      for (const l of lines) expect(typeof l.time).toBe('string');
    } finally {
      peer.close();
    }
  });

  it('a 5xx answer is logged with the error; requests that succeed are not logged at info', async () => {
    const { lines, logger } = capture();
    const node = await startNode({ maxEvents: 1 }, { logger });
    expect((await call(node, 'POST', '/api/events')).status).toBe(201);
    expect((await call(node, 'GET', '/api/events')).status).toBe(200);
    const before = lines.length;
    expect((await call(node, 'POST', '/api/events')).status).toBe(503);
    const line = lines.slice(before).find((l) => l.status === 503);
    expect(line).toMatchObject({ level: 'warn', msg: 'HTTP request refused', method: 'POST', path: '/api/events', status: 503 });
    expect((line!.err as { message: string }).message).toMatch(/maximum of 1 events/);
    expect(lines.filter((l) => l.path === '/api/events' && l.status !== 503)).toEqual([]);
  });

  it('is quiet under vitest by default (MCU_LOG_LEVEL unset)', () => {
    expect(process.env.VITEST).toBeTruthy();
    if (process.env.MCU_LOG_LEVEL) return;
    expect(createLogger().level).toBe('silent');
  });
});

describe('OpenAPI document', () => {
  /** Both directions: every route is documented, every documented operation has a route. */
  function assertMatches(doc: { paths: Record<string, Record<string, unknown>> }, router: Router) {
    const routes = new Set(router.routes().map((r) => `${r.method.toLowerCase()} ${openApiPath(r.path)}`));
    const documented = new Set(Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m} ${path}`)));
    expect([...routes].filter((r) => !documented.has(r)), 'routes missing from the document').toEqual([]);
    expect([...documented].filter((d) => !routes.has(d)), 'documented operations with no route').toEqual([]);
  }

  it('is served without auth, and matches the node\'s routes in both directions', async () => {
    const node = await startNode();
    const res = await fetch(`${node.url}/api/openapi.json`);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as any;
    expect(doc.openapi).toBe('3.1.0');
    assertMatches(doc, node.router);

    // A route the document lacks fails the check, and so does a documented one without a route.
    const extra = new Router();
    for (const r of node.router.routes()) extra.on(r.method, r.path, () => undefined);
    extra.on('POST', '/api/undocumented', () => undefined);
    expect(() => assertMatches(doc, extra)).toThrow(/routes missing from the document/);
    const fewer = new Router();
    for (const r of node.router.routes().filter((r) => r.path !== '/metrics')) fewer.on(r.method, r.path, () => undefined);
    expect(() => assertMatches(doc, fewer)).toThrow(/documented operations with no route/);
    expect(node.router.routes().map(operationKey)).toContain('GET /api/openapi.json');
  });

  it('describes bodies from the zod schemas, bearer auth, path parameters and the error shape', async () => {
    const node = await startNode();
    const doc = (await (await fetch(`${node.url}/api/openapi.json`)).json()) as any;
    const create = doc.paths['/api/events'].post;
    const body = create.requestBody.content['application/json'].schema;
    expect(body.properties.maxSpeakers).toMatchObject({ type: 'integer', minimum: 1, maximum: 16 });
    expect(body.additionalProperties).toBe(false);
    expect(create.security).toEqual([{ bearer: [] }]);
    expect(Object.keys(create.responses)).toEqual(expect.arrayContaining(['201', '400', '401', '403', '409', '413', '415', '503']));
    expect(create.responses['401'].content['application/json'].schema).toEqual({ $ref: '#/components/schemas/Error' });
    expect(doc.components.schemas.Error.properties.error.required).toEqual(['code', 'message']);
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });

    const rtp = doc.paths['/api/events/{id}/rtp-participants'].post;
    expect(rtp.parameters).toEqual([{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }]);
    expect(rtp.requestBody.content['application/json'].schema.required).toEqual(['host', 'port', 'payloadType']);
    expect(rtp.responses['404']).toBeDefined();

    const whep = doc.paths['/whep/{id}'].post;
    expect(whep.requestBody.content).toHaveProperty('application/sdp');
    expect(whep.parameters.map((p: { name: string }) => p.name)).toEqual(['id', 'token', 'rendition']);
    expect(doc.paths['/whip/{id}'].post.parameters.map((p: { name: string }) => p.name)).toEqual(['id', 'token', 'name']);
    expect(whep.responses['307'].headers).toHaveProperty('location');
    expect(doc.paths['/healthz'].get.security).toEqual([]);
  });
});

describe('/healthz and /readyz', () => {
  it('ready with room; 503 with a reason when events are at their maximum, when draining, when closing; healthz stays 200', async () => {
    const node = await startNode({ maxEvents: 1 });
    const ready = await fetch(`${node.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready', events: 0 });

    const e = (await call(node, 'POST', '/api/events')).json as { id: string };
    let r = await call(node, 'GET', '/readyz');
    expect(r).toMatchObject({ status: 503, json: { status: 'unavailable', reason: 'events_full' } });
    expect((await call(node, 'GET', '/healthz')).status).toBe(200);
    await call(node, 'DELETE', `/api/events/${e.id}`);
    expect((await call(node, 'GET', '/readyz')).status).toBe(200);

    // Draining: readyz 503, no new event, the running one goes on until it ends; then the node closes.
    const e2 = (await call(node, 'POST', '/api/events')).json as { id: string };
    const drained = node.drain({ timeoutMs: 10_000 });
    r = await call(node, 'GET', '/readyz');
    expect(r).toMatchObject({ status: 503, json: { reason: 'draining' } });
    expect((await call(node, 'GET', '/healthz')).status).toBe(200);
    expect((await call(node, 'POST', '/api/events')).json.error.code).toBe('draining');
    expect((await call(node, 'GET', `/api/events/${e2.id}`)).status).toBe(200);
    const started = performance.now();
    await call(node, 'DELETE', `/api/events/${e2.id}`);
    await drained;
    expect(performance.now() - started).toBeLessThan(2000);
    expect(node.notReady()).toMatchObject({ reason: 'closing' });
    await expect(fetch(`${node.url}/healthz`)).rejects.toThrow();
  });

  it('503 sessions_full when the WebRTC sessions are at their maximum; the WHEP viewer joining and leaving is logged', async () => {
    const { lines, logger } = capture();
    const node = await startNode({ maxRtcSessions: 1, iceAllow: LOOPBACK.iceAllow, iceHostAddresses: LOOPBACK.additionalHostAddresses }, { logger });
    expect(node.notReady()).toBeNull();
    // Fill the one session slot with a real WHEP offer from a werift client.
    const e = (await call(node, 'POST', '/api/events')).json as { id: string; whep: string; tokens: { viewer: string } };
    const client = await WebRtcClient.connect('whep', e.whep, e.tokens.viewer);
    try {
      const r = await call(node, 'GET', '/readyz');
      expect(r).toMatchObject({ status: 503, json: { reason: 'sessions_full' } });
      const sid = client.location!.split('/').pop();
      expect(lines.find((l) => l.msg === 'WHEP viewer joined')).toMatchObject({ event: e.id, session: sid, kind: 'whep' });
      expect((await fetch(`${node.url}${client.location}`, { method: 'DELETE', headers: { authorization: `Bearer ${e.tokens.viewer}` } })).status).toBe(200);
      expect(lines.find((l) => l.msg === 'WHEP viewer left')).toMatchObject({ event: e.id, session: sid, reason: 'deleted' });
      expect((await call(node, 'GET', '/readyz')).status).toBe(200);
    } finally {
      await client.pc.close();
    }
  });

  it('a drain that times out ends the events still running and closes', async () => {
    const node = await startNode();
    await call(node, 'POST', '/api/events');
    const started = performance.now();
    await node.drain({ timeoutMs: 300 });
    expect(performance.now() - started).toBeGreaterThanOrEqual(290);
    expect(node.registry.list()).toEqual([]);
  });
});

describe('/metrics', () => {
  it('has process CPU, memory and event-loop lag, mcu_draining, and the node\'s media counters', async () => {
    const node = await startNode();
    const text = await (await fetch(`${node.url}/metrics`)).text();
    for (const name of [
      'mcu_process_cpu_seconds_total',
      'mcu_process_resident_memory_bytes',
      'mcu_nodejs_eventloop_lag_seconds',
      'mcu_nodejs_heap_size_used_bytes',
      'mcu_events',
      'mcu_webrtc_sessions',
    ]) {
      expect(text, name).toMatch(new RegExp(`^${name}[ {]`, 'm'));
    }
    expect(text).toMatch(/^mcu_draining 0$/m);
    void node.drain({ timeoutMs: 5000 });
    expect(await node.metrics.render().then((m) => m.body)).toMatch(/^mcu_draining 1$/m);
  });

  it('has the video pipeline: frames encoded and dropped per rendition, encode latency, process restarts', async () => {
    const node = await startNode();
    const res = await call(node, 'POST', '/api/events');
    const id = (res.json as { id: string }).id;
    // A source with no frames yet: the mixer composes its placeholder and encodes every rendition.
    node.registry.get(id).mixer.addVideoSource('cam', 'vp8', 'Cam');
    const encoded = (text: string, rendition: string) => Number(new RegExp(`^mcu_video_frames_encoded_total\\{rendition="${rendition}"\\} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
    let text = '';
    const deadline = performance.now() + 15_000;
    while (performance.now() < deadline) {
      text = await node.metrics.render().then((m) => m.body);
      if (encoded(text, '720p') > 5 && encoded(text, '360p') > 5) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(encoded(text, '720p'), text.slice(0, 400)).toBeGreaterThan(5);
    expect(encoded(text, '360p')).toBeGreaterThan(5);
    const latency = Number(new RegExp(`^mcu_video_encode_latency_seconds\\{event="${id}",rendition="720p"\\} (\\S+)$`, 'm').exec(text)?.[1]);
    expect(latency).toBeGreaterThan(0);
    expect(latency).toBeLessThan(2);
    expect(text).toMatch(/^mcu_video_process_restarts_total 0$/m);
    expect(text).toMatch(/^mcu_video_frames_dropped_total\{rendition="720p"\} \d+$/m);
    await node.close();
  }, 30_000);
});
