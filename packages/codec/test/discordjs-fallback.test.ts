import { beforeAll, describe, expect, it } from 'vitest';
import { decodeAll, dominantHz, encodeFrames, frameSamples, prng, rms, sine } from './audio.js';

// The backend is chosen when the module loads: set the override first, then import. Each
// test file runs in its own process (vitest pool 'forks'), so this stays here.
process.env.MCU_OPUS_BACKEND = 'discordjs';
let codec: typeof import('../src/index.js');

beforeAll(async () => {
  codec = await import('../src/index.js');
});

describe('@discordjs/opus fallback backend', () => {
  it('is selected by MCU_OPUS_BACKEND=discordjs', () => {
    expect(codec.opusBackend).toBe('discordjs');
    expect(codec.opusBackendError).toBeNull();
  });

  it('a 440 Hz tone comes back as a 440 Hz tone of similar loudness', () => {
    const input = sine(440, 1);
    const packets = encodeFrames(new codec.OpusEncoder(), input);
    expect(packets).toHaveLength(50);
    const decoded = decodeAll(new codec.OpusDecoder(), packets);
    expect(decoded.length).toBe(input.length);
    const settled = decoded.subarray(10 * frameSamples);
    expect(dominantHz(settled)).toBe(440);
    const ratio = rms(settled) / rms(input);
    expect(ratio).toBeGreaterThan(0.7);
    expect(ratio).toBeLessThan(1.4);
  });

  it('has no FEC, and conceals exactly frameSamples with a continuing, decaying tail', () => {
    const packets = encodeFrames(new codec.OpusEncoder(), sine(440, 1));
    const decoder = new codec.OpusDecoder();
    decodeAll(decoder, packets.slice(0, 40));
    const out = new Int16Array(frameSamples + 4).fill(99);
    expect(decoder.decodeFec(packets[41]!, out, frameSamples)).toBe(-1);
    expect(decoder.conceal(out, frameSamples)).toBe(frameSamples);
    expect(out[frameSamples]).toBe(99);
    const first = rms(out.subarray(0, frameSamples));
    expect(first).toBeGreaterThan(1000);
    let last = 0;
    for (let i = 0; i < 50; i++) {
      decoder.conceal(out, frameSamples);
      last = rms(out.subarray(0, frameSamples));
    }
    expect(last).toBeLessThan(0.1 * first);
  });

  it('reports corrupt packets as -1 without throwing', () => {
    const random = prng(7587);
    const decoder = new codec.OpusDecoder();
    const out = new Int16Array(codec.OPUS_MAX_FRAME_SAMPLES);
    let rejected = 0;
    for (let i = 0; i < 2000; i++) {
      const packet = new Uint8Array(Math.floor(random() * 200));
      for (let j = 0; j < packet.length; j++) packet[j] = Math.floor(random() * 256);
      if (decoder.decode(packet, out) === -1) rejected++;
    }
    expect(decoder.corrupt).toBe(rejected);
    expect(rejected).toBeGreaterThan(0);
  });
});
