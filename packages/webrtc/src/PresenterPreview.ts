import { NotFoundError } from '@mcu/control';
import type { MixerEvent, PresenterTaps } from '@mcu/mixer';
import type { ProgramSource } from './WhepSession.js';

/**
 * One presenter's own audio and video, as received, as a WHEP source: the producer's preview of a
 * presenter (backstage or live) on its own. Packets are forwarded, not decoded or encoded; the
 * viewer's sender gives them its SSRC and continuous sequence numbers (FastSender). A viewer's PLI
 * becomes a PLI towards the presenter (rate-limited by its session).
 */
export interface PresenterPreview {
  source: ProgramSource;
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
    onEnded: (listener) => taps.onEnded(listener),
  };
}
