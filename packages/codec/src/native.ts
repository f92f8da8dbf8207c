import { loadNativeAddon } from '@mcu/rtp';

/**
 * What an Opus backend provides to OpusDecoder: the contract of the native addon
 * (native/opus_addon.c), which the @discordjs/opus fallback imitates.
 *
 * decode() and decodeFec() return a negative libopus error code for a packet libopus
 * rejects instead of throwing; everything else throws on bad arguments.
 */
export interface DecoderEngine {
  /** Samples per channel written to `out`, or a negative libopus error code. */
  decode(packet: Uint8Array, out: Int16Array): number;
  /** `frameSamples` recovered from nextPacket's LBRR, 0 if it has none, or < 0 on error. */
  decodeFec(nextPacket: Uint8Array, out: Int16Array, frameSamples: number): number;
  /** Exactly `frameSamples` (a multiple of 2.5 ms) of concealment. */
  conceal(out: Int16Array, frameSamples: number): number;
  reset(): void;
  close(): void;
}

/** What an Opus backend provides to OpusEncoder. */
export interface EncoderEngine {
  /** Bytes written to `out`. */
  encode(pcm: Int16Array, frameSamples: number, out: Uint8Array): number;
  setBitrate(bitsPerSecond: number): void;
  setInbandFec(on: boolean): void;
  setPacketLossPerc(percent: number): void;
  setComplexity(complexity: number): void;
  setDtx(on: boolean): void;
  setApplication(application: number): void;
  setSignal(signal: number): void;
  reset(): void;
  close(): void;
}

/** The exports of build/Release/mcu_opus.node. */
export interface NativeOpus {
  Decoder: new (sampleRate: number, channels: number) => DecoderEngine;
  Encoder: new (sampleRate: number, channels: number, application: number) => EncoderEngine & {
    lookahead(): number;
  };
  hasLbrr(packet: Uint8Array): boolean;
  opusVersion: string;
}

/** Loads the native addon; never throws, so the caller can fall back. */
export function loadNativeOpus(): { binding: NativeOpus | null; error: Error | null } {
  return loadNativeAddon<NativeOpus>(import.meta.url, 'mcu_opus');
}
