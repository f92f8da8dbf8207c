import type { RtpPacket } from 'werift';
import type { MixerEvent, Participant } from '@mcu/mixer';
import type { PeerConfig } from 'werift';
import { WebRtcSession } from './WebRtcSession.js';
import type { OfferSummary } from './Sdp.js';

const AUDIO_LEVEL_URI = 'urn:ietf:params:rtp-hdrext:ssrc-audio-level';

/**
 * A presenter publishing over WHIP: its Opus goes into the event's mixer like a plain-RTP
 * participant's; when its audio transceiver is sendrecv it receives its own mix-minus back on it.
 * Video is negotiated and counted; the video mixer consumes it when it exists.
 */
export class WhipSession extends WebRtcSession {
  private participant: Participant | null = null;
  private audioLevelId = -1;
  videoPackets = 0;

  constructor(
    private readonly event: MixerEvent,
    config: Partial<PeerConfig>,
    mediaTimeoutMs: number,
    offer: OfferSummary,
  ) {
    super('whip', event.id, config, mediaTimeoutMs);
    const audioSendRecv = offer.media.some((m) => m.kind === 'audio' && m.direction === 'sendrecv');
    this.participant = event.attachParticipant(this.id, this);
    this.pc.onRemoteTransceiverAdded.subscribe((t) => {
      if (t.kind === 'audio' && audioSendRecv) t.setDirection('sendrecv');
      t.onTrack.subscribe((track) => {
        if (track.kind === 'audio') track.onReceiveRtp.subscribe((rtp) => this.onAudio(rtp));
        else track.onReceiveRtp.subscribe(() => this.onVideo());
      });
      if (t.kind === 'audio' && audioSendRecv && this.participant) {
        const sender = t.sender;
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
  }

  private onVideo(): void {
    this.touch();
    this.videoPackets++;
  }

  override describe(): Record<string, unknown> {
    return { ...super.describe(), videoPackets: this.videoPackets };
  }

  protected release(): void {
    if (this.participant) this.participant.transport = null;
    this.participant = null;
    this.event.detachParticipant(this.id);
  }
}
