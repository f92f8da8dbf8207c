import { createRequire } from 'node:module';
import type { OpusEncoder as DiscordjsOpusCodec } from '@discordjs/opus';
import type { DecoderEngine, EncoderEngine } from './native.js';
import { opusCtl, opusError } from './opusConstants.js';

/*
 * The fallback backend: the same engine contract on @discordjs/opus, used when the native
 * addon cannot be loaded. Its limits, all from the @discordjs/opus API:
 *   - no in-band FEC decode: decodeFec() always answers 0, so callers conceal instead;
 *   - PLC always produces 120 ms: conceal() serves that in frameSamples slices (so
 *     consecutive calls continue and decay as in the native backend), but the decoder's
 *     state has moved 120 ms on, so the first packet after a short gap joins less smoothly;
 *   - every decode/encode allocates a Buffer, and close() only drops the reference: the
 *     libopus state is freed by GC.
 */

type DiscordjsModule = { OpusEncoder: new (rate: number, channels: number) => DiscordjsOpusCodec };

let discordjs: DiscordjsModule | null = null;
/** Loaded on first use, so the native backend never loads the second libopus copy. */
function discordjsOpus(): DiscordjsModule {
  discordjs ??= createRequire(import.meta.url)('@discordjs/opus') as DiscordjsModule;
  return discordjs;
}

function closedError(what: string): Error {
  return Object.assign(new Error(`Opus ${what} is closed`), { code: 'ERR_CLOSED' });
}

function checkFrame(sampleRate: number, channels: number, outLength: number, frameSamples: number): void {
  if (!(frameSamples > 0) || frameSamples * channels > outLength) {
    throw new RangeError('frameSamples must be > 0 and fit in out');
  }
  if (frameSamples % (sampleRate / 400) !== 0) {
    throw new RangeError('frameSamples must be a multiple of 2.5 ms');
  }
}

/** Copies interleaved little-endian s16 from a Buffer into `out`. */
function copyPcm(src: Buffer, out: Int16Array, samples: number): void {
  if ((src.byteOffset & 1) === 0) {
    out.set(new Int16Array(src.buffer, src.byteOffset, samples));
  } else {
    for (let i = 0; i < samples; i++) out[i] = src.readInt16LE(i * 2);
  }
}

export class DiscordjsDecoder implements DecoderEngine {
  #codec: DiscordjsOpusCodec | null;
  readonly #sampleRate: number;
  readonly #channels: number;
  /** The unused rest of the last 120 ms concealment, interleaved. */
  #concealed: Int16Array | null = null;
  #concealedAt = 0;

  constructor(sampleRate: number, channels: number) {
    this.#codec = new (discordjsOpus().OpusEncoder)(sampleRate, channels);
    this.#sampleRate = sampleRate;
    this.#channels = channels;
  }

  #open(): DiscordjsOpusCodec {
    if (!this.#codec) throw closedError('decoder');
    return this.#codec;
  }

  decode(packet: Uint8Array, out: Int16Array): number {
    const codec = this.#open();
    this.#concealed = null;
    if (packet.length === 0) return opusError.invalidPacket;
    let pcm: Buffer;
    try {
      pcm = codec.decode(Buffer.from(packet.buffer, packet.byteOffset, packet.byteLength));
    } catch {
      return opusError.invalidPacket;
    }
    const samples = pcm.length >> 1;
    if (samples > out.length) return opusError.bufferTooSmall;
    copyPcm(pcm, out, samples);
    return samples / this.#channels;
  }

  decodeFec(nextPacket: Uint8Array, out: Int16Array, frameSamples: number): number {
    this.#open();
    checkFrame(this.#sampleRate, this.#channels, out.length, frameSamples);
    return nextPacket.length === 0 ? opusError.invalidPacket : 0;
  }

  conceal(out: Int16Array, frameSamples: number): number {
    const codec = this.#open();
    checkFrame(this.#sampleRate, this.#channels, out.length, frameSamples);
    const wanted = frameSamples * this.#channels;
    let written = 0;
    while (written < wanted) {
      if (!this.#concealed || this.#concealedAt === this.#concealed.length) {
        // An empty packet makes @discordjs/opus run opus_decode(NULL, 0, …, 120 ms).
        const pcm = codec.decode(Buffer.alloc(0));
        this.#concealed = new Int16Array(pcm.length >> 1);
        copyPcm(pcm, this.#concealed, this.#concealed.length);
        this.#concealedAt = 0;
      }
      const n = Math.min(wanted - written, this.#concealed.length - this.#concealedAt);
      out.set(this.#concealed.subarray(this.#concealedAt, this.#concealedAt + n), written);
      this.#concealedAt += n;
      written += n;
    }
    return frameSamples;
  }

  reset(): void {
    this.#open().applyDecoderCTL(opusCtl.resetState, 0);
    this.#concealed = null;
  }

  close(): void {
    this.#codec = null;
    this.#concealed = null;
  }
}

export class DiscordjsEncoder implements EncoderEngine {
  #codec: DiscordjsOpusCodec | null;
  readonly #channels: number;

  constructor(sampleRate: number, channels: number, application: number) {
    this.#codec = new (discordjsOpus().OpusEncoder)(sampleRate, channels);
    this.#channels = channels;
    // @discordjs/opus creates its encoder as OPUS_APPLICATION_AUDIO; libopus accepts a
    // different application until the first frame is encoded.
    this.#codec.applyEncoderCTL(opusCtl.setApplication, application);
  }

  #open(): DiscordjsOpusCodec {
    if (!this.#codec) throw closedError('encoder');
    return this.#codec;
  }

  encode(pcm: Int16Array, frameSamples: number, out: Uint8Array): number {
    const codec = this.#open();
    const samples = frameSamples * this.#channels;
    if (!(frameSamples > 0) || samples > pcm.length) {
      throw new RangeError('frameSamples must be > 0 and fit in pcm');
    }
    const packet = codec.encode(Buffer.from(pcm.buffer, pcm.byteOffset, samples * 2));
    if (packet.length > out.length) throw new RangeError('out is too small for the encoded packet');
    out.set(packet);
    return packet.length;
  }

  setBitrate(bitsPerSecond: number): void {
    this.#open().setBitrate(bitsPerSecond);
  }
  setInbandFec(on: boolean): void {
    this.#open().applyEncoderCTL(opusCtl.setInbandFec, on ? 1 : 0);
  }
  setPacketLossPerc(percent: number): void {
    this.#open().applyEncoderCTL(opusCtl.setPacketLossPerc, percent);
  }
  setComplexity(complexity: number): void {
    this.#open().applyEncoderCTL(opusCtl.setComplexity, complexity);
  }
  setDtx(on: boolean): void {
    this.#open().applyEncoderCTL(opusCtl.setDtx, on ? 1 : 0);
  }
  setApplication(application: number): void {
    this.#open().applyEncoderCTL(opusCtl.setApplication, application);
  }
  setSignal(signal: number): void {
    this.#open().applyEncoderCTL(opusCtl.setSignal, signal);
  }
  reset(): void {
    this.#open().applyEncoderCTL(opusCtl.resetState, 0);
  }
  close(): void {
    this.#codec = null;
  }
}
