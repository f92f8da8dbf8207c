/**
 * A node with one UDP port for every plain-RTP participant (`rtpPort`): two events' participants
 * registered through the API all get that port, each event's listeners hear their own event's
 * talker (decoded, tone power), a participant re-registering with its resume grant is back on it,
 * and a stranger's datagrams are dropped and counted in mcu_rtp_dropped_total. Real sockets.
 */
import dgram from 'node:dgram';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildRtp, nativeUdp } from '@mcu/rtp';
import { McuNode } from '../src/index.js';
import { pace, RtpPeer, tonePower } from '../../mixer/test/peer.js';

const ADMIN = 'rtp-port-admin-token-0123456789';
const SECRET = 'rtp-port-secret-0123456789abcdef0123456789';
const EXT = 1;
let node: McuNode;
let base: string;
let rtpPort: number;
const closers: Array<{ close(): void }> = [];

async function api(method: string, path: string, token: string, body?: unknown) {
  const headers: Record<string, string> = { authorization: `Bearer ${token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null };
}

/** A free UDP port above 1024 (bound and released). */
async function freePort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  const port = s.address().port;
  s.close();
  return port;
}

async function join(eventId: string, token: string, freq: number) {
  const peer = await RtpPeer.open({ freq, audioLevelExtId: EXT });
  closers.push(peer);
  const res = await api('POST', `/api/events/${eventId}/rtp-participants`, token, { host: '127.0.0.1', port: peer.port, payloadType: 111, audioLevelExtId: EXT });
  expect(res.status).toBe(201);
  peer.connect(res.json.host, res.json.port);
  return { peer, id: res.json.id as string, port: res.json.port as number, grant: res.json.resumeToken as string };
}

const lastSecond = (p: RtpPeer) => p.decodeReceived(Math.max(0, p.received.length - 50));

describe.skipIf(nativeUdp() === null)('one plain-RTP port for the node (rtpPort)', () => {
  beforeAll(async () => {
    rtpPort = await freePort();
    node = new McuNode({ port: 0, adminToken: ADMIN, tokenSecret: SECRET, rtpPort });
    base = (await node.listen()).url;
  });
  afterAll(async () => {
    for (const c of closers) c.close();
    await node?.close();
  });

  it("carries two events, each event's mix to its own listeners; a resume grant brings a participant back on it; strangers are counted", async () => {
    type Ev = { id: string; tokens: Record<'presenter', string> };
    const e1 = (await api('POST', '/api/events', ADMIN)).json as Ev;
    const e2 = (await api('POST', '/api/events', ADMIN)).json as Ev;
    const a = await join(e1.id, e1.tokens.presenter, 440);
    const l1 = await join(e1.id, e1.tokens.presenter, 0);
    const b = await join(e2.id, e2.tokens.presenter, 1250);
    const l2 = await join(e2.id, e2.tokens.presenter, 0);
    for (const p of [a, l1, b, l2]) expect(p.port).toBe(rtpPort);
    await pace([a.peer, l1.peer, b.peer, l2.peer], 1500);
    const h1 = lastSecond(l1.peer);
    const h2 = lastSecond(l2.peer);
    expect(tonePower(h1, 440)).toBeGreaterThan(1000);
    expect(tonePower(h1, 440)).toBeGreaterThan(100 * tonePower(h1, 1250));
    expect(tonePower(h2, 1250)).toBeGreaterThan(1000);
    expect(tonePower(h2, 1250)).toBeGreaterThan(100 * tonePower(h2, 440));

    // A leaves and re-registers with its resume grant: the same participant, on the same port, heard again.
    expect((await api('DELETE', `/api/events/${e1.id}/rtp-participants/${a.id}`, e1.tokens.presenter)).status).toBe(204);
    const back = await api('POST', `/api/events/${e1.id}/rtp-participants`, a.grant, { host: '127.0.0.1', port: a.peer.port, payloadType: 111, audioLevelExtId: EXT });
    expect(back.status).toBe(201);
    expect(back.json).toMatchObject({ id: a.id, port: rtpPort });
    const before = l1.peer.received.length;
    await pace([a.peer, l1.peer, b.peer, l2.peer], 1000);
    expect(tonePower(l1.peer.decodeReceived(before + 15), 440)).toBeGreaterThan(1000);

    const stranger = dgram.createSocket('udp4');
    closers.push(stranger);
    stranger.bind(0, '127.0.0.2');
    await once(stranger, 'listening');
    for (let i = 0; i < 4; i++) stranger.send(buildRtp({ payloadType: 111, sequenceNumber: i, timestamp: i * 960, ssrc: 7 }, Buffer.alloc(30, 1)), rtpPort, '127.0.0.1');
    await pace([l1.peer, l2.peer], 200);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    const unknown = /^mcu_rtp_dropped_total\{reason="unknown_source"\} (\d+)$/m.exec(metrics);
    expect(Number(unknown?.[1])).toBe(4);
  });

  it('refuses to start on a port that is taken, with a clear error', async () => {
    expect(() => new McuNode({ port: 0, adminToken: ADMIN, tokenSecret: SECRET, rtpPort })).toThrow(/could not bind UDP 127\.0\.0\.1:\d+/);
  });
});
