/**
 * The program video through its rendition's group (VideoGroup): werift viewers join the native
 * group, which sends each packet to all of them in one addon call; each viewer decodes the whole
 * stream without a sequence gap; a NACK from a viewer in the group is answered from the group's
 * history with the same packet (werift's own history is empty for it); a NACK for a packet not
 * sent yet is not answered. Without the addon's fan-out (MCU_NATIVE_FANOUT=0) the same viewers are
 * served from JavaScript, per viewer.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { GenericNack, RTCPeerConnection, RtcpTransportLayerFeedback } from 'werift';
import type { RTCRtpTransceiver, RtpPacket } from 'werift';
import { MixerEvent } from '@mcu/mixer';
import { peerConfig, programSourceOf, setNativeFanOut, srtcpInStats, WebRtcEdge } from '../src/index.js';
import type { WhepSession } from '../src/index.js';
import { closeVideoEvent, LOOPBACK, playInProcess } from './client.js';
import { ClipSender, lavfiClip, until, Viewer } from '../../mixer/test/videoMedia.js';

let event: MixerEvent | null = null;
let edge: WebRtcEdge | null = null;
const pcs: RTCPeerConnection[] = [];
let clip: ClipSender | null = null;
/** The first test's viewers, still watching in the second. */
let grouped: VideoViewer[] = [];

afterAll(async () => {
  setNativeFanOut(true);
  clip?.stop();
  expect(await closeVideoEvent(event, edge, pcs)).toBe(true);
});

interface VideoViewer {
  pc: RTCPeerConnection;
  transceiver: RTCRtpTransceiver;
  whep: WhepSession;
  viewer: Viewer;
  packets: { seq: number; ssrc: number; payload: Buffer }[];
}

async function watch(): Promise<VideoViewer> {
  const pc = new RTCPeerConnection(peerConfig(LOOPBACK));
  pcs.push(pc);
  pc.addTransceiver('audio', { direction: 'recvonly' });
  const transceiver = pc.addTransceiver('video', { direction: 'recvonly' });
  const v: Omit<VideoViewer, 'whep'> = { pc, transceiver, viewer: new Viewer('vp8'), packets: [] };
  let asked = false;
  transceiver.onTrack.subscribe((track) => {
    track.onReceiveRtp.subscribe((rtp: RtpPacket) => {
      v.packets.push({ seq: rtp.header.sequenceNumber, ssrc: rtp.header.ssrc, payload: Buffer.from(rtp.payload) });
      const buf = rtp.serialize();
      v.viewer.push(buf, buf.length);
      if (!asked) {
        asked = true;
        void transceiver.receiver.sendRtcpPLI(rtp.header.ssrc).catch(() => undefined);
      }
    });
  });
  const whep = await playInProcess(pc, edge!, programSourceOf(event!));
  return { ...v, whep };
}

/** Sequence numbers never received between the first and the last (a retransmission, out of order, fills its own). */
function gaps(packets: { seq: number }[]): number {
  if (packets.length === 0) return 0;
  const seen = new Set<number>();
  let ext = 0;
  let prev = packets[0].seq;
  let hi = 0;
  let lo = 0;
  for (const p of packets) {
    const d = (p.seq - prev) & 0xffff;
    ext += d < 0x8000 ? d : d - 0x10000;
    prev = p.seq;
    seen.add(ext);
    hi = Math.max(hi, ext);
    lo = Math.min(lo, ext);
  }
  return hi - lo + 1 - seen.size;
}

describe('program video through its rendition group', () => {
  it('two viewers in one native group: one call per packet, whole streams, NACKs answered from the group', async () => {
    event = new MixerEvent({ id: 'video-fanout', video: { renditions: [{ id: 'main', width: 320, height: 180, bitrateKbps: 400 }], keyframeIntervalMs: 2000 } });
    edge = new WebRtcEdge({ iceAllow: LOOPBACK.iceAllow, additionalHostAddresses: LOOPBACK.additionalHostAddresses });
    event.addVideoSource('cam', 'vp8', 'Cam');
    // A moving test pattern: every frame is new, so the rendition sends packets all the time.
    clip = new ClipSender(lavfiClip({ source: 'testsrc=decimals=2', width: 320, height: 180, frames: 30, codec: 'vp8', gop: 15 }), (p) => event?.pushVideoRtp('cam', p)).start();
    const a = await watch();
    const b = await watch();
    grouped = [a, b];
    const inGroup = () => a.whep.describe().videoNativeFanOut === true && b.whep.describe().videoNativeFanOut === true;
    expect(await until(inGroup, 15_000, 20), JSON.stringify([a.whep.describe(), b.whep.describe()])).toBe(true);
    const group = edge.stats().videoFanOut!;
    expect(group.viewers).toBe(2);
    const sentBefore = { a: a.packets.length, b: b.packets.length, calls: group.calls };
    expect(await until(() => a.packets.length - sentBefore.a > 150 && b.packets.length - sentBefore.b > 150, 15_000, 20)).toBe(true);

    const after = edge.stats().videoFanOut!;
    // One addon call per packet carried both viewers' copies.
    expect(after.sent).toBeGreaterThanOrEqual(2 * (after.calls - sentBefore.calls) - 2);
    expect(after.failed).toBe(0);
    for (const v of [a, b]) {
      expect(new Set(v.packets.map((p) => p.ssrc)).size).toBe(1);
      expect(gaps(v.packets), 'sequence gaps').toBe(0);
      expect(v.viewer.frames.length).toBeGreaterThan(20);
      const d = v.whep.describe();
      expect(d.videoNativeFanOutPackets as number).toBeGreaterThan(150);
    }

    // Viewer a asks again for a packet it received (as if lost) and for one not sent yet.
    const ssrc = a.packets[0].ssrc;
    const asked = a.packets[a.packets.length - 20];
    const future = (a.packets[a.packets.length - 1].seq + 5000) & 0xffff;
    const resentBefore = a.whep.describe().videoPacketsResent as number;
    const openedBefore = srtcpInStats().opened;
    const nack = new RtcpTransportLayerFeedback({ feedback: new GenericNack({ senderSsrc: 1, mediaSourceSsrc: ssrc, lost: [asked.seq, future] }) });
    await a.transceiver.receiver.dtlsTransport.sendRtcp([nack]);
    const again = () => a.packets.filter((p) => p.seq === asked.seq);
    expect(await until(() => again().length >= 2, 5000, 20), JSON.stringify(a.whep.describe())).toBe(true);
    expect(again()[1].payload.equals(asked.payload)).toBe(true);
    expect(a.whep.describe().videoPacketsResent).toBe(resentBefore + 1);
    // The NACK came in as SRTCP, opened natively (werift parsed the plain RTCP it was given).
    expect(srtcpInStats().opened).toBeGreaterThan(openedBefore);
    expect(a.packets.some((p) => p.seq === future)).toBe(false);
    // Viewer b asked nothing and got nothing twice.
    expect(b.packets.length - new Set(b.packets.map((p) => p.seq)).size).toBe(0);
  }, 60_000);

  it('without the addon fan-out the viewers are served from JavaScript and get the whole stream', async () => {
    setNativeFanOut(false);
    const before = grouped.map((v) => v.packets.length);
    const c = await watch();
    expect(await until(() => c.packets.length > 100, 15_000, 20)).toBe(true);
    const d = c.whep.describe();
    expect(d.videoNativeFanOut).toBe(false);
    expect(d.videoNativeFanOutPackets).toBe(0);
    expect(gaps(c.packets)).toBe(0);
    expect(c.viewer.frames.length).toBeGreaterThan(10);
    // The viewers already in the group left it for JavaScript and kept receiving, without a gap.
    expect(await until(() => edge!.stats().videoFanOut?.viewers === 0, 2000, 20)).toBe(true);
    grouped.forEach((v, i) => {
      expect(v.packets.length - before[i]).toBeGreaterThan(100);
      expect(gaps(v.packets), 'sequence gaps across leaving the group').toBe(0);
      expect(v.whep.describe().videoNativeFanOut).toBe(false);
    });
  }, 40_000);
});
