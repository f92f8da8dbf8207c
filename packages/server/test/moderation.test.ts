import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { McuNode } from '../src/index.js';
import { pace, RtpPeer, sleep, tonePower } from '../../mixer/test/peer.js';
import { LOOPBACK, WebRtcClient } from '../../webrtc/test/client.js';

const ADMIN = 'moderation-admin-token-0123456789abcdef';
let node: McuNode;
let base: string;

async function api(method: string, path: string, token: string | undefined, body?: unknown) {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null };
}

async function createEvent() {
  return (await api('POST', '/api/events', ADMIN)).json as { id: string; whip: string; tokens: Record<'producer' | 'presenter' | 'viewer', string> };
}

async function addRtp(eventId: string, peer: RtpPeer): Promise<string> {
  const add = await api('POST', `/api/events/${eventId}/rtp-participants`, ADMIN, { host: '127.0.0.1', port: peer.port, payloadType: 111, audioLevelExtId: 1 });
  peer.connect(add.json.host, add.json.port);
  return add.json.id;
}

/** Power of `freq` in what the listener received during the last `frames` 20 ms frames. */
function heard(peer: RtpPeer, freq: number, frames = 25): number {
  return tonePower(peer.decodeReceived(Math.max(0, peer.received.length - frames)), freq);
}

beforeAll(async () => {
  node = new McuNode({ port: 0, adminToken: ADMIN, iceAllow: LOOPBACK.iceAllow, iceHostAddresses: LOOPBACK.additionalHostAddresses });
  base = (await node.listen()).url;
});
afterAll(async () => {
  await node.close();
});

describe('producer moderation: mute and kick', () => {
  it("a muted RTP talker's tone leaves the listener's mix and returns after unmute", async () => {
    const ev = await createEvent();
    const talker = await RtpPeer.open({ freq: 440, audioLevelExtId: 1 });
    const listener = await RtpPeer.open({ freq: 0, audioLevelExtId: 1 });
    const talkerId = await addRtp(ev.id, talker);
    await addRtp(ev.id, listener);
    const path = `/api/events/${ev.id}/participants/${talkerId}`;

    await pace([talker, listener], 1200);
    const before = heard(listener, 440);
    expect(before).toBeGreaterThan(1000);

    const muted = await api('PATCH', path, ev.tokens.producer, { muted: true });
    expect(muted.status).toBe(200);
    expect(muted.json).toMatchObject({ id: talkerId, kind: 'rtp', muted: true, speaking: false });
    await pace([talker, listener], 1000);
    const during = heard(listener, 440);
    expect(during).toBeLessThan(before / 1000);
    const state = await api('GET', `/api/events/${ev.id}`, ev.tokens.producer);
    expect(state.json.speakers).not.toContain(talkerId);
    expect(state.json.participants.find((p: { id: string }) => p.id === talkerId).muted).toBe(true);

    // The mute holds while the talker keeps talking...
    await pace([talker, listener], 600);
    expect(heard(listener, 440)).toBeLessThan(before / 1000);
    // ...until unmuted.
    const unmuted = await api('PATCH', path, ADMIN, { muted: false });
    expect(unmuted.json.muted).toBe(false);
    await pace([talker, listener], 1200);
    expect(heard(listener, 440)).toBeGreaterThan(before / 4);

    talker.close();
    listener.close();
    await api('DELETE', `/api/events/${ev.id}`, ADMIN);
  });

  it('answers 400 for a bad body, 404 for an unknown participant, 403 for a presenter', async () => {
    const ev = await createEvent();
    const peer = await RtpPeer.open({ freq: 0 });
    const id = await addRtp(ev.id, peer);
    const path = `/api/events/${ev.id}/participants/${id}`;
    expect((await api('PATCH', path, ADMIN, { muted: 'yes' })).status).toBe(400);
    expect((await api('PATCH', path, ADMIN, { muted: true, extra: 1 })).status).toBe(400);
    expect((await api('PATCH', path, ADMIN)).status).toBe(400);
    expect((await api('PATCH', path, ev.tokens.presenter, { muted: true })).status).toBe(403);
    expect((await api('DELETE', path, ev.tokens.presenter)).status).toBe(403);
    const unknown = await api('PATCH', `/api/events/${ev.id}/participants/nobody`, ADMIN, { muted: true });
    expect(unknown.status).toBe(404);
    expect(unknown.json.error.code).toBe('participant_not_found');
    expect((await api('DELETE', `/api/events/${ev.id}/participants/nobody`, ADMIN)).status).toBe(404);
    peer.close();
    await api('DELETE', `/api/events/${ev.id}`, ADMIN);
  });

  it('a kicked RTP participant stops receiving and leaves the participant list', async () => {
    const ev = await createEvent();
    const kicked = await RtpPeer.open({ freq: 300, audioLevelExtId: 1 });
    const stays = await RtpPeer.open({ freq: 0, audioLevelExtId: 1 });
    const kickedId = await addRtp(ev.id, kicked);
    const staysId = await addRtp(ev.id, stays);
    await pace([kicked, stays], 500);
    expect(kicked.received.length).toBeGreaterThan(10);

    expect((await api('DELETE', `/api/events/${ev.id}/participants/${kickedId}`, ev.tokens.producer)).status).toBe(204);
    await sleep(100);
    const countAfterKick = kicked.received.length;
    const staysCount = stays.received.length;
    await pace([kicked, stays], 600);
    expect(kicked.received.length).toBe(countAfterKick);
    expect(stays.received.length).toBeGreaterThan(staysCount + 20);
    const list = await api('GET', `/api/events/${ev.id}/participants`, ev.tokens.producer);
    expect(list.json.participants.map((p: { id: string }) => p.id)).toEqual([staysId]);
    expect((await api('DELETE', `/api/events/${ev.id}/participants/${kickedId}`, ADMIN)).status).toBe(404);

    kicked.close();
    stays.close();
    await api('DELETE', `/api/events/${ev.id}`, ADMIN);
  });

  it('mutes a WHIP presenter, then kicks it: its WebRTC session is torn down', async () => {
    const ev = await createEvent();
    const listener = await RtpPeer.open({ freq: 0, audioLevelExtId: 1 });
    await addRtp(ev.id, listener);
    const presenter = await WebRtcClient.connect('whip', ev.whip, ev.tokens.presenter);
    await presenter.connected();
    const sessionId = presenter.location!.split('/').pop()!;
    const talk = async (ms: number) => {
      const start = performance.now();
      let frame = 0;
      while (performance.now() - start < ms) {
        presenter.sendTone(700);
        listener.sendFrame();
        frame++;
        await sleep(Math.max(0, start + frame * 20 - performance.now()));
      }
    };
    await talk(1500);
    const before = heard(listener, 700);
    expect(before).toBeGreaterThan(1000);

    const muted = await api('PATCH', `/api/events/${ev.id}/participants/${sessionId}`, ev.tokens.producer, { muted: true });
    expect(muted.status).toBe(200);
    expect(muted.json).toMatchObject({ id: sessionId, kind: 'whip', muted: true });
    await talk(1000);
    expect(heard(listener, 700)).toBeLessThan(before / 1000);
    await api('PATCH', `/api/events/${ev.id}/participants/${sessionId}`, ev.tokens.producer, { muted: false });
    await talk(1200);
    expect(heard(listener, 700)).toBeGreaterThan(before / 4);

    const sessionsBefore = node.edge.size;
    expect((await api('DELETE', `/api/events/${ev.id}/participants/${sessionId}`, ev.tokens.producer)).status).toBe(204);
    expect(node.edge.size).toBe(sessionsBefore - 1);
    expect((await api('GET', `/whip/${ev.id}/${sessionId}`, ev.tokens.presenter)).status).toBe(404);
    const list = await api('GET', `/api/events/${ev.id}/participants`, ADMIN);
    expect(list.json.participants.map((p: { kind: string }) => p.kind)).toEqual(['rtp']);
    // The presenter's peer connection sees the end (DTLS close), and nothing comes back any more.
    await sleep(300);
    const got = presenter.received.length;
    await talk(500);
    expect(presenter.received.length).toBe(got);

    await presenter.hangUp();
    listener.close();
    await api('DELETE', `/api/events/${ev.id}`, ADMIN);
  });
});
