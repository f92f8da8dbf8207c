import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { McuNode } from '../src/index.js';
import { pace, RtpPeer, sleep } from '../../mixer/test/peer.js';
import { LOOPBACK, WebRtcClient } from '../../webrtc/test/client.js';

const ADMIN = 'live-state-admin-token-0123456789abcdef';
let node: McuNode;
let base: string;

async function api(method: string, path: string, token: string, body?: unknown) {
  const headers: Record<string, string> = { authorization: `Bearer ${token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null };
}

interface SseMessage {
  event: string;
  data: any;
  at: number;
}

/** Reads a server-sent event stream into `messages` until aborted. */
function readSse(url: string, token: string) {
  const messages: SseMessage[] = [];
  const ac = new AbortController();
  const done = (async () => {
    const res = await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: ac.signal });
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) return;
      buffer += decoder.decode(chunk.value, { stream: true });
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (event && data) messages.push({ event, data: JSON.parse(data), at: performance.now() });
      }
    }
  })().catch(() => undefined);
  return { messages, close: async () => (ac.abort(), await done) };
}

beforeAll(async () => {
  node = new McuNode({ port: 0, adminToken: ADMIN, iceAllow: LOOPBACK.iceAllow, iceHostAddresses: LOOPBACK.additionalHostAddresses });
  base = (await node.listen()).url;
});
afterAll(async () => {
  await node.close();
});

describe('live state for the console', () => {
  it('streams levels 4 times a second with muted flags, and the participant list when it changes', async () => {
    const ev = (await api('POST', '/api/events', ADMIN)).json;
    const sse = readSse(`${base}/api/events/${ev.id}/stream`, ev.tokens.producer);
    const talker = await RtpPeer.open({ freq: 440, audioLevelExtId: 1 });
    const silent = await RtpPeer.open({ freq: 0, audioLevelExtId: 1 });
    const ids: string[] = [];
    for (const peer of [talker, silent]) {
      const add = await api('POST', `/api/events/${ev.id}/rtp-participants`, ADMIN, { host: '127.0.0.1', port: peer.port, payloadType: 111, audioLevelExtId: 1 });
      peer.connect(add.json.host, add.json.port);
      ids.push(add.json.id);
    }
    const [talkerId, silentId] = ids;
    const start = performance.now();
    await pace([talker, silent], 2000);
    const levels = sse.messages.filter((m) => m.event === 'levels' && m.at >= start);
    // ~4 per second: 8 in 2 s, give or take the timer's phase.
    expect(levels.length).toBeGreaterThanOrEqual(7);
    expect(levels.length).toBeLessThanOrEqual(9);
    const last = levels.at(-1)!.data;
    const of = (data: any, id: string) => data.participants.find((p: { id: string }) => p.id === id);
    // The talker sends RFC 6464 level 10 (-10 dBov): smoothed, it reads 10 → 1 - 10/90.
    expect(of(last, talkerId)).toMatchObject({ kind: 'rtp', muted: false, speaking: true });
    expect(of(last, talkerId).dbov).toBeCloseTo(10, 0);
    expect(of(last, talkerId).level).toBeCloseTo(0.89, 1);
    expect(of(last, silentId)).toMatchObject({ level: 0, dbov: 127, muted: false, speaking: false });
    expect(last.dominantSpeaker).toBe(talkerId);
    // The roster arrived as a `participants` event when each one joined.
    const rosters = sse.messages.filter((m) => m.event === 'participants').map((m) => m.data.participants.map((p: { id: string }) => p.id));
    expect(rosters.at(-1)).toEqual([talkerId, silentId]);

    await api('PATCH', `/api/events/${ev.id}/participants/${talkerId}`, ev.tokens.producer, { muted: true });
    const mutedAt = performance.now();
    await pace([talker, silent], 600);
    const after = sse.messages.filter((m) => m.event === 'levels' && m.at > mutedAt + 100).at(-1)!.data;
    expect(of(after, talkerId)).toMatchObject({ muted: true, speaking: false });
    expect(after.dominantSpeaker).toBeNull();

    const rostersBefore = sse.messages.filter((m) => m.event === 'participants').length;
    await api('DELETE', `/api/events/${ev.id}/participants/${silentId}`, ev.tokens.producer);
    await sleep(400);
    const leaves = sse.messages.filter((m) => m.event === 'participants').slice(rostersBefore);
    expect(leaves.map((m) => m.data.participants.map((p: { id: string }) => p.id))).toEqual([[talkerId]]);

    await sse.close();
    talker.close();
    silent.close();
    await api('DELETE', `/api/events/${ev.id}`, ADMIN);
  });

  it('describes a single node as a tree of one that counts its WHEP viewers', async () => {
    const ev = (await api('POST', '/api/events', ADMIN)).json;
    const tree = async () => (await api('GET', `/api/events/${ev.id}/tree`, ev.tokens.producer)).json.nodes;
    expect(await tree()).toEqual([{ id: new URL(base).host, role: 'mixer', parent: null, depth: 0, viewers: 0, capacity: node.config.maxRtcSessions, load: 0 }]);
    const viewer = await WebRtcClient.connect('whep', ev.whep, ev.tokens.viewer);
    const [one] = await tree();
    expect(one.viewers).toBe(1);
    expect(one.load).toBeCloseTo(1 / node.config.maxRtcSessions, 3);
    expect((await api('GET', `/api/events/${ev.id}/tree`, ev.tokens.viewer)).status).toBe(403);
    expect((await api('GET', '/api/events/nope/tree', ADMIN)).status).toBe(404);
    // A provider (the cluster's mixer role) replaces the picture; null falls back to this node.
    node.eventTree = async (id) => (id === ev.id ? { nodes: [{ id: 'm', role: 'mixer', parent: null, depth: 0, viewers: 0, capacity: 10, load: 0 }] } : null);
    expect((await tree())[0].id).toBe('m');
    node.eventTree = async () => null;
    expect((await tree())[0].viewers).toBe(1);
    node.eventTree = undefined;
    await viewer.hangUp();
    await api('DELETE', `/api/events/${ev.id}`, ADMIN);
  });
});
