import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { McuNode } from '@mcu/server';
import { LOOPBACK, paceClients, tonePower, WebRtcClient } from './client.js';

const ADMIN = 'webrtc-test-admin-token-0123456789';
let node: McuNode;
let base: string;

async function createEvent() {
  const res = await fetch(`${base}/api/events`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
  return (await res.json()) as { id: string; whip: string; whep: string; tokens: Record<'producer' | 'presenter' | 'viewer', string> };
}

beforeAll(async () => {
  node = new McuNode({ port: 0, adminToken: ADMIN, iceAllow: LOOPBACK.iceAllow, iceHostAddresses: LOOPBACK.additionalHostAddresses });
  base = (await node.listen()).url;
});
afterAll(async () => {
  await node.close();
});

describe('WHIP and WHEP between werift peers', () => {
  it('two presenters publish tones; each hears the other, the viewer hears both', async () => {
    const ev = await createEvent();
    const a = await WebRtcClient.connect('whip', ev.whip, ev.tokens.presenter);
    const b = await WebRtcClient.connect('whip', ev.whip, ev.tokens.presenter);
    const viewer = await WebRtcClient.connect('whep', ev.whep, ev.tokens.viewer);
    expect(a.location).toMatch(new RegExp(`^/whip/${ev.id}/`));
    expect(viewer.location).toMatch(new RegExp(`^/whep/${ev.id}/`));
    await Promise.all([a.connected(), b.connected(), viewer.connected()]);
    await paceClients([{ client: a, freq: 440 }, { client: b, freq: 1250 }], 3000);

    const last = (c: WebRtcClient) => c.decodeReceived(Math.max(0, c.received.length - 50));
    const aHears = last(a);
    const bHears = last(b);
    const vHears = last(viewer);
    expect(vHears.length).toBeGreaterThan(30 * 960);
    expect(tonePower(aHears, 1250)).toBeGreaterThan(100 * tonePower(aHears, 440));
    expect(tonePower(bHears, 440)).toBeGreaterThan(100 * tonePower(bHears, 1250));
    expect(tonePower(vHears, 440)).toBeGreaterThan(1000);
    expect(tonePower(vHears, 1250)).toBeGreaterThan(1000);
    // The node sends RTCP sender reports on the program feed (the viewer recorded one).
    expect(Object.keys(viewer.audio.receiver.lastSRtimestamp).length).toBeGreaterThan(0);
    // The viewer's stream is continuous.
    const r = viewer.received.slice(-100);
    for (let i = 1; i < r.length; i++) expect((r[i].seq - r[i - 1].seq) & 0xffff).toBe(1);

    // Each presenter's werift receiver reports on its mix-minus (RTCP RR, every 0.5–1.5 s): no
    // loss on loopback, so its mix-minus is encoded without in-band FEC.
    const mixer = node.registry.get(ev.id).mixer.mixer;
    for (const c of [a, b]) {
      const p = mixer.participant(c.location!.split('/').pop()!)!;
      expect(mixer.reportedLossPercent(p)).toBe(0);
      expect(mixer.expectedLossPercent(p)).toBe(0);
    }

    const parts = (await (await fetch(`${base}/api/events/${ev.id}/participants`, { headers: { authorization: `Bearer ${ADMIN}` } })).json()) as { participants: { kind: string }[] };
    expect(parts.participants.filter((p: { kind: string }) => p.kind === 'whip')).toHaveLength(2);

    expect(await a.hangUp()).toBe(200);
    expect(await b.hangUp()).toBe(200);
    expect(await viewer.hangUp()).toBe(200);
    expect(node.edge.size).toBe(0);
    const after = (await (await fetch(`${base}/api/events/${ev.id}/participants`, { headers: { authorization: `Bearer ${ADMIN}` } })).json()) as { participants: unknown[] };
    expect(after.participants).toHaveLength(0);
  });

  it('ending the event ends its WebRTC sessions', async () => {
    const ev = await createEvent();
    const a = await WebRtcClient.connect('whip', ev.whip, ev.tokens.presenter);
    const viewer = await WebRtcClient.connect('whep', ev.whep, ev.tokens.viewer);
    await Promise.all([a.connected(), viewer.connected()]);
    expect(node.edge.size).toBe(2);
    await fetch(`${base}/api/events/${ev.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN}` } });
    expect(node.edge.size).toBe(0);
    expect(await a.hangUp()).toBe(404);
    await viewer.hangUp();
  });
});
