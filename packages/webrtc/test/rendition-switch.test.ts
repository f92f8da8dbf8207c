/**
 * A WHEP viewer that did not pin a rendition is moved between the program's renditions by the
 * bandwidth it reports (REMB), receiving one continuous stream: the same SSRC, sequence numbers
 * going on by one, and a keyframe of the new size at each switch.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { RTCPeerConnection } from 'werift';
import type { RTCRtpTransceiver, RtpPacket } from 'werift';
import { MixerEvent } from '@mcu/mixer';
import { peerConfig, programSourceOf, WebRtcEdge } from '../src/index.js';
import { closeVideoEvent, LOOPBACK, playInProcess, rembPacket } from './client.js';
import { ClipSender, lavfiClip, until, Viewer } from '../../mixer/test/videoMedia.js';

let event: MixerEvent | null = null;
let edge: WebRtcEdge | null = null;
let pc: RTCPeerConnection | null = null;
let clip: ClipSender | null = null;
let rembTimer: NodeJS.Timeout | null = null;

afterAll(async () => {
  if (rembTimer) clearInterval(rembTimer);
  clip?.stop();
  expect(await closeVideoEvent(event, edge, [pc])).toBe(true);
});

/** Width and height in a VP8 keyframe's header (RFC 6386 §9.1). */
function vp8Size(frame: Uint8Array): { width: number; height: number } {
  return { width: (frame[6] | (frame[7] << 8)) & 0x3fff, height: (frame[8] | (frame[9] << 8)) & 0x3fff };
}

describe('rendition by the viewer’s bandwidth', () => {
  it('moves a viewer down when its estimate drops and back up when it recovers, in one continuous stream', async () => {
    event = new MixerEvent({
      id: 'renditions',
      video: {
        renditions: [
          { id: 'hi', width: 320, height: 180, bitrateKbps: 400 },
          { id: 'lo', width: 160, height: 90, bitrateKbps: 100 },
        ],
        keyframeIntervalMs: 30_000, // only requested keyframes: a switch must ask for one
        minKeyframeIntervalMs: 200,
      },
    });
    edge = new WebRtcEdge({
      iceAllow: LOOPBACK.iceAllow,
      additionalHostAddresses: LOOPBACK.additionalHostAddresses,
      renditionChooser: { settleMs: 500, downAfterMs: 500, upAfterMs: 1000, probeAfterMs: 600_000 },
    });
    event.addVideoSource('cam', 'vp8', 'Cam');
    clip = new ClipSender(lavfiClip({ source: 'color=green', width: 320, height: 240, frames: 30, codec: 'vp8', gop: 15 }), (p) => event?.pushVideoRtp('cam', p)).start();

    pc = new RTCPeerConnection(peerConfig(LOOPBACK));
    pc.addTransceiver('audio', { direction: 'recvonly' });
    const video: RTCRtpTransceiver = pc.addTransceiver('video', { direction: 'recvonly' });
    const viewer = new Viewer('vp8');
    const packets: { seq: number; ts: number; ssrc: number }[] = [];
    let estimate = 5_000_000;
    video.onTrack.subscribe((track) => {
      track.onReceiveRtp.subscribe((rtp: RtpPacket) => {
        packets.push({ seq: rtp.header.sequenceNumber, ts: rtp.header.timestamp, ssrc: rtp.header.ssrc });
        const buf = rtp.serialize();
        viewer.push(buf, buf.length);
        if (rembTimer === null) {
          void video.receiver.sendRtcpPLI(rtp.header.ssrc).catch(() => undefined);
          rembTimer = setInterval(() => void video.receiver.dtlsTransport.sendRtcp([rembPacket(estimate, rtp.header.ssrc)]).catch(() => undefined), 200);
        }
      });
    });
    const whep = await playInProcess(pc, edge, programSourceOf(event));
    const vv = () => whep.viewerVideo;

    const keyframeSizes = () => viewer.frames.filter((f) => f.keyframe).map((f) => `${vp8Size(f.data).width}x${vp8Size(f.data).height}`);
    expect(await until(() => keyframeSizes().includes('320x180'), 10_000, 50), `frames ${viewer.frames.length}`).toBe(true);
    expect(vv()?.rendition).toBe('hi');

    // The link degrades: 2 kbps is below what even a still picture sends, so the lowest.
    estimate = 2_000;
    expect(await until(() => vv()?.rendition === 'lo' && keyframeSizes().includes('160x90'), 10_000, 50), JSON.stringify(whep.describe())).toBe(true);
    const downAt = packets.length;

    // It recovers.
    estimate = 5_000_000;
    expect(await until(() => vv()?.rendition === 'hi' && keyframeSizes().lastIndexOf('320x180') > keyframeSizes().indexOf('160x90'), 10_000, 50), JSON.stringify(whep.describe())).toBe(true);
    expect(vv()?.switches).toBe(2);
    expect(whep.describe()).toMatchObject({ rendition: 'hi', renditionSwitches: 2, adaptive: true, estimateKbps: 5000 });

    // One stream for the viewer: one SSRC, sequence numbers without a gap or a jump back,
    // timestamps that never go back by more than a frame.
    expect(new Set(packets.map((p) => p.ssrc)).size).toBe(1);
    let jumps = 0;
    for (let i = 1; i < packets.length; i++) {
      const d = (packets[i].seq - packets[i - 1].seq) & 0xffff;
      if (d !== 1) jumps++;
      const dt = (packets[i].ts - packets[i - 1].ts) | 0;
      expect(dt, `timestamp step at packet ${i} (switch near ${downAt})`).toBeGreaterThanOrEqual(0);
      expect(dt).toBeLessThan(90_000);
    }
    expect(jumps, 'sequence gaps').toBe(0);
    // The viewer (werift) decrypted every packet. Most were sealed and sent by the rendition's
    // native group (one addon call per packet for all its viewers), through both switches: the
    // viewer left one group and joined the other each time; the rest by its own native AES-GCM
    // path (from JavaScript, one sendto on the ICE socket's fd, not dgram.send) until it joined.
    // (It joins the new group at that group's next packet after the keyframe it was sent.)
    expect(await until(() => whep.describe().videoNativeFanOut === true, 5000, 20)).toBe(true);
    const d = whep.describe();
    console.log(`video: ${packets.length} packets received; ${JSON.stringify(d)}`);
    expect(d.videoNativeFanOut).toBe(true);
    expect(d.videoNativeFanOutPackets as number).toBeGreaterThan(packets.length / 2);
    expect(d.videoNativeSrtpPackets as number).toBeGreaterThan(0);
    expect(d.videoDirectPackets as number).toBe(d.videoNativeSrtpPackets);
    expect((d.videoNativeFanOutPackets as number) + (d.videoNativeSrtpPackets as number)).toBeGreaterThanOrEqual(packets.length);
  }, 40_000);

  it('keeps a viewer on the rendition it asked for', async () => {
    const e = event!;
    const p2 = new RTCPeerConnection(peerConfig(LOOPBACK));
    try {
      p2.addTransceiver('video', { direction: 'recvonly' });
      const whep = await playInProcess(p2, edge!, programSourceOf(e), { rendition: 'lo' });
      expect(await until(() => (whep.viewerVideo?.packetsOut ?? 0) > 20, 10_000, 50)).toBe(true);
      expect(whep.describe()).toMatchObject({ rendition: 'lo', adaptive: false, renditionSwitches: 0 });
    } finally {
      await p2.close().catch(() => undefined);
    }
  }, 20_000);
});
