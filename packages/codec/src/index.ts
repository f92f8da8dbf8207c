export { OpusDecoder } from './OpusDecoder.js';
export type { OpusDecoderOptions } from './OpusDecoder.js';
export { OpusEncoder } from './OpusEncoder.js';
export type { OpusEncoderOptions, OpusApplication, OpusSignal } from './OpusEncoder.js';
export { CodecPool } from './CodecPool.js';
export type { CodecPoolOptions } from './CodecPool.js';
export { opusBackend, opusBackendError } from './opusBackend.js';
export type { OpusBackendName } from './opusBackend.js';
export { OPUS_MAX_PACKET_BYTES, OPUS_MAX_FRAME_SAMPLES, opusFrameSamples } from './opusConstants.js';
