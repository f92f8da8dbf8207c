/** Bodies and OpenAPI entries of the recording routes (NodeRecordings.ts). */
import { z } from 'zod';
import type { OperationTable } from './OpenApi.js';

const recipients = z.array(z.string().min(1).max(200)).max(32);
const rendition = z.union([z.string().regex(/^[A-Za-z0-9_-]{1,32}$/), z.literal(false)]);
const segmentMinutes = z.number().min(0.05).max(24 * 60);

/** POST /api/events/:id/recordings: age recipients (node's `recordingRecipients` when omitted), rendition id or false (audio only). */
export const startRecordingBody = z.object({ recipients: recipients.optional(), rendition: rendition.optional(), segmentMinutes: segmentMinutes.optional() }).strict();

/** `"record"` of POST /api/events: start recording when the first presenter joins. */
export const recordOnJoinBody = z.object({ recipients: recipients.optional(), rendition: rendition.optional(), segmentMinutes: segmentMinutes.optional() }).strict();

export type StartRecordingBody = z.infer<typeof startRecordingBody>;

const producerRoles = ['producer'] as const;

export const recordingOperations: OperationTable = {
  'POST /api/events/:id/recordings': {
    summary: 'Start recording the program, encrypted to age recipients',
    tag: 'recordings',
    auth: producerRoles,
    body: startRecordingBody,
    ok: { status: 201, description: '`{"id","state":"recording","startedAt"}`', headers: ['location'] },
    errors: { 400: 'no recipient, or one that is not an age X25519 recipient (age1…)', 409: 'the event has ended' },
    description: 'The program as sent (Opus, and the rendition\'s VP8 or H.264) remuxed into WebM or MP4 segments, each encrypted with age as it is written.',
  },
  'GET /api/events/:id/recordings': { summary: 'List the event\'s recordings (also after it ended)', tag: 'recordings', auth: producerRoles, ok: { status: 200, description: '`{"recordings":[{"id","state","startedAt","durationMs","size","segmentCount",…}]}`' } },
  'GET /api/events/:id/recordings/:rid': { summary: 'A recording with its segments (index, start, duration, size, SHA-256)', tag: 'recordings', auth: producerRoles, ok: { status: 200, description: 'the recording' } },
  'GET /api/events/:id/recordings/:rid/manifest': { summary: 'The recording\'s stored manifest (authenticated: see docs/recording.md)', tag: 'recordings', auth: producerRoles, ok: { status: 200, description: 'the manifest as stored' } },
  'DELETE /api/events/:id/recordings/:rid': { summary: 'Stop a recording', tag: 'recordings', auth: producerRoles, ok: { status: 200, description: '`{"recording":…,"recordings":[…]}`: the final state and the list' } },
  'GET /api/events/:id/recordings/:rid/segments/:n': {
    summary: 'Download a segment as stored (age ciphertext)',
    tag: 'recordings',
    auth: producerRoles,
    tokenInQuery: true,
    ok: { status: 200, description: 'the stored bytes', content: 'static', headers: ['content-disposition'] },
  },
};
