/**
 * Where a restream may connect (restreamAllow): by default only public addresses, so a producer
 * token cannot make the node dial its loopback, private network or a metadata address. Refused at
 * POST (403, nothing started) and, for what passed POST, at every connection after DNS; allowed
 * ingests are reached (a real nginx-rtmp on loopback, allowed by name).
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MixerEvent } from '@mcu/mixer';
import { McuNode, Restream, RestreamAllow, isPublicAddress, parseRestreamUrl, restreamProgramOf } from '../src/index.js';
import { nodeConfigSchema } from '../src/Config.js';
import { sleep, until } from '../../codec/test/videoMedia.js';
import { NginxRtmp } from './nginxRtmp.js';

const ADMIN = 'restream-allow-admin-token-0123456789';
const KEY = 'allow-test-key-0123456789';
const small = { restreamRendition: { width: 160, height: 90, fps: 10, bitrateKbps: 100 }, videoRenditions: [{ id: 'main', width: 160, height: 90, fps: 10 }] };
let nginx: NginxRtmp;
let closed: McuNode;
let named: McuNode;
const urls: Record<string, string> = {};

async function api(base: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${base}${path}`, { method, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null, text };
}

async function newEvent(base: string): Promise<string> {
  return (await api(base, 'POST', '/api/events', { name: 'allow' })).json.id;
}

beforeAll(async () => {
  nginx = await NginxRtmp.start();
  // Default setting: public addresses only.
  closed = new McuNode({ port: 0, adminToken: ADMIN, ...small });
  // The loopback ingest allowed by its name and port only.
  named = new McuNode({ port: 0, adminToken: ADMIN, ...small, restreamAllow: [`localhost:${nginx.port}`] });
  named.restreams.restreamOptions = { retryDelayMs: 200, maxRetryDelayMs: 1000 };
  urls.closed = (await closed.listen()).url;
  urls.named = (await named.listen()).url;
});
afterAll(async () => {
  await closed?.close();
  await named?.close();
  await nginx?.close();
});

describe('restreamAllow rules', () => {
  it('tells public addresses from loopback, private, link-local, reserved and their IPv4-mapped forms', () => {
    for (const a of ['8.8.8.8', '1.1.1.1', '2606:4700:4700::1111', '::ffff:8.8.8.8']) expect(isPublicAddress(a), a).toBe(true);
    for (const a of ['127.0.0.1', '127.8.9.10', '10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '224.0.0.1', '255.255.255.255', '::1', '::', 'fe80::1', 'fd00::1', 'fc00::1', 'ff02::1', '::ffff:127.0.0.1', '::ffff:10.0.0.1', 'not-an-ip']) expect(isPublicAddress(a), a).toBe(false);
  });

  it('matches names, wildcards, addresses, networks and ports as written', () => {
    const allow = new RestreamAllow(['ingest.example.com:1935', '*.example.org', '10.0.0.0/8:1935', '[fd00::/8]', '127.0.0.1']);
    expect(allow.allowsName('ingest.example.com', 1935)).toBe(true);
    expect(allow.allowsName('INGEST.example.com.', 1935)).toBe(true);
    expect(allow.allowsName('ingest.example.com', 443)).toBe(false);
    expect(allow.allowsName('a.b.example.org', 443)).toBe(true);
    expect(allow.allowsName('example.org', 443)).toBe(false);
    expect(allow.allowsName('evil-example.org', 443)).toBe(false);
    expect(allow.allowsAddress('10.9.8.7', 1935)).toBe(true);
    expect(allow.allowsAddress('10.9.8.7', 1936)).toBe(false);
    expect(allow.allowsAddress('fd00::5', 80)).toBe(true);
    expect(allow.allowsAddress('127.0.0.1', 5)).toBe(true);
    expect(allow.allowsAddress('127.0.0.2', 5)).toBe(false);
    // No `public`: a public address is not allowed unless listed.
    expect(allow.allowsAddress('8.8.8.8', 1935)).toBe(false);
    expect(new RestreamAllow().allowsAddress('8.8.8.8', 1935)).toBe(true);
  });

  it('rejects a bad entry in the node config, naming it', () => {
    for (const bad of ['::1', '10.0.0.0/33', 'host:99999', 'a b', 'rtmp://x/y', '/8']) {
      const r = nodeConfigSchema.safeParse({ restreamAllow: [bad] });
      expect(r.success, bad).toBe(false);
      expect(JSON.stringify(r.error?.issues), bad).toContain(JSON.stringify(bad).slice(1, -1));
    }
    expect(nodeConfigSchema.parse({}).restreamAllow).toEqual(['public']);
  });
});

describe('restreamAllow on a node', () => {
  it('refuses loopback, private, link-local and unresolvable hosts at POST by default, and starts nothing', async () => {
    const ev = await newEvent(urls.closed);
    const path = `/api/events/${ev}/restreams`;
    for (const host of ['127.0.0.1', 'localhost', '10.1.2.3', '192.168.0.10', '169.254.169.254', '[::1]', '[::ffff:127.0.0.1]', '0.0.0.0']) {
      const r = await api(urls.closed, 'POST', path, { url: `rtmp://${host}:${nginx.port}/live/${KEY}` });
      expect(r.status, host).toBe(403);
      expect(r.json.error.code, host).toBe('restream_target_refused');
      expect(r.json.error.message, host).toMatch(/restreamAllow/);
      // The key is not echoed.
      expect(r.text, host).not.toContain(KEY);
    }
    const unresolved = await api(urls.closed, 'POST', path, { url: `rtmp://no-such-host.invalid/live/${KEY}` });
    expect(unresolved.status).toBe(400);
    expect(unresolved.json.error.code).toBe('restream_host_unresolved');
    expect((await api(urls.closed, 'GET', path)).json.restreams).toEqual([]);
  });

  it('reaches an ingest its rule names (real nginx-rtmp on loopback), and refuses the same server by address', async () => {
    const ev = await newEvent(urls.named);
    const path = `/api/events/${ev}/restreams`;
    // Named by address instead of by name, and on another port: not allowed.
    expect((await api(urls.named, 'POST', path, { url: `rtmp://127.0.0.1:${nginx.port}/live/${KEY}` })).json.error.code).toBe('restream_target_refused');
    expect((await api(urls.named, 'POST', path, { url: `rtmp://localhost:${nginx.port + 1}/live/${KEY}` })).json.error.code).toBe('restream_target_refused');
    const created = await api(urls.named, 'POST', path, { url: `rtmp://localhost:${nginx.port}/live/${KEY}` });
    expect(created.status).toBe(201);
    const one = `${path}/${created.json.id}`;
    let state = '';
    for (const end = performance.now() + 20_000; state !== 'live' && performance.now() < end; await sleep(200)) state = (await api(urls.named, 'GET', one)).json.state;
    expect(state).toBe('live');
    // nginx records what was published to it.
    expect(await until(() => existsSync(nginx.recording(KEY)), 5000)).toBe(true);
    expect((await api(urls.named, 'DELETE', one)).json.state).toBe('stopped');
  }, 40_000);

  it('checks every connection after DNS: a run whose host resolves to an address not allowed never reaches it', async () => {
    const event = new MixerEvent({ id: 'allow-run', video: { renditions: [{ id: 'main', width: 160, height: 90, fps: 10 }] } });
    const program = restreamProgramOf(event, { id: 'restream', width: 160, height: 90, fps: 10, bitrateKbps: 100 });
    const key = 'rebound-key-0123456789';
    // As if `localhost` had resolved to a public address at POST and to loopback now: only a
    // public address is allowed, and the run's connection resolves it again.
    const r = new Restream({ id: 'rebound', event: event.id, target: parseRestreamUrl(`rtmp://localhost:${nginx.port}/live/${key}`), program, allow: new RestreamAllow(['public']), retryDelayMs: 100, maxRetryDelayMs: 200, maxAttempts: 3 });
    try {
      expect(await until(() => r.describe().lastError !== null, 15_000)).toBe(true);
      expect(r.describe().lastError).toMatch(/does not restream to localhost:\d+ \((127\.0\.0\.1|::1)/);
      expect(await until(() => r.describe().reconnects >= 1, 15_000)).toBe(true);
      expect(r.describe().lastError).toMatch(/does not restream to localhost/);
      await sleep(300);
      expect(r.describe().state).not.toBe('live');
      expect(existsSync(nginx.recording(key))).toBe(false);
    } finally {
      r.close();
      event.close();
    }
  }, 40_000);
});
