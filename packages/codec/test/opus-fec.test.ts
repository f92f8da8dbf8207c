import { describe, expect, it } from 'vitest';
import { OPUS_MAX_FRAME_SAMPLES, OpusDecoder, OpusEncoder } from '../src/index.js';
import { decodeAll, encodeFrames, errorEnergy, frameSamples, rms, speechLike } from './audio.js';

/*
 * The yardstick for a recovered frame is frame k as a decoder that lost nothing plays it.
 * SILK is a perceptual coder, not a waveform coder: even loss-free decoding of this signal
 * scores only ~5–6 dB SNR against the encoder's input (phase is not preserved), so the raw
 * input would grade FEC and PLC both as noise.
 */

// In-band FEC is SILK's LBRR: speech-like input, 'voip', ≤ 32 kb/s, expected loss ≥ 10 %.
const encoderOptions = { application: 'voip', bitrate: 32000, fec: true, expectedLossPercent: 10 } as const;
const input = speechLike(2);

function decoderAfter(packets: Uint8Array[], count: number): OpusDecoder {
  const decoder = new OpusDecoder();
  const scratch = new Int16Array(OPUS_MAX_FRAME_SAMPLES);
  for (let i = 0; i < count; i++) decoder.decode(packets[i]!, scratch);
  return decoder;
}

describe('in-band FEC', () => {
  const packets = encodeFrames(new OpusEncoder(encoderOptions), input);
  const clean = decodeAll(new OpusDecoder(), packets);
  const cleanFrame = (k: number) => clean.subarray(k * frameSamples, (k + 1) * frameSamples);

  it('recovers a lost frame from the next packet far better than concealment', () => {
    let fecError = 0;
    let plcError = 0;
    let recovered = 0;
    // LBRR is absent from the first packet(s) and from frames the encoder judged silent,
    // so try every frame and grade those the next packet covers.
    for (let k = 5; k < packets.length - 1; k++) {
      const fecFrame = new Int16Array(frameSamples + 16).fill(777);
      const viaFec = decoderAfter(packets, k);
      const n = viaFec.decodeFec(packets[k + 1]!, fecFrame, frameSamples);
      if (n === -1) continue;
      expect(n).toBe(frameSamples);
      expect(fecFrame.subarray(frameSamples).every((v) => v === 777)).toBe(true);

      const plcFrame = new Int16Array(frameSamples);
      expect(decoderAfter(packets, k).conceal(plcFrame, frameSamples)).toBe(frameSamples);

      fecError += errorEnergy(fecFrame.subarray(0, frameSamples), cleanFrame(k));
      plcError += errorEnergy(plcFrame, cleanFrame(k));
      recovered++;

      // After FEC the stream goes on: frame k+1 decodes close to the loss-free one.
      const next = new Int16Array(OPUS_MAX_FRAME_SAMPLES);
      expect(viaFec.decode(packets[k + 1]!, next)).toBe(frameSamples);
      const nextError = errorEnergy(next.subarray(0, frameSamples), cleanFrame(k + 1));
      expect(nextError).toBeLessThan(0.5 * errorEnergy(cleanFrame(k + 1), new Int16Array(frameSamples)));
    }
    expect(recovered).toBeGreaterThan(packets.length / 3);
    // Measured: FEC ≈ 20 dB SNR against the loss-free frame, PLC ≈ 7 dB.
    expect(fecError).toBeLessThan(0.25 * plcError);
  });

  it('answers -1 when the next packet carries no FEC, leaving the decoder to conceal', () => {
    const noFec = encodeFrames(new OpusEncoder({ ...encoderOptions, fec: false }), input);
    const celtOnly = encodeFrames(new OpusEncoder({ ...encoderOptions, application: 'lowdelay' }), input);
    for (const stream of [noFec, celtOnly]) {
      const decoder = decoderAfter(stream, 30);
      const out = new Int16Array(frameSamples);
      expect(decoder.decodeFec(stream[31]!, out, frameSamples)).toBe(-1);
      expect(decoder.conceal(out, frameSamples)).toBe(frameSamples);
      expect(rms(out)).toBeGreaterThan(0);
      expect(decoder.decode(stream[31]!, new Int16Array(OPUS_MAX_FRAME_SAMPLES))).toBe(frameSamples);
    }
    // The first packet has no earlier frame to protect.
    expect(new OpusDecoder().decodeFec(packets[0]!, new Int16Array(frameSamples), frameSamples)).toBe(-1);
  });

  it('a gap longer than the next packet is concealed first, then completed with FEC', () => {
    // Two frames lost (k, k+1): recover 40 ms from packet k+2, whose LBRR covers only k+1.
    const k = packets.findIndex((_, i) => i > 10 && new OpusDecoder().decodeFec(packets[i]!, new Int16Array(960), 960) > 0);
    const decoder = decoderAfter(packets, k - 1);
    const out = new Int16Array(2 * frameSamples);
    expect(decoder.decodeFec(packets[k]!, out, 2 * frameSamples)).toBe(2 * frameSamples);
  });
});
