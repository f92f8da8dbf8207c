import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenIssuer, generateSecret, type TokenClaims } from '@mcu/control';
import { McuNode, RateLimiter, HandLimits } from '../src/index.js';
import { LOOPBACK, WebRtcClient } from '../../webrtc/test/client.js';
import { SseClient } from './sse.js';

const ADMIN = 'hands-admin-token-0123456789abcdef';
let node: McuNode;
let base: string;
const streams: SseClient[] = [];

async function api(method: string, path: string, token: string | undefined, body?: unknown) {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null, headers: res.headers };
}

async function createEvent() {
  return (await api('POST', '/api/events', ADMIN)).json as { id: string; whip: string; tokens: Record<'producer' | 'presenter' | 'viewer', string> };
}

async function viewerToken(eventId: string, producer: string, name?: string): Promise<string> {
  const res = await api('POST', `/api/events/${eventId}/viewer-tokens`, producer, name === undefined ? {} : { name });
  expect(res.status).toBe(201);
  return res.json.token as string;
}

function claimsOf(token: string): TokenClaims {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8')) as TokenClaims;
}

async function stream(eventId: string, token: string): Promise<SseClient> {
  const s = await SseClient.open(`${base}/api/events/${eventId}/stream?token=${encodeURIComponent(token)}`);
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

describe('viewer names and raised hands', () => {
  it('a producer mints named viewer tokens (invitation links); a viewer cannot, a bad name is a 400', async () => {
    const ev = await createEvent();
    const res = await api('POST', `/api/events/${ev.id}/viewer-tokens`, ev.tokens.producer, { name: 'Ada Lovelace' });
    expect(res.status).toBe(201);
    expect(res.json.name).toBe('Ada Lovelace');
    expect(res.json.watch).toBe(`${base}/watch/${ev.id}?token=${encodeURIComponent(res.json.token)}`);
    expect(claimsOf(res.json.token)).toMatchObject({ evt: ev.id, role: 'viewer', name: 'Ada Lovelace' });
    // A viewer of a public link gets a token of its own: its name, a subject of its own, no longer than its own token.
    const own = await api('POST', `/api/events/${ev.id}/viewer-tokens`, ev.tokens.viewer, { name: 'Shared Link Viewer' });
    expect(own.status).toBe(201);
    expect(own.json.watch).toBeUndefined();
    const ownClaims = claimsOf(own.json.token);
    expect(ownClaims).toMatchObject({ evt: ev.id, role: 'viewer', name: 'Shared Link Viewer' });
    expect(ownClaims.sub).toMatch(/^viewer-/);
    expect(ownClaims.exp).toBeLessThanOrEqual(claimsOf(ev.tokens.viewer).exp);
    const second = await api('POST', `/api/events/${ev.id}/viewer-tokens`, ev.tokens.viewer, { name: 'Another Viewer' });
    expect(claimsOf(second.json.token).sub).not.toBe(ownClaims.sub);
    expect((await api('POST', `/api/events/${ev.id}/viewer-tokens`, ev.tokens.viewer, {})).status).toBe(400);
    expect((await api('POST', `/api/events/${ev.id}/viewer-tokens`, ev.tokens.presenter, { name: 'x' })).status).toBe(403);
    expect((await api('POST', `/api/events/${ev.id}/viewer-tokens`, ev.tokens.producer, { name: 'bad\u0007name' })).status).toBe(400);
    expect((await api('POST', `/api/events/nope/viewer-tokens`, ADMIN, { name: 'x' })).status).toBe(404);
  });

  it('a second raise by the same viewer is idempotent; the name comes from the token, else the body, else 400', async () => {
    const ev = await createEvent();
    const named = await viewerToken(ev.id, ev.tokens.producer, 'Grace');
    const first = await api('POST', `/api/events/${ev.id}/hands`, named, { name: 'Someone else' });
    expect(first.status).toBe(201);
    expect(first.json).toMatchObject({ name: 'Grace', state: 'raised' });
    expect(first.headers.get('location')).toBe(`/api/events/${ev.id}/hands/${first.json.id}`);
    const again = await api('POST', `/api/events/${ev.id}/hands`, named);
    expect(again.status).toBe(200);
    expect(again.json).toMatchObject({ id: first.json.id, raisedAt: first.json.raisedAt });
    expect((await api('GET', `/api/events/${ev.id}/hands`, ev.tokens.producer)).json.hands).toHaveLength(1);

    const anonymous = await viewerToken(ev.id, ev.tokens.producer);
    const refused = await api('POST', `/api/events/${ev.id}/hands`, anonymous);
    expect(refused.status).toBe(400);
    expect(refused.json.error.code).toBe('name_required');
    expect((await api('POST', `/api/events/${ev.id}/hands`, anonymous, { name: 'Typed Name' })).json.name).toBe('Typed Name');
    // Only viewers raise hands; tokens of another event do not.
    expect((await api('POST', `/api/events/${ev.id}/hands`, ev.tokens.presenter, { name: 'p' })).status).toBe(403);
    const other = await createEvent();
    expect((await api('POST', `/api/events/${ev.id}/hands`, other.tokens.viewer, { name: 'o' })).status).toBe(403);
    expect((await api('POST', `/api/events/${ev.id}/hands`, undefined, { name: 'o' })).status).toBe(401);
  });

  it('two viewers of one public link, each with a token of its own, have a hand each', async () => {
    const ev = await createEvent();
    const own = async (name: string) => (await api('POST', `/api/events/${ev.id}/viewer-tokens`, ev.tokens.viewer, { name })).json.token as string;
    const a = await api('POST', `/api/events/${ev.id}/hands`, await own('Viewer A'));
    const b = await api('POST', `/api/events/${ev.id}/hands`, await own('Viewer B'));
    expect([a.status, b.status]).toEqual([201, 201]);
    expect(a.json.id).not.toBe(b.json.id);
    const names = (await api('GET', `/api/events/${ev.id}/hands`, ev.tokens.producer)).json.hands.map((h: { name: string }) => h.name);
    expect(names).toEqual(['Viewer A', 'Viewer B']);
  });

  it('the producer lists hands in the order they were raised, with names and waiting time; viewers cannot list', async () => {
    const ev = await createEvent();
    const names = ['First', 'Second', 'Third', 'Fourth'];
    const ids: string[] = [];
    for (const name of names) {
      const res = await api('POST', `/api/events/${ev.id}/hands`, await viewerToken(ev.id, ev.tokens.producer, name));
      ids.push(res.json.id);
      await new Promise((r) => setTimeout(r, 5));
    }
    const list = await api('GET', `/api/events/${ev.id}/hands`, ev.tokens.producer);
    expect(list.status).toBe(200);
    expect(list.json.hands.map((h: { name: string }) => h.name)).toEqual(names);
    expect(list.json.hands.map((h: { id: string }) => h.id)).toEqual(ids);
    const raisedAt = list.json.hands.map((h: { raisedAt: number }) => h.raisedAt);
    expect([...raisedAt].sort((a, b) => a - b)).toEqual(raisedAt);
    for (const h of list.json.hands) expect(h.waitingMs).toBeGreaterThanOrEqual(0);
    expect((await api('GET', `/api/events/${ev.id}/hands`, ev.tokens.viewer)).status).toBe(403);
  });

  it("a viewer lowers its own hand; another's is a 403; the producer lowers any; the producer's stream follows the queue", async () => {
    const ev = await createEvent();
    const producerStream = await stream(ev.id, ev.tokens.producer);
    const alice = await viewerToken(ev.id, ev.tokens.producer, 'Alice');
    const bob = await viewerToken(ev.id, ev.tokens.producer, 'Bob');
    const a = (await api('POST', `/api/events/${ev.id}/hands`, alice)).json;
    const b = (await api('POST', `/api/events/${ev.id}/hands`, bob)).json;
    await producerStream.next((e) => e.event === 'hands' && e.data.hands.length === 0);
    await producerStream.next((e) => e.event === 'hand-update' && e.data.id === b.id && e.data.hand.name === 'Bob');
    const forbidden = await api('DELETE', `/api/events/${ev.id}/hands/${b.id}`, alice);
    expect(forbidden.status).toBe(403);
    expect(forbidden.json.error.code).toBe('forbidden_hand');
    expect((await api('DELETE', `/api/events/${ev.id}/hands/${a.id}`, alice)).status).toBe(204);
    expect((await api('DELETE', `/api/events/${ev.id}/hands/${a.id}`, ev.tokens.producer)).status).toBe(404);
    await producerStream.next((e) => e.event === 'hand-update' && e.data.id === a.id && e.data.hand === null);
    expect((await api('DELETE', `/api/events/${ev.id}/hands/${b.id}`, ev.tokens.producer)).status).toBe(204);
    expect((await api('GET', `/api/events/${ev.id}/hands`, ev.tokens.producer)).json.hands).toEqual([]);
    // Raised again after lowering (its 4th hand request: within its burst).
    expect((await api('POST', `/api/events/${ev.id}/hands`, alice)).status).toBe(201);
  });

  it('past the per-viewer limit the endpoint answers 429 with Retry-After, at once; other viewers go on', async () => {
    const ev = await createEvent();
    const flooder = await viewerToken(ev.id, ev.tokens.producer, 'Flood');
    const statuses: number[] = [];
    let retryAfter: string | null = null;
    for (let i = 0; i < 10; i++) {
      const t0 = performance.now();
      const res = await api('POST', `/api/events/${ev.id}/hands`, flooder);
      statuses.push(res.status);
      if (res.status === 429) {
        retryAfter = res.headers.get('retry-after');
        expect(res.json.error.code).toBe('rate_limited');
        expect(performance.now() - t0).toBeLessThan(500);
      }
    }
    // The burst (4) passes (201 then 200s), the rest are refused.
    expect(statuses.slice(0, 4)).toEqual([201, 200, 200, 200]);
    expect(statuses.slice(4).every((s) => s === 429)).toBe(true);
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
    const other = await viewerToken(ev.id, ev.tokens.producer, 'Calm');
    expect((await api('POST', `/api/events/${ev.id}/hands`, other)).status).toBe(201);
  });

  it('rate limits: per key, refilled with time, a node-wide limit, bounded memory (manual clock)', () => {
    let now = 0;
    const limits = new HandLimits({ viewerBurst: 2, viewerRefillMs: 1000, nodeBurst: 3, nodePerSecond: 1, maxTrackedViewers: 10, now: () => now });
    limits.take('a');
    limits.take('a');
    expect(() => limits.take('a')).toThrow(/from this viewer/);
    limits.take('b');
    // The node's burst of 3 is used up: a fresh viewer is refused by the node's limit.
    let err: any;
    try {
      limits.take('c');
    } catch (e) {
      err = e;
    }
    expect(err?.status).toBe(429);
    expect(err?.message).toMatch(/on this node/);
    expect(err?.retryAfterSeconds).toBe(1);
    now += 1000;
    limits.take('c');
    const small = new RateLimiter({ burst: 1, refillMs: 10, maxKeys: 100, now: () => now });
    for (let i = 0; i < 1000; i++) small.take(`viewer-${i}`, 'x');
    expect(small.size).toBeLessThanOrEqual(100);
  });
});

describe('invitations on stage', () => {
  it("the viewer's stream gets a single-use grant scoped to the event and one participant; its WHIP joins by name; leaving ends the hand", async () => {
    const ev = await createEvent();
    const guestToken = await viewerToken(ev.id, ev.tokens.producer, 'Guest Star');
    const bystander = await viewerToken(ev.id, ev.tokens.producer, 'Bystander');
    const guestStream = await SseClient.open(`${base}/api/events/${ev.id}/stream?events=hands&token=${encodeURIComponent(guestToken)}`);
    streams.push(guestStream);
    const otherStream = await stream(ev.id, bystander);
    await guestStream.next((e) => e.event === 'hand' && e.data.hand === null);
    const hand = (await api('POST', `/api/events/${ev.id}/hands`, guestToken)).json;
    await api('POST', `/api/events/${ev.id}/hands`, bystander);

    expect((await api('POST', `/api/events/${ev.id}/hands/${hand.id}/invite`, ev.tokens.viewer, { stage: 'live' })).status).toBe(403);
    expect((await api('POST', `/api/events/${ev.id}/hands/${hand.id}/invite`, ev.tokens.producer, { stage: 'nowhere' })).status).toBe(400);
    expect((await api('POST', `/api/events/${ev.id}/hands/unknown-hand/invite`, ev.tokens.producer, { stage: 'live' })).status).toBe(404);
    const t0 = performance.now();
    const invited = await api('POST', `/api/events/${ev.id}/hands/${hand.id}/invite`, ev.tokens.producer, { stage: 'live' });
    expect(invited.status).toBe(200);
    expect(invited.json).toMatchObject({ id: hand.id, state: 'invited', invitation: { stage: 'live' } });
    const notice = await guestStream.next((e) => e.event === 'invited');
    console.log(`invite → viewer's stream: ${(notice.at - t0).toFixed(1)} ms`);
    const { grant, participant, whip, stage } = notice.data.invitation;
    expect(stage).toBe('live');
    expect(whip).toBe(ev.whip);
    const claims = claimsOf(grant);
    expect(claims).toMatchObject({ evt: ev.id, role: 'presenter', pid: participant, stage: 'live', name: 'Guest Star', sub: `hand:${hand.id}` });
    expect(claims.exp - claims.iat).toBeLessThanOrEqual(120);
    // Nobody else's stream hears of it.
    await new Promise((r) => setTimeout(r, 200));
    expect(otherStream.events.filter((e) => e.event === 'invited')).toEqual([]);
    // The watch page's stream (?events=hands) carries the hand events only, not the 4/s levels.
    expect(new Set(guestStream.events.map((e) => e.event))).toEqual(new Set(['hand', 'invited']));
    expect(otherStream.events.some((e) => e.event === 'levels')).toBe(true);
    // The grant is no producer's: it cannot list hands or invite.
    expect((await api('GET', `/api/events/${ev.id}/hands`, grant)).status).toBe(403);

    const guest = await WebRtcClient.connect('whip', ev.whip, grant);
    expect(guest.location).toBe(`/whip/${ev.id}/${participant}`);
    const participants = (await api('GET', `/api/events/${ev.id}/participants`, ev.tokens.producer)).json.participants;
    expect(participants).toEqual([expect.objectContaining({ id: participant, name: 'Guest Star' })]);
    // The guest's hand (raised in the same millisecond as the bystander's, it may list second).
    const listed = (await api('GET', `/api/events/${ev.id}/hands`, ev.tokens.producer)).json.hands as { id: string; state: string }[];
    expect(listed.find((h) => h.id === hand.id)).toMatchObject({ id: hand.id, state: 'on_stage' });
    // Single use: a second session with the same grant is refused, even after the first left.
    await expect(WebRtcClient.connect('whip', ev.whip, grant)).rejects.toThrow(/answered 403.*invitation_used/);
    // Inviting a guest who is on stage is a conflict.
    expect((await api('POST', `/api/events/${ev.id}/hands/${hand.id}/invite`, ev.tokens.producer, { stage: 'backstage' })).status).toBe(409);

    expect(await guest.hangUp()).toBe(200);
    await guestStream.next((e) => e.event === 'done' && e.data.hand === hand.id);
    const left = (await api('GET', `/api/events/${ev.id}/hands`, ev.tokens.producer)).json.hands;
    expect(left.map((h: { name: string }) => h.name)).toEqual(['Bystander']);
    await expect(WebRtcClient.connect('whip', ev.whip, grant)).rejects.toThrow(/answered 403/);
  });

  it('a grant for another event, or one whose invitation was replaced, is refused; a reopened stream gets the pending invitation again', async () => {
    const ev = await createEvent();
    const other = await createEvent();
    const viewer = await viewerToken(ev.id, ev.tokens.producer, 'Twice');
    const hand = (await api('POST', `/api/events/${ev.id}/hands`, viewer)).json;
    const s1 = await stream(ev.id, viewer);
    await api('POST', `/api/events/${ev.id}/hands/${hand.id}/invite`, ev.tokens.producer, { stage: 'backstage' });
    const first = (await s1.next((e) => e.event === 'invited')).data.invitation;
    await expect(WebRtcClient.connect('whip', other.whip, first.grant)).rejects.toThrow(/answered 403/);
    // A second invitation replaces the first: the first grant no longer works.
    await api('POST', `/api/events/${ev.id}/hands/${hand.id}/invite`, ev.tokens.producer, { stage: 'live' });
    const second = (await s1.next((e) => e.event === 'invited' && e.data.invitation.participant !== first.participant)).data.invitation;
    await expect(WebRtcClient.connect('whip', ev.whip, first.grant)).rejects.toThrow(/answered 403.*invitation_invalid/);
    // The page reloads: its new stream starts with its hand and the pending invitation.
    const s2 = await stream(ev.id, viewer);
    const state = await s2.next((e) => e.event === 'hand');
    expect(state.data.hand).toMatchObject({ id: hand.id, state: 'invited' });
    const again = (await s2.next((e) => e.event === 'invited')).data.invitation;
    expect(again.participant).toBe(second.participant);
    // The producer kicks the guest: its hand is done, its page is told.
    const guest = await WebRtcClient.connect('whip', ev.whip, again.grant);
    expect((await api('DELETE', `/api/events/${ev.id}/participants/${second.participant}`, ev.tokens.producer)).status).toBe(204);
    await s2.next((e) => e.event === 'done');
    await guest.pc.close();
    // A forged grant (another secret) is a 401.
    const forged = new TokenIssuer({ secret: generateSecret() }).issue({ event: ev.id, role: 'presenter', participant: 'guest-x', subject: `hand:${hand.id}` });
    await expect(WebRtcClient.connect('whip', ev.whip, forged)).rejects.toThrow(/answered 401/);
  });
});

describe('lifecycle', () => {
  it('closing a node ends its hand streams and leaves no timer or stream behind', async () => {
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = timers();
    const n = new McuNode({ port: 0, adminToken: ADMIN, tokenSecret: generateSecret() });
    const url = (await n.listen()).url;
    const ev = (await (await fetch(`${url}/api/events`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } })).json()) as { id: string; tokens: Record<string, string> };
    const viewer = await SseClient.open(`${url}/api/events/${ev.id}/stream?events=hands&token=${ev.tokens.viewer}`);
    const producer = await SseClient.open(`${url}/api/events/${ev.id}/stream?token=${ev.tokens.producer}`);
    await viewer.next((e) => e.event === 'hand');
    await fetch(`${url}/api/events/${ev.id}/hands`, { method: 'POST', headers: { authorization: `Bearer ${ev.tokens.viewer}`, 'content-type': 'application/json' }, body: '{"name":"Last"}' });
    await producer.next((e) => e.event === 'hand-update');
    expect(n.handStreams.size).toBe(1);
    await n.close();
    await n.close();
    expect(n.handStreams.size).toBe(0);
    viewer.close();
    producer.close();
    await new Promise((r) => setTimeout(r, 100));
    expect(timers()).toBeLessThanOrEqual(before);
  });
});

