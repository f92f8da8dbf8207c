import type { MediaStreamTrack, RTCRtpTransceiver, RtcpPacket, RtpPacket } from 'werift';
import { parseRtcp } from '@mcu/rtp';
import type { VideoCodec } from '@mcu/rtp';
import type { MixerEvent, Participant, Stage } from '@mcu/mixer';
import type { PeerConfig } from 'werift';
import { WebRtcSession } from './WebRtcSession.js';
import type { OfferSummary } from './Sdp.js';

const AUDIO_LEVEL_URI = 'urn:ietf:params:rtp-hdrext:ssrc-audio-level';
/** PLIs towards the presenter at most this often. */
const PLI_INTERVAL_MS = 500;

function videoCodecOf(mimeType: string | undefined): VideoCodec | null {
  const m = (mimeType ?? '').toLowerCase();
  if (m === 'video/vp8') return 'vp8';
  if (m === 'video/h264') return 'h264';
  return null;
}

/** Who a WHIP session is, from its token: a participant id granted to it (`pid`) and a display name. */
export interface WhipParticipant {
  /** Its participant id (default a random one). */
  participantId?: string;
  /** Its display name (the composite's label, the console). */
  name?: string;
  /** Where it joins (default the event's `presentersJoin`). */
  stage?: Stage;
}

/**
 * A presenter publishing over WHIP: its Opus goes into the event's mixer like a plain-RTP
 * participant's; when its audio transceiver is sendrecv it receives its own mix-minus back on it.
 * Its video (VP8 or H.264) becomes a source of the event's video mixer; the mixer's keyframe
 * requests for it are sent to the presenter as PLIs.
 */
export class WhipSession extends WebRtcSession {
  private participant: Participant | null = null;
  private audioLevelId = -1;
  videoPackets = 0;
  pliSent = 0;
  private videoSource = false;
  private lastPliAt = -Infinity;
  private unsubscribeKeyframes: (() => void) | null = null;

  constructor(
    private readonly event: MixerEvent,
    config: Partial<PeerConfig>,
    mediaTimeoutMs: number,
    offer: OfferSummary,
    private readonly who: WhipParticipant = {},
  ) {
    super('whip', event.id, config, mediaTimeoutMs, who.participantId);
    const audioSendRecv = offer.media.some((m) => m.kind === 'audio' && m.direction === 'sendrecv');
    this.participant = event.attachParticipant(this.id, this, { stage: who.stage });
    this.pc.onRemoteTransceiverAdded.subscribe((t) => {
      if (t.kind === 'audio' && audioSendRecv) t.setDirection('sendrecv');
      t.onTrack.subscribe((track) => {
        if (track.kind === 'audio') track.onReceiveRtp.subscribe((rtp) => this.onAudio(rtp));
        else this.onVideoTrack(t, track);
        const kind = track.kind === 'audio' ? 'audio' : 'video';
        track.onReceiveRtcp.subscribe((rtcp) => this.onRtcp(kind, rtcp));
      });
      if (t.kind === 'audio' && audioSendRecv && this.participant) {
        const sender = t.sender;
        // The browser's reports about its mix-minus: the loss its FEC is sized for (ListenerLoss.ts).
        sender.onRtcp.subscribe((rtcp) => {
          const reports = (rtcp as { reports?: { ssrc: number; fractionLost: number }[] }).reports;
          if (!reports || this.isClosed) return;
          for (const r of reports) if (r.ssrc === sender.ssrc) this.event.mixer.reportLoss(this.id, r.fractionLost);
        });
        this.participant.transport = {
          send: (packet, length) => {
            this.stats.packetsOut++;
            void sender.sendRtp(Buffer.from(packet.subarray(0, length))).catch(() => undefined);
          },
        };
      }
    });
  }

  private onAudio(rtp: RtpPacket): void {
    const p = this.participant;
    if (!p) return;
    this.touch();
    this.stats.packetsIn++;
    this.stats.bytesIn += rtp.payload.length;
    if (this.audioLevelId < 0) {
      const map = this.pc.extIdUriMap;
      for (const id of Object.keys(map)) if (map[Number(id)] === AUDIO_LEVEL_URI) this.audioLevelId = Number(id);
      if (this.audioLevelId < 0) this.audioLevelId = 0;
    }
    let level = -1;
    if (this.audioLevelId > 0) {
      for (const ext of rtp.header.extensions) {
        if (ext.id === this.audioLevelId && ext.payload.length > 0) level = ext.payload[0] & 0x7f;
      }
    }
    const h = rtp.header;
    if (p.inSsrc !== h.ssrc) {
      p.inSsrc = h.ssrc;
      p.jitter.reset();
    }
    const result = p.jitter.push(h.sequenceNumber, h.timestamp, rtp.payload, performance.now(), level);
    if (result !== 'accepted') {
      this.stats.dropped++;
      this.event.drops.drop(result);
    }
    const taps = p.taps.audio;
    if (taps.length > 0) {
      // Serialized only while a producer previews this presenter.
      const packet = rtp.serialize();
      for (let i = 0; i < taps.length; i++) taps[i](packet);
    }
  }

  /** The presenter's sender reports (werift routes them per track) feed the event's lip sync. */
  private onRtcp(kind: 'audio' | 'video', rtcp: RtcpPacket): void {
    if (this.isClosed) return;
    const { packets } = parseRtcp(rtcp.serialize());
    for (const p of packets) if (p.type === 'sr') this.event.senderReport(this.id, kind, p);
  }

  private onVideoTrack(t: RTCRtpTransceiver, track: MediaStreamTrack): void {
    const codec = videoCodecOf(track.codec?.mimeType ?? t.codecs[0]?.mimeType);
    if (this.participant && codec) {
      this.participant.taps.videoCodec = codec;
      this.participant.taps.requestKeyframe = () => this.sendPli(t, track);
    }
    if (codec && !this.videoSource && !this.isClosed && !this.event.isClosed) {
      try {
        this.event.addVideoSource(this.id, codec, this.who.name);
        this.videoSource = true;
        const video = this.event.videoMixer!;
        const onKeyframe = (sourceId: string) => {
          if (sourceId === this.id) this.sendPli(t, track);
        };
        video.on('keyframeRequest', onKeyframe);
        this.unsubscribeKeyframes = () => video.off('keyframeRequest', onKeyframe);
      } catch (err) {
        // Not fatal for the session (its audio goes on), but never silent: the session says why.
        this.videoSource = false;
        this.videoError = (err as Error).message.slice(0, 200);
      }
    }
    track.onReceiveRtp.subscribe((rtp) => {
      this.touch();
      this.videoPackets++;
      const taps = this.participant?.taps.video;
      if (!this.videoSource && !taps?.length) return;
      const packet = rtp.serialize();
      if (this.videoSource) this.event.pushVideoRtp(this.id, packet, packet.length);
      if (taps) for (let i = 0; i < taps.length; i++) taps[i](packet);
    });
  }

  /** Why the presenter's video could not join the video mixer, if it could not. */
  videoError: string | null = null;

  private sendPli(t: RTCRtpTransceiver, track: MediaStreamTrack): void {
    const now = performance.now();
    if (now - this.lastPliAt < PLI_INTERVAL_MS || track.ssrc === undefined) return;
    this.lastPliAt = now;
    this.pliSent++;
    void t.receiver.sendRtcpPLI(track.ssrc).catch(() => undefined);
  }

  override describe(): Record<string, unknown> {
    return { ...super.describe(), ...(this.who.name !== undefined ? { name: this.who.name } : {}), videoPackets: this.videoPackets, pliSent: this.pliSent, videoError: this.videoError };
  }

  protected release(): void {
    if (this.participant) this.participant.transport = null;
    this.participant = null;
    this.unsubscribeKeyframes?.();
    this.unsubscribeKeyframes = null;
    if (this.videoSource) this.event.removeVideoSource(this.id);
    this.videoSource = false;
    this.event.detachParticipant(this.id);
  }
}
