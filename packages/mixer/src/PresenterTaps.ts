import type { VideoCodec } from '@mcu/rtp';

/** Receives one of a presenter's packets as it arrived (a whole RTP packet, valid during the call). */
export type TapSink = (packet: Buffer) => void;

/**
 * A presenter's own packets, as received, for the producer's preview of that presenter alone:
 * nothing is decoded or encoded for it (the preview's sender rewrites SSRC and sequence numbers).
 * Its transport (a WHIP session, an RTP socket) hands each packet here when someone listens, and
 * says how to ask the presenter for a keyframe. Empty lists cost one length check per packet.
 */
export class PresenterTaps {
  audio: readonly TapSink[] = [];
  video: readonly TapSink[] = [];
  /** The codec of the presenter's video, once it sends some. */
  videoCodec: VideoCodec | null = null;
  /** Asks the presenter for a keyframe (a PLI), rate-limited by the transport; null without video. */
  requestKeyframe: (() => void) | null = null;
  private endedListeners: (() => void)[] = [];
  private ended = false;

  /** Subscribes to the presenter's audio or video packets; returns the unsubscribe function. */
  add(kind: 'audio' | 'video', sink: TapSink): () => void {
    if (this.ended) return () => undefined;
    this[kind] = [...this[kind], sink];
    return () => {
      this[kind] = this[kind].filter((s) => s !== sink);
    };
  }

  /** Called once when the presenter leaves (at once if it already has); returns the unsubscribe function. */
  onEnded(listener: () => void): () => void {
    if (this.ended) {
      listener();
      return () => undefined;
    }
    this.endedListeners.push(listener);
    return () => {
      this.endedListeners = this.endedListeners.filter((l) => l !== listener);
    };
  }

  get isEnded(): boolean {
    return this.ended;
  }

  /** The presenter left: drops every sink and tells the listeners. Idempotent. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.audio = [];
    this.video = [];
    this.requestKeyframe = null;
    const listeners = this.endedListeners;
    this.endedListeners = [];
    for (const l of listeners) l();
  }
}
