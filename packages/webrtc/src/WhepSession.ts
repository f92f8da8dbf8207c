import type { PeerConfig, RTCRtpSender } from 'werift';
import type { MixerEvent } from '@mcu/mixer';
import { WebRtcSession } from './WebRtcSession.js';

/**
 * A viewer playing the program feed over WHEP: recvonly audio (and video once the video mixer
 * exists). The program packet is built once per tick by the mixer; per viewer only werift's
 * header rewrite and SRTP remain.
 */
export class WhepSession extends WebRtcSession {
  private unsubscribe: (() => void) | null = null;
  private audioSender: RTCRtpSender | null = null;

  constructor(
    private readonly event: MixerEvent,
    config: Partial<PeerConfig>,
    mediaTimeoutMs: number,
  ) {
    super('whep', event.id, config, mediaTimeoutMs);
    this.pc.onRemoteTransceiverAdded.subscribe((t) => {
      t.setDirection('sendonly');
      if (t.kind === 'audio' && !this.audioSender) this.audioSender = t.sender;
    });
    this.unsubscribe = event.mixer.addProgramSink((packet) => {
      const sender = this.audioSender;
      if (!sender) return;
      this.stats.packetsOut++;
      void sender.sendRtp(packet).catch(() => undefined);
    });
  }

  /** Viewers send no media: a viewer is alive while its connection (ICE consent) is up. */
  protected override beforeWatchdog(): void {
    if (this.pc.connectionState === 'connected') this.touch();
  }

  protected release(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
  }
}
