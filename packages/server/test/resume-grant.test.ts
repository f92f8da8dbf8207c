/**
 * A WHIP session's resume grant on one node: the 201 carries `X-Mcu-Resume-Token` (exposed through
 * CORS), a presenter token for the event naming the session's participant, its name and stage,
 * good for 10 minutes. Re-publishing with it joins as the same participant, still muted when the
 * producer muted it; a kicked participant's grant is refused with 403 `participant_kicked`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenIssuer } from '@mcu/control';
import { EventModeration, McuNode, RESUME_GRANT_TTL_SECONDS } from '../src/index.js';
import { MODERATION_MAX_IDS } from '../src/Moderation.js';
import { LOOPBACK, WebRtcClient } from '../../webrtc/test/client.js';

const ADMIN = 'resume-grant-admin-token-0123456789';
const SECRET = 'resume-grant-secret-0123456789abcdef0123';
const issuer = new TokenIssuer({ secret: SECRET });
let node: McuNode;
let base: string;
const clients: WebRtcClient[] = [];

async function api(method: string, path: string, token: string, body?: unknown) {
  const headers: Record<string, string> = { authorization: `Bearer ${token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null, headers: res.headers };
}

/** Publishes over WHIP (werift) and keeps the 201's headers. */
async function publish(url: string, token: string): Promise<{ client: WebRtcClient; session: string; headers: Headers }> {
  let headers: Headers | undefined;
  const client = await WebRtcClient.connect('whip', url, token, {
    fetch: async (u, init) => {
      const res = await fetch(u, init);
      headers = res.headers;
      return res;
    },
  });
  clients.push(client);
  return { client, session: client.location!.split('/').pop()!, headers: headers! };
}

beforeAll(async () => {
  node = new McuNode({ port: 0, adminToken: ADMIN, tokenSecret: SECRET, iceAllow: LOOPBACK.iceAllow, iceHostAddresses: LOOPBACK.additionalHostAddresses });
  base = (await node.listen()).url;
});
afterAll(async () => {
  for (const c of clients) await c.pc.close().catch(() => undefined);
  await node.close();
});

describe('resume grant', () => {
  it('the WHIP 201 carries a presenter grant for the same participant, name and stage; mutes follow it; a kicked one is refused', async () => {
    const ev = (await api('POST', '/api/events', ADMIN)).json as { id: string; whip: string; tokens: Record<'producer' | 'presenter', string> };
    const p = await publish(`${ev.whip}?name=${encodeURIComponent('Grace Hopper')}`, ev.tokens.presenter);
    expect(p.headers.get('access-control-expose-headers')).toContain('x-mcu-resume-token');
    const grant = p.headers.get('x-mcu-resume-token');
    expect(grant).toBeTruthy();
    const claims = issuer.verify(grant!);
    expect(claims).toMatchObject({ evt: ev.id, role: 'presenter', pid: p.session, name: 'Grace Hopper', stage: 'live' });
    expect(claims.exp - claims.iat).toBe(RESUME_GRANT_TTL_SECONDS);
    expect(RESUME_GRANT_TTL_SECONDS).toBe(600);

    // Muted, gone, back with the grant: the same participant, still muted.
    expect((await api('PATCH', `/api/events/${ev.id}/participants/${p.session}`, ev.tokens.producer, { muted: true })).status).toBe(200);
    expect(await p.client.hangUp()).toBe(200);
    const again = await publish(ev.whip, grant!);
    expect(again.session).toBe(p.session);
    const list = (await api('GET', `/api/events/${ev.id}/participants`, ev.tokens.producer)).json.participants as { id: string; muted: boolean; name?: string }[];
    expect(list.find((x) => x.id === p.session)).toMatchObject({ muted: true, name: 'Grace Hopper' });
    // Its new grant names it again.
    expect(issuer.verify(again.headers.get('x-mcu-resume-token')!).pid).toBe(p.session);

    // Kicked: neither grant brings it back (403, participant_kicked); a fresh token is a new participant.
    expect((await api('DELETE', `/api/events/${ev.id}/participants/${p.session}`, ev.tokens.producer)).status).toBe(204);
    for (const g of [grant!, again.headers.get('x-mcu-resume-token')!]) {
      await expect(WebRtcClient.connect('whip', ev.whip, g)).rejects.toThrow(/403.*participant_kicked/);
    }
    const fresh = await publish(ev.whip, ev.tokens.presenter);
    expect(fresh.session).not.toBe(p.session);
    expect((await api('DELETE', `/api/events/${ev.id}`, ADMIN)).status).toBe(204);
  });

  it("a presenter the producer moved comes back on that stage under its grant, whatever stage the grant names", async () => {
    const ev = (await api('POST', '/api/events', ADMIN)).json as { id: string; whip: string; tokens: Record<'producer' | 'presenter', string> };
    const p = await publish(ev.whip, ev.tokens.presenter);
    const grant = p.headers.get('x-mcu-resume-token')!;
    expect(issuer.verify(grant).stage).toBe('live');
    expect((await api('PATCH', `/api/events/${ev.id}/participants/${p.session}`, ev.tokens.producer, { stage: 'backstage' })).status).toBe(200);
    expect(await p.client.hangUp()).toBe(200);
    const again = await publish(ev.whip, grant);
    expect(again.session).toBe(p.session);
    const stageOf = async () => ((await api('GET', `/api/events/${ev.id}/participants`, ev.tokens.producer)).json.participants as { id: string; stage: string }[]).find((x) => x.id === p.session)?.stage;
    expect(await stageOf()).toBe('backstage');
    // Moved live again, it comes back live.
    expect((await api('PATCH', `/api/events/${ev.id}/participants/${p.session}`, ev.tokens.producer, { stage: 'live' })).status).toBe(200);
    expect(await again.client.hangUp()).toBe(200);
    const third = await publish(ev.whip, grant);
    expect(third.session).toBe(p.session);
    expect(await stageOf()).toBe('live');
    expect(new EventModeration().stageOf(undefined)).toBeUndefined();
    expect((await api('DELETE', `/api/events/${ev.id}`, ADMIN)).status).toBe(204);
  });

  it('a plain-RTP participant re-registering with its resume grant is the same participant: muted, backstage; kicked, refused', async () => {
    const ev = (await api('POST', '/api/events', ADMIN)).json as { id: string; tokens: Record<'producer' | 'presenter', string> };
    const body = { host: '127.0.0.1', port: 5004, payloadType: 111, name: 'Gateway' };
    const first = await api('POST', `/api/events/${ev.id}/rtp-participants`, ev.tokens.presenter, body);
    expect(first.status).toBe(201);
    const pid = first.json.id as string;
    const grant = first.json.resumeToken as string;
    expect(first.headers.get('x-mcu-resume-token')).toBe(grant);
    expect(issuer.verify(grant)).toMatchObject({ evt: ev.id, role: 'presenter', pid, name: 'Gateway', stage: 'live' });
    expect((await api('PATCH', `/api/events/${ev.id}/participants/${pid}`, ev.tokens.producer, { muted: true, stage: 'backstage' })).status).toBe(200);
    // Registered again under the same id while it is still there: a conflict.
    expect((await api('POST', `/api/events/${ev.id}/rtp-participants`, grant, body)).status).toBe(409);
    // It leaves (its gateway's mixer died, say) and re-registers with the grant.
    expect((await api('DELETE', `/api/events/${ev.id}/rtp-participants/${pid}`, ev.tokens.presenter)).status).toBe(204);
    const back = await api('POST', `/api/events/${ev.id}/rtp-participants`, grant, body);
    expect(back.status).toBe(201);
    expect(back.json).toMatchObject({ id: pid, muted: true, stage: 'backstage', name: 'Gateway' });
    // Kicked, its grant no longer brings it back.
    expect((await api('DELETE', `/api/events/${ev.id}/participants/${pid}`, ev.tokens.producer)).status).toBe(204);
    const refused = await api('POST', `/api/events/${ev.id}/rtp-participants`, grant, body);
    expect(refused.status).toBe(403);
    expect(refused.json.error.code).toBe('participant_kicked');
    expect((await api('DELETE', `/api/events/${ev.id}`, ADMIN)).status).toBe(204);
  });

  it('keeps at most MODERATION_MAX_IDS ids per list (what the stored definition takes), dropping the oldest', () => {
    const m = new EventModeration();
    for (let i = 0; i <= MODERATION_MAX_IDS; i++) m.kick(`p${i}`);
    expect(m.kicked.length).toBe(MODERATION_MAX_IDS);
    expect(m.isKicked('p0')).toBe(false);
    expect(m.isKicked(`p${MODERATION_MAX_IDS}`)).toBe(true);
    expect(() => m.admit(`p${MODERATION_MAX_IDS}`)).toThrow(/removed/);
  });
});
