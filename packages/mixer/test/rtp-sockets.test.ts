/**
 * Plain-RTP participants on both socket paths, same behaviour: the native set (one epoll set read
 * once per tick, every mix of a tick sent in one batch, the shared mix gathered) and the dgram
 * socket per participant where the addon is not built (`nativeUdp: false`, as MCU_NATIVE_UDP=0).
 * Real sockets on 127.0.0.1, decoded audio asserted.
 */
import dgram from 'node:dgram';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { buildRtp, buildSenderReport, nativeUdp, ntpFromUnixMs } from '@mcu/rtp';
import { DropCounters, MixerEvent, SharedRtpPort } from '../src/index.js';
import { pace, RtpPeer, sleep, tonePower } from './peer.js';

const EXT = 1;
let event: MixerEvent | null = null;
const closers: Array<{ close(): void }> = [];

afterEach(() => {
  event?.close();
  event = null;
  for (const c of closers.splice(0)) c.close();
});

/** A peer that also notes the source ports of what it receives. */
async function join(ev: MixerEvent, opts: Parameters<typeof RtpPeer.open>[0] = {}) {
  const peer = await RtpPeer.open(opts);
  closers.push(peer);
  const info = await ev.addRtpParticipant({ host: '127.0.0.1', port: peer.port, payloadType: 111, audioLevelExtId: opts.audioLevelExtId });
  peer.connect(info.host, info.port);
  const fromPorts = new Set<number>();
  peer.socket.on('message', (_m, rinfo) => fromPorts.add(rinfo.port));
  return { peer, info, fromPorts };
}

const lastSecond = (p: RtpPeer) => p.decodeReceived(Math.max(0, p.received.length - 50));

describe.each([
  ['native set', true, undefined, false],
  ['shared port', true, 0, false],
  ['shared port, sender thread', true, 0, true],
  ['dgram sockets', false, undefined, false],
] as const)('plain-RTP participants (%s)', (_name, native, rtpPort, sendThread) => {
  const skip = native && nativeUdp() === null;
  const shared = rtpPort !== undefined;

  it.skipIf(skip)('speakers hear each other, listeners the shared mix, each from the port it sends to (symmetric RTP)', async () => {
    event = new MixerEvent({ id: 'sockets', maxSpeakers: 3, nativeUdp: native, rtpPort, sendThread });
    expect(event.nativeRtp).toBe(native);
    expect(event.sharedRtpPort !== null).toBe(shared);
    const a = await join(event, { freq: 440, audioLevelExtId: EXT });
    const b = await join(event, { freq: 1250, audioLevelExtId: EXT });
    const l1 = await join(event, { freq: 0, audioLevelExtId: EXT });
    const l2 = await join(event, { freq: 0, audioLevelExtId: EXT });
    await pace([a.peer, b.peer, l1.peer, l2.peer], 2000);
    await sleep(60);
    expect(event.mixer.speakerIds.sort()).toEqual([a.info.id, b.info.id].sort());
    const aHears = lastSecond(a.peer);
    expect(aHears.length).toBeGreaterThan(40 * 960);
    expect(tonePower(aHears, 1250)).toBeGreaterThan(100 * tonePower(aHears, 440));
    expect(tonePower(lastSecond(b.peer), 440)).toBeGreaterThan(100 * tonePower(lastSecond(b.peer), 1250));
    for (const l of [l1, l2]) {
      const heard = lastSecond(l.peer);
      expect(tonePower(heard, 440)).toBeGreaterThan(1000);
      expect(tonePower(heard, 1250)).toBeGreaterThan(1000);
      // The shared mix names both speakers.
      expect(new Set(l.peer.received.slice(-5).flatMap((r) => r.csrcs))).toEqual(new Set([a.peer.ssrc, b.peer.ssrc]));
    }
    // Shared: one port for all of them.
    expect(new Set([a, b, l1, l2].map((p) => p.info.port)).size).toBe(shared ? 1 : 4);
    for (const p of [a, b, l1, l2]) {
      expect([...p.fromPorts]).toEqual([p.info.port]);
      // One packet per tick since joining, continuous sequence numbers.
      const r = p.peer.received;
      expect(r.length).toBeGreaterThan(90);
      for (let i = 1; i < r.length; i++) expect((r[i].seq - r[i - 1].seq) & 0xffff).toBe(1);
    }
    const s = event.stats();
    expect(s.rtpSockets.native).toBe(native);
    if (native) {
      expect(s.ioTickMs!.p99).toBeGreaterThan(0);
      expect(s.rtpSockets.sendFailed).toBe(0);
      // With the thread, one batch per tick handed over, each after the previous one had left.
      if (sendThread) expect(s.rtpSockets.sendThread!.batches).toBeGreaterThan(90);
      else expect(s.rtpSockets.sendThread).toBeNull();
    }
  });

  it.skipIf(skip)('drops bad input by reason and passes sender reports of the latched stream to lip sync', async () => {
    event = new MixerEvent({ id: 'drops', maxSpeakers: 2, nativeUdp: native, rtpPort, sendThread });
    const a = await join(event, { freq: 600, audioLevelExtId: EXT });
    const l = await join(event, { freq: 0, audioLevelExtId: EXT });
    await pace([a.peer, l.peer], 400);
    // Another address (127.0.0.2 is loopback too) sending to A's port.
    const stranger = dgram.createSocket('udp4');
    closers.push(stranger);
    stranger.bind(0, '127.0.0.2');
    await once(stranger, 'listening');
    const rtp = (pt: number, bytes: number) => buildRtp({ payloadType: pt, sequenceNumber: 1, timestamp: 1, ssrc: a.peer.ssrc }, Buffer.alloc(bytes, 1));
    for (let i = 0; i < 3; i++) stranger.send(rtp(111, 40), a.info.port, '127.0.0.1');
    a.peer.sendRaw(rtp(111, 1600)); // longer than any MTU
    a.peer.sendRaw(rtp(96, 40));
    a.peer.sendRaw(Buffer.from([0x80, 111])); // shorter than a header
    expect(event.participantInfo(a.info.id)!.avSync).toBeNull();
    const ntp = ntpFromUnixMs(Date.now());
    a.peer.sendRaw(buildSenderReport({ ssrc: a.peer.ssrc, ntpSec: ntp.sec, ntpFrac: ntp.frac, rtpTimestamp: 12345, packetCount: 20, octetCount: 2000 }));
    await pace([a.peer, l.peer], 300);
    const dropped = event.stats().dropped;
    expect(dropped.unknown_source).toBe(3);
    expect(dropped.too_large).toBe(1);
    expect(dropped.wrong_payload_type).toBe(1);
    expect(Object.keys(dropped).filter((k) => !['unknown_source', 'too_large', 'wrong_payload_type'].includes(k)).length).toBeGreaterThanOrEqual(1);
    const info = event.participantInfo(a.info.id)!;
    expect(info.stats.rtcpIn).toBe(1);
    expect(info.avSync).not.toBeNull();
    // The mix went on: the listener hears A.
    expect(tonePower(l.peer.decodeReceived(Math.max(0, l.peer.received.length - 15)), 600)).toBeGreaterThan(1000);
  });

  it.skipIf(skip)('a muted speaker leaves the mix; a kicked participant gets nothing more and a newcomer takes its socket slot', async () => {
    event = new MixerEvent({ id: 'kick', maxSpeakers: 2, nativeUdp: native, rtpPort, sendThread });
    const a = await join(event, { freq: 500, audioLevelExtId: EXT });
    const b = await join(event, { freq: 0, audioLevelExtId: EXT });
    const l = await join(event, { freq: 0, audioLevelExtId: EXT });
    await pace([a.peer, b.peer, l.peer], 800);
    expect(tonePower(l.peer.decodeReceived(l.peer.received.length - 10), 500)).toBeGreaterThan(1000);
    event.setMuted(a.info.id, true);
    await pace([a.peer, b.peer, l.peer], 500);
    expect(tonePower(l.peer.decodeReceived(l.peer.received.length - 10), 500)).toBeLessThan(10);

    expect(event.removeParticipant(b.info.id)).toBe(true);
    await sleep(60);
    const bCount = b.peer.received.length;
    const c = await join(event, { freq: 900, audioLevelExtId: EXT });
    await pace([a.peer, b.peer, l.peer, c.peer], 800);
    expect(b.peer.received.length).toBe(bCount);
    // On the shared port the kicked one's packets still arrive: nobody takes them.
    if (shared) expect(event.stats().dropped.unknown_source).toBeGreaterThan(20);
    expect(event.participants().map((p) => p.id)).not.toContain(b.info.id);
    expect(tonePower(l.peer.decodeReceived(l.peer.received.length - 10), 900)).toBeGreaterThan(1000);
    expect([...c.fromPorts]).toEqual([c.info.port]);
    event.close();
    // Closed: the ports are free again.
    const again = dgram.createSocket('udp4');
    closers.push(again);
    again.bind(c.info.port, '127.0.0.1');
    await once(again, 'listening');
  });
});

describe.skipIf(nativeUdp() === null)('one shared plain-RTP port', () => {
  it("carries two events' participants, each event's mix to its own; a stranger and another stream are dropped, a moved NAT binding of a latched stream is kept", async () => {
    const drops = new DropCounters();
    const port = SharedRtpPort.open({ host: '127.0.0.1', drops })!;
    closers.push(port);
    const e1 = new MixerEvent({ id: 'one', maxSpeakers: 2, rtpPort: port });
    const e2 = new MixerEvent({ id: 'two', maxSpeakers: 2, rtpPort: port });
    closers.push(e1, e2);
    const a = await join(e1, { freq: 440, audioLevelExtId: EXT });
    const l1 = await join(e1, { freq: 0, audioLevelExtId: EXT });
    const b = await join(e2, { freq: 1250, audioLevelExtId: EXT });
    const l2 = await join(e2, { freq: 0, audioLevelExtId: EXT });
    for (const p of [a, l1, b, l2]) expect(p.info.port).toBe(port.port);
    expect(port.size).toBe(4);
    await pace([a.peer, l1.peer, b.peer, l2.peer], 1500);
    const h1 = lastSecond(l1.peer);
    const h2 = lastSecond(l2.peer);
    expect(tonePower(h1, 440)).toBeGreaterThan(1000);
    expect(tonePower(h1, 440)).toBeGreaterThan(100 * tonePower(h1, 1250));
    expect(tonePower(h2, 1250)).toBeGreaterThan(1000);
    expect(tonePower(h2, 1250)).toBeGreaterThan(100 * tonePower(h2, 440));
    for (const p of [a, l1, b, l2]) expect([...p.fromPorts]).toEqual([port.port]);

    // A's stream from a new port of its IP (its NAT binding moved): kept. Then another SSRC from there, and a stranger: dropped.
    const moved = dgram.createSocket('udp4');
    const stranger = dgram.createSocket('udp4');
    closers.push(moved, stranger);
    moved.bind(0, '127.0.0.1');
    stranger.bind(0, '127.0.0.2');
    await Promise.all([once(moved, 'listening'), once(stranger, 'listening')]);
    const rtp = (ssrc: number, seq: number) => buildRtp({ payloadType: 111, sequenceNumber: seq, timestamp: seq * 960, ssrc }, Buffer.alloc(40, 1));
    const before = e1.participantInfo(a.info.id)!.stats.packetsIn;
    for (let i = 0; i < 5; i++) moved.send(rtp(a.peer.ssrc, 60_000 + i), port.port, '127.0.0.1');
    await sleep(60);
    for (let i = 0; i < 3; i++) moved.send(rtp((a.peer.ssrc + 1) >>> 0, i), port.port, '127.0.0.1');
    for (let i = 0; i < 2; i++) stranger.send(rtp(a.peer.ssrc, i), port.port, '127.0.0.1');
    await pace([l1.peer, b.peer, l2.peer], 200);
    // Once latched to A, the new address is A's: the other stream reaches A, which refuses it.
    expect(e1.participantInfo(a.info.id)!.stats.packetsIn - before).toBe(8);
    expect(e1.stats().dropped.wrong_ssrc).toBe(3);
    expect(drops.get('unknown_source')).toBe(2);

    // A leaves event one: its routes go with it; the port stays open for the others.
    e1.removeParticipant(a.info.id);
    expect(port.size).toBe(3);
    e1.close();
    expect(port.isClosed).toBe(false);
    const heard = l2.peer.received.length;
    await pace([b.peer, l2.peer], 300);
    expect(l2.peer.received.length).toBeGreaterThan(heard + 10);
  });

  it('needs the native addon: a clear error without it', () => {
    expect(() => new MixerEvent({ id: 'x', nativeUdp: false, rtpPort: 0 })).toThrow(/needs the native UDP addon/);
  });
});
