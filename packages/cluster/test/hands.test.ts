/**
 * Raised hands in a cluster over real NATS (a dedicated nats-server with JetStream): viewers on
 * relays raise and lower their hands there, the relays forward them to the mixer over NATS, the
 * queue is in the `hands` JetStream KV bucket, and the invitation reaches the viewer's event stream
 * on its relay.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { subjects, type Bus } from '@mcu/control';
import { ClusterWorld, waitFor } from './harness.js';
import { SseClient } from '../../server/test/sse.js';
import { WebRtcClient } from '../../webrtc/test/client.js';

const SECRET = 'hands-cluster-secret-0123456789abcdef-xyz';
const ADMIN = 'hands-cluster-admin-token-0123456789';
const CLUSTER = `hands${Date.now().toString(36)}`;

describe('raised hands across a cluster: mixer + 2 relays over NATS', () => {
  let world: ClusterWorld;
  let bus: Bus;
  let event: { id: string; whip: string; tokens: { producer: string; viewer: string } };
  const streams: SseClient[] = [];

  async function call(url: string, method: string, token: string, body?: unknown) {
    const res = await fetch(url, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : null, headers: res.headers };
  }

  async function viewerToken(name: string): Promise<string> {
    return (await call(`${world.node.url}/api/events/${event.id}/viewer-tokens`, 'POST', event.tokens.producer, { name })).json.token;
  }

  async function stream(base: string, token: string): Promise<SseClient> {
    const s = await SseClient.open(`${base}/api/events/${event.id}/stream?token=${encodeURIComponent(token)}`);
    streams.push(s);
    return s;
  }

  beforeAll(async () => {
    world = await ClusterWorld.start({ name: 'hands', cluster: CLUSTER, secret: SECRET, adminToken: ADMIN, relayFanOut: 2, relays: 2 });
    bus = await world.bus();
    event = (await world.createEvent('hands')) as unknown as typeof event;
    await waitFor(() => world.relays.every((r) => r.feeds.has(event.id)), 15_000, 'both relays carry the event');
  }, 60_000);

  afterAll(async () => {
    for (const s of streams) s.close();
    await world?.close();
  });

  it('a raise on a relay reaches the mixer over NATS and the JetStream queue; a raise on another relay is the same hand', async () => {
    const [r1, r2] = world.relays;
    const token = await viewerToken('Relay Viewer');
    const first = await call(`${r1.url}/api/events/${event.id}/hands`, 'POST', token);
    expect(first.status).toBe(201);
    expect(first.headers.get('location')).toBe(`/api/events/${event.id}/hands/${first.json.id}`);
    expect(first.json).toMatchObject({ name: 'Relay Viewer', state: 'raised' });
    const again = await call(`${r2.url}/api/events/${event.id}/hands`, 'POST', token);
    expect(again.status).toBe(200);
    expect(again.json.id).toBe(first.json.id);
    const list = await call(`${world.node.url}/api/events/${event.id}/hands`, 'GET', event.tokens.producer);
    expect(list.json.hands.map((h: { id: string }) => h.id)).toContain(first.json.id);
    // In the cluster's store, where another mixer would find it.
    const kv = await bus.kv(subjects(CLUSTER).buckets.hands);
    expect(await kv.keys(`${event.id}.*`)).toContain(`${event.id}.${first.json.id}`);
    expect(world.mixer.hands?.answered.raise).toBeGreaterThanOrEqual(2);
    // Errors come back as the mixer gave them; the relay checks the token first.
    const nameless = await call(`${r1.url}/api/events/${event.id}/hands`, 'POST', event.tokens.viewer);
    expect(nameless.status).toBe(400);
    expect(nameless.json.error.code).toBe('name_required');
    expect((await call(`${r1.url}/api/events/${event.id}/hands`, 'POST', event.tokens.producer, { name: 'x' })).status).toBe(403);
    expect((await call(`${r1.url}/api/events/unknown/hands`, 'POST', token)).status).toBe(403);
    // A viewer of the public link gets a token of its own from its relay (signed there), and raises with it.
    const own = await call(`${r1.url}/api/events/${event.id}/viewer-tokens`, 'POST', event.tokens.viewer, { name: 'Own Token' });
    expect(own.status).toBe(201);
    const raised = await call(`${r1.url}/api/events/${event.id}/hands`, 'POST', own.json.token);
    expect(raised.status).toBe(201);
    expect(raised.json.name).toBe('Own Token');
  });

  it('a relay rate-limits each viewer (429 + Retry-After) before anything reaches NATS; a viewer lowers only its own hand there', async () => {
    const [r1] = world.relays;
    const mine = await viewerToken('Mine');
    const theirs = await viewerToken('Theirs');
    const a = (await call(`${r1.url}/api/events/${event.id}/hands`, 'POST', mine)).json;
    const b = (await call(`${r1.url}/api/events/${event.id}/hands`, 'POST', theirs)).json;
    const forbidden = await call(`${r1.url}/api/events/${event.id}/hands/${b.id}`, 'DELETE', mine);
    expect(forbidden.status).toBe(403);
    expect((await call(`${r1.url}/api/events/${event.id}/hands/${a.id}`, 'DELETE', mine)).status).toBe(204);
    const forwarded = r1.hands.counts.forwarded;
    const statuses: number[] = [];
    let retryAfter: string | null = null;
    for (let i = 0; i < 6; i++) {
      const res = await call(`${r1.url}/api/events/${event.id}/hands`, 'POST', mine);
      statuses.push(res.status);
      if (res.status === 429) retryAfter = res.headers.get('retry-after');
    }
    // 3 of its 4 went above; one more passes, then 429s that never reach the mixer.
    expect(statuses).toEqual([201, 429, 429, 429, 429, 429]);
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
    expect(r1.hands.counts.forwarded - forwarded).toBe(1);
    expect((await call(`${world.node.url}/api/events/${event.id}/hands/${b.id}`, 'DELETE', event.tokens.producer)).status).toBe(204);
  });

  it("the invitation reaches the viewer's stream on its relay; the grant joins once at the mixer; a move and leaving tell the page", async () => {
    const [, r2] = world.relays;
    const token = await viewerToken('Guest On Relay');
    const page = await stream(r2.url, token);
    const state = await page.next((e) => e.event === 'hand');
    expect(state.data.hand).toBeNull();
    const hand = (await call(`${r2.url}/api/events/${event.id}/hands`, 'POST', token)).json;
    const t0 = performance.now();
    expect((await call(`${world.node.url}/api/events/${event.id}/hands/${hand.id}/invite`, 'POST', event.tokens.producer, { stage: 'live' })).status).toBe(200);
    const invited = await page.next((e) => e.event === 'invited');
    const ms = invited.at - t0;
    console.log(`invite (mixer) → viewer's stream on a relay: ${ms.toFixed(1)} ms`);
    expect(ms).toBeLessThan(1000);
    const { grant, participant, whip } = invited.data.invitation;
    expect(whip).toBe(event.whip);
    // A page that opens its stream on the other relay now gets the pending invitation too.
    const reloaded = await stream(world.relays[0].url, token);
    expect((await reloaded.next((e) => e.event === 'invited')).data.invitation.participant).toBe(participant);

    const guest = await WebRtcClient.connect('whip', whip, grant);
    expect(guest.location).toBe(`/whip/${event.id}/${participant}`);
    await expect(WebRtcClient.connect('whip', whip, grant)).rejects.toThrow(/answered 403/);
    // The producer moves the guest backstage at the mixer: its page on the relay is told.
    expect((await call(`${world.node.url}/api/events/${event.id}/participants/${participant}`, 'PATCH', event.tokens.producer, { stage: 'backstage' })).status).toBe(200);
    expect((await page.next((e) => e.event === 'moved')).data).toMatchObject({ hand: hand.id, stage: 'backstage' });
    await guest.hangUp();
    await page.next((e) => e.event === 'done' && e.data.hand === hand.id);
    const kv = await bus.kv(subjects(CLUSTER).buckets.hands);
    await waitFor(async () => !(await kv.keys(`${event.id}.*`)).includes(`${event.id}.${hand.id}`), 5000, 'the hand leaves the store');
  });

  it('documents the relay routes; the event ending closes the relay streams', async () => {
    const [r1] = world.relays;
    const doc = (await (await fetch(`${r1.url}/api/openapi.json`)).json()) as { paths: Record<string, Record<string, unknown>> };
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/api/events/{id}/hands', '/api/events/{id}/hands/{hid}', '/api/events/{id}/stream']));
    const token = await viewerToken('Until The End');
    const page = await stream(r1.url, token);
    await page.next((e) => e.event === 'hand');
    // Bad notices for this viewer's hand are counted and dropped; notices for hands not here are not even validated.
    const hand = (await call(`${r1.url}/api/events/${event.id}/hands`, 'POST', token)).json.id as string;
    const drops = r1.hands.drops.total;
    const s = subjects(CLUSTER).event(event.id).hand;
    bus.publish(s, new TextEncoder().encode('not json'));
    bus.publish(s, { v: 2, event: event.id, hand, kind: 'invited', at: Date.now() });
    bus.publish(s, { v: 1, event: event.id, hand, kind: 'invited', at: Date.now() });
    bus.publish(s, { v: 1, event: event.id, hand: 'elsewhere', kind: 'nonsense' });
    await bus.flush();
    await waitFor(() => r1.hands.drops.total - drops === 3, 5000, 'three bad notices dropped');
    expect(r1.hands.drops.byReason()).toMatchObject({ not_json: 1, wrong_version: 1, invalid: 1 });
    expect(page.events.filter((e) => e.event === 'invited')).toEqual([]);
    await call(`${world.node.url}/api/events/${event.id}`, 'DELETE', ADMIN);
    await page.next((e) => e.event === 'ended', 10_000);
  });
});
