/**
 * The producer's preview of one presenter (WHEP ?source=): a werift presenter publishes an H.264
 * clip and audio backstage; a werift player that prefers VP8 previews it and gets the presenter's
 * own packets — the same payloads, in H.264, under its own SSRC and continuous sequence numbers —
 * while the presenter is in no composite. Its PLI reaches the presenter.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RTCPeerConnection } from 'werift';
import type { RTCRtpTransceiver, RtpPacket } from 'werift';
import { MixerEvent } from '@mcu/mixer';
import { buildRtp, parseRtp, RtpHeader } from '@mcu/rtp';
import { OpusEncoder } from '@mcu/codec';
import { addressAllowList, disableDefaultStun, filterCandidates, peerConfig, presenterPreviewOf, WebRtcEdge, withOnlyVideoCodec } from '../src/index.js';
import type { WebRtcSession, WhepSession, WhipSession } from '../src/index.js';
import { closeVideoEvent, LOOPBACK } from './client.js';
import { ClipSender, lavfiClip, until } from '../../mixer/test/videoMedia.js';
import type { Clip } from '../../mixer/test/videoMedia.js';

const allow = addressAllowList(LOOPBACK.iceAllow);

async function negotiate(pc: RTCPeerConnection, answer: (offer: string) => Promise<{ session: WebRtcSession; answer: string }>): Promise<WebRtcSession> {
  const offer = await pc.createOffer();
  disableDefaultStun(pc as never);
  await pc.setLocalDescription(offer);
  if (pc.iceGatheringState !== 'complete') {
    await new Promise<void>((resolve) => pc.iceGatheringStateChange.subscribe((s) => s === 'complete' && resolve()));
  }
  const res = await answer(filterCandidates(pc.localDescription!.sdp, allow));
  await pc.setRemoteDescription({ type: 'answer', sdp: res.answer });
  if (pc.connectionState !== 'connected') {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not connected (${pc.connectionState})`)), 10_000);
      pc.connectionStateChange.subscribe((s) => {
        if (s === 'connected') {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  }
  return res.session;
}

const digest = (b: Uint8Array) => createHash('sha1').update(b).digest('hex');

let blue: Clip;
let event: MixerEvent | null = null;
let edge: WebRtcEdge | null = null;
const pcs: RTCPeerConnection[] = [];
const timers: NodeJS.Timeout[] = [];
const senders: ClipSender[] = [];
let encoder: OpusEncoder | null = null;

beforeAll(() => {
  blue = lavfiClip({ source: 'color=blue', width: 320, height: 240, frames: 30, codec: 'h264', gop: 15 });
});

afterAll(async () => {
  for (const s of senders) s.stop();
  for (const t of timers) clearInterval(t);
  encoder?.close();
  expect(await closeVideoEvent(event, edge, pcs)).toBe(true);
});

describe('previewing one presenter', () => {
  it("forwards a backstage presenter's own H.264 and Opus packets to the producer, untouched, and its PLIs to the presenter", async () => {
    event = new MixerEvent({ id: 'preview', presentersJoin: 'backstage', video: { renditions: [{ id: 'main', width: 320, height: 180, bitrateKbps: 300 }] } });
    edge = new WebRtcEdge({ iceAllow: LOOPBACK.iceAllow, additionalHostAddresses: LOOPBACK.additionalHostAddresses });

    // The presenter, H.264 only (as OBS publishes).
    const pc = new RTCPeerConnection(withOnlyVideoCodec(peerConfig(LOOPBACK), 'h264'));
    pcs.push(pc);
    const audio = pc.addTransceiver('audio', { direction: 'sendonly' });
    const video = pc.addTransceiver('video', { direction: 'sendonly' });
    const whip = (await negotiate(pc, (offer) => edge!.publish(event!, offer))) as WhipSession;
    const sentVideo = new Set<string>();
    const h = new RtpHeader();
    const clip = new ClipSender(blue, (packet) => {
      parseRtp(Buffer.from(packet), h);
      sentVideo.add(digest(packet.subarray(h.payloadOffset, h.payloadOffset + h.payloadLength)));
      void video.sender.sendRtp(packet).catch(() => undefined);
    });
    senders.push(clip);
    video.sender.onPictureLossIndication.subscribe(() => clip.requestKeyframe());
    clip.start();
    encoder = new OpusEncoder({ bitrate: 32_000 });
    const pcm = new Int16Array(960);
    const out = new Uint8Array(1500);
    const sentAudio = new Set<string>();
    let frame = 0;
    timers.push(
      setInterval(() => {
        for (let i = 0; i < 960; i++) pcm[i] = Math.round(4000 * Math.sin((2 * Math.PI * 600 * (frame * 960 + i)) / 48_000));
        const len = encoder!.encode(pcm, out);
        sentAudio.add(digest(out.subarray(0, len)));
        void audio.sender.sendRtp(buildRtp({ payloadType: 111, sequenceNumber: frame & 0xffff, timestamp: (frame * 960) >>> 0, ssrc: 1 }, out.subarray(0, len))).catch(() => undefined);
        frame++;
      }, 20),
    );
    expect(await until(() => event!.mixer.participant(whip.id)?.taps.videoCodec === 'h264', 5000, 20)).toBe(true);

    // The producer's player prefers VP8 and also offers H.264: it is answered with H.264.
    const preview = presenterPreviewOf(event, whip.id);
    expect(preview.videoCodec).toBe('h264');
    const viewerPc = new RTCPeerConnection(peerConfig(LOOPBACK));
    pcs.push(viewerPc);
    const viewerAudio = viewerPc.addTransceiver('audio', { direction: 'recvonly' });
    const viewerVideo: RTCRtpTransceiver = viewerPc.addTransceiver('video', { direction: 'recvonly' });
    const gotVideo: { seq: number; ssrc: number; pt: number; payload: string }[] = [];
    const gotAudio: { seq: number; payload: string }[] = [];
    viewerVideo.onTrack.subscribe((track) =>
      track.onReceiveRtp.subscribe((rtp: RtpPacket) => gotVideo.push({ seq: rtp.header.sequenceNumber, ssrc: rtp.header.ssrc, pt: rtp.header.payloadType, payload: digest(rtp.payload) })),
    );
    viewerAudio.onTrack.subscribe((track) => track.onReceiveRtp.subscribe((rtp: RtpPacket) => gotAudio.push({ seq: rtp.header.sequenceNumber, payload: digest(rtp.payload) })));
    const whep = (await negotiate(viewerPc, (offer) => edge!.play(preview.source, offer, { eventId: event!.id, videoCodec: preview.videoCodec ?? undefined }))) as WhepSession;
    expect(whep.eventId).toBe('preview');
    expect(viewerVideo.codecs.map((c) => c.mimeType.toLowerCase())).toEqual(['video/h264']);

    expect(await until(() => gotVideo.length > 60 && gotAudio.length > 50, 10_000, 50)).toBe(true);
    // Forwarded as received: every payload is one the presenter sent.
    expect(gotVideo.every((p) => sentVideo.has(p.payload))).toBe(true);
    expect(gotAudio.every((p) => sentAudio.has(p.payload))).toBe(true);
    // Under the player's own SSRC, with the negotiated payload type, sequence numbers without a gap.
    expect(new Set(gotVideo.map((p) => p.ssrc)).size).toBe(1);
    expect(gotVideo[0].ssrc).toBe(viewerVideo.receiver.tracks[0]?.ssrc ?? gotVideo[0].ssrc);
    expect(new Set(gotVideo.map((p) => p.pt))).toEqual(new Set([viewerVideo.codecs[0].payloadType]));
    for (let i = 1; i < gotAudio.length; i++) expect((gotAudio[i].seq - gotAudio[i - 1].seq) & 0xffff).toBe(1);
    // Nothing was decoded or composed for it: the presenter is backstage.
    expect(event.videoMixer!.stats().sources[whip.id]).toMatchObject({ visible: false, framesDecoded: 0 });

    // The player's PLI becomes a PLI to the presenter (rate-limited by its session).
    const before = clip.keyframeRequests;
    await new Promise((r) => setTimeout(r, 600));
    void viewerVideo.receiver.sendRtcpPLI(viewerVideo.receiver.tracks[0].ssrc!).catch(() => undefined);
    expect(await until(() => clip.keyframeRequests > before, 3000, 20)).toBe(true);

    // The presenter leaves: the preview's sources end.
    let ended = false;
    preview.onEnded(() => (ended = true));
    whip.close('deleted');
    expect(ended).toBe(true);
    whep.close('deleted');
  }, 30_000);
});
