/**
 * The OpenAPI 3.1 description of a node's HTTP API (`GET /api/openapi.json`), built from a table of
 * operations keyed by `"METHOD /path"` exactly as the routes are registered on the Router. Request
 * bodies come from the same zod schemas the handlers validate with (`z.toJSONSchema`); error
 * statuses follow from what an operation checks (auth → 401/403, a path id → 404, a body →
 * 400/413/415) plus the ones it lists. A test holds the table and the router to each other.
 *
 * To document a new route: add one entry to `nodeOperations` (or the role's table) with its summary,
 * who may call it, its body schema and its success response.
 */
import { z } from 'zod';
import type { Role } from '@mcu/control';
import { createEventBody, layoutBody, participantPatchBody, rtpParticipantBody } from './Schemas.js';
import type { RouteEntry } from './Router.js';
import { restreamOperations } from './Restreams.js';
import { recordingOperations } from './RecordingApi.js';

type Content = 'json' | 'sdp' | 'html' | 'text' | 'event-stream' | 'static';

export interface OperationSpec {
  summary: string;
  tag: string;
  /** Who may call it: 'none' (public), or the token roles accepted (the admin token always is). */
  auth: 'none' | readonly Role[];
  /** The token may also come as `?token=` (EventSource, and viewers after a 307 to a relay). */
  tokenInQuery?: boolean;
  /** Optional query parameters besides `token`, with what each does. */
  query?: Record<string, string>;
  /** A JSON body validated with this schema, or an SDP offer. */
  body?: z.ZodType | 'sdp';
  /** The success response. */
  ok: { status: number; description: string; content?: Content; headers?: string[] };
  /** Error statuses beyond the derived ones, with why. */
  errors?: Record<number, string>;
  description?: string;
}

export type OperationTable = Record<string, OperationSpec>;

const viewerRoles = ['producer', 'presenter', 'viewer'] as const;
const producerRoles = ['producer'] as const;
const presenterRoles = ['producer', 'presenter'] as const;

/** The all-in-one node's (and a mixer's) routes. */
export const nodeOperations: OperationTable = {
  'GET /': { summary: 'Producer console (HTML)', tag: 'pages', auth: 'none', ok: { status: 200, description: 'the page', content: 'html' } },
  'GET /publish/:id': {
    summary: 'Presenter page (HTML)',
    tag: 'pages',
    auth: 'none',
    // Read by the page's script, not the node: the page publishes with them.
    query: {
      token: 'the presenter token the page publishes with',
      name: "fills the page's name field (the presenter's display name)",
      source: '`test` for a test tone and pattern instead of camera and microphone',
      tone: 'test tone frequency in Hz',
      color: 'test pattern colour (CSS)',
      size: 'test pattern size, e.g. 640x360',
      whip: 'publish to this WHIP URL (another origin) instead of this node',
      autostart: '`1` to publish at once',
    },
    ok: { status: 200, description: 'the page', content: 'html' },
  },
  'GET /watch/:id': {
    summary: 'Viewer page (HTML)',
    tag: 'pages',
    auth: 'none',
    query: { token: 'the viewer token the page plays with', whep: 'play this WHEP URL instead of this node' },
    ok: { status: 200, description: 'the page', content: 'html' },
  },
  'GET /static/:file': { summary: 'Static asset of the pages', tag: 'pages', auth: 'none', ok: { status: 200, description: 'the file', content: 'static' } },
  'GET /metrics': { summary: 'Prometheus metrics', tag: 'operations', auth: 'none', ok: { status: 200, description: 'text exposition format', content: 'text' } },
  'GET /healthz': { summary: 'Liveness: 200 while the process serves HTTP', tag: 'operations', auth: 'none', ok: { status: 200, description: '`{"status":"ok"}`' } },
  'GET /readyz': {
    summary: 'Readiness: takes new participants and viewers now',
    tag: 'operations',
    auth: 'none',
    ok: { status: 200, description: '`{"status":"ready", …}`' },
    errors: { 503: '`{"status":"unavailable","reason":"draining|closing|events_full|sessions_full|bus_disconnected|not_registered","message":…}`' },
  },
  'GET /api/openapi.json': { summary: 'This document', tag: 'operations', auth: 'none', ok: { status: 200, description: 'OpenAPI 3.1' } },
  'POST /api/events': {
    summary: 'Create an event',
    description: '`201 {id, name, maxSpeakers, whip, whep, tokens: {producer, presenter, viewer}}`: the tokens are issued once, here.',
    tag: 'events',
    auth: [],
    body: createEventBody,
    ok: { status: 201, description: 'the event, with producer, presenter and viewer tokens', headers: ['location'] },
    errors: { 409: 'an event with this name is running', 503: 'the node runs its maximum of events, or is draining' },
  },
  'GET /api/events': { summary: 'List events (a producer token sees its own)', tag: 'events', auth: producerRoles, ok: { status: 200, description: '`{"events":[…]}`' } },
  'GET /api/events/:id': { summary: 'An event with stats and participants', description: 'The event with `stats` (mixer tick p50/p99, drops by reason) and `participants`.', tag: 'events', auth: producerRoles, ok: { status: 200, description: 'the event' } },
  'DELETE /api/events/:id': { summary: 'End an event', description: 'Disconnects every presenter and viewer and frees every socket, timer and codec of the event.', tag: 'events', auth: producerRoles, ok: { status: 204, description: 'ended' } },
  'PUT /api/events/:id/layout': { summary: 'Set the video layout (next frame)', description: '`{kind: grid|speaker|presentation, sourceId?}` or `{kind: custom, regions: [{sourceId, x, y, width, height}]}` in fractions of the canvas (0..1); the composite switches on the next frame, encoders keep running.', tag: 'events', auth: producerRoles, body: layoutBody, ok: { status: 200, description: '`{"layout":…}`' } },
  'GET /api/events/:id/participants': { summary: 'List participants', description: 'Each with `id`, `kind` (`rtp`, `whip`), `name` (a presenter\'s display name, when given), `muted`, `speaking`, jitter-buffer, FEC and PLC counters, `avSync`; a plain-RTP participant\'s `stats` also give `reportedLossPercent` (the loss its RTCP reports for its mix over the last 10 s, null while unknown) and `fecExpectedLossPercent` (what its mix-minus encoder\'s in-band FEC is sized for).', tag: 'participants', auth: producerRoles, ok: { status: 200, description: '`{"participants":[…]}`' } },
  'PATCH /api/events/:id/participants/:pid': {
    summary: 'Mute or unmute a participant (out of speaker selection and every mix until unmuted); move it live or backstage (from the next tick and composed frame)',
    description: '`{muted: true|false}` and/or `{stage: live|backstage}` on an RTP or WHIP participant: a muted one is out of speaker selection and every audio mix (never decoded for mixing; a speaker fades out in one tick) until unmuted; a backstage one is connected and hears the program (and the backstage room) but is in no program mix or composite.',
    tag: 'participants',
    auth: producerRoles,
    body: participantPatchBody,
    ok: { status: 200, description: 'the participant, with `muted` and `stage`' },
  },
  'DELETE /api/events/:id/participants/:pid': { summary: 'Kick a participant (RTP socket or WebRTC session closed)', tag: 'participants', auth: producerRoles, ok: { status: 204, description: 'removed' } },
  'GET /api/events/:id/tree': {
    summary: 'The delivery tree: this node alone, or the mixer and its relays in a cluster',
    description: 'On a single node, this node alone with the event\'s WHEP viewers; in a cluster, the mixer and its relays from the tree in KV, viewers and capacity from heartbeats (`load` = viewers / capacity).',
    tag: 'events',
    auth: producerRoles,
    ok: { status: 200, description: '`{"nodes":[{"id","role","parent","depth","viewers","capacity","load","cpu"?}]}`' },
  },
  'POST /api/events/:id/rtp-participants': {
    summary: 'Add a plain-RTP participant (Opus)',
    description: 'Answers the `host` and `port` to send Opus RTP to, from the address and port given in the body, where the participant receives its mix (symmetric RTP, 50 packets/s), and a `resumeToken` (also in `X-Mcu-Resume-Token`): registering again with it as the bearer token (after a failover) is the same participant, muted and on the stage the producer left it on, `403 participant_kicked` when kicked, `409` while it is still registered.',
    tag: 'participants',
    auth: presenterRoles,
    body: rtpParticipantBody,
    ok: { status: 201, description: 'where to send RTP and where the mix comes from', headers: ['location'] },
    errors: { 503: 'the event has its maximum of participants' },
  },
  'GET /api/events/:id/rtp-participants/:pid': { summary: 'A plain-RTP participant', tag: 'participants', auth: presenterRoles, ok: { status: 200, description: 'the participant' } },
  'DELETE /api/events/:id/rtp-participants/:pid': { summary: 'Remove a plain-RTP participant', tag: 'participants', auth: presenterRoles, ok: { status: 204, description: 'removed' } },
  'GET /api/events/:id/stream': {
    summary: 'Server-sent events: speakers, dominant speaker, levels (4/s), participants, ended',
    description: 'Events: `state` on connect; `speakers` and `dominantSpeaker` as they change; `levels` 4 times a second `{participants: [{id, kind, dbov, level, muted, speaking}], dominantSpeaker}` (`dbov` is the smoothed −dBov speaker selection already has, from RFC 6464 or from frames it decoded anyway, 127 = silence; `level` = 1 − dbov/90 clamped to 0..1, for meters); `participants` (the full list, as `GET …/participants`) on connect and whenever someone joins or leaves; `ended`.',
    tag: 'events',
    auth: viewerRoles,
    tokenInQuery: true,
    ok: { status: 200, description: 'text/event-stream', content: 'event-stream' },
  },
  ...recordingOperations,
  ...restreamOperations(),
  ...withErrors(webrtcOperations('whip', presenterRoles, "WHIP ingest (RFC 9725): publish audio/video; joins on the token's `stage` (else the event's presentersJoin) as the token's `pid` when it names one; the 201's `X-Mcu-Resume-Token` is a 10-minute presenter grant to re-publish as the same participant (mutes and kicks follow it, on any mixer)"), 'POST /whip/:id', {
    403: 'the token is for another event or role; or the participant it names (`pid`) was kicked by the producer (code participant_kicked)',
    409: 'the participant named by the token (`pid`) is already connected',
  }),
  ...withErrors(webrtcOperations('whep', viewerRoles, 'WHEP playback: play the program (307 to a relay in a cluster); `?source=<participant>`: the producer previews that presenter alone'), 'POST /whep/:id', {
    403: '`?source=` with a token other than the producer\'s',
    404: 'the event, or the `?source=` participant, is unknown',
  }),
};

/** The same operations, with more error statuses on one of them. */
function withErrors(ops: OperationTable, key: string, errors: Record<number, string>): OperationTable {
  const op = ops[key];
  return { ...ops, [key]: { ...op, errors: { ...op.errors, ...errors } } };
}

/** The four routes of a WHIP or WHEP endpoint (RFC 9725). */
export function webrtcOperations(kind: 'whip' | 'whep', auth: readonly Role[], summary: string): OperationTable {
  const tag = 'webrtc';
  return {
    [`POST /${kind}/:id`]: {
      summary,
      description:
        kind === 'whip'
          ? 'The offer must send audio (Opus; video VP8 or H.264). A presenter whose audio transceiver is sendrecv receives its own mix-minus on it. Not trickled: every candidate in the offer. The session ends on DELETE, ICE/DTLS failure, or 30 s without media.'
          : 'Without `rendition`, the viewer gets the highest rendition its offer\'s bandwidth holds and is moved as its link changes (REMB, loss), at a keyframe, in one continuous stream. The session ends on DELETE or ICE/DTLS failure (it lives while ICE consent holds).',
      tag,
      auth,
      tokenInQuery: true,
      body: 'sdp',
      query: kind === 'whip' ? { name: "the presenter's display name (1–64 characters, no control characters); a `name` claim in the token wins" } : { rendition: 'play this rendition (e.g. 360p) instead of the one the link holds' },
      ok: { status: 201, description: 'SDP answer; Location is the session resource', content: 'sdp', headers: ['location', 'etag'] },
      errors: {
        ...(kind === 'whep' ? ({ 307: 'play on this relay instead (Location; the token rides in ?token=)' } as Record<number, string>) : {}),
        503: 'the node serves its maximum of WebRTC sessions, or is draining, or the session was closed while its offer was answered (code session_closed: the event ended, a newer session replaced it, or the negotiation did not finish within rtcAnswerTimeoutMs)',
      },
    },
    [`DELETE /${kind}/:id/:sid`]: { summary: 'End the session', tag, auth, tokenInQuery: kind === 'whep', ok: { status: 200, description: 'ended' } },
    [`PATCH /${kind}/:id/:sid`]: { summary: 'Trickle ICE / ICE restart: not supported', tag, auth, ok: { status: 405, description: 'always: send every candidate in the offer' } },
    [`GET /${kind}/:id/:sid`]: { summary: 'Session state', tag, auth, ok: { status: 200, description: 'the session' } },
  };
}

/** `/api/events/:id` → `/api/events/{id}` */
export function openApiPath(path: string): string {
  return path.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, '{$1}');
}

export function operationKey(route: RouteEntry): string {
  return `${route.method.toUpperCase()} ${route.path}`;
}

const errorSchema = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: {
        code: { type: 'string', description: 'machine-readable, e.g. event_not_found, token_expired, invalid_request' },
        message: { type: 'string', description: 'what was wrong, for humans' },
        field: { type: 'string', description: 'the offending field of a 400' },
      },
    },
  },
};

const contentTypes: Record<Content, string> = {
  json: 'application/json',
  sdp: 'application/sdp',
  html: 'text/html',
  text: 'text/plain',
  'event-stream': 'text/event-stream',
  static: 'application/octet-stream',
};

function errorResponse(description: string) {
  return { description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
}

function operation(key: string, spec: OperationSpec) {
  const [method, path] = key.split(' ');
  const params = [...path.matchAll(/:([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1]);
  const parameters: object[] = params.map((name) => ({ name, in: 'path', required: true, schema: { type: 'string' } }));
  if (spec.tokenInQuery) {
    parameters.push({ name: 'token', in: 'query', required: false, description: 'the bearer token, where a header cannot be set', schema: { type: 'string' } });
  }
  for (const [name, description] of Object.entries(spec.query ?? {})) {
    parameters.push({ name, in: 'query', required: false, description, schema: { type: 'string' } });
  }
  const responses: Record<string, object> = {};
  const okContent = spec.ok.content ?? 'json';
  responses[String(spec.ok.status)] = {
    description: spec.ok.description,
    ...(spec.ok.status === 204 || spec.ok.status === 405 ? {} : { content: { [contentTypes[okContent]]: {} } }),
    ...(spec.ok.headers ? { headers: Object.fromEntries(spec.ok.headers.map((h) => [h, { schema: { type: 'string' } }])) } : {}),
  };
  const errors: Record<number, string> = {};
  if (spec.body !== undefined) {
    errors[400] = 'the body is invalid';
    errors[413] = 'the body is too large';
    errors[415] = spec.body === 'sdp' ? 'the offer must be application/sdp' : 'the body must be application/json';
  }
  if (spec.auth !== 'none') {
    errors[401] = 'no token, a bad or expired one (WWW-Authenticate: Bearer)';
    errors[403] = 'the token is for another event or role';
  }
  if (params.length > 0 && spec.auth !== 'none') errors[404] = `no such ${params.join(' / ')}`;
  Object.assign(errors, spec.errors);
  for (const [status, why] of Object.entries(errors)) {
    responses[status] = Number(status) === 307 ? { description: why, headers: { location: { schema: { type: 'string' } } } } : errorResponse(why);
  }
  responses.default = errorResponse('unexpected error (500)');
  const roles = spec.auth === 'none' ? [] : ['admin token', ...spec.auth];
  const op: Record<string, unknown> = {
    operationId: `${method.toLowerCase()}${path.replace(/[/:](\w)/g, (_, c: string) => c.toUpperCase()).replace(/\W/g, '') || 'Root'}`,
    summary: spec.summary,
    tags: [spec.tag],
    ...(spec.description || roles.length ? { description: [spec.description, roles.length ? `Tokens: ${roles.join(', ')}.` : ''].filter(Boolean).join(' ') } : {}),
    security: spec.auth === 'none' ? [] : [{ bearer: [] }],
    ...(parameters.length ? { parameters } : {}),
    responses,
  };
  if (spec.body === 'sdp') {
    op.requestBody = { required: true, content: { 'application/sdp': { schema: { type: 'string', description: 'SDP offer' } } } };
  } else if (spec.body) {
    op.requestBody = { required: false, content: { 'application/json': { schema: z.toJSONSchema(spec.body, { io: 'input' }) } } };
  }
  return { method: method.toLowerCase(), path: openApiPath(path), op };
}

/** The OpenAPI 3.1 document of the operations in `table`. */
export function openApiDocument(table: OperationTable, info: { title: string; description?: string } = { title: 'mcu node' }) {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const [key, spec] of Object.entries(table)) {
    const { method, path, op } = operation(key, spec);
    (paths[path] ??= {})[method] = op;
  }
  return {
    openapi: '3.1.0',
    info: { title: info.title, version: '1', ...(info.description ? { description: info.description } : {}) },
    paths,
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'The admin token (MCU_ADMIN_TOKEN) or a signed event token of a role' },
      },
      schemas: { Error: errorSchema },
    },
  };
}
