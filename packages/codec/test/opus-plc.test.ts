import { describe, expect, it } from 'vitest';
import { OpusDecoder, OpusEncoder } from '../src/index.js';
import { decodeAll, dominantHz, encodeFrames, frameSamples, rms, sine } from './audio.js';

describe('packet-loss concealment', () => {
  const packets = encodeFrames(new OpusEncoder(), sine(440, 1));

  it('continues a tone right after it stops, then decays', () => {
    const decoder = new OpusDecoder();
    const tone = decodeAll(decoder, packets).subarray(10 * frameSamples);
    const out = new Int16Array(frameSamples);

    expect(decoder.conceal(out, frameSamples)).toBe(frameSamples);
    const first = rms(out);
    expect(first).toBeGreaterThan(0.2 * rms(tone)); // measured ≈ 0.35
    expect(Math.abs(dominantHz(out) - 440)).toBeLessThanOrEqual(60); // 20 ms resolves ±50 Hz

    const levels: number[] = [];
    for (let i = 0; i < 50; i++) {
      expect(decoder.conceal(out, frameSamples)).toBe(frameSamples);
      levels.push(rms(out));
    }
    const late = levels.slice(-10).reduce((a, b) => a + b) / 10;
    expect(late).toBeLessThan(0.1 * first);
    expect(late).toBeLessThan(0.05 * rms(tone)); // measured ≈ 1.3 % after a second
  });

  it('produces exactly frameSamples, whatever the frame length', () => {
    const decoder = new OpusDecoder();
    decodeAll(decoder, packets.slice(0, 10));
    for (const samples of [120, 480, 960, 1920, 2880]) {
      const out = new Int16Array(samples + 10).fill(4242);
      expect(decoder.conceal(out, samples)).toBe(samples);
      expect(out.subarray(samples).every((v) => v === 4242)).toBe(true);
    }
  });

  it('conceals stereo into interleaved frames', () => {
    const decoder = new OpusDecoder({ channels: 2 });
    const out = new Int16Array(2 * frameSamples + 2).fill(1);
    expect(decoder.conceal(out, frameSamples)).toBe(frameSamples);
    expect(out[2 * frameSamples]).toBe(1);
  });
});
