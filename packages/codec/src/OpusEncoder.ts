import { createEncoderEngine } from './opusBackend.js';
import type { EncoderEngine } from './native.js';
import { opusApplication, opusSignal } from './opusConstants.js';

export type OpusApplication = keyof typeof opusApplication;
export type OpusSignal = keyof typeof opusSignal;

export interface OpusEncoderOptions {
  sampleRate?: 48000;
  channels?: 1 | 2;
  /** Target bits per second (500 – 512000). */
  bitrate?: number;
  /** In-band FEC (LBRR): lets a receiver rebuild a lost frame from the next packet. */
  fec?: boolean;
  /** Loss the encoder should expect, 0 – 100; LBRR is only sent when it is above 0. */
  expectedLossPercent?: number;
  /** 'voip' favours speech and enables SILK (needed for FEC); 'lowdelay' is CELT only. */
  application?: OpusApplication;
  /** 0 (fastest) – 10 (best). */
  complexity?: number;
  /** Hint for mode decisions; 'auto' lets libopus detect it. */
  signal?: OpusSignal;
}

// 32 kb/s keeps wideband speech clear and stays low enough for SILK, where FEC lives;
// 10 % expected loss is where libopus starts spending bits on LBRR by default.
export const OPUS_ENCODER_DEFAULTS = Object.freeze({
  sampleRate: 48000,
  channels: 1,
  bitrate: 32000,
  fec: true,
  expectedLossPercent: 10,
  application: 'voip',
  complexity: 5,
  signal: 'auto',
} as const satisfies Required<OpusEncoderOptions>);

function checkRange(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`${name} must be an integer in [${min}, ${max}], not ${value}`);
  }
  return value;
}

/**
 * One Opus encoder (a mix-minus or the shared mix). Encodes into the caller's Uint8Array;
 * DTX is always off so every tick yields a packet.
 */
export class OpusEncoder {
  readonly sampleRate: number;
  readonly channels: 1 | 2;
  readonly application: OpusApplication;
  /** libopus complexity it was made with, 0–10. */
  readonly complexity: number;
  readonly #engine: EncoderEngine;

  constructor(opts: OpusEncoderOptions = {}) {
    const o = { ...OPUS_ENCODER_DEFAULTS, ...opts };
    if (o.sampleRate !== 48000) throw new RangeError(`sampleRate must be 48000, not ${o.sampleRate}`);
    if (o.channels !== 1 && o.channels !== 2) throw new RangeError(`channels must be 1 or 2, not ${o.channels}`);
    if (!(o.application in opusApplication)) throw new RangeError(`unknown application '${o.application}'`);
    if (!(o.signal in opusSignal)) throw new RangeError(`unknown signal '${o.signal}'`);
    this.sampleRate = o.sampleRate;
    this.channels = o.channels;
    this.application = o.application;
    this.complexity = checkRange('complexity', o.complexity, 0, 10);
    this.#engine = createEncoderEngine(o.sampleRate, o.channels, opusApplication[o.application]);
    try {
      this.#engine.setDtx(false);
      this.setBitrate(o.bitrate);
      this.setFec(o.fec);
      this.setExpectedLossPercent(o.expectedLossPercent);
      this.#engine.setComplexity(this.complexity);
      this.#engine.setSignal(opusSignal[o.signal]);
    } catch (err) {
      this.#engine.close();
      throw err;
    }
  }

  /**
   * Samples of delay the encoder adds (its lookahead): 312 at 48 kHz for 'voip'/'audio'
   * (2.5 ms + 4 ms), 120 for 'lowdelay' (opus_encoder.c, OPUS_GET_LOOKAHEAD).
   */
  get lookahead(): number {
    return this.sampleRate / 400 + (this.application === 'lowdelay' ? 0 : this.sampleRate / 250);
  }

  /**
   * Encodes one frame (`pcm.length / channels` samples per channel, interleaved if
   * stereo; 2.5 – 60 ms) into `out` and returns its length in bytes. An `out` of
   * OPUS_MAX_PACKET_BYTES always suffices for one frame.
   */
  encode(pcm: Int16Array, out: Uint8Array): number {
    return this.#engine.encode(pcm, pcm.length >> (this.channels - 1), out);
  }

  /** Follows the receiver's bandwidth estimate. */
  setBitrate(bitsPerSecond: number): void {
    this.#engine.setBitrate(checkRange('bitrate', bitsPerSecond, 500, 512000));
  }

  setFec(on: boolean): void {
    this.#engine.setInbandFec(on);
  }

  /** Follows the loss the receivers report (RTCP fraction lost). */
  setExpectedLossPercent(percent: number): void {
    this.#engine.setPacketLossPerc(checkRange('expectedLossPercent', percent, 0, 100));
  }

  /** Forgets the signal so far (settings are kept), e.g. when the encoder is reused. */
  reset(): void {
    this.#engine.reset();
  }

  /** Frees the libopus state now instead of at GC; idempotent. */
  close(): void {
    this.#engine.close();
  }
}
