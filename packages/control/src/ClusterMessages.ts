/**
 * The messages of the cluster control plane, one zod schema each; the
 * TypeScript types are inferred from them. Every message carries `v: 1`; a
 * receiver drops (and counts) anything else, so a future v2 can be rolled out
 * beside v1 receivers. Unknown extra fields are stripped, not rejected, so a
 * v1 sender may add optional fields without breaking older receivers.
 *
 * Times are integer milliseconds since the Unix epoch (the sender's clock).
 */
import { z } from 'zod';
import { safeIdSchema } from './Subjects.js';

const v1 = z.literal(1);
const count = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const timestampMs = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

export const nodeRoleSchema = z.enum(['mixer', 'relay']);
export type NodeRole = z.infer<typeof nodeRoleSchema>;

/** Where a node receives the program feed from its parent (RTP over UDP). */
export const mediaAddressSchema = z.object({
  host: z.string().min(1).max(253).regex(/^\S+$/).describe('host name or IP address'),
  port: z.number().int().min(1).max(65_535),
});
export type MediaAddress = z.infer<typeof mediaAddressSchema>;

/** A node announcing itself: published on `node.register` and stored in the `nodes` KV bucket under its id. */
export const nodeInfoSchema = z.object({
  v: v1,
  id: safeIdSchema,
  role: nodeRoleSchema,
  cluster: safeIdSchema,
  /** Base URL of the node's HTTP API / WHEP endpoint. */
  http: z.url({ protocol: /^https?$/ }).max(2048),
  media: mediaAddressSchema,
  capacity: z.object({
    /** WebRTC viewers this node can serve. */
    viewers: count,
    /** Child relays it can feed (its fan-out); the cluster fan-out caps it further. */
    children: count,
  }),
  startedAt: timestampMs,
});
export type NodeInfo = z.infer<typeof nodeInfoSchema>;

/** A heartbeat: published every `heartbeatIntervalMs` on `node.heartbeat.<id>`. */
export const nodeLoadSchema = z.object({
  v: v1,
  id: safeIdSchema,
  viewers: count,
  children: count,
  /** Busy fraction of the node's CPUs, 0..1, when the node measures it. */
  cpu: z.number().min(0).max(1).optional(),
  /**
   * The node is shutting down gracefully: placement sends it no new viewers and no child relays,
   * and the tree controller moves its child relays elsewhere. Absent = false.
   */
  draining: z.boolean().optional(),
  /** Mixers: events held, participants and video sources in them (mixer placement reads these). */
  events: count.optional(),
  participants: count.optional(),
  videoSources: count.optional(),
  /** Increases by one per heartbeat of one node process; starts again at 1 when the process restarts. */
  seq: count,
  at: timestampMs,
});
export type NodeLoad = z.infer<typeof nodeLoadSchema>;

/** A graceful stop: published on `node.leave.<id>` before the node's KV entry is deleted. */
export const nodeLeaveSchema = z.object({ v: v1, id: safeIdSchema, at: timestampMs });
export type NodeLeave = z.infer<typeof nodeLeaveSchema>;

/**
 * A child's report on `node.silent.<parent>`: the event's feed from `parent` has been silent for
 * `silentMs` (the program audio never pauses). The registry then declares the parent dead as soon
 * as its heartbeats are `suspectDeadAfterMs` old instead of `deadAfterMs`: the data plane saw the
 * death, the control plane confirms it. A parent whose beats are fresh is left alone.
 */
export const nodeSilentSchema = z.object({
  v: v1,
  /** The reporting child. */
  id: safeIdSchema,
  event: safeIdSchema,
  parent: safeIdSchema,
  silentMs: z.number().int().min(0).max(3_600_000),
  at: timestampMs,
});
export type NodeSilent = z.infer<typeof nodeSilentSchema>;

/**
 * Requests to one node on `node.control.<id>`. `reregister`: a registry heard
 * heartbeats from a node it does not know (its entry was lost or removed
 * after a false death), so the node should announce itself again.
 */
export const nodeControlSchema = z.object({ v: v1, kind: z.enum(['reregister']) });
export type NodeControl = z.infer<typeof nodeControlSchema>;

/**
 * Where one node sits in one event's relay tree. Stored in the `tree` KV
 * bucket under `<event>.<node>` and published on `event.<id>.tree`. The root
 * is the event's mixer (`parent: null`, `depth: 0`). `epoch` increases with
 * every change to the event's tree, so a receiver can tell newer from older.
 */
export const treeAssignmentSchema = z
  .object({
    v: v1,
    event: safeIdSchema,
    node: safeIdSchema,
    parent: safeIdSchema.nullable(),
    depth: z.number().int().min(0).max(1024),
    epoch: count,
  })
  .refine((a) => (a.parent === null) === (a.depth === 0), { message: 'depth is 0 exactly for the root (parent null)', path: ['depth'] })
  .refine((a) => a.parent !== a.node, { message: 'a node cannot be its own parent', path: ['parent'] });
export type TreeAssignment = z.infer<typeof treeAssignmentSchema>;

/** Published on `event.<id>.tree` when a node leaves an event's tree (its KV key is deleted). */
export const treeRemovalSchema = z.object({
  v: v1,
  event: safeIdSchema,
  node: safeIdSchema,
  removed: z.literal(true),
  epoch: count,
});
export type TreeRemoval = z.infer<typeof treeRemovalSchema>;

export const treeChangeSchema = z.union([treeRemovalSchema, treeAssignmentSchema]);
export type TreeChange = z.infer<typeof treeChangeSchema>;

/**
 * The stream's RTP timestamp at media-clock time 0 (RTP timestamp = base + ms × clock rate / 1000,
 * mod 2^32): a relay recovers each packet's media time from it, so its viewers' sender reports
 * pair timestamps with that time as the mixer's do. Optional: older mixers do not send it.
 */
const rtpTimestampBaseSchema = z.number().int().min(0).max(0xffff_ffff).optional();

/**
 * One stream of an event's program feed, as the mixer describes it to the relays: the SSRC it
 * travels on, its kind and codec, and for video the rendition (id and picture size) it carries
 * and its encoder's target bitrate (relays' WHEP viewers are moved between renditions by it;
 * absent from descriptions of older mixers, whose relay viewers then get the largest rendition).
 */
export const feedStreamSchema = z.discriminatedUnion('kind', [
  z.object({ ssrc: z.number().int().min(0).max(0xffff_ffff), kind: z.literal('audio'), codec: z.literal('opus'), rtpTimestampBase: rtpTimestampBaseSchema }),
  z.object({
    ssrc: z.number().int().min(0).max(0xffff_ffff),
    kind: z.literal('video'),
    codec: z.enum(['vp8', 'h264']),
    rendition: safeIdSchema,
    width: z.number().int().min(16).max(7680),
    height: z.number().int().min(16).max(4320),
    bitrateKbps: z.number().int().min(1).max(100_000).optional(),
    rtpTimestampBase: rtpTimestampBaseSchema,
  }),
]);
export type FeedStream = z.infer<typeof feedStreamSchema>;

/**
 * A node's end of one event's feed: the UDP address its socket for this event is bound at (a
 * port per event per node, so a mixer feeds and a relay carries several events at once), and on
 * the mixer's entry the description of the feed's streams. Stored in the `feeds` KV bucket under
 * `<event>.<node>` by the node itself; deleted when it stops carrying the event.
 */
export const eventFeedSchema = z.object({
  v: v1,
  event: safeIdSchema,
  node: safeIdSchema,
  media: mediaAddressSchema,
  streams: z.array(feedStreamSchema).max(64).optional(),
  /**
   * On the mixer's entry: the epoch of the event's lease it holds (EventLease). A relay takes the
   * feed only from the root whose entry carries the highest epoch it has seen for the event, so a
   * mixer that lost the lease is never a parent again, whatever the tree says.
   */
  epoch: count.optional(),
});
export type EventFeed = z.infer<typeof eventFeedSchema>;

/** An event as the cluster knows it; stored in the `events` KV bucket under its id. */
export const eventDefinitionSchema = z.object({
  v: v1,
  id: safeIdSchema,
  name: z.string().min(1).max(200),
  /** Node id of the mixer that produces the program feed (the root of the event's tree). */
  mixer: safeIdSchema,
  createdAt: timestampMs,
  maxSpeakers: z.number().int().min(1).max(64),
  /** Where presenters join when their token names no stage (absent: live). */
  presentersJoin: z.enum(['live', 'backstage']).optional(),
  /** Owned by the mixer package; the control plane stores it as is. */
  layout: z.unknown().optional(),
  ended: z.boolean().optional(),
  /** Epoch of the lease of the holder (`mixer`) that wrote this definition; grows with every change of holder. */
  epoch: count.optional(),
  /** Participant ids the producer muted: a new holder mutes them again when they come back under the same id. */
  muted: z.array(z.string().min(1).max(128)).max(10_000).optional(),
  /** Participant ids the producer removed: a new holder refuses them. */
  kicked: z.array(z.string().min(1).max(128)).max(10_000).optional(),
  /** The stage the producer last moved each participant to: a new holder puts it back there when it comes back under the same id. */
  stages: z
    .record(z.string().min(1).max(128), z.enum(['live', 'backstage']))
    .refine((r) => Object.keys(r).length <= 10_000, { message: 'at most 10000 participants' })
    .optional(),
  /**
   * Recordings running on the holder (owned by the recording package): a new holder continues
   * each one. Public values only — age recipients are public keys.
   */
  recordings: z
    .array(
      z.object({
        id: safeIdSchema,
        recipients: z.array(z.string().regex(/^age1[02-9ac-hj-np-z]{58}$/)).min(1).max(32),
        rendition: z.union([z.string().min(1).max(64), z.literal(false)]),
        segmentMinutes: z.number().positive().max(24 * 60),
        startedAt: z.string().max(40),
      }),
    )
    .max(64)
    .optional(),
  /**
   * Armed to record when its first presenter joins (`"record"` at creation), not started yet: a new
   * holder arms it again. Recipients as resolved by the node that armed it (public keys).
   */
  recordOnJoin: z
    .object({
      recipients: z.array(z.string().regex(/^age1[02-9ac-hj-np-z]{58}$/)).min(1).max(32).optional(),
      rendition: z.union([z.string().min(1).max(64), z.literal(false)]).optional(),
      segmentMinutes: z.number().positive().max(24 * 60).optional(),
    })
    .optional(),
});
export type EventDefinition = z.infer<typeof eventDefinitionSchema>;

/** Request on `event.<id>.place`: where should a new viewer connect? */
export const placementRequestSchema = z.object({ v: v1 });
export type PlacementRequest = z.infer<typeof placementRequestSchema>;

export const placementReplySchema = z.object({
  v: v1,
  /** The relay to connect to (its `http` is the WHEP base URL), or null: serve locally or answer 503. */
  relay: nodeInfoSchema.nullable(),
  /** Why `relay` is null. */
  reason: z.enum(['unknown_event', 'event_ended', 'no_room', 'not_leader']).optional(),
});
export type PlacementReply = z.infer<typeof placementReplySchema>;

/**
 * The value of a KV lease (e.g. `tree.leader`). `instance` is random per
 * process, so a restarted node with the same id is a new holder. `holder:
 * null` means released: anyone may take it at once.
 */
export const leaseRecordSchema = z.object({
  v: v1,
  holder: safeIdSchema.nullable(),
  instance: z.string().min(1).max(64),
  ttlMs: z.number().int().positive(),
  at: timestampMs,
  /** Grows by one each time the lease changes hands (absent from older records: 0). */
  epoch: count.optional(),
});
export type LeaseRecord = z.infer<typeof leaseRecordSchema>;
