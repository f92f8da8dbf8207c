/**
 * Every WHIP and WHEP session of a node on one UDP port (`rtcPort`): werift peers publish and
 * watch through it over real loopback sockets, their audio decoded; STUN without the right
 * credentials is dropped and counted; sessions that end leave nothing routed.
 */
import dgram from 'node:dgram';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { classes, Message, methods } from 'werift';
import { McuNode } from '@mcu/server';
import { setBatchWeriftSends, SharedUdpPort } from '../src/index.js';
import { LOOPBACK, paceClients, tonePower, WebRtcClient } from './client.js';
import { until } from '../../mixer/test/videoMedia.js';

const ADMIN = 'webrtc-test-admin-token-0123456789';
let node: McuNode;
let base: string;
let rtcPort: number;

async function freePort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  const port = s.address().port;
  s.close();
  return port;
}

async function createEvent() {
  const res = await fetch(`${base}/api/events`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
  return (await res.json()) as { id: string; whip: string; whep: string; tokens: Record<'producer' | 'presenter' | 'viewer', string> };
}

/** Ports of the node's candidates in the answer a client got. */
const answerPorts = (c: WebRtcClient) => [...c.pc.remoteDescription!.sdp.matchAll(/a=candidate:\S+ \d+ udp \d+ \S+ (\d+) typ/gi)].map((m) => Number(m[1]));
const answerUfrag = (c: WebRtcClient) => /a=ice-ufrag:(\S+)/.exec(c.pc.remoteDescription!.sdp)![1];

beforeAll(async () => {
  rtcPort = await freePort();
  node = new McuNode({ port: 0, adminToken: ADMIN, iceAllow: LOOPBACK.iceAllow, iceHostAddresses: LOOPBACK.additionalHostAddresses, rtcPort });
  base = (await node.listen()).url;
});
afterAll(async () => {
  await node.close();
  // The node's one port is free again.
  const again = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    again.once('error', reject);
    again.bind(rtcPort, '0.0.0.0', resolve);
  });
  again.close();
});

describe('one UDP port for every WebRTC session', () => {
  it('presenters and viewers all connect through the one port, hear the mix, and leave nothing routed', async () => {
    const ev = await createEvent();
    const a = await WebRtcClient.connect('whip', ev.whip, ev.tokens.presenter);
    const b = await WebRtcClient.connect('whip', ev.whip, ev.tokens.presenter);
    const viewers = await Promise.all([1, 2, 3].map(() => WebRtcClient.connect('whep', ev.whep, ev.tokens.viewer)));
    const all = [a, b, ...viewers];
    await Promise.all(all.map((c) => c.connected()));
    for (const c of all) {
      expect(answerPorts(c).length).toBeGreaterThan(0);
      expect(new Set(answerPorts(c))).toEqual(new Set([rtcPort]));
      // 64 random bits per session (werift's own 16 bits collide among hundreds of sessions on one port).
      expect(answerUfrag(c)).toMatch(/^[0-9a-f]{16}$/);
    }
    expect(new Set(all.map(answerUfrag)).size).toBe(all.length);
    await paceClients([{ client: a, freq: 440 }, { client: b, freq: 1250 }], 2500);
    const last = (c: WebRtcClient) => c.decodeReceived(Math.max(0, c.received.length - 40));
    expect(tonePower(last(a), 1250)).toBeGreaterThan(100 * tonePower(last(a), 440));
    for (const v of viewers) {
      const heard = last(v);
      expect(heard.length).toBeGreaterThan(30 * 960);
      expect(tonePower(heard, 440)).toBeGreaterThan(1000);
      expect(tonePower(heard, 1250)).toBeGreaterThan(1000);
    }
    const port = node.edge.stats().rtcPort!;
    expect(port.port).toBe(rtcPort);
    // One route per peer address (each werift peer has its own socket), each proved by STUN.
    expect(port.routes).toBe(all.length);
    expect(port.stunRouted).toBe(all.length);
    // The program to the three viewers leaves in one native call (one sendmmsg) per tick; the
    // per-viewer path batches on the port (native-fanout.test.ts covers both).
    const fan = node.edge.stats().fanOut!;
    expect(fan.sent).toBeGreaterThan(3 * 50);
    expect(fan.sent / fan.calls).toBeGreaterThan(2.5);
    expect(fan.fallbacks).toBe(0);
    expect(port.batchFallbacks).toBe(0);

    for (const c of all) expect(await c.hangUp()).toBe(200);
    expect(await until(() => node.edge.stats().rtcPort!.transports === 0, 5000, 20)).toBe(true);
    expect(node.edge.stats().rtcPort!.routes).toBe(0);
  });

  it("sends werift's own datagrams (STUN answers, DTLS flights, RTCP) in the port's sendmmsg batches, none by dgram", async () => {
    const ev = await createEvent();
    const port = (node.edge as unknown as { openedPort: SharedUdpPort }).openedPort;
    let dgramSends = 0;
    const send = port.socket.send;
    port.socket.send = function (this: dgram.Socket, ...args: unknown[]) {
      dgramSends++;
      return (send as (...a: unknown[]) => void).apply(this, args);
    } as typeof send;
    try {
      const before = port.stats().batchedSent;
      const v = await WebRtcClient.connect('whep', ev.whep, ev.tokens.viewer);
      await v.connected();
      // Connected means the node answered the viewer's STUN checks and finished DTLS as client.
      expect(await until(() => v.received.length >= 10, 5000, 20)).toBe(true);
      expect(await v.hangUp()).toBe(200);
      expect(dgramSends).toBe(0);
      // At least a STUN answer and DTLS flights 1, 3 and 5 (the program goes by the native fan-out).
      expect(port.stats().batchedSent - before).toBeGreaterThanOrEqual(4);

      // bench:webrtc's baseline: werift's datagrams by a dgram.send each, as werift sends them.
      setBatchWeriftSends(false);
      const again = await WebRtcClient.connect('whep', ev.whep, ev.tokens.viewer);
      await again.connected();
      expect(await again.hangUp()).toBe(200);
      expect(dgramSends).toBeGreaterThanOrEqual(4);
    } finally {
      setBatchWeriftSends(true);
      port.socket.send = send;
    }
  });

  it('a second node on the same port stops at start with the port named', async () => {
    const other = new McuNode({ port: 0, adminToken: ADMIN, rtcPort });
    await expect(other.listen()).rejects.toThrow(`the WebRTC port ${rtcPort} could not be bound`);
    await other.close();
  });

  it('drops STUN with a wrong ufrag or a failed MESSAGE-INTEGRITY, and anything else from an unknown address, and counts why', async () => {
    const ev = await createEvent();
    const viewer = await WebRtcClient.connect('whep', ev.whep, ev.tokens.viewer);
    await viewer.connected();
    const before = node.edge.stats().rtcPort!.dropped;
    const stranger = dgram.createSocket('udp4');
    stranger.bind(0, '127.0.0.1');
    await once(stranger, 'listening');
    const answers: Buffer[] = [];
    stranger.on('message', (m) => answers.push(m));
    const binding = (username: string | null, password: string) => {
      const m = new Message(methods.BINDING, classes.REQUEST);
      if (username !== null) m.setAttribute('USERNAME', username);
      m.addMessageIntegrity(Buffer.from(password, 'utf8'));
      m.addFingerprint();
      return m.bytes;
    };
    const send = (data: Buffer) => stranger.send(data, rtcPort, '127.0.0.1');
    send(binding('nosuchufrag:x', 'whatever-password-123456'));
    send(binding(`${answerUfrag(viewer)}:x`, 'not-the-session-password'));
    send(binding(null, 'whatever-password-123456'));
    send(Buffer.from([0x80, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 2, 3])); // RTP from nowhere
    send(Buffer.from([22, 254, 253, 0, 0])); // DTLS from nowhere
    const delta = (reason: string) => (node.edge.stats().rtcPort!.dropped[reason] ?? 0) - (before[reason] ?? 0);
    expect(await until(() => delta('unknown_source') === 2, 3000, 10)).toBe(true);
    // …and says what they were.
    const unrouted = node.edge.stats().rtcPort!.unrouted;
    expect(unrouted.rtp).toBeGreaterThanOrEqual(1);
    expect(unrouted.dtls).toBeGreaterThanOrEqual(1);
    expect(delta('unknown_ufrag')).toBe(1);
    expect(delta('bad_integrity')).toBe(1);
    expect(delta('no_username')).toBe(1);
    // And the node exports them. (The viewer joins the native fan-out at a program packet once its transport is up.)
    expect(await until(() => (node.edge.stats().fanOut?.viewers ?? 0) >= 1, 5000, 20)).toBe(true);
    const metrics = await (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } })).text();
    expect(metrics).toMatch(/mcu_webrtc_port_dropped_total\{reason="bad_integrity"\} [1-9]/);
    expect(metrics).toMatch(/^mcu_webrtc_dtls_repeated_hello_dropped_total \d+$/m);
    // The audio viewer is sent to by the native fan-out; no video viewer here.
    expect(metrics).toMatch(/^mcu_webrtc_native_fanout_viewers\{media="audio"\} [1-9]/m);
    expect(metrics).toMatch(/^mcu_webrtc_native_fanout_viewers\{media="video"\} 0$/m);
    await new Promise((r) => setTimeout(r, 100));
    // Nothing answered the stranger, and the viewer still plays.
    expect(answers).toHaveLength(0);
    const n = viewer.received.length;
    expect(await until(() => viewer.received.length > n + 10, 3000, 20)).toBe(true);
    stranger.close();
    expect(await viewer.hangUp()).toBe(200);
  });

  it('a sender that queues thousands of datagrams in one synchronous run sends them as it goes, all delivered', async () => {
    const port = await SharedUdpPort.open({ port: await freePort(), host: '127.0.0.1' });
    const rx = dgram.createSocket({ type: 'udp4', recvBufferSize: 16 << 20 });
    rx.bind(0, '127.0.0.1');
    await once(rx, 'listening');
    let got = 0;
    rx.on('message', () => void got++);
    try {
      const t = port.createTransport();
      const packet = Buffer.alloc(200, 7);
      const before = port.batches;
      // 5,000 in one run, as a late video source catching up would: no microtask in between.
      for (let i = 0; i < 5000; i++) expect(t.queue(packet, 0x7f000001, rx.address().port, '127.0.0.1')).toBe(true);
      expect(port.batches - before).toBeGreaterThanOrEqual(4);
      expect(await until(() => got === 5000, 3000, 10)).toBe(true);
    } finally {
      port.close();
      rx.close();
    }
  });
});
