/**
 * The HTTP routes the cluster roles add, described for `GET /api/openapi.json` like the node's own
 * (see OpenApi.ts in @mcu/server): the relay's whole API, and the mixer's plain-RTP viewer redirect.
 */
import { z } from 'zod';
import { nodeOperations, viewerHandOperations, webrtcOperations, type OperationTable } from '@mcu/server';
import { moveEventBody } from './EventHandover.js';

/**
 * A plain-RTP viewer: where to send the program audio, and optionally `everyNth` (1–50) to receive
 * only the packets whose sequence number leaves `phase` (0 to everyNth − 1, default 0) divided by
 * it: a load generator's lighter probe (bench:tree's `--pps`), at 50 / N packets per second. Viewers
 * spread over the phases spread the relay's sends over the ticks instead of one tick in N.
 */
export const rtpViewerBody = z
  .object({
    host: z.ipv4(),
    port: z.number().int().min(1).max(65_535),
    everyNth: z.number().int().min(1).max(50).optional(),
    phase: z.number().int().min(0).max(49).optional(),
  })
  .strict()
  .refine((b) => (b.phase ?? 0) < (b.everyNth ?? 1), { message: 'phase must be below everyNth', path: ['phase'] });

const viewerRoles = ['producer', 'presenter', 'viewer'] as const;

const rtpViewerPost = {
  summary: 'Add a plain-RTP viewer (benchmarks, gateways): the program RTP goes to host:port',
  tag: 'viewers',
  auth: viewerRoles,
  tokenInQuery: true,
  body: rtpViewerBody,
} as const;

/** The mixer's extra route: placement of plain-RTP viewers on relays. */
export const mixerOperations: OperationTable = {
  'POST /rtp-viewers/:id': {
    ...rtpViewerPost,
    ok: { status: 307, description: 'play on this relay (Location; the token rides in ?token=)', headers: ['location'] },
    errors: { 503: 'no relay has room for a plain-RTP viewer of this event' },
  },
  'POST /api/events/:id/move': {
    summary: 'Hand the event to another mixer (make-before-break; presenters re-publish, relay viewers stay)',
    tag: 'events',
    auth: ['producer'],
    body: moveEventBody,
    ok: { status: 200, description: '`{"id","from","to","epoch","gapMs"}`' },
    errors: { 409: 'no other mixer can take the event', 503: 'the target did not take the event over' },
  },
};

const whep = webrtcOperations('whep', viewerRoles, 'WHEP playback of the event this relay carries');

/** Every route of a relay. */
export const relayOperations: OperationTable = {
  'GET /healthz': nodeOperations['GET /healthz'],
  'GET /readyz': nodeOperations['GET /readyz'],
  'GET /metrics': nodeOperations['GET /metrics'],
  'GET /api/openapi.json': nodeOperations['GET /api/openapi.json'],
  'GET /api/relay': { summary: "The relay's feeds, tree position and counters", tag: 'operations', auth: 'none', ok: { status: 200, description: 'the relay' } },
  'POST /whep/:id': { ...whep['POST /whep/:id'], errors: { 503: 'the relay serves its maximum of viewers, or is draining' } },
  'DELETE /whep/:id/:sid': whep['DELETE /whep/:id/:sid'],
  'POST /rtp-viewers/:id': {
    ...rtpViewerPost,
    ok: { status: 201, description: '`{"id":…,"relay":…}`', headers: ['location'] },
    errors: { 503: 'the relay serves its maximum of plain-RTP viewers, or is draining' },
  },
  'DELETE /rtp-viewers/:id/:vid': { summary: 'Remove a plain-RTP viewer', tag: 'viewers', auth: viewerRoles, tokenInQuery: true, ok: { status: 204, description: 'removed' } },
  // A viewer's hand, forwarded to the event's mixer over NATS (docs/production.md).
  ...Object.fromEntries(
    Object.entries(viewerHandOperations).map(([k, op]) => [k, { ...op, errors: { ...op.errors, 503: "the event's mixer did not answer" } }]),
  ),
  'GET /api/events/:id/stream': {
    summary: "Server-sent events for a viewer's page: its hand (`hand`), invitations on stage (`invited`, with a single-use grant), `lowered`, `done`, `ended`",
    tag: 'events',
    auth: viewerRoles,
    tokenInQuery: true,
    ok: { status: 200, description: 'text/event-stream', content: 'event-stream' },
  },
};
