export { Recording, RECORDING_DEFAULTS } from './Recording.js';
export type { RecordingOptions, RecordingState, RecordingSummary, RecordingCounters, RecordingEvents } from './Recording.js';
export { SegmentWriter, containerFor } from './SegmentWriter.js';
export type { SegmentContainer, SegmentResult, SegmentWriterOptions } from './SegmentWriter.js';
export { DirectoryStore, checkName } from './RecordingStore.js';
export type { RecordingStore, SegmentSink } from './RecordingStore.js';
export { manifestSchema, parseManifest, signManifest, macMatches, canonicalJson, segmentComment, parseSegmentComment } from './Manifest.js';
export type { Manifest, ManifestSegment, SegmentChainLink } from './Manifest.js';
