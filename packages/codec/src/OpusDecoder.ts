import { createDecoderEngine } from './opusBackend.js';
import type { DecoderEngine } from './native.js';

export interface OpusDecoderOptions {
  sampleRate?: 48000;
  channels?: 1 | 2;
}

/**
 * One participant's Opus decoder. Decodes into the caller's Int16Array (interleaved when
 * stereo) so a mixing tick allocates nothing; never throws on a bad packet.
 */
export class OpusDecoder {
  readonly sampleRate: number;
  readonly channels: 1 | 2;
  readonly #engine: DecoderEngine;
  #corrupt = 0;

  constructor(opts: OpusDecoderOptions = {}) {
    this.sampleRate = opts.sampleRate ?? 48000;
    this.channels = opts.channels ?? 1;
    if (this.sampleRate !== 48000) throw new RangeError(`sampleRate must be 48000, not ${this.sampleRate}`);
    if (this.channels !== 1 && this.channels !== 2) throw new RangeError(`channels must be 1 or 2, not ${this.channels}`);
    this.#engine = createDecoderEngine(this.sampleRate, this.channels);
  }

  /** Packets libopus rejected (or that did not fit `out`) since construction. */
  get corrupt(): number {
    return this.#corrupt;
  }

  /**
   * Decodes one packet into `out` and returns the samples per channel written, or -1 for
   * a packet libopus rejects (counted in `corrupt`). A packet longer than `out` holds also
   * counts as corrupt: size `out` for the longest packet you accept (OPUS_MAX_FRAME_SAMPLES
   * per channel accepts all).
   */
  decode(packet: Uint8Array, out: Int16Array): number {
    const n = this.#engine.decode(packet, out);
    if (n < 0) {
      this.#corrupt++;
      return -1;
    }
    return n;
  }

  /**
   * Recovers the frame lost just before `nextPacket` from nextPacket's in-band FEC (LBRR)
   * and returns frameSamples, or -1 when nextPacket carries none (CELT-only, FEC off, the
   * encoder saw no loss, or the fallback backend): then call conceal(). Call it before
   * decode(nextPacket). A bad nextPacket is not counted here; decoding it will count it.
   */
  decodeFec(nextPacket: Uint8Array, out: Int16Array, frameSamples: number): number {
    const n = this.#engine.decodeFec(nextPacket, out, frameSamples);
    return n > 0 ? n : -1;
  }

  /** Packet-loss concealment of exactly `frameSamples` (a multiple of 2.5 ms) into `out`. */
  conceal(out: Int16Array, frameSamples: number): number {
    return this.#engine.conceal(out, frameSamples);
  }

  /** Forgets the stream, e.g. before the decoder serves another participant. */
  reset(): void {
    this.#engine.reset();
  }

  /** Frees the libopus state now instead of at GC; idempotent. */
  close(): void {
    this.#engine.close();
  }
}
