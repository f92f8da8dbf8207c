import type { ServerResponse } from 'node:http';
import { ForbiddenError } from '@mcu/control';
import type { TokenClaims } from '@mcu/control';
import type { MixerEvent } from '@mcu/mixer';
import { presenterPreviewOf } from '@mcu/webrtc';
import type { WebRtcEdge } from '@mcu/webrtc';

/**
 * `POST /whep/:id?source=<participant>`: the producer previews one presenter alone, on the node
 * where its packets arrive. 403 for any token but the producer's (or admin), 404 for an unknown
 * participant, both before the offer is read. The session ends when the presenter leaves.
 */
export async function playPresenterPreview(
  edge: WebRtcEdge,
  event: MixerEvent,
  claims: TokenClaims,
  participantId: string,
  readOffer: () => Promise<string>,
  res: ServerResponse,
): Promise<void> {
  if (claims.role !== 'admin' && claims.role !== 'producer') throw new ForbiddenError('only the producer previews a presenter (?source=)');
  const preview = presenterPreviewOf(event, participantId);
  const offer = await readOffer();
  const { session, answer } = await edge.play(preview.source, offer, { eventId: event.id, videoCodec: preview.videoCodec ?? undefined });
  const off = preview.onEnded(() => session.close('source_left'));
  session.once('close', off);
  res.writeHead(201, { 'content-type': 'application/sdp', location: `/whep/${event.id}/${session.id}`, etag: session.etag, 'content-length': Buffer.byteLength(answer) });
  res.end(answer);
}
