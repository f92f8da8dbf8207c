export { MixerRole } from './MixerRole.js';
export type { MixerRoleOptions, MixerRoleEvents } from './MixerRole.js';
export { RelayRole } from './RelayRole.js';
export type { RelayRoleOptions } from './RelayRole.js';
export { RelayFeed } from './RelayFeed.js';
export type { RelayFeedOptions, RelayRendition } from './RelayFeed.js';
export { clusterDefaults, requireTokenSecret } from './ClusterConfig.js';
export {
  feedKeySubject,
  feedKeyAnnounceSubject,
  feedKeyReplySchema,
  generateFeedKey,
  sealFeedKey,
  openFeedKey,
  sealFeedKeySet,
  openFeedKeySet,
  serveFeedKeys,
  requestFeedKeys,
  fetchFeedKeys,
} from './FeedKeys.js';
export type { FeedKeySet, FeedKeyReply, SealedFeedKey } from './FeedKeys.js';
export { FeedKeyRotation, validateRotation } from './FeedKeyRotation.js';
export type { FeedKeyRotationOptions, FeedKeyRotationEvents, FeedKeyRotationReason } from './FeedKeyRotation.js';
export { FeedKeyFollower } from './FeedKeyFollower.js';
export type { FeedKeyFollowerOptions, FeedKeyTarget } from './FeedKeyFollower.js';
export { freeUdpPort, mediaAddressFor } from './UdpPort.js';
export type { RelayDrainResult } from './RelayRole.js';
export { onShutdownSignals, defaultDrainTimeoutMs } from './Shutdown.js';
export type { Drainable, ShutdownOptions } from './Shutdown.js';
export { relayOperations, mixerOperations, rtpViewerBody } from './ClusterApi.js';
export { feedMetrics } from './FeedMetrics.js';
export { HandService } from './HandService.js';
export type { HandServiceOptions } from './HandService.js';
export { RelayHands } from './RelayHands.js';
export type { RelayHandsOptions } from './RelayHands.js';
