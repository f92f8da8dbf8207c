export { MixerRole } from './MixerRole.js';
export type { MixerRoleOptions, MixerRoleEvents } from './MixerRole.js';
export { RelayRole } from './RelayRole.js';
export type { RelayRoleOptions } from './RelayRole.js';
export { RelayFeed } from './RelayFeed.js';
export type { RelayFeedOptions } from './RelayFeed.js';
export { clusterDefaults, requireTokenSecret } from './ClusterConfig.js';
export { feedKeySubject, generateFeedKey, sealFeedKey, openFeedKey, serveFeedKeys, fetchFeedKey } from './FeedKeys.js';
export { freeUdpPort, mediaAddressFor } from './UdpPort.js';
