import { z } from 'zod';
import { displayNameSchema, stageSchema } from '@mcu/control';
import { recordOnJoinBody } from './RecordingApi.js';

/** Bodies of the HTTP API, one schema each; the TypeScript types are inferred from them. */
export const createEventBody = z
  .object({
    name: z.string().trim().min(1).max(200).optional(),
    maxSpeakers: z.number().int().min(1).max(16).optional(),
    /** Where presenters join: on air at once (`live`, the default) or `backstage` until the producer puts them live. */
    presentersJoin: stageSchema.optional(),
    /** Record from the first presenter's arrival, to these age recipients. */
    record: recordOnJoinBody.optional(),
  })
  .strict();

export const rtpParticipantBody = z
  .object({
    host: z.string().min(1).max(253),
    port: z.number().int().min(1).max(65_535),
    payloadType: z.number().int().min(0).max(127),
    audioLevelExtId: z.number().int().min(1).max(14).optional(),
    /** Where it joins (default: the event's `presentersJoin`). */
    stage: stageSchema.optional(),
    /** Display name in the participant list (a `name` claim in the presenter's token wins). */
    name: displayNameSchema.optional(),
  })
  .strict();

/**
 * A producer's change to one participant (PATCH /api/events/:id/participants/:pid): mute/unmute,
 * and/or move it `live` or `backstage`.
 */
export const participantPatchBody = z
  .object({ muted: z.boolean().optional(), stage: stageSchema.optional() })
  .strict()
  .refine((b) => b.muted !== undefined || b.stage !== undefined, { message: 'give muted and/or stage' });

export type CreateEventBody = z.infer<typeof createEventBody>;
export type RtpParticipantBody = z.infer<typeof rtpParticipantBody>;

/** A video layout: grid, speaker, presentation {sourceId} or custom {regions}; checked in depth by parseLayout. */
export const layoutBody = z
  .object({
    kind: z.enum(['grid', 'speaker', 'presentation', 'custom']),
    sourceId: z.string().min(1).max(200).optional(),
    regions: z
      .array(z.object({ sourceId: z.string().min(1), x: z.number(), y: z.number(), width: z.number(), height: z.number() }).strict())
      .max(64)
      .optional(),
  })
  .strict();
