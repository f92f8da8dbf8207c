/**
 * Video through the WebRTC edge: a werift WHIP presenter publishes a red VP8 clip (and audio), a
 * werift WHEP viewer with a video transceiver receives the event's composite and decodes it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RTCPeerConnection } from 'werift';
import type { RTCRtpTransceiver, RtpPacket } from 'werift';
import { MixerEvent } from '@mcu/mixer';
import { buildRtp } from '@mcu/rtp';
import { OpusEncoder } from '@mcu/codec';
import { addressAllowList, disableDefaultStun, filterCandidates, peerConfig, WebRtcEdge, WhepSession, WhipSession, programSourceOf } from '../src/index.js';
import type { WebRtcSession } from '../src/index.js';
import { closeVideoEvent, LOOPBACK } from './client.js';
import { ClipSender, Viewer, lavfiClip, meanYuv, until } from '../../mixer/test/videoMedia.js';
import type { Clip } from '../../mixer/test/videoMedia.js';

const W = 320;
const H = 180;
const RED = { y: 81, u: 90, v: 240 };
const allow = addressAllowList(LOOPBACK.iceAllow);

/** Offers, lets the edge answer in process (no HTTP) and waits for the connection. */
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

let red: Clip;
let event: MixerEvent;
let edge: WebRtcEdge;
const pcs: RTCPeerConnection[] = [];
const timers: NodeJS.Timeout[] = [];
const senders: ClipSender[] = [];
let encoder: OpusEncoder | null = null;

beforeAll(() => {
  red = lavfiClip({ source: 'color=red', width: 320, height: 240, frames: 30, codec: 'vp8', gop: 15 });
});

afterAll(async () => {
  for (const s of senders) s.stop();
  for (const t of timers) clearInterval(t);
  encoder?.close();
  expect(await closeVideoEvent(event, edge, pcs)).toBe(true);
});

describe('video through the WebRTC edge', () => {
  it('a WHIP presenter’s VP8 reaches a WHEP viewer as the composite, with keyframes on PLI', async () => {
    event = new MixerEvent({ id: 'video-edge', video: { renditions: [{ id: 'main', width: W, height: H, bitrateKbps: 400 }] } });
    edge = new WebRtcEdge({ iceAllow: LOOPBACK.iceAllow, additionalHostAddresses: LOOPBACK.additionalHostAddresses });

    // The viewer first: it subscribes before the video mixer exists.
    const viewerPc = new RTCPeerConnection(peerConfig(LOOPBACK));
    pcs.push(viewerPc);
    viewerPc.addTransceiver('audio', { direction: 'recvonly' });
    const viewerVideo: RTCRtpTransceiver = viewerPc.addTransceiver('video', { direction: 'recvonly' });
    const viewer = new Viewer('vp8');
    let videoPackets = 0;
    let viewerPli = false;
    viewerVideo.onTrack.subscribe((track) => {
      track.onReceiveRtp.subscribe((rtp: RtpPacket) => {
        videoPackets++;
        const buf = rtp.serialize();
        viewer.push(buf, buf.length);
        // Joined mid-stream: ask for a keyframe once, as a browser would.
        if (!viewerPli && track.ssrc !== undefined) {
          viewerPli = true;
          void viewerVideo.receiver.sendRtcpPLI(track.ssrc).catch(() => undefined);
        }
      });
    });
    const whep = (await negotiate(viewerPc, (offer) => edge.play(programSourceOf(event), offer))) as WhepSession;
    expect(whep).toBeInstanceOf(WhepSession);

    // The presenter: audio (a quiet tone) and the red clip, answering PLIs with a keyframe.
    const pc = new RTCPeerConnection(peerConfig(LOOPBACK));
    pcs.push(pc);
    const audio = pc.addTransceiver('audio', { direction: 'sendonly' });
    const video = pc.addTransceiver('video', { direction: 'sendonly' });
    const whip = (await negotiate(pc, (offer) => edge.publish(event, offer))) as WhipSession;
    expect(whip).toBeInstanceOf(WhipSession);

    const clip = new ClipSender(red, (packet) => void video.sender.sendRtp(packet).catch(() => undefined));
    senders.push(clip);
    video.sender.onPictureLossIndication.subscribe(() => clip.requestKeyframe());
    clip.start();
    encoder = new OpusEncoder({ bitrate: 32_000 });
    const pcm = new Int16Array(960);
    const out = new Uint8Array(1500);
    let frame = 0;
    timers.push(
      setInterval(() => {
        for (let i = 0; i < 960; i++) pcm[i] = Math.round(4000 * Math.sin((2 * Math.PI * 440 * (frame * 960 + i)) / 48_000));
        const len = encoder!.encode(pcm, out);
        void audio.sender.sendRtp(buildRtp({ payloadType: 111, sequenceNumber: frame & 0xffff, timestamp: (frame * 960) >>> 0, ssrc: 1 }, out.subarray(0, len))).catch(() => undefined);
        frame++;
      }, 20),
    );

    const keyframeAt = () => {
      for (let i = viewer.frames.length - 1; i >= 0; i--) if (viewer.frames[i].keyframe) return i;
      return -1;
    };
    const ok = await until(() => {
      const k = keyframeAt();
      return k >= 0 && viewer.frames.length - k >= 10 && (event.videoMixer?.stats().sources[whip.id]?.framesDecoded ?? 0) > 10;
    }, 12_000, 50);
    expect(ok, `video packets ${videoPackets}, frames ${viewer.frames.length}, whip ${JSON.stringify(whip.describe())}`).toBe(true);

    expect(videoPackets).toBeGreaterThanOrEqual(10);
    expect(whip.describe().videoPackets as number).toBeGreaterThan(10);
    expect(whep.videoPacketsOut).toBeGreaterThanOrEqual(videoPackets);
    expect(whep.pliReceived).toBeGreaterThan(0);
    // The mixer asked the presenter for a keyframe (the source's first frames) through a PLI.
    expect(whip.pliSent).toBeGreaterThan(0);
    expect(event.videoMixer!.hasSource(whip.id)).toBe(true);

    // Decode from the last keyframe: the single source fills the canvas' middle (4:3 in 16:9), red.
    const from = keyframeAt();
    const pictures = viewer.decode(W, H, from, viewer.frames.length);
    expect(pictures.length).toBeGreaterThan(0);
    const p = pictures[pictures.length - 1];
    const c = meanYuv(p, W, H, { x: 120, y: 60, w: 80, h: 60 });
    const close = Math.abs(c.y - RED.y) <= 10 && Math.abs(c.u - RED.u) <= 10 && Math.abs(c.v - RED.v) <= 10;
    expect(close, `centre ${JSON.stringify(c)}`).toBe(true);

    // The presenter's sender reports of both streams reach its lip sync (werift sends them about once a second).
    const reports = await until(() => {
      const s = event!.participantSummary(whip.id)?.avSync;
      return s?.audioSenderReports === true && s.videoSenderReports === true;
    }, 5000, 50);
    expect(reports, JSON.stringify(event.participantSummary(whip.id)?.avSync)).toBe(true);
    expect(event.videoMixer!.stats().sources[whip.id].avSync?.videoSenderReports).toBe(true);

    // Ending the presenter's session removes its video source.
    whip.close('deleted');
    expect(event.videoMixer!.hasSource(whip.id)).toBe(false);
    whep.close('deleted');
  }, 20_000);
});
