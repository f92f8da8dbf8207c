/**
 * A session on a UDP port of its own (no `rtcPort`) answers ICE Binding requests only with its
 * credentials: werift alone answers any request, whatever its USERNAME and MESSAGE-INTEGRITY.
 * A stranger's socket sends requests to the port a real werift viewer connected through; only the
 * one signed with the session's ufrag and password is answered, the others are dropped and counted.
 */
import dgram from 'node:dgram';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { classes, Message, methods, parseMessage } from 'werift';
import { McuNode } from '@mcu/server';
import { isStunRequest, ownPortStunStats } from '../src/index.js';
import { LOOPBACK, WebRtcClient } from './client.js';
import { until } from '../../mixer/test/videoMedia.js';

const ADMIN = 'webrtc-test-admin-token-0123456789';
let node: McuNode;
let base: string;

beforeAll(async () => {
  node = new McuNode({ port: 0, adminToken: ADMIN, iceAllow: LOOPBACK.iceAllow, iceHostAddresses: LOOPBACK.additionalHostAddresses });
  base = (await node.listen()).url;
});
afterAll(async () => {
  await node.close();
});

describe('ICE Binding requests on a session’s own port', () => {
  it('answers only the session’s ufrag with its password; drops and counts the rest; the viewer stays connected', async () => {
    const ev = (await (await fetch(`${base}/api/events`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } })).json()) as { whep: string; tokens: { viewer: string } };
    const viewer = await WebRtcClient.connect('whep', ev.whep, ev.tokens.viewer);
    await viewer.connected();
    const sdp = viewer.pc.remoteDescription!.sdp;
    const ufrag = /a=ice-ufrag:(\S+)/.exec(sdp)![1];
    const password = /a=ice-pwd:(\S+)/.exec(sdp)![1];
    const port = Number(/a=candidate:\S+ \d+ udp \d+ 127\.0\.0\.1 (\d+) typ host/i.exec(sdp)![1]);
    const before = ownPortStunStats();

    const stranger = dgram.createSocket('udp4');
    stranger.bind(0, '127.0.0.1');
    await once(stranger, 'listening');
    const answered = new Set<string>();
    stranger.on('message', (m) => {
      const r = parseMessage(m, Buffer.from(password, 'utf8'));
      if (r && r.messageClass === classes.RESPONSE) answered.add(r.transactionIdHex);
    });
    const binding = (username: string | null, key: string) => {
      const m = new Message(methods.BINDING, classes.REQUEST);
      if (username !== null) m.setAttribute('USERNAME', username);
      m.setAttribute('PRIORITY', 1853824767);
      m.addMessageIntegrity(Buffer.from(key, 'utf8'));
      m.addFingerprint();
      return m;
    };
    const bad = [binding('nosuchufrag:x', password), binding(`${ufrag}:x`, 'not-the-session-password'), binding(null, password)];
    const good = binding(`${ufrag}:x`, password);
    expect(isStunRequest(good.bytes)).toBe(true);
    for (const m of bad) stranger.send(m.bytes, port, '127.0.0.1');
    stranger.send(good.bytes, port, '127.0.0.1');

    // The good one is answered (signed with the session's password)…
    expect(await until(() => answered.has(good.transactionIdHex), 3000, 10)).toBe(true);
    await new Promise((r) => setTimeout(r, 300));
    // …none of the others, and each is counted by why.
    for (const m of bad) expect(answered.has(m.transactionIdHex)).toBe(false);
    const after = ownPortStunStats();
    const delta = (reason: string) => (after.dropped[reason] ?? 0) - (before.dropped[reason] ?? 0);
    expect(delta('unknown_ufrag')).toBe(1);
    expect(delta('bad_integrity')).toBe(1);
    expect(delta('no_username')).toBe(1);
    expect(after.verified).toBeGreaterThan(before.verified);
    stranger.close();

    // The viewer's own consent checks still pass: it stays connected and keeps receiving.
    const received = viewer.received.length;
    await new Promise((r) => setTimeout(r, 600));
    expect(viewer.pc.connectionState).toBe('connected');
    expect(viewer.received.length).toBeGreaterThan(received);
    const metrics = await (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } })).text();
    expect(metrics).toMatch(/mcu_webrtc_stun_dropped_total\{reason="bad_integrity"\} [1-9]/);
    await viewer.pc.close();
  });
});
