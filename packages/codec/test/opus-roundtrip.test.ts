import { describe, expect, it } from 'vitest';
import {
  OPUS_MAX_FRAME_SAMPLES,
  OPUS_MAX_PACKET_BYTES,
  OpusDecoder,
  OpusEncoder,
  opusBackend,
  opusBackendError,
  opusFrameSamples,
} from '../src/index.js';
import { loadNativeOpus } from '../src/native.js';
import { decodeAll, dominantHz, encodeFrames, frameSamples, prng, rms, sine } from './audio.js';

describe('Opus backend', () => {
  it('uses the native addon built by npm install', () => {
    // A failure here means `npm install` did not build packages/codec/build/Release/mcu_opus.node.
    expect(opusBackendError?.message ?? null).toBeNull();
    expect(opusBackend).toBe('native');
  });

  it('computes frame sizes and rejects durations Opus cannot encode', () => {
    expect(opusFrameSamples(48000, 20)).toBe(960);
    expect(opusFrameSamples(48000, 2.5)).toBe(120);
    expect(opusFrameSamples(48000, 120)).toBe(OPUS_MAX_FRAME_SAMPLES);
    expect(() => opusFrameSamples(48000, 30)).toThrow(RangeError);
  });
});

describe('OpusEncoder → OpusDecoder', () => {
  it('a 440 Hz tone comes back as a 440 Hz tone of similar loudness', () => {
    const input = sine(440, 1);
    const encoder = new OpusEncoder({ sampleRate: 48000, channels: 1 });
    const packets = encodeFrames(encoder, input);
    expect(packets).toHaveLength(50);
    for (const p of packets) expect(p.length).toBeLessThanOrEqual(OPUS_MAX_PACKET_BYTES);

    const decoded = decodeAll(new OpusDecoder(), packets);
    expect(decoded.length).toBe(input.length);
    const settled = decoded.subarray(10 * frameSamples); // past the encoder's start-up
    expect(dominantHz(settled)).toBe(440);
    const ratio = rms(settled) / rms(input);
    expect(ratio).toBeGreaterThan(0.7);
    expect(ratio).toBeLessThan(1.4);
    encoder.close();
  });

  it('stereo keeps each channel its own tone', () => {
    const left = sine(440, 0.5);
    const right = sine(1000, 0.5);
    const interleaved = new Int16Array(left.length * 2);
    for (let i = 0; i < left.length; i++) {
      interleaved[2 * i] = left[i];
      interleaved[2 * i + 1] = right[i];
    }
    const packets = encodeFrames(new OpusEncoder({ channels: 2, bitrate: 64000, application: 'audio' }), interleaved, 2);
    const decoded = decodeAll(new OpusDecoder({ channels: 2 }), packets, 2);
    const l = new Int16Array(decoded.length / 2);
    const r = new Int16Array(decoded.length / 2);
    for (let i = 0; i < l.length; i++) {
      l[i] = decoded[2 * i];
      r[i] = decoded[2 * i + 1];
    }
    expect(dominantHz(l.subarray(4800))).toBe(440);
    expect(dominantHz(r.subarray(4800))).toBe(1000);
  });

  it('decode writes into the given out (at its offset) and nowhere else', () => {
    const packets = encodeFrames(new OpusEncoder(), sine(440, 0.2));
    const decoder = new OpusDecoder();
    const backing = new Int16Array(100 + OPUS_MAX_FRAME_SAMPLES + 100).fill(12345);
    const out = backing.subarray(100, 100 + OPUS_MAX_FRAME_SAMPLES);
    for (const p of packets) expect(decoder.decode(p, out)).toBe(frameSamples);
    expect(backing.subarray(0, 100).every((v) => v === 12345)).toBe(true);
    expect(out.subarray(0, frameSamples).some((v) => v !== 12345)).toBe(true);
    expect(out.subarray(frameSamples).every((v) => v === 12345)).toBe(true);
    expect(rms(out.subarray(0, frameSamples))).toBeGreaterThan(3000);
  });

  it('encode frame size follows pcm.length, and lookahead matches libopus', () => {
    const encoder = new OpusEncoder();
    const out = new Uint8Array(OPUS_MAX_PACKET_BYTES);
    const decoder = new OpusDecoder();
    const pcm = new Int16Array(5760);
    for (const ms of [10, 20, 40, 60]) {
      const n = encoder.encode(sine(440, ms / 1000), out);
      expect(decoder.decode(out.subarray(0, n), pcm)).toBe(opusFrameSamples(48000, ms));
    }
    expect(() => encoder.encode(new Int16Array(1000), out)).toThrow(/invalid argument/);

    const native = loadNativeOpus().binding!;
    for (const application of ['voip', 'audio', 'lowdelay'] as const) {
      const ours = new OpusEncoder({ application });
      const theirs = new native.Encoder(48000, 1, { voip: 2048, audio: 2049, lowdelay: 2051 }[application]);
      expect(ours.lookahead).toBe(theirs.lookahead());
      theirs.close();
    }
  });

  it('complexity reaches libopus: 0 and 10 code the same voice differently, both decodable', () => {
    const pcm = sine(300, 0.4);
    for (let i = 0; i < pcm.length; i++) pcm[i] = Math.round(pcm[i] * 0.6 + 0.4 * 10000 * Math.sin((2 * Math.PI * 550 * i) / 48000) * Math.sin((2 * Math.PI * 4 * i) / 48000));
    const coded = [0, 10].map((complexity) => {
      const enc = new OpusEncoder({ complexity });
      expect(enc.complexity).toBe(complexity);
      const packets = encodeFrames(enc, pcm);
      enc.close();
      const dec = new OpusDecoder();
      const back = decodeAll(dec, packets);
      dec.close();
      return { packets, back };
    });
    const differing = coded[0].packets.filter((p, i) => Buffer.compare(Buffer.from(p), Buffer.from(coded[1].packets[i])) !== 0).length;
    expect(differing).toBeGreaterThan(coded[0].packets.length / 2);
    for (const c of coded) expect(rms(c.back.subarray(4800))).toBeGreaterThan(1000);
  });

  it('validates options at construction', () => {
    expect(() => new OpusEncoder({ bitrate: 100 })).toThrow(RangeError);
    expect(() => new OpusEncoder({ complexity: 11 })).toThrow(RangeError);
    expect(() => new OpusEncoder({ expectedLossPercent: -1 })).toThrow(RangeError);
    expect(() => new OpusEncoder({ application: 'music' as 'audio' })).toThrow(RangeError);
    expect(() => new OpusDecoder({ channels: 3 as 1 })).toThrow(RangeError);
    expect(() => new OpusDecoder({ sampleRate: 44100 as 48000 })).toThrow(RangeError);
  });

  it('close() is idempotent and later calls throw instead of touching freed memory', () => {
    const decoder = new OpusDecoder();
    const encoder = new OpusEncoder();
    decoder.close();
    decoder.close();
    encoder.close();
    encoder.close();
    expect(() => decoder.decode(new Uint8Array([0xf8, 0xff, 0xfe]), new Int16Array(960))).toThrow(/closed/);
    expect(() => decoder.conceal(new Int16Array(960), 960)).toThrow(/closed/);
    expect(() => encoder.encode(new Int16Array(960), new Uint8Array(1275))).toThrow(/closed/);
  });
});

describe('bad input', () => {
  it('10,000 random packets never throw: each is -1 (counted) or a valid length', () => {
    const random = prng(6716);
    const decoder = new OpusDecoder();
    const out = new Int16Array(OPUS_MAX_FRAME_SAMPLES);
    const fecOut = new Int16Array(frameSamples);
    let rejected = 0;
    for (let i = 0; i < 10_000; i++) {
      const packet = new Uint8Array(Math.floor(random() * 400));
      for (let j = 0; j < packet.length; j++) packet[j] = Math.floor(random() * 256);
      const fec = decoder.decodeFec(packet, fecOut, frameSamples);
      expect(fec === -1 || fec === frameSamples).toBe(true);
      const n = decoder.decode(packet, out);
      if (n === -1) rejected++;
      else expect(n > 0 && n <= OPUS_MAX_FRAME_SAMPLES && n % 120 === 0).toBe(true);
    }
    expect(decoder.corrupt).toBe(rejected);
    expect(rejected).toBeGreaterThan(1000); // random bytes are mostly not valid Opus

    // The decoder is still usable for a real stream afterwards.
    decoder.reset();
    const decoded = decodeAll(decoder, encodeFrames(new OpusEncoder(), sine(440, 0.5)));
    expect(dominantHz(decoded.subarray(4800))).toBe(440);
  });

  it('an empty packet or one too long for out is corrupt, not a throw', () => {
    const decoder = new OpusDecoder();
    const [packet] = encodeFrames(new OpusEncoder(), sine(440, 0.02));
    expect(decoder.decode(new Uint8Array(0), new Int16Array(960))).toBe(-1);
    expect(decoder.decode(packet!, new Int16Array(480))).toBe(-1);
    expect(decoder.corrupt).toBe(2);
    expect(decoder.decode(packet!, new Int16Array(960))).toBe(960);
  });

  it('wrong argument types throw TypeError (a programming error, not bad media)', () => {
    const decoder = new OpusDecoder();
    expect(() => decoder.decode([1, 2, 3] as unknown as Uint8Array, new Int16Array(960))).toThrow(TypeError);
    expect(() => decoder.decode(new Uint8Array(3), new Float32Array(960) as unknown as Int16Array)).toThrow(TypeError);
    expect(() => decoder.conceal(new Int16Array(2000), 1000)).toThrow(/2.5 ms/);
    expect(() => decoder.conceal(new Int16Array(480), 960)).toThrow(RangeError);
  });
});

describe('steady state', () => {
  it('10,000 decodes allocate no ArrayBuffers', () => {
    const packets = encodeFrames(new OpusEncoder(), sine(440, 1));
    const decoder = new OpusDecoder();
    const out = new Int16Array(OPUS_MAX_FRAME_SAMPLES);
    for (let i = 0; i < 1000; i++) decoder.decode(packets[i % packets.length]!, out); // warm up
    const before = process.memoryUsage().arrayBuffers;
    for (let i = 0; i < 10_000; i++) decoder.decode(packets[i % packets.length]!, out);
    const grown = process.memoryUsage().arrayBuffers - before;
    // 10,000 × 1,920-byte Buffers (what @discordjs/opus would return) would be ~19 MB;
    // allow 256 KB of unrelated noise.
    expect(grown).toBeLessThan(256 * 1024);
  });
});
