/**
 * The program sent to every viewer in one native call per packet (NativeFanOut): werift viewers
 * on the node's one UDP port hear the presenter's tone, with no gap in their sequence numbers when
 * the group hands them back to JavaScript and takes them again (the sequence and SRTP rollover
 * state is shared), get sender reports whose packet counts match what arrived, and leave the
 * group when they hang up. Without the addon's fan-out (MCU_NATIVE_FANOUT=0, as when it is not
 * built) the same viewers are served per viewer from JavaScript.
 */
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProtectionProfileAeadAes128Gcm, RtcpSenderInfo, RtcpSrPacket, RtpHeader, SrtcpSession, SrtpSession } from 'werift';
import type { RtcpPacket } from 'werift';
import { buildRtp, ipv4ToInt, parseRtp, RtpHeader as ParsedHeader, socketFd } from '@mcu/rtp';
import { McuNode } from '@mcu/server';
import { fanOutBinding, setNativeFanOut } from '../src/index.js';
import type { WhepSession } from '../src/index.js';
import { LOOPBACK, paceClients, tonePower, WebRtcClient } from './client.js';
import type { Received } from './client.js';
import { until } from '../../mixer/test/videoMedia.js';

const ADMIN = 'webrtc-test-admin-token-0123456789';
let node: McuNode;
let base: string;

beforeAll(async () => {
  const s = dgram.createSocket('udp4');
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  const rtcPort = s.address().port;
  s.close();
  node = new McuNode({ port: 0, adminToken: ADMIN, iceAllow: LOOPBACK.iceAllow, iceHostAddresses: LOOPBACK.additionalHostAddresses, rtcPort });
  base = (await node.listen()).url;
});
afterAll(async () => {
  setNativeFanOut(true);
  delete process.env.MCU_NATIVE_FANOUT;
  await node.close();
});

async function createEvent() {
  const res = await fetch(`${base}/api/events`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
  return (await res.json()) as { id: string; whip: string; whep: string; tokens: Record<'presenter' | 'viewer', string> };
}

const session = (eventId: string, c: WebRtcClient) => node.edge.get('whep', eventId, c.location!.split('/').pop()!) as WhepSession;

/** Sequence gaps (lost) and repeats among received packets, from index `from`. */
function continuity(rx: Received[], from = 0): { gaps: number; repeats: number } {
  let gaps = 0;
  let repeats = 0;
  for (let i = Math.max(1, from); i < rx.length; i++) {
    const d = (rx[i].seq - rx[i - 1].seq) & 0xffff;
    if (d === 0 || d > 0x8000) repeats++;
    else gaps += d - 1;
  }
  return { gaps, repeats };
}

describe('the native program fan-out', () => {
  it('is built with the addon', () => {
    expect(fanOutBinding()).not.toBeNull();
  });

  it('seals each viewer\'s copy byte for byte as werift does (its SSRC, offsets, abs-send-time, across a rollover) and sends them in one call', async () => {
    const b = fanOutBinding()!;
    const stride = b.FANOUT_STATE_STRIDE;
    const from = dgram.createSocket('udp4');
    const rx = [dgram.createSocket('udp4'), dgram.createSocket('udp4')];
    for (const s of [from, ...rx]) s.bind(0, '127.0.0.1');
    await Promise.all([from, ...rx].map((s) => once(s, 'listening')));
    const got: Buffer[][] = [[], []];
    rx.forEach((s, i) => s.on('message', (m) => got[i].push(m)));
    try {
      const fan = new b.SrtpFanOut();
      const state = new Uint32Array(2 * stride);
      const viewers = [
        { ssrc: 0x1111_2222, pt: 111, seqOffset: 65_000, tsOffset: 0xffff_fff0, ext: 0 },
        { ssrc: 0x3333_4444, pt: 96, seqOffset: 7, tsOffset: 12_345, ext: 3 },
      ].map((v, i) => {
        const keys = { localMasterKey: randomBytes(16), localMasterSalt: randomBytes(12), remoteMasterKey: randomBytes(16), remoteMasterSalt: randomBytes(12) };
        const werift = new SrtpSession({ keys, profile: ProtectionProfileAeadAes128Gcm });
        const cipher = werift.localContext.cipher as unknown as { srtpSessionKey: Buffer; srtpSessionSalt: Buffer };
        fan.setKey(i, cipher.srtpSessionKey, cipher.srtpSessionSalt.subarray(0, 12));
        const row = state.subarray(i * stride);
        row.set([1, v.ssrc, v.pt, v.seqOffset, v.tsOffset, 0, 0, ipv4ToInt('127.0.0.1'), rx[i].address().port, socketFd(from), v.ext]);
        return { ...v, werift };
      });
      const out = new Uint8Array(2 * 1536);
      const status = new Int32Array(7);
      const parsed = new ParsedHeader();
      const expected: Buffer[][] = [[], []];
      for (let k = 0; k < 700; k++) {
        const program = buildRtp({ payloadType: 111, sequenceNumber: (500 + k) & 0xffff, timestamp: k * 960, ssrc: 42, marker: k % 9 === 0, csrcs: k % 4 === 0 ? [5, 6] : [] }, randomBytes(30 + (k % 150)));
        expect(parseRtp(program, parsed)).toBeNull();
        const abs = (k * 4099) & 0xff_ffff;
        expect(fan.send(state, 2, program, parsed.payloadOffset, parsed.payloadLength, parsed.marker ? 1 : 0, parsed.sequenceNumber, parsed.timestamp, parsed.csrcCount, abs, out, 1536, status)).toBe(2);
        expect(status[0]).toBe(2);
        viewers.forEach((v, i) => {
          const ext = v.ext ? [{ id: v.ext, payload: Buffer.from([abs >> 16, (abs >> 8) & 0xff, abs & 0xff]) }] : [];
          const h = new RtpHeader({ payloadType: v.pt, sequenceNumber: (parsed.sequenceNumber + v.seqOffset) & 0xffff, timestamp: (parsed.timestamp + v.tsOffset) >>> 0, ssrc: v.ssrc, marker: parsed.marker, csrc: [...parsed.csrcs.slice(0, parsed.csrcCount)], extensions: ext });
          expected[i].push(v.werift.encrypt(program.subarray(parsed.payloadOffset, parsed.payloadOffset + parsed.payloadLength), h));
        });
        if (k % 50 === 49) await new Promise((r) => setTimeout(r, 5));
      }
      expect(await until(() => got[0].length === 700 && got[1].length === 700, 3000, 10)).toBe(true);
      for (const i of [0, 1]) for (let k = 0; k < 700; k++) expect(got[i][k].equals(expected[i][k]), `viewer ${i} packet ${k}`).toBe(true);
      // Viewer 0's sequence numbers wrapped (65,000 + 500 + 36): its rollover counter went to 1, as werift's did.
      expect(state[5]).toBe(1);
      expect(viewers[0].werift.localContext.getSrtpSsrcState(viewers[0].ssrc).rolloverCounter).toBe(1);
      expect(state[11]).toBe(700); // packet count for its sender reports
      // Sender reports: sealed as werift's SRTCP does, index by index.
      const keys = { localMasterKey: randomBytes(16), localMasterSalt: randomBytes(12), remoteMasterKey: randomBytes(16), remoteMasterSalt: randomBytes(12) };
      const srtcp = new SrtcpSession({ keys, profile: ProtectionProfileAeadAes128Gcm });
      const rc = srtcp.localContext.cipher as unknown as { srtcpSessionKey: Buffer; srtcpSessionSalt: Buffer };
      fan.setRtcpKey(1, rc.srtcpSessionKey, rc.srtcpSessionSalt.subarray(0, 12));
      for (let index = 1; index <= 5; index++) {
        const sr = new RtcpSrPacket({ ssrc: 0x3333_4444, senderInfo: new RtcpSenderInfo({ ntpTimestamp: BigInt(index) << 32n, rtpTimestamp: index * 960, packetCount: index, octetCount: index * 100 }) }).serialize();
        const expected = srtcp.encrypt(sr); // werift's index goes 1, 2, 3…
        const buf = Buffer.alloc(sr.length + 20);
        sr.copy(buf);
        expect(fan.sealRtcp(1, buf, sr.length, index)).toBe(expected.length);
        expect(buf.equals(expected), `SRTCP index ${index}`).toBe(true);
      }
      expect(fan.sealRtcp(0, Buffer.alloc(48), 28, 1)).toBe(-1); // no SRTCP key for that slot
      // Bad arguments: an error, not a crash.
      expect(() => fan.send(state, 3, Buffer.alloc(20), 12, 8, 0, 0, 0, 0, -1, out, 1536, status)).toThrow(RangeError);
      expect(() => fan.setKey(0, randomBytes(15), randomBytes(12))).toThrow(RangeError);
      expect(() => fan.send('x' as never, 2, Buffer.alloc(20), 12, 8, 0, 0, 0, 0, -1, out, 1536, status)).toThrow(TypeError);
    } finally {
      for (const s of [from, ...rx]) s.close();
    }
  });

  it('sends the program to every viewer in one call per packet; hands viewers back to JavaScript and takes them again without a gap', async () => {
    const ev = await createEvent();
    const presenter = await WebRtcClient.connect('whip', ev.whip, ev.tokens.presenter);
    const viewers = await Promise.all([1, 2, 3].map(() => WebRtcClient.connect('whep', ev.whep, ev.tokens.viewer)));
    const srs: { packetCount: number; received: number }[][] = viewers.map(() => []);
    viewers.forEach((v, i) =>
      v.audio.receiver.onRtcp.subscribe((p: RtcpPacket) => {
        const sr = p as { type: number; senderInfo?: { packetCount: number } };
        if (sr.type === 200 && sr.senderInfo) srs[i].push({ packetCount: sr.senderInfo.packetCount, received: v.received.length });
      }),
    );
    await Promise.all([presenter, ...viewers].map((c) => c.connected()));
    const joinedAt = performance.now();
    const before = node.edge.stats().fanOut!;
    await paceClients([{ client: presenter, freq: 440 }], 2500);

    const fan = node.edge.stats().fanOut!;
    expect(fan.viewers).toBe(3);
    // About 125 ticks in 2.5 s, each one call for all three viewers.
    const sent = fan.sent - before.sent;
    const calls = fan.calls - before.calls;
    expect(sent).toBeGreaterThan(3 * 80);
    expect(sent / calls).toBeGreaterThan(2.9);
    expect(fan.failed).toBe(0);
    expect(fan.fallbacks).toBe(0);
    for (const v of viewers) {
      expect(session(ev.id, v).describe().audioNativeFanOut).toBe(true);
      const heard = v.decodeReceived(Math.max(0, v.received.length - 40));
      expect(heard.length).toBeGreaterThan(30 * 960);
      expect(tonePower(heard, 440)).toBeGreaterThan(1000);
      expect(tonePower(heard, 440)).toBeGreaterThan(50 * tonePower(heard, 1250));
    }
    // Sender reports count what the group sent: what the viewer had received by then, give or take the packets in flight.
    expect(await until(() => srs.every((s) => s.length >= 2), 5000, 50)).toBe(true);
    // The group sends them (werift's own loop is stopped meanwhile: one report every 0.5-1.5 s, not two).
    expect(node.edge.stats().fanOut!.senderReports).toBeGreaterThanOrEqual(6);
    for (const s of srs) expect(s.length).toBeLessThanOrEqual(Math.ceil((performance.now() - joinedAt) / 500) + 1);
    for (const s of srs) {
      const last = s[s.length - 1];
      expect(last.packetCount).toBeGreaterThan(50);
      expect(Math.abs(last.packetCount - last.received)).toBeLessThanOrEqual(10);
    }

    // Off: every viewer goes back to JavaScript; on again: back to the group. Nothing lost, nothing repeated.
    const mark = viewers.map((v) => v.received.length);
    setNativeFanOut(false);
    await paceClients([{ client: presenter, freq: 440 }], 1000);
    expect(node.edge.stats().fanOut!.viewers).toBe(0);
    for (const v of viewers) expect(session(ev.id, v).describe().audioNativeFanOut).toBe(false);
    setNativeFanOut(true);
    await paceClients([{ client: presenter, freq: 440 }], 1000);
    expect(node.edge.stats().fanOut!.viewers).toBe(3);
    viewers.forEach((v, i) => {
      expect(v.received.length - mark[i]).toBeGreaterThan(80);
      expect(continuity(v.received, mark[i] - 1)).toEqual({ gaps: 0, repeats: 0 });
      expect(tonePower(v.decodeReceived(v.received.length - 40), 440)).toBeGreaterThan(1000);
    });

    for (const c of [presenter, ...viewers]) expect(await c.hangUp()).toBe(200);
    expect(await until(() => node.edge.stats().fanOut?.viewers === 0, 3000, 20)).toBe(true);
  }, 30_000);

  it('without the addon fan-out the viewers are served per viewer, and still hear the program', async () => {
    process.env.MCU_NATIVE_FANOUT = '0';
    try {
      const ev = await createEvent();
      const presenter = await WebRtcClient.connect('whip', ev.whip, ev.tokens.presenter);
      const viewers = await Promise.all([1, 2].map(() => WebRtcClient.connect('whep', ev.whep, ev.tokens.viewer)));
      await Promise.all([presenter, ...viewers].map((c) => c.connected()));
      const batchedBefore = node.edge.stats().rtcPort!.batchedSent;
      await paceClients([{ client: presenter, freq: 440 }], 2000);
      // The per-viewer path: FastSender, its datagrams batched on the shared port.
      expect(node.edge.stats().rtcPort!.batchedSent - batchedBefore).toBeGreaterThan(2 * 60);
      for (const v of viewers) {
        const d = session(ev.id, v).describe();
        expect(d.audioNativeFanOut).toBe(false);
        expect(d.audioNativeFanOutPackets).toBe(0);
        const heard = v.decodeReceived(Math.max(0, v.received.length - 40));
        expect(tonePower(heard, 440)).toBeGreaterThan(1000);
        expect(continuity(v.received, 1).gaps).toBeLessThanOrEqual(2);
      }
      for (const c of [presenter, ...viewers]) expect(await c.hangUp()).toBe(200);
    } finally {
      delete process.env.MCU_NATIVE_FANOUT;
    }
  }, 30_000);
});
