/**
 * Planned handover of an event between two mixers (`mcu event move`, SIGTERM on a mixer), over
 * the control plane: the holder asks the target on `mcu.<cluster>.mixer.<target>.takeover`.
 *
 * ```
 *  holder ── prepare ──▶ target          (follows the event's lease as a standby)
 *  holder: releases the lease             (stops sending: the program is gated on the lease)
 *  holder ── take ─────▶ target          (takes the free lease at once, rebuilds the event, feeds
 *                                          the tree under epoch + 1; replies when clustered)
 *  holder: ends its copy of the event     (its presenters' sessions end: they re-publish to the
 *                                          event's URL, which now leads to the target)
 * ```
 * The tree re-roots in place (TreeController), relays keep their viewers; the gap is the time
 * from the release to the target's first packet at the relays.
 */
import { z } from 'zod';
import { assertSafeId, safeIdSchema, subjects } from '@mcu/control';

export const takeoverRequestSchema = z.object({ v: z.literal(1), event: safeIdSchema, step: z.enum(['prepare', 'take']), from: safeIdSchema });
export type TakeoverRequest = z.infer<typeof takeoverRequestSchema>;

export const takeoverReplySchema = z.object({
  v: z.literal(1),
  ok: z.boolean(),
  epoch: z.number().int().nonnegative().optional(),
  error: z.string().max(300).optional(),
});
export type TakeoverReply = z.infer<typeof takeoverReplySchema>;

export function takeoverSubject(cluster: string, mixer: string): string {
  return `${subjects(cluster).root}.mixer.${mixer === '*' ? '*' : assertSafeId(mixer, 'mixer')}.takeover`;
}

/** Body of `POST /api/events/:id/move`. */
export const moveEventBody = z.object({ to: safeIdSchema.optional() }).strict();

/** Longest a target may take to rebuild an event and reply (rebuild is local; KV writes dominate). */
export const takeoverTimeoutMs = 5_000;
