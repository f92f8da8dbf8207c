import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { McuNode } from '@mcu/server';
import { WebRtcSession } from '../src/index.js';
import { LOOPBACK, WebRtcClient } from './client.js';

const ADMIN = 'webrtc-errors-admin-token-0123456789';
let node: McuNode;
let base: string;

async function createEvent() {
  const res = await fetch(`${base}/api/events`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
  return (await res.json()) as { id: string; whip: string; whep: string; tokens: Record<'producer' | 'presenter' | 'viewer', string> };
}

function post(url: string, body: string, opts: { token?: string; type?: string } = {}) {
  const headers: Record<string, string> = { 'content-type': opts.type ?? 'application/sdp' };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  return fetch(url, { method: 'POST', headers, body });
}

/** A syntactically plausible offer (what a browser sends), built by a real werift peer. */
async function realOffer(): Promise<string> {
  const { RTCPeerConnection } = await import('werift');
  const pc = new RTCPeerConnection();
  pc.addTransceiver('audio', { direction: 'sendrecv' });
  const { disableDefaultStun } = await import('../src/index.js');
  const offer = await pc.createOffer();
  disableDefaultStun(pc as never);
  await pc.setLocalDescription(offer);
  const sdp = pc.localDescription!.sdp;
  await pc.close();
  return sdp;
}

/** A 503 saying the session was closed while its offer was answered, with Retry-After and the reason. */
async function expectSessionClosed(res: Response, reason: RegExp): Promise<void> {
  expect(res.status).toBe(503);
  expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
  const body = (await res.json()) as { error: { code: string; message: string } };
  expect(body.error.code).toBe('session_closed');
  expect(body.error.message).toMatch(reason);
}

beforeAll(async () => {
  node = new McuNode({
    port: 0,
    adminToken: ADMIN,
    iceAllow: LOOPBACK.iceAllow,
    iceHostAddresses: LOOPBACK.additionalHostAddresses,
    maxRtcSessions: 3,
    rtcMediaTimeoutMs: 1500,
    rtcAnswerTimeoutMs: 1000,
  });
  base = (await node.listen()).url;
});
afterAll(async () => {
  await node.close();
});

describe('WHIP/WHEP error paths', () => {
  it('answers each error with its status and never a stack trace', async () => {
    const ev = await createEvent();
    const other = await createEvent();
    const offer = await realOffer();
    const check = async (res: Response, status: number) => {
      expect(res.status).toBe(status);
      const text = await res.text();
      expect(text).not.toMatch(/\.ts:\d+|at [A-Za-z]+ \(/);
      return text;
    };
    await check(await post(ev.whip, offer), 401);
    await check(await post(ev.whip, offer, { token: 'not-a-token' }), 401);
    await check(await post(ev.whip, offer, { token: ev.tokens.viewer }), 403);
    await check(await post(ev.whip, offer, { token: other.tokens.presenter }), 403);
    await check(await post(`${base}/whip/unknown-event`, offer, { token: ADMIN }), 404);
    await check(await post(ev.whip, offer, { token: ev.tokens.presenter, type: 'application/json' }), 415);
    const bad = await check(await post(ev.whip, 'v=0\r\nthis is not sdp', { token: ev.tokens.presenter }), 400);
    expect(JSON.parse(bad).error.message).toMatch(/SDP/);
    const noMedia = await check(await post(ev.whip, 'v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n', { token: ev.tokens.presenter }), 400);
    expect(JSON.parse(noMedia).error.message).toMatch(/no audio or video/);
    // A WHEP offer that only sends is not a playback request.
    await check(await post(ev.whep, offer.replace(/a=sendrecv/g, 'a=sendonly'), { token: ev.tokens.viewer }), 400);
    await check(await fetch(`${base}/whip/${ev.id}/nope`, { method: 'DELETE', headers: { authorization: `Bearer ${ev.tokens.presenter}` } }), 404);
    // CORS preflight advertises what WHIP accepts.
    const pre = await fetch(ev.whip, { method: 'OPTIONS', headers: { origin: 'http://elsewhere.test', 'access-control-request-method': 'POST' } });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('accept-post')).toBe('application/sdp');
    expect(pre.headers.get('access-control-allow-origin')).toBe('*');
    expect(pre.headers.get('access-control-expose-headers')).toMatch(/location/);
  });

  it('rejects a session over the node limit with 503 and Retry-After; PATCH is 405', async () => {
    const ev = await createEvent();
    const clients = [];
    for (let i = 0; i < 3; i++) clients.push(await WebRtcClient.connect('whep', ev.whep, ev.tokens.viewer));
    const res = await post(ev.whep, await realOffer().then((o) => o.replace(/a=sendrecv/g, 'a=recvonly')), { token: ev.tokens.viewer });
    expect(res.status).toBe(503);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    const patch = await fetch(`${base}${clients[0].location}`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${ev.tokens.viewer}`, 'content-type': 'application/trickle-ice-sdpfrag' },
      body: 'a=ice-ufrag:x',
    });
    expect(patch.status).toBe(405);
    expect(patch.headers.get('allow')).toMatch(/DELETE/);
    for (const c of clients) expect(await c.hangUp()).toBe(200);
    expect(node.edge.size).toBe(0);
  });

  it('a session the node closes while answering its offer gets 503 with the reason, not a 400 or a dead answer', async () => {
    // The event ends while werift is answering (a real race: an offer that arrives as the event
    // ends or moves). Both the step that is interrupted and the one after it are tried.
    const answer = WebRtcSession.prototype.answer;
    for (const when of ['during', 'after'] as const) {
      const ev = await createEvent();
      const viewerOffer = (await realOffer()).replace(/a=sendrecv/g, 'a=recvonly');
      const before = node.edge.stats().closedByReason.event_ended ?? 0;
      const spy = vi.spyOn(WebRtcSession.prototype, 'answer').mockImplementationOnce(async function (this: WebRtcSession, ...args) {
        const answering = answer.apply(this, args);
        if (when === 'during') node.edge.endEvent(ev.id);
        const sdp = await answering;
        if (when === 'after') node.edge.endEvent(ev.id);
        return sdp;
      });
      const res = await post(ev.whep, viewerOffer, { token: ev.tokens.viewer });
      spy.mockRestore();
      await expectSessionClosed(res, /event_ended/);
      expect(node.edge.stats().closedByReason.event_ended).toBe(before + 1);
      expect(node.edge.size).toBe(0);
    }
  });

  it('an offer whose negotiation never ends gets 503 after the answer timeout, and its session is gone', async () => {
    const ev = await createEvent();
    const viewerOffer = (await realOffer()).replace(/a=sendrecv/g, 'a=recvonly');
    const before = node.edge.stats().closedByReason.negotiation_timeout ?? 0;
    // werift waiting for something that never comes (as its setRemoteDescription does on a closed connection).
    const spy = vi.spyOn(WebRtcSession.prototype, 'answer').mockImplementationOnce(() => new Promise<string>(() => undefined));
    const t0 = performance.now();
    const res = await post(ev.whep, viewerOffer, { token: ev.tokens.viewer });
    const took = performance.now() - t0;
    spy.mockRestore();
    await expectSessionClosed(res, /negotiation_timeout/);
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(5000);
    expect(node.edge.stats().closedByReason.negotiation_timeout).toBe(before + 1);
    expect(node.edge.size).toBe(0);
  });

  it('closes a WHIP session that sends no media', async () => {
    const ev = await createEvent();
    const silent = await WebRtcClient.connect('whip', ev.whip, ev.tokens.presenter);
    await silent.connected();
    expect(node.edge.size).toBe(1);
    const start = Date.now();
    while (node.edge.size > 0 && Date.now() - start < 6000) await new Promise((r) => setTimeout(r, 100));
    expect(node.edge.size).toBe(0);
    expect(node.edge.stats().closedByReason.media_timeout).toBeGreaterThanOrEqual(1);
    expect(await silent.hangUp()).toBe(404);
  });

  it('survives 400 garbage and mutated SDP offers', async () => {
    const ev = await createEvent();
    const offer = await realOffer();
    let seed = 99;
    const random = () => {
      seed = (Math.imul(seed, 1_664_525) + 1_013_904_223) >>> 0;
      return seed / 2 ** 32;
    };
    const statuses = new Map<number, number>();
    for (let i = 0; i < 400; i++) {
      let body: string;
      if (random() < 0.3) {
        body = Array.from({ length: Math.floor(random() * 300) }, () => String.fromCharCode(Math.floor(random() * 128))).join('');
      } else {
        const lines = offer.split('\r\n');
        for (let k = 0; k < 3; k++) {
          const idx = Math.floor(random() * lines.length);
          const op = random();
          if (op < 0.4) lines.splice(idx, 1);
          else if (op < 0.7) lines[idx] = lines[idx].slice(0, Math.floor(random() * lines[idx].length));
          else lines[idx] = lines[idx].replace(/[0-9]/g, () => String(Math.floor(random() * 10)));
        }
        body = lines.join('\r\n');
      }
      const res = await post(ev.whip, body, { token: ev.tokens.presenter });
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      if (res.status === 201) await fetch(`${base}${res.headers.get('location')}`, { method: 'DELETE', headers: { authorization: `Bearer ${ev.tokens.presenter}` } });
      else await res.arrayBuffer();
    }
    // Only client errors or successes: never a 500.
    expect([...statuses.keys()].every((s) => s === 201 || s === 400), JSON.stringify([...statuses])).toBe(true);
    expect(statuses.get(400)).toBeGreaterThan(100);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
  }, 120_000);
});
