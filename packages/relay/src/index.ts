export { RelayForwarder } from './RelayForwarder.js';
export type { RelayForwarderOptions, RelayForwarderEvents } from './RelayForwarder.js';

export { FeedSender } from './FeedSender.js';
export type { FeedSenderOptions, FeedSenderEvents } from './FeedSender.js';

export { FeedCipher, FEED_KEY_ID_BYTES, FEED_MAX_KEYS, FEED_OVERHEAD_BYTES, FEED_TAG_BYTES } from './FeedCipher.js';
export type { FeedKey, FeedCipherOptions, CipherDropReason } from './FeedCipher.js';

export { StreamContinuity, STREAM_CONTINUITY_DEFAULTS } from './StreamContinuity.js';
export type { StreamContinuityOptions } from './StreamContinuity.js';

export { ReplayWindow } from './ReplayWindow.js';
export { NackGenerator, PacketArrival } from './NackGenerator.js';
export type { NackGeneratorOptions } from './NackGenerator.js';
export { KeyframeRequestLimiter } from './KeyframeRequests.js';
export type { KeyframeRequestLimiterOptions } from './KeyframeRequests.js';
export { GopCache } from './GopCache.js';

export { newFeedStats, totalDropped, forwardQuantileMs, FEED_DROP_REASONS } from './FeedStats.js';
export type { FeedStats, FeedDropReason } from './FeedStats.js';

export { relayDefaults } from './RelayConfig.js';
export type { RelayConfig } from './RelayConfig.js';

export { endpointKey, FanOut, validateEndpoint } from './FanOut.js';

export { clockRateOf } from './RelayTypes.js';
export type { UdpEndpoint, StreamInfo, StreamMap, RtpSink } from './RelayTypes.js';
