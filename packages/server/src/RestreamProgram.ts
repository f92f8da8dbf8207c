/**
 * The encoded program as a restream consumes it: the shared Opus mix and one H.264 rendition, as
 * the RTP packets the mixer already sends to viewers, with what a receiver needs to time them
 * (payload types, clock rates, sender-report times from the event's one media clock).
 *
 * The packets come through the event's ProgramTap (`subscribeRtp`), the one door the program
 * leaves through besides the relay feed: recordings and restreams of an event share its listeners
 * on the mixer, and the tap listens only while one of them runs.
 */
import { programTapOf } from '@mcu/mixer';
import type { MixerEvent, ProgramRtpSink, SenderReportTimes, VideoRenditionOptions } from '@mcu/mixer';

/** Receives one RTP packet: `packet[0 .. length)` is valid during the call only. */
export type ProgramPacketSink = ProgramRtpSink;

export interface ProgramStream {
  readonly payloadType: number;
  readonly clockRate: number;
  readonly ssrc: number;
  /** Subscribes; returns the unsubscribe function. */
  subscribe(sink: ProgramPacketSink): () => void;
  /** NTP and RTP times of now, for an RTCP sender report (lip sync at the receiver). */
  senderReport(): SenderReportTimes;
}

export interface ProgramVideoStream extends ProgramStream {
  readonly rendition: string;
  readonly width: number;
  readonly height: number;
  /** Asks the rendition's encoder for a keyframe (rate-limited there). */
  requestKeyframe(): void;
}

export interface RestreamProgram {
  /** The shared Opus mix (48 kHz). */
  readonly audio: ProgramStream;
  /** An H.264 rendition (90 kHz). */
  readonly video: ProgramVideoStream;
  /** Gives back what was taken for this consumer (a rendition added for it). Idempotent. */
  release(): void;
}

/** Renditions added for restreams, per event, with how many restreams use each: the last one out removes it. */
const addedRenditions = new WeakMap<MixerEvent, { id: string; users: number }>();

/**
 * The program of `event` for a restream: the event's first H.264 rendition, or `fallback` added
 * at runtime (and removed on `release`) when it has none. The video mixer is started if it has not
 * been (an event without cameras yet sends its empty canvas), since an RTMP ingest needs video.
 */
export function restreamProgramOf(event: MixerEvent, fallback: VideoRenditionOptions): RestreamProgram {
  const videoMixer = event.startVideo();
  const added = addedRenditions.get(event);
  let rendition = added ? videoMixer.renditions.find((r) => r.id === added.id) : videoMixer.renditions.find((r) => r.codec === 'h264');
  if (!rendition) {
    rendition = event.addVideoRendition({ ...fallback, codec: 'h264' });
    addedRenditions.set(event, { id: rendition.id, users: 0 });
  }
  const shared = addedRenditions.get(event);
  if (shared?.id === rendition.id) shared.users++;
  const r = rendition;
  const audioMixer = event.mixer;
  const tap = programTapOf(event);
  let released = false;
  return {
    audio: {
      payloadType: audioMixer.payloadType,
      clockRate: audioMixer.sampleRate,
      ssrc: audioMixer.programSsrc,
      subscribe: (sink) => tap.subscribeRtp({ audio: sink }, { rendition: r.id }),
      senderReport: () => audioMixer.senderReport(),
    },
    video: {
      rendition: r.id,
      width: r.width,
      height: r.height,
      payloadType: r.payloadType,
      clockRate: 90_000,
      ssrc: r.ssrc,
      subscribe: (sink) => tap.subscribeRtp({ video: sink }, { rendition: r.id }),
      senderReport: () => videoMixer.senderReport(r.id),
      requestKeyframe: () => event.requestVideoKeyframe(r.id),
    },
    release: () => {
      if (released) return;
      released = true;
      const a = addedRenditions.get(event);
      if (a?.id !== r.id || --a.users > 0) return;
      addedRenditions.delete(event);
      if (!event.isClosed) event.removeVideoRendition(a.id);
    },
  };
}
