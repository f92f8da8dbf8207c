/**
 * The largest Opus frame a packet can carry (RFC 6716 §3.2.1). Size encode output buffers
 * with it: a single 20 ms frame never exceeds it.
 */
export const OPUS_MAX_PACKET_BYTES = 1275;

/**
 * Samples per channel in the longest Opus packet (120 ms at 48 kHz, RFC 6716 §3.2.5). A
 * decode `out` of this many samples per channel accepts every valid packet.
 */
export const OPUS_MAX_FRAME_SAMPLES = 5760;

/** Frame durations Opus can encode, in milliseconds. */
const opusFrameMs = [2.5, 5, 10, 20, 40, 60, 80, 100, 120] as const;

/**
 * Samples per channel in one frame of `ms` milliseconds: `opusFrameSamples(48000, 20)` is
 * 960. Throws a RangeError for a duration Opus cannot encode.
 */
export const opusFrameSamples = (sampleRate: number, ms: number): number => {
  if (!(opusFrameMs as readonly number[]).includes(ms)) {
    throw new RangeError(`Opus frames are 2.5, 5, 10, 20, 40, 60, 80, 100 or 120 ms, not ${ms} ms`);
  }
  return (sampleRate * ms) / 1000;
};

// libopus request and value numbers (opus_defines.h), shared by both backends. Internal:
// callers choose these through the encoder options.
export const opusApplication = { voip: 2048, audio: 2049, lowdelay: 2051 } as const;
export const opusSignal = { auto: -1000, voice: 3001, music: 3002 } as const;
export const opusCtl = {
  setApplication: 4000,
  setBitrate: 4002,
  setVbr: 4006,
  setComplexity: 4010,
  setInbandFec: 4012,
  setPacketLossPerc: 4014,
  setDtx: 4016,
  setSignal: 4024,
  resetState: 4028,
} as const;
/** libopus error codes the TS layer distinguishes. */
export const opusError = { badArg: -1, bufferTooSmall: -2, invalidPacket: -4 } as const;
