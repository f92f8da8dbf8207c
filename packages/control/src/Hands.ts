/**
 * Raised hands and invitations on stage: control-plane state, never on the media path. A hand
 * lives in the cluster's store (the `hands` KV bucket, key `<event>.<hand>`); relays forward a
 * viewer's raise and lower to the event's mixer over NATS (`event.<id>.hands`, a request) and the
 * mixer announces what happens to a hand (`event.<id>.hand`: invited, lowered, done) so that the
 * node holding the viewer's event stream passes it to the page.
 *
 * A hand's id is derived from the viewer's token (its `sub`, else its `jti`): one viewer, one hand,
 * so a second raise finds the first (idempotent), and a viewer's own token can name its own hand.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { safeIdSchema } from './Subjects.js';
import { displayNameSchema, stageSchema, type TokenClaims } from './Tokens.js';

const v1 = z.literal(1);
const timestampMs = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

/** Constants of hands and invitations, with units in their names. */
export const handDefaults = {
  /** Hand requests (raise, lower) one viewer may make in a burst… */
  viewerBurst: 4,
  /** …refilled at one per this long. */
  viewerRefillMs: 2_000,
  /** Hand requests one node accepts in a burst (all viewers together)… */
  nodeBurst: 400,
  /** …refilled at this many per second. */
  nodePerSecond: 200,
  /** Viewers whose limiter is remembered at most (idle full ones are forgotten first). */
  maxTrackedViewers: 100_000,
  /** An invitation's presenter grant expires after this long (and works once). */
  invitationTtlSeconds: 120,
  /** Relay → mixer hand request timeout. */
  requestTimeoutMs: 2_000,
} as const;

/** The invitation of a hand: which participant the viewer becomes and on which stage. */
export const invitationSchema = z.object({
  stage: stageSchema,
  /** The participant id the viewer's WHIP session takes (its grant's `pid`). */
  participant: safeIdSchema,
  invitedAt: timestampMs,
  expiresAt: timestampMs,
  /** Set when the grant was used (a WHIP session joined): it cannot be used again. */
  joinedAt: timestampMs.optional(),
});
export type Invitation = z.infer<typeof invitationSchema>;

/** A raised hand, as stored (value of `<event>.<id>` in the `hands` bucket) and as listed. */
export const handSchema = z.object({
  v: v1,
  id: safeIdSchema,
  event: safeIdSchema,
  /** The viewer's display name (from its token, or the one it typed). */
  name: displayNameSchema,
  raisedAt: timestampMs,
  /**
   * The store's revision of the raise, stamped on the hand's first change (an unchanged hand's own
   * revision is its raise's): orders hands raised in the same millisecond as they were raised.
   */
  raisedRevision: z.number().int().positive().optional(),
  invitation: invitationSchema.optional(),
});
export type Hand = z.infer<typeof handSchema>;

/** Body of `POST /api/events/:id/hands`: the name, when the viewer's token carries none. */
export const raiseHandBody = z.object({ name: displayNameSchema.optional() }).strict();
/** Body of `POST /api/events/:id/hands/:hid/invite`. */
export const inviteHandBody = z.object({ stage: stageSchema }).strict();
/** Body of `POST /api/events/:id/viewer-tokens`. */
export const viewerTokenBody = z
  .object({ name: displayNameSchema.optional(), ttlSeconds: z.number().int().min(60).max(366 * 24 * 3600).optional() })
  .strict();

/**
 * A viewer's hand request forwarded by the node it is on to the event's mixer
 * (`event.<id>.hands`). The viewer's token goes along: the mixer checks it as it checks its own
 * HTTP requests (the relay checked it too, and rate-limited it).
 */
export const handRequestSchema = z.discriminatedUnion('op', [
  z.object({ v: v1, op: z.literal('raise'), event: safeIdSchema, token: z.string().min(1).max(4096), name: displayNameSchema.optional() }),
  z.object({ v: v1, op: z.literal('lower'), event: safeIdSchema, token: z.string().min(1).max(4096), hand: safeIdSchema }),
  /** The viewer's own hand now (a page's event stream opening on a relay). */
  z.object({ v: v1, op: z.literal('mine'), event: safeIdSchema, token: z.string().min(1).max(4096) }),
]);
export type HandRequest = z.infer<typeof handRequestSchema>;

/** The mixer's answer: an HTTP status and body the relay answers with as they are. */
export const handReplySchema = z.object({
  v: v1,
  status: z.number().int().min(200).max(599),
  body: z.unknown(),
  retryAfterSeconds: z.number().int().min(0).max(3600).optional(),
});
export type HandReply = z.infer<typeof handReplySchema>;

/**
 * What happened to a hand, for the page of its viewer (`event.<id>.hand`): `invited` carries the
 * invitation with its single-use presenter grant and the WHIP URL; `lowered` (by the producer or
 * the viewer); `moved` (the producer moved the guest live or backstage: `stage`); `done` (the
 * guest left the stage or was removed: back to watching).
 */
export const handNoticeSchema = z.object({
  v: v1,
  event: safeIdSchema,
  hand: safeIdSchema,
  kind: z.enum(['invited', 'lowered', 'moved', 'done']),
  invitation: z
    .object({
      stage: stageSchema,
      participant: safeIdSchema,
      grant: z.string().min(1).max(4096),
      whip: z.url({ protocol: /^https?$/ }).max(2048),
      expiresAt: timestampMs,
    })
    .optional(),
  /** `moved`: where the guest is now. */
  stage: stageSchema.optional(),
  at: timestampMs,
})
  .refine((n) => (n.kind === 'invited') === (n.invitation !== undefined), { message: 'an invitation comes with `invited` only', path: ['invitation'] })
  .refine((n) => (n.kind === 'moved') === (n.stage !== undefined), { message: 'a stage comes with `moved` only', path: ['stage'] });
export type HandNotice = z.infer<typeof handNoticeSchema>;

/** Who a viewer is for its hand: the token's subject if it has one, else the token itself (jti). */
export function viewerKeyOf(claims: Pick<TokenClaims, 'sub' | 'jti'>): string {
  return claims.sub !== undefined ? `sub:${claims.sub}` : `jti:${claims.jti}`;
}

/** The id of the one hand a viewer may have in an event (22 base64url characters of a SHA-256). */
export function handIdFor(event: string, viewerKey: string): string {
  // Never a leading '-' or '_' (as restream ids): `mcu event invite <event> -abc…` read one as an option.
  return createHash('sha256').update(`${event}\n${viewerKey}`).digest('base64url').slice(0, 22).replace(/^[-_]/, 'h');
}

/** An invitation grant's subject binds it to its hand: `hand:<id>`. */
export function invitationSubject(hand: string): string {
  return `hand:${hand}`;
}

/** The hand an invitation grant was minted for, or null for any other token. */
export function handOfGrant(claims: Pick<TokenClaims, 'sub'>): string | null {
  const m = /^hand:([A-Za-z0-9_-]{1,64})$/.exec(claims.sub ?? '');
  return m ? m[1] : null;
}
