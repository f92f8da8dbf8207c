export {
  McuError,
  ValidationError,
  TokenError,
  ForbiddenError,
  NotFoundError,
  MethodNotAllowedError,
  ConflictError,
  PayloadTooLargeError,
  UnsupportedMediaTypeError,
  ServiceUnavailableError,
  BusError,
  TooManyRequestsError,
  httpStatusOf,
  errorBody,
  errorHeaders,
} from './Errors.js';
export type { TokenErrorCode, BusErrorReason, ErrorBody } from './Errors.js';

export { TokenIssuer, generateSecret, bearerToken, roles, roleSchema, tokenClaimsSchema, displayNameSchema, stageSchema } from './Tokens.js';
export type { Role, Stage, TokenClaims, TokenIssuerOptions } from './Tokens.js';

export { parseWith, parseJsonBody, formatPath } from './Schema.js';

export {
  subjects,
  subjectMatches,
  isValidSubject,
  isValidPattern,
  safeIdSchema,
  isSafeId,
  assertSafeId,
} from './Subjects.js';
export type { Subjects } from './Subjects.js';

export { encodePayload, decodeJson } from './Bus.js';
export type {
  Bus,
  BusMessage,
  BusSubscription,
  BusStatus,
  BusStatusType,
  KvEntry,
  KvStore,
  KvOptions,
  KvWatchOptions,
} from './Bus.js';
export { InProcessBus } from './InProcessBus.js';
export type { InProcessBusOptions } from './InProcessBus.js';
export { NatsBus, BusConnectError } from './NatsBus.js';
export type { NatsBusOptions, BusConnectErrorReason } from './NatsBus.js';

export { controlDefaults } from './Defaults.js';

export { systemClock, ManualClock, settle, sleep } from './Clock.js';
export type { Clock, TimerHandle } from './Clock.js';

export { DropCounter, readMessage, checkMessage } from './Drops.js';
export type { DropReason } from './Drops.js';

export {
  nodeRoleSchema,
  mediaAddressSchema,
  nodeInfoSchema,
  nodeLoadSchema,
  nodeLeaveSchema,
  nodeControlSchema,
  nodeSilentSchema,
  treeAssignmentSchema,
  treeRemovalSchema,
  treeChangeSchema,
  eventDefinitionSchema,
  placementRequestSchema,
  placementReplySchema,
  leaseRecordSchema,
  feedStreamSchema,
  eventFeedSchema,
} from './ClusterMessages.js';
export type {
  NodeRole,
  MediaAddress,
  NodeInfo,
  NodeLoad,
  NodeLeave,
  NodeControl,
  TreeAssignment,
  TreeRemoval,
  TreeChange,
  EventDefinition,
  PlacementRequest,
  PlacementReply,
  LeaseRecord,
  FeedStream,
  EventFeed,
} from './ClusterMessages.js';

export {
  shallowestWithRoom,
  leastLoadedRelay,
  reparent,
  treeFromAssignments,
  childrenOf,
  childCounts,
  depthsOf,
  depthOf,
  treeDepth,
  subtreeOf,
  findCycle,
  validateTree,
  assertValidTree,
} from './Placement.js';
export type {
  Tree,
  PlacementCandidate,
  CandidateNode,
  LoadedNode,
  TreeMove,
  TreeProblem,
  LeastLoadedOptions,
  ReparentResult,
} from './Placement.js';

export { leastLoadedMixer, rankMixers, mixerLoad, mixerLoadWeights } from './MixerPlacement.js';
export type { MixerCandidate, MixerSelectorOptions } from './MixerPlacement.js';

export { NodeAgent } from './NodeAgent.js';
export type { NodeAgentOptions, NodeAgentEvents, NodeAgentStats, NodeLoadSample } from './NodeAgent.js';
export { NodeRegistry } from './NodeRegistry.js';
export type { NodeRegistryOptions, NodeRegistryEvents, NodeRegistryStats, LiveNode } from './NodeRegistry.js';
export { EventStore } from './EventStore.js';
export type { EventChange } from './EventStore.js';
export { Lease } from './Lease.js';
export type { LeaseOptions, LeaseEvents } from './Lease.js';
export { TreeController, treeLeaderKey } from './TreeController.js';
export type { TreeControllerOptions, TreeControllerEvents, TreeControllerStats } from './TreeController.js';
export { ClusterClient } from './ClusterClient.js';
export type { ClusterClientOptions, ClusterClientEvents, NodeAddress } from './ClusterClient.js';

export { createLogger, defaultLogLevel, logLevelSchema } from './Log.js';
export type { Logger, LoggerOptions, LogLevel } from './Log.js';

export {
  handDefaults,
  handSchema,
  invitationSchema,
  raiseHandBody,
  inviteHandBody,
  viewerTokenBody,
  handRequestSchema,
  handReplySchema,
  handNoticeSchema,
  viewerKeyOf,
  handIdFor,
  invitationSubject,
  handOfGrant,
} from './Hands.js';
export type { Hand, Invitation, HandRequest, HandReply, HandNotice } from './Hands.js';
export { HandQueue } from './HandQueue.js';
export type { HandQueueEvents } from './HandQueue.js';
