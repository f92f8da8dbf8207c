// Signal helpers for codec tests: generate test tones, measure what came out.

export const sampleRate = 48000;
export const frameSamples = 960; // 20 ms at 48 kHz

/** A sine of `hz` at `amplitude` (full scale 32767), `seconds` long. */
export function sine(hz: number, seconds: number, amplitude = 10000): Int16Array {
  const pcm = new Int16Array(Math.round(sampleRate * seconds));
  for (let i = 0; i < pcm.length; i++) pcm[i] = Math.round(amplitude * Math.sin((2 * Math.PI * hz * i) / sampleRate));
  return pcm;
}

/**
 * A voiced-speech stand-in: a 140 Hz pitch that glides ±20 Hz, eight harmonics with a
 * falling spectrum, amplitude-modulated at a 4 Hz syllable rate. SILK (where Opus FEC
 * lives) models it as speech, which a pure sine is not.
 */
export function speechLike(seconds: number, amplitude = 6000): Int16Array {
  const pcm = new Int16Array(Math.round(sampleRate * seconds));
  let phase = 0;
  for (let i = 0; i < pcm.length; i++) {
    const t = i / sampleRate;
    const pitch = 140 + 20 * Math.sin(2 * Math.PI * 0.7 * t);
    phase += (2 * Math.PI * pitch) / sampleRate;
    let v = 0;
    for (let h = 1; h <= 8; h++) v += Math.sin(h * phase) / h;
    const envelope = 0.55 + 0.45 * Math.sin(2 * Math.PI * 4 * t);
    pcm[i] = Math.round(amplitude * envelope * v * 0.5);
  }
  return pcm;
}

export function rms(pcm: Int16Array): number {
  let sum = 0;
  for (let i = 0; i < pcm.length; i++) sum += pcm[i] * pcm[i];
  return Math.sqrt(sum / Math.max(1, pcm.length));
}

/** Energy of a − b over the overlap. */
export function errorEnergy(a: Int16Array, b: Int16Array): number {
  let sum = 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) sum += (a[i] - b[i]) ** 2;
  return sum;
}

/** Power of `pcm` at `hz` (Goertzel). */
export function goertzel(pcm: Int16Array, hz: number): number {
  const coeff = 2 * Math.cos((2 * Math.PI * hz) / sampleRate);
  let s1 = 0;
  let s2 = 0;
  for (let i = 0; i < pcm.length; i++) {
    const s0 = pcm[i] + coeff * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  return s1 * s1 + s2 * s2 - coeff * s1 * s2;
}

/** The strongest frequency among 50 Hz – 4 kHz in 10 Hz steps. */
export function dominantHz(pcm: Int16Array): number {
  let best = 0;
  let bestPower = -1;
  for (let hz = 50; hz <= 4000; hz += 10) {
    const p = goertzel(pcm, hz);
    if (p > bestPower) {
      bestPower = p;
      best = hz;
    }
  }
  return best;
}

/** Deterministic PRNG (mulberry32) so fuzz failures reproduce. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface FrameEncoder {
  encode(pcm: Int16Array, out: Uint8Array): number;
}

/** Encodes `pcm` in 20 ms frames; each packet is its own copy. */
export function encodeFrames(encoder: FrameEncoder, pcm: Int16Array, channels = 1): Uint8Array[] {
  const out = new Uint8Array(1275);
  const step = frameSamples * channels;
  const packets: Uint8Array[] = [];
  for (let at = 0; at + step <= pcm.length; at += step) {
    const n = encoder.encode(pcm.subarray(at, at + step), out);
    packets.push(out.slice(0, n));
  }
  return packets;
}

interface FrameDecoder {
  decode(packet: Uint8Array, out: Int16Array): number;
}

/** Decodes packets back to back into one signal. */
export function decodeAll(decoder: FrameDecoder, packets: Uint8Array[], channels = 1): Int16Array {
  const frame = new Int16Array(5760 * channels);
  const pcm = new Int16Array(packets.length * frameSamples * channels);
  let at = 0;
  for (const p of packets) {
    const n = decoder.decode(p, frame);
    if (n < 0) throw new Error('decode failed');
    pcm.set(frame.subarray(0, n * channels), at);
    at += n * channels;
  }
  return pcm.subarray(0, at);
}
