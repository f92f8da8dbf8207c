import { NotFoundError } from '@mcu/control';
import type { MixerEvent, PresenterTaps } from '@mcu/mixer';
import type { VideoCodec } from '@mcu/rtp';
import type { PeerConfig } from 'werift';
import type { ProgramSource } from './WhepSession.js';

/**
 * One presenter's own audio and video, as received, as a WHEP source: the producer's preview of a
 * presenter (backstage or live) on its own. Packets are forwarded, not decoded or encoded; the
 * viewer's sender gives them its SSRC and continuous sequence numbers (FastSender). A viewer's PLI
 * becomes a PLI towards the presenter (rate-limited by its session).
 */
export interface PresenterPreview {
  source: ProgramSource;
  /** The codec the presenter's video arrives in (null: no video yet): the player must be answered with it. */
  videoCodec: VideoCodec | null;
  /** Called once when the presenter leaves (the preview should end then); returns the unsubscribe function. */
  onEnded(listener: () => void): () => void;
}

/** Throws NotFoundError (404) when the event has no such participant. */
export function presenterPreviewOf(event: MixerEvent, participantId: string): PresenterPreview {
  const p = event.participantSummary(participantId) ? event.mixer.participant(participantId) : undefined;
  if (!p) throw new NotFoundError(`participant ${participantId} not found`, 'participant_not_found');
  const taps: PresenterTaps = p.taps;
  return {
    source: {
      // Its own fan-out on the edge, apart from the program's.
      id: `${event.id}/source/${participantId}`,
      addProgramSink: (sink) => taps.add('audio', (packet) => sink(packet)),
      video: {
        addVideoProgramSink: (_rendition, sink) => taps.add('video', (packet) => sink(packet, packet.length)),
        requestKeyframe: () => taps.requestKeyframe?.(),
      },
    },
    videoCodec: taps.videoCodec,
    onEnded: (listener) => taps.onEnded(listener),
  };
}

/**
 * A peer configuration whose answer can only choose `codec` for video: forwarded packets are in
 * the presenter's codec (an OBS presenter's H.264 to a player that prefers VP8, say).
 */
export function withOnlyVideoCodec(config: Partial<PeerConfig>, codec: VideoCodec): Partial<PeerConfig> {
  const mime = codec === 'vp8' ? 'video/vp8' : 'video/h264';
  const video = (config.codecs?.video ?? []).filter((c) => c.mimeType.toLowerCase() === mime);
  return { ...config, codecs: { audio: config.codecs?.audio ?? [], video } };
}
