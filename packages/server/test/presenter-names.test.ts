import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenIssuer } from '@mcu/control';
import { McuNode } from '../src/index.js';
import { sleep } from '../../mixer/test/peer.js';
import { LOOPBACK, WebRtcClient } from '../../webrtc/test/client.js';

const ADMIN = 'presenter-names-admin-token-0123456789';
const SECRET = 'presenter-names-secret-0123456789abcdef0123';
const issuer = new TokenIssuer({ secret: SECRET });
let node: McuNode;
let base: string;
const clients: WebRtcClient[] = [];

async function api(method: string, path: string, token: string, body?: unknown) {
  const headers: Record<string, string> = { authorization: `Bearer ${token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null };
}

async function createEvent() {
  return (await api('POST', '/api/events', ADMIN)).json as { id: string; whip: string; tokens: Record<'producer' | 'presenter' | 'viewer', string> };
}

async function publish(url: string, token: string, video = false): Promise<{ client: WebRtcClient; session: string }> {
  const client = await WebRtcClient.connect('whip', url, token, { video });
  clients.push(client);
  return { client, session: client.location!.split('/').pop()! };
}

beforeAll(async () => {
  node = new McuNode({ port: 0, adminToken: ADMIN, tokenSecret: SECRET, iceAllow: LOOPBACK.iceAllow, iceHostAddresses: LOOPBACK.additionalHostAddresses });
  base = (await node.listen()).url;
});
afterAll(async () => {
  for (const c of clients) await c.pc.close().catch(() => undefined);
  await node.close();
});

describe('presenter names', () => {
  it("a WHIP presenter's ?name= is its name in the participant list and the label of its video in the composite", async () => {
    const ev = await createEvent();
    const { session } = await publish(`${ev.whip}?name=${encodeURIComponent('Ada Lovelace')}`, ev.tokens.presenter, true);
    const { session: unnamed } = await publish(ev.whip, ev.tokens.presenter);
    const list = await api('GET', `/api/events/${ev.id}/participants`, ev.tokens.producer);
    const byId = new Map((list.json.participants as { id: string; name?: string }[]).map((p) => [p.id, p]));
    expect(byId.get(session)).toMatchObject({ kind: 'whip', name: 'Ada Lovelace' });
    expect(byId.get(unnamed)!.name).toBeUndefined();
    // The session resource says it too.
    expect((await api('GET', `/whip/${ev.id}/${session}`, ev.tokens.presenter)).json).toMatchObject({ name: 'Ada Lovelace' });
    // Its video joins the event's video mixer under that label (drawn on its tiles: the mixer's
    // own test checks the pixels).
    const video = node.registry.get(ev.id).mixer;
    for (let i = 0; i < 100 && !video.videoMixer?.stats().sources[session]; i++) await sleep(50);
    expect(video.videoMixer!.stats().sources[session]).toMatchObject({ label: 'Ada Lovelace' });
    expect((await api('DELETE', `/api/events/${ev.id}`, ADMIN)).status).toBe(204);
  });

  it("the event stream's participant list carries the name", async () => {
    const ev = await createEvent();
    const { session } = await publish(`${ev.whip}?name=Grace`, ev.tokens.presenter);
    const ac = new AbortController();
    const res = await fetch(`${base}/api/events/${ev.id}/stream?token=${ev.tokens.producer}`, { signal: ac.signal });
    const reader = res.body!.getReader();
    let text = '';
    while (!/event: participants\ndata: .*\n/.test(text)) text += new TextDecoder().decode((await reader.read()).value);
    ac.abort();
    const data = JSON.parse(/event: participants\ndata: (.*)\n/.exec(text)![1]) as { participants: { id: string; name?: string }[] };
    expect(data.participants.find((p) => p.id === session)?.name).toBe('Grace');
    await api('DELETE', `/api/events/${ev.id}`, ADMIN);
  });

  it("a presenter token's name claim wins over ?name=", async () => {
    const ev = await createEvent();
    const named = issuer.issue({ event: ev.id, role: 'presenter', name: 'Katherine Johnson' });
    const { session } = await publish(`${ev.whip}?name=Impostor`, named);
    const p = await api('GET', `/api/events/${ev.id}/participants`, ev.tokens.producer);
    expect(p.json.participants.find((x: { id: string }) => x.id === session)).toMatchObject({ name: 'Katherine Johnson' });
    await api('DELETE', `/api/events/${ev.id}`, ADMIN);
  });

  it('a plain-RTP participant takes a name in its body, and a named token wins there too', async () => {
    const ev = await createEvent();
    const add = (token: string, name?: unknown) => api('POST', `/api/events/${ev.id}/rtp-participants`, token, { host: '127.0.0.1', port: 5004, payloadType: 111, ...(name === undefined ? {} : { name }) });
    const plain = await add(ev.tokens.presenter, 'Gateway 7');
    expect(plain.status).toBe(201);
    expect(plain.json).toMatchObject({ kind: 'rtp', name: 'Gateway 7' });
    const named = await add(issuer.issue({ event: ev.id, role: 'presenter', name: 'Dorothy Vaughan' }), 'Someone else');
    expect(named.json.name).toBe('Dorothy Vaughan');
    const bad = await add(ev.tokens.presenter, 'tab\there');
    expect(bad.status).toBe(400);
    expect(bad.json.error.field).toBe('name');
    const list = (await api('GET', `/api/events/${ev.id}/participants`, ev.tokens.producer)).json.participants as { name?: string }[];
    expect(list.map((p) => p.name).sort()).toEqual(['Dorothy Vaughan', 'Gateway 7']);
    await api('DELETE', `/api/events/${ev.id}`, ADMIN);
  });

  it('a bad ?name= is a 400 naming the field, and no session is created', async () => {
    const ev = await createEvent();
    const before = node.edge.size;
    for (const bad of ['', '   ', 'x'.repeat(65), 'bell\u0007']) {
      const res = await fetch(`${ev.whip}?name=${encodeURIComponent(bad)}`, {
        method: 'POST',
        headers: { 'content-type': 'application/sdp', authorization: `Bearer ${ev.tokens.presenter}` },
        body: 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=sendrecv\r\na=rtpmap:111 opus/48000/2\r\n',
      });
      expect(res.status, JSON.stringify(bad)).toBe(400);
      expect(((await res.json()) as { error: unknown }).error).toMatchObject({ code: 'invalid_request', field: 'name' });
    }
    expect(node.edge.size).toBe(before);
    await api('DELETE', `/api/events/${ev.id}`, ADMIN);
  });
});
