import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { McuNode } from '../src/index.js';
import { RtpPeer, sleep, tonePower } from '../../mixer/test/peer.js';
import { LOOPBACK, WebRtcClient } from '../../webrtc/test/client.js';

const ADMIN = 'stage-admin-token-0123456789abcdef0123';
let node: McuNode;
let base: string;

async function api(method: string, path: string, token: string | undefined, body?: unknown, contentType = 'application/json') {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = contentType;
  const res = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, json: text && res.headers.get('content-type')?.includes('json') ? JSON.parse(text) : null, text };
}

interface CreatedEvent {
  id: string;
  whip: string;
  whep: string;
  presentersJoin: string;
  tokens: Record<'producer' | 'presenter' | 'viewer', string>;
}

async function createEvent(body: Record<string, unknown> = {}): Promise<CreatedEvent> {
  const res = await api('POST', '/api/events', ADMIN, body);
  expect(res.status).toBe(201);
  return res.json as CreatedEvent;
}

/** Power of `freq` in the last `frames` 20 ms frames a client received. */
function heard(c: WebRtcClient, freq: number, frames = 25): number {
  return tonePower(c.decodeReceived(Math.max(0, c.received.length - frames)), freq);
}

/** The presenter sends its tone in real time for `ms`. */
async function talk(presenter: WebRtcClient, freq: number, ms: number): Promise<void> {
  const start = performance.now();
  let frame = 0;
  while (performance.now() - start < ms) {
    presenter.sendTone(freq);
    frame++;
    await sleep(Math.max(0, start + frame * 20 - performance.now()));
  }
}

beforeAll(async () => {
  node = new McuNode({ port: 0, adminToken: ADMIN, iceAllow: LOOPBACK.iceAllow, iceHostAddresses: LOOPBACK.additionalHostAddresses });
  base = (await node.listen()).url;
});
afterAll(async () => {
  await node.close();
});

describe('backstage and on air over the API', () => {
  it("a presenter joins backstage: viewers do not hear it, the producer's preview does; PATCH live puts it in the program", async () => {
    const ev = await createEvent({ presentersJoin: 'backstage' });
    expect(ev.presentersJoin).toBe('backstage');
    const viewer = await WebRtcClient.connect('whep', ev.whep, ev.tokens.viewer);
    const a = await WebRtcClient.connect('whip', ev.whip, ev.tokens.presenter);
    const pid = a.location!.split('/').pop()!;
    const preview = await WebRtcClient.connect('whep', `${ev.whep}?source=${pid}`, ev.tokens.producer);
    await Promise.all([viewer.connected(), a.connected(), preview.connected()]);

    const list = await api('GET', `/api/events/${ev.id}/participants`, ev.tokens.producer);
    expect(list.json.participants).toEqual([expect.objectContaining({ id: pid, kind: 'whip', stage: 'backstage' })]);

    await talk(a, 700, 1500);
    // The preview carries A's own packets (its SSRC and sequence numbers rewritten), the viewer nothing of A.
    expect(preview.received.length).toBeGreaterThan(50);
    for (let i = 1; i < preview.received.length; i++) expect((preview.received[i].seq - preview.received[i - 1].seq) & 0xffff).toBe(1);
    expect(heard(preview, 700)).toBeGreaterThan(1000);
    expect(viewer.received.length).toBeGreaterThan(50);
    expect(heard(viewer, 700)).toBeLessThan(heard(preview, 700) / 1000);
    expect(node.registry.get(ev.id).mixer.mixer.speakerIds).toEqual([]);

    const live = await api('PATCH', `/api/events/${ev.id}/participants/${pid}`, ev.tokens.producer, { stage: 'live' });
    expect(live.status).toBe(200);
    expect(live.json).toMatchObject({ id: pid, stage: 'live' });
    const movedAt = viewer.received.length;
    await talk(a, 700, 1000);
    // Within the second after the move, the viewer hears A (its jitter buffers and fade-in included).
    expect(tonePower(viewer.decodeReceived(movedAt), 700)).toBeGreaterThan(1000);
    expect(heard(viewer, 700)).toBeGreaterThan(heard(preview, 700) / 100);
    // Same sessions, no renegotiation: A is still the one WHIP session, the preview goes on.
    expect(node.edge.sessionCount('whip', ev.id)).toBe(1);
    expect(node.registry.get(ev.id).mixer.mixer.speakerIds).toEqual([pid]);

    // Backstage again: out of the program at once.
    expect((await api('PATCH', `/api/events/${ev.id}/participants/${pid}`, ev.tokens.producer, { stage: 'backstage' })).status).toBe(200);
    await talk(a, 700, 600);
    expect(heard(viewer, 700, 15)).toBeLessThan(heard(preview, 700, 15) / 1000);

    // The presenter leaves: the preview ends with it.
    await a.hangUp();
    await sleep(200);
    expect(node.edge.sessionCount('whep', ev.id)).toBe(1);
    await Promise.all([viewer.hangUp(), preview.hangUp()]);
    await api('DELETE', `/api/events/${ev.id}`, ADMIN);
  });

  it('validates: stage values, empty patches, producer-only moves and previews, unknown participants and sources', async () => {
    expect((await api('POST', '/api/events', ADMIN, { presentersJoin: 'green-room' })).status).toBe(400);
    const ev = await createEvent();
    expect(ev.presentersJoin).toBe('live');
    const peer = await RtpPeer.open({ freq: 0 });
    const add = await api('POST', `/api/events/${ev.id}/rtp-participants`, ev.tokens.presenter, { host: '127.0.0.1', port: peer.port, payloadType: 111, stage: 'backstage' });
    expect(add.status).toBe(201);
    expect(add.json.stage).toBe('backstage');
    const path = `/api/events/${ev.id}/participants/${add.json.id}`;
    expect((await api('PATCH', path, ADMIN, { stage: 'onstage' })).status).toBe(400);
    expect((await api('PATCH', path, ADMIN, {})).status).toBe(400);
    expect((await api('PATCH', path, ADMIN, { stage: 'live', extra: 1 })).status).toBe(400);
    expect((await api('PATCH', path, ev.tokens.presenter, { stage: 'live' })).status).toBe(403);
    expect((await api('PATCH', path, ev.tokens.viewer, { stage: 'live' })).status).toBe(403);
    const unknown = await api('PATCH', `/api/events/${ev.id}/participants/nobody`, ev.tokens.producer, { stage: 'live' });
    expect(unknown.status).toBe(404);
    expect(unknown.json.error.code).toBe('participant_not_found');
    // Mute and stage in one patch.
    const both = await api('PATCH', path, ev.tokens.producer, { stage: 'live', muted: true });
    expect(both.json).toMatchObject({ stage: 'live', muted: true });

    // Previews: the producer's only; the source must exist. Checked before the SDP is read.
    const offer = 'v=0\r\n';
    expect((await api('POST', `/whep/${ev.id}?source=${add.json.id}`, ev.tokens.viewer, offer, 'application/sdp')).status).toBe(403);
    expect((await api('POST', `/whep/${ev.id}?source=${add.json.id}`, ev.tokens.presenter, offer, 'application/sdp')).status).toBe(403);
    const noSource = await api('POST', `/whep/${ev.id}?source=nobody`, ev.tokens.producer, offer, 'application/sdp');
    expect(noSource.status).toBe(404);
    expect(noSource.json.error.code).toBe('participant_not_found');
    peer.close();
    await api('DELETE', `/api/events/${ev.id}`, ADMIN);
  });

  it("a presenter grant's stage and pid claims decide where and as whom its WHIP session joins", async () => {
    const ev = await createEvent({ presentersJoin: 'live' });
    const grant = node.auth.issuer.issue({ event: ev.id, role: 'presenter', participant: 'guest-1', stage: 'backstage', ttlSeconds: 60 });
    const guest = await WebRtcClient.connect('whip', ev.whip, grant);
    expect(guest.location).toBe(`/whip/${ev.id}/guest-1`);
    const plain = await WebRtcClient.connect('whip', ev.whip, ev.tokens.presenter);
    const list = await api('GET', `/api/events/${ev.id}/participants`, ev.tokens.producer);
    const stages = Object.fromEntries(list.json.participants.map((p: { id: string; stage: string }) => [p.id, p.stage]));
    expect(stages).toEqual({ 'guest-1': 'backstage', [plain.location!.split('/').pop()!]: 'live' });
    // The same participant cannot join twice.
    await expect(WebRtcClient.connect('whip', ev.whip, grant)).rejects.toThrow(/409/);
    await Promise.all([guest.hangUp(), plain.hangUp()]);
    await api('DELETE', `/api/events/${ev.id}`, ADMIN);
  });

  it('the event stream carries each participant\'s stage in levels and a fresh participants list when it moves', async () => {
    const ev = await createEvent({ presentersJoin: 'backstage' });
    const peer = await RtpPeer.open({ freq: 0 });
    const add = await api('POST', `/api/events/${ev.id}/rtp-participants`, ev.tokens.presenter, { host: '127.0.0.1', port: peer.port, payloadType: 111 });
    const ac = new AbortController();
    const res = await fetch(`${base}/api/events/${ev.id}/stream?token=${ev.tokens.producer}`, { signal: ac.signal });
    const reader = res.body!.getReader();
    let text = '';
    const until = async (pred: () => boolean, ms = 3000) => {
      const deadline = performance.now() + ms;
      while (!pred() && performance.now() < deadline) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
      return pred();
    };
    const events = (name: string) => [...text.matchAll(new RegExp(`event: ${name}\\ndata: (.*)\\n`, 'g'))].map((m) => JSON.parse(m[1]));
    expect(await until(() => events('levels').length > 0)).toBe(true);
    expect(events('levels')[0].participants[0]).toMatchObject({ id: add.json.id, stage: 'backstage' });
    expect(events('participants').at(-1).participants[0]).toMatchObject({ id: add.json.id, stage: 'backstage' });
    await api('PATCH', `/api/events/${ev.id}/participants/${add.json.id}`, ev.tokens.producer, { stage: 'live' });
    expect(await until(() => events('participants').at(-1).participants[0].stage === 'live')).toBe(true);
    expect(events('levels').at(-1).participants[0].stage).toBe('live');
    ac.abort();
    peer.close();
    await api('DELETE', `/api/events/${ev.id}`, ADMIN);
  });
});
