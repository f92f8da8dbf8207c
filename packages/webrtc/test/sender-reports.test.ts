/**
 * What a WHEP viewer's player lip-syncs with: the sender reports of the program audio and video.
 * Each pairs an RTP timestamp with the NTP time of that instant on the event's media clock: for
 * video the frame's composition time (not the send time an encode later), for audio the tick's;
 * and the NTP fraction is a real fraction (werift's own ntpTime() puts the milliseconds' decimal
 * digits there, up to a second off).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { RTCPeerConnection } from 'werift';
import type { RtcpPacket } from 'werift';
import { MixerEvent } from '@mcu/mixer';
import { unixMsFromNtp } from '@mcu/rtp';
import { peerConfig, programSourceOf, WebRtcEdge } from '../src/index.js';
import { closeVideoEvent, LOOPBACK, playInProcess } from './client.js';
import { ClipSender, lavfiClip, until } from '../../mixer/test/videoMedia.js';

let event: MixerEvent | null = null;
let edge: WebRtcEdge | null = null;
let pc: RTCPeerConnection | null = null;
let clip: ClipSender | null = null;

afterAll(async () => {
  clip?.stop();
  expect(await closeVideoEvent(event, edge, [pc])).toBe(true);
});

interface Sr {
  kind: string;
  ssrc: number;
  ntpMs: number;
  rtp: number;
  receivedAtMs: number;
}

/** Signed distance a − b between two 32-bit RTP timestamps. */
const tsDiff = (a: number, b: number) => ((a - b) | 0);

describe('sender reports to WHEP viewers', () => {
  it('pair each timestamp with its media-clock time: video at composition, audio at its tick', async () => {
    event = new MixerEvent({ id: 'sender-reports', video: { renditions: [{ id: 'main', width: 320, height: 180, bitrateKbps: 300 }] } });
    edge = new WebRtcEdge({ iceAllow: LOOPBACK.iceAllow, additionalHostAddresses: LOOPBACK.additionalHostAddresses });
    event.addVideoSource('cam', 'vp8', 'Cam');
    clip = new ClipSender(lavfiClip({ source: 'color=green', width: 320, height: 240, frames: 60, codec: 'vp8', gop: 30 }), (p) => event?.pushVideoRtp('cam', p)).start();

    pc = new RTCPeerConnection(peerConfig(LOOPBACK));
    const audio = pc.addTransceiver('audio', { direction: 'recvonly' });
    const video = pc.addTransceiver('video', { direction: 'recvonly' });
    const srs: Sr[] = [];
    for (const [kind, t] of [['audio', audio], ['video', video]] as const) {
      t.receiver.onRtcp.subscribe((p: RtcpPacket) => {
        const sr = p as { type: number; ssrc: number; senderInfo?: { ntpTimestamp: bigint; rtpTimestamp: number } };
        if (sr.type !== 200 || !sr.senderInfo) return;
        const ntp = sr.senderInfo.ntpTimestamp;
        srs.push({ kind, ssrc: sr.ssrc, ntpMs: unixMsFromNtp(Number(ntp >> 32n), Number(ntp & 0xffff_ffffn)), rtp: sr.senderInfo.rtpTimestamp, receivedAtMs: performance.timeOrigin + performance.now() });
      });
    }
    const whep = await playInProcess(pc, edge, programSourceOf(event));

    const enough = () => srs.filter((s) => s.kind === 'audio').length >= 3 && srs.filter((s) => s.kind === 'video').length >= 3;
    expect(await until(enough, 15_000, 50), `sender reports ${JSON.stringify(srs)}`).toBe(true);

    // The viewer's timestamps are the mixer's plus each sender's offset (werift's random start).
    const senders = whep as unknown as { videoSender: { timestampOffset: number }; audioSender: { timestampOffset: number } };
    const rendition = event.videoMixer!.renditions[0];
    for (const sr of srs.filter((s) => s.kind === 'video')) {
      // What the mixer stamped on the frame composed at the SR's NTP time, vs the SR's timestamp.
      const mixerTs = (sr.rtp - senders.videoSender.timestampOffset) >>> 0;
      const expected = (rendition.rtpTimestampBase + Math.round(sr.ntpMs * 90)) >>> 0;
      expect(Math.abs(tsDiff(mixerTs, expected)), `video SR off by ${tsDiff(mixerTs, expected) / 90} ms`).toBeLessThanOrEqual(2 * 90);
      // A real NTP time: the frame was composed shortly before the report arrived.
      expect(sr.receivedAtMs - sr.ntpMs).toBeGreaterThanOrEqual(-5);
      expect(sr.receivedAtMs - sr.ntpMs).toBeLessThan(2000);
    }
    const audioBase = event.mixer.programTimestampBase;
    for (const sr of srs.filter((s) => s.kind === 'audio')) {
      const mixerTs = (sr.rtp - senders.audioSender.timestampOffset) >>> 0;
      const expected = (audioBase + Math.round(sr.ntpMs * 48)) >>> 0;
      expect(Math.abs(tsDiff(mixerTs, expected)), `audio SR off by ${tsDiff(mixerTs, expected) / 48} ms`).toBeLessThanOrEqual(2 * 48);
    }
  }, 40_000);
});
