import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSecret, handNoticeSchema, type TokenClaims } from '@mcu/control';
import { McuNode } from '../src/index.js';
import { sleep, tonePower } from '../../mixer/test/peer.js';
import { LOOPBACK, WebRtcClient } from '../../webrtc/test/client.js';
import { SseClient } from './sse.js';

// A raised hand invited backstage: it joins out of the program, hears the program and the
// backstage room, goes live with the producer's PATCH like any presenter, back to backstage stays
// on stage, and its page is told when its session ends (kicked, or it leaves).

const ADMIN = 'hands-stage-admin-token-0123456789abcdef';
let node: McuNode;
let base: string;
const streams: SseClient[] = [];

async function api(method: string, path: string, token: string | undefined, body?: unknown) {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null };
}

function claimsOf(token: string): TokenClaims {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8')) as TokenClaims;
}

/** Power of `freq` in what a client received from index `from` (default: its last `frames` frames). */
function heard(c: WebRtcClient, freq: number, frames = 25): number {
  return tonePower(c.decodeReceived(Math.max(0, c.received.length - frames)), freq);
}

/** Every client sends its tone in real time for `ms`. */
async function talk(clients: Array<[WebRtcClient, number]>, ms: number): Promise<void> {
  const start = performance.now();
  let frame = 0;
  while (performance.now() - start < ms) {
    for (const [c, f] of clients) c.sendTone(f);
    frame++;
    await sleep(Math.max(0, start + frame * 20 - performance.now()));
  }
}

async function guestStream(eventId: string, token: string): Promise<SseClient> {
  const s = await SseClient.open(`${base}/api/events/${eventId}/stream?events=hands&token=${encodeURIComponent(token)}`);
  streams.push(s);
  return s;
}

beforeAll(async () => {
  node = new McuNode({ port: 0, adminToken: ADMIN, tokenSecret: generateSecret(), iceAllow: LOOPBACK.iceAllow, iceHostAddresses: LOOPBACK.additionalHostAddresses });
  base = (await node.listen()).url;
});
afterAll(async () => {
  for (const s of streams) s.close();
  await node.close();
});

describe('a hand invited backstage', () => {
  it('joins backstage (out of the program, hears the program and the backstage room), goes live with PATCH, back to backstage stays on stage; kicked, its page is told', async () => {
    const ev = (await api('POST', '/api/events', ADMIN, { presentersJoin: 'live' })).json as { id: string; whip: string; whep: string; tokens: Record<string, string> };
    const LIVE = 440;
    // Away from the live tones' harmonics and mixing products (2 × 440 = 880 Hz once leaked past 900 Hz's −60 dB in a CI run).
    const BACKSTAGE = 650;
    const GUEST = 1250;
    const viewer = await WebRtcClient.connect('whep', ev.whep, ev.tokens.viewer);
    const host = await WebRtcClient.connect('whip', ev.whip, ev.tokens.presenter);
    const waiting = await WebRtcClient.connect('whip', ev.whip, node.auth.issuer.issue({ event: ev.id, role: 'presenter', stage: 'backstage', participant: 'waiting-1', ttlSeconds: 60 }));

    const guestToken = (await api('POST', `/api/events/${ev.id}/viewer-tokens`, ev.tokens.producer, { name: 'Guest Backstage' })).json.token as string;
    const page = await guestStream(ev.id, guestToken);
    await page.next((e) => e.event === 'hand' && e.data.hand === null);
    const hand = (await api('POST', `/api/events/${ev.id}/hands`, guestToken)).json;
    const invited = await api('POST', `/api/events/${ev.id}/hands/${hand.id}/invite`, ev.tokens.producer, { stage: 'backstage' });
    expect(invited.status).toBe(200);
    expect(invited.json).toMatchObject({ state: 'invited', invitation: { stage: 'backstage' } });
    const invitation = (await page.next((e) => e.event === 'invited')).data.invitation;
    expect(invitation.stage).toBe('backstage');
    expect(claimsOf(invitation.grant)).toMatchObject({ stage: 'backstage', pid: invitation.participant, name: 'Guest Backstage' });

    // What the viewer measures at the guest's frequency before the guest joins (the codec's floor).
    await Promise.all([viewer.connected(), host.connected(), waiting.connected()]);
    await talk([[host, LIVE], [waiting, BACKSTAGE]], 1000);
    const floor = heard(viewer, GUEST);
    const guest = await WebRtcClient.connect('whip', invitation.whip, invitation.grant);
    await guest.connected();
    const pid = invitation.participant as string;
    const stages = () => api('GET', `/api/events/${ev.id}/participants`, ev.tokens.producer).then((r) => Object.fromEntries(r.json.participants.map((p: { id: string; stage: string; name?: string }) => [p.id, `${p.stage}:${p.name ?? ''}`])));
    expect((await stages())[pid]).toBe('backstage:Guest Backstage');
    expect((await api('GET', `/api/events/${ev.id}/hands`, ev.tokens.producer)).json.hands[0]).toMatchObject({ id: hand.id, state: 'on_stage', invitation: { stage: 'backstage', participant: pid } });

    const all: Array<[WebRtcClient, number]> = [[host, LIVE], [waiting, BACKSTAGE], [guest, GUEST]];
    await talk(all, 1500);
    // The viewer hears the live host, neither backstage voice; the guest hears the program and the
    // backstage room, not itself.
    const viewerLive = heard(viewer, LIVE);
    expect(viewerLive).toBeGreaterThan(1000);
    expect(heard(viewer, GUEST)).toBeLessThan(viewerLive / 1000);
    console.log(`viewer at ${GUEST} Hz: ${floor.toExponential(2)} before the guest joined, ${heard(viewer, GUEST).toExponential(2)} with the guest backstage`);
    expect(heard(viewer, BACKSTAGE)).toBeLessThan(viewerLive / 1000);
    const guestLive = heard(guest, LIVE);
    expect(guestLive).toBeGreaterThan(1000);
    expect(heard(guest, BACKSTAGE)).toBeGreaterThan(guestLive / 100);
    expect(heard(guest, GUEST)).toBeLessThan(guestLive / 1000);
    console.log(`guest backstage: hears live ${guestLive.toExponential(2)}, backstage room ${heard(guest, BACKSTAGE).toExponential(2)}, itself ${heard(guest, GUEST).toExponential(2)}; viewer hears guest ${heard(viewer, GUEST).toExponential(2)}`);

    // The producer puts the guest live: the viewer hears it within the second, same session.
    const live = await api('PATCH', `/api/events/${ev.id}/participants/${pid}`, ev.tokens.producer, { stage: 'live' });
    expect(live.status).toBe(200);
    expect(live.json).toMatchObject({ id: pid, stage: 'live' });
    // Its page is told where it is now.
    expect((await page.next((e) => e.event === 'moved')).data).toMatchObject({ hand: hand.id, stage: 'live' });
    const movedAt = viewer.received.length;
    await talk(all, 1000);
    expect(tonePower(viewer.decodeReceived(movedAt), GUEST)).toBeGreaterThan(1000);
    expect(heard(viewer, BACKSTAGE)).toBeLessThan(heard(viewer, LIVE) / 1000);
    expect(heard(guest, GUEST)).toBeLessThan(heard(guest, LIVE) / 1000);
    expect(node.edge.sessionCount('whip', ev.id)).toBe(3);

    // Back to backstage: out of the program, still on stage (its session and hand stay; no notice to its page).
    expect((await api('PATCH', `/api/events/${ev.id}/participants/${pid}`, ev.tokens.producer, { stage: 'backstage' })).status).toBe(200);
    expect((await page.next((e) => e.event === 'moved' && e.data.stage === 'backstage')).data.hand).toBe(hand.id);
    // Other participants' moves are nobody's notice; nor is a patch that leaves the guest where it is.
    await api('PATCH', `/api/events/${ev.id}/participants/waiting-1`, ev.tokens.producer, { stage: 'live' });
    await api('PATCH', `/api/events/${ev.id}/participants/${pid}`, ev.tokens.producer, { stage: 'backstage', muted: false });
    await api('PATCH', `/api/events/${ev.id}/participants/waiting-1`, ev.tokens.producer, { stage: 'backstage' });
    await talk(all, 800);
    expect(page.events.filter((e) => e.event === 'moved').map((e) => e.data.stage)).toEqual(['live', 'backstage']);
    expect(heard(viewer, GUEST, 15)).toBeLessThan(heard(viewer, LIVE, 15) / 1000);
    expect(heard(guest, LIVE, 15)).toBeGreaterThan(1000);
    expect((await api('GET', `/api/events/${ev.id}/hands`, ev.tokens.producer)).json.hands[0]).toMatchObject({ id: hand.id, state: 'on_stage' });
    expect(page.events.filter((e) => e.event === 'done' || e.event === 'lowered')).toEqual([]);
    // A moved notice is checked like the others: `moved` needs its stage, a stage belongs to `moved`.
    const notice = { v: 1, event: ev.id, hand: hand.id, at: Date.now() };
    expect(handNoticeSchema.safeParse({ ...notice, kind: 'moved', stage: 'live' }).success).toBe(true);
    expect(handNoticeSchema.safeParse({ ...notice, kind: 'moved' }).success).toBe(false);
    expect(handNoticeSchema.safeParse({ ...notice, kind: 'done', stage: 'live' }).success).toBe(false);
    // On stage, its hand is not lowered (by the producer or itself): kicking ends it.
    const lowered = await api('DELETE', `/api/events/${ev.id}/hands/${hand.id}`, ev.tokens.producer);
    expect(lowered.status).toBe(409);
    expect(lowered.json.error.code).toBe('hand_on_stage');
    expect(lowered.json.error.message).toContain(pid);
    expect((await api('DELETE', `/api/events/${ev.id}/hands/${hand.id}`, guestToken)).status).toBe(409);
    // On stage already: a second invitation is a conflict.
    expect((await api('POST', `/api/events/${ev.id}/hands/${hand.id}/invite`, ev.tokens.producer, { stage: 'live' })).status).toBe(409);

    // The producer kicks the guest: its session ends, its hand is done, its page is told.
    const t0 = performance.now();
    expect((await api('DELETE', `/api/events/${ev.id}/participants/${pid}`, ev.tokens.producer)).status).toBe(204);
    const done = await page.next((e) => e.event === 'done' && e.data.hand === hand.id);
    console.log(`kick → guest's page told: ${(done.at - t0).toFixed(1)} ms`);
    expect((await api('GET', `/api/events/${ev.id}/hands`, ev.tokens.producer)).json.hands).toEqual([]);
    expect(Object.keys(await stages()).sort()).toEqual([host.location!.split('/').pop(), 'waiting-1'].sort());
    expect(node.edge.sessionCount('whip', ev.id)).toBe(2);
    await guest.pc.close();
    await Promise.all([viewer.hangUp(), host.hangUp(), waiting.hangUp()]);
    await api('DELETE', `/api/events/${ev.id}`, ADMIN);
  });

  it('a guest invited backstage who leaves by itself (its WHIP DELETE) ends its hand and its page is told', async () => {
    const ev = (await api('POST', '/api/events', ADMIN, { presentersJoin: 'backstage' })).json as { id: string; whip: string; tokens: Record<string, string> };
    const guestToken = (await api('POST', `/api/events/${ev.id}/viewer-tokens`, ev.tokens.producer, { name: 'Leaver' })).json.token as string;
    const page = await guestStream(ev.id, guestToken);
    await page.next((e) => e.event === 'hand');
    const hand = (await api('POST', `/api/events/${ev.id}/hands`, guestToken)).json;
    await api('POST', `/api/events/${ev.id}/hands/${hand.id}/invite`, ev.tokens.producer, { stage: 'live' });
    const invitation = (await page.next((e) => e.event === 'invited')).data.invitation;
    // The invitation's stage wins over the event's presentersJoin.
    const guest = await WebRtcClient.connect('whip', invitation.whip, invitation.grant);
    const list = (await api('GET', `/api/events/${ev.id}/participants`, ev.tokens.producer)).json.participants;
    expect(list).toEqual([expect.objectContaining({ id: invitation.participant, stage: 'live', name: 'Leaver' })]);
    expect((await api('PATCH', `/api/events/${ev.id}/participants/${invitation.participant}`, ev.tokens.producer, { stage: 'backstage' })).json.stage).toBe('backstage');
    expect(await guest.hangUp()).toBe(200);
    await page.next((e) => e.event === 'done' && e.data.hand === hand.id);
    expect((await api('GET', `/api/events/${ev.id}/hands`, ev.tokens.producer)).json.hands).toEqual([]);
    expect((await api('GET', `/api/events/${ev.id}/participants`, ev.tokens.producer)).json.participants).toEqual([]);
    await api('DELETE', `/api/events/${ev.id}`, ADMIN);
  });
});
