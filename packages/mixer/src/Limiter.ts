/**
 * Sums are kept in Int32 so that three loud talkers cannot wrap around; the soft limiter maps the
 * sum back into Int16 with a tanh knee above `LIMIT_KNEE` so that peaks are compressed, never
 * clipped hard (a hard clip is audible as crackle, a wrap-around as a loud click).
 */
export const LIMIT_KNEE = 24_576; // 0.75 of full scale: below it the mix passes unchanged
const HEADROOM = 32_767 - LIMIT_KNEE;

export function softLimitSample(x: number): number {
  if (x > LIMIT_KNEE) return LIMIT_KNEE + HEADROOM * Math.tanh((x - LIMIT_KNEE) / HEADROOM);
  if (x < -LIMIT_KNEE) return -LIMIT_KNEE - HEADROOM * Math.tanh((-x - LIMIT_KNEE) / HEADROOM);
  return x;
}

/** out[i] = limit(sum[i]) */
export function limitInto(sum: Int32Array, out: Int16Array, samples: number): void {
  for (let i = 0; i < samples; i++) {
    const x = sum[i];
    out[i] = x > LIMIT_KNEE || x < -LIMIT_KNEE ? softLimitSample(x) : x;
  }
}

/** out[i] = limit(sum[i] − own[i]): the mix-minus of one speaker. */
export function limitMinusInto(sum: Int32Array, own: Int16Array, out: Int16Array, samples: number): void {
  for (let i = 0; i < samples; i++) {
    const x = sum[i] - own[i];
    out[i] = x > LIMIT_KNEE || x < -LIMIT_KNEE ? softLimitSample(x) : x;
  }
}

/** sum[i] += pcm[i] */
export function accumulate(sum: Int32Array, pcm: Int16Array, samples: number): void {
  for (let i = 0; i < samples; i++) sum[i] += pcm[i];
}

/**
 * sum[i] += pcm[i] × a linear ramp from `from` to `to`, leaving `pcm` as it is: a voice fading out
 * of one room while it fades into another, whose ramp is applied to `pcm` in place.
 */
export function accumulateRamp(sum: Int32Array, pcm: Int16Array, samples: number, from: number, to: number): void {
  const step = (to - from) / samples;
  let g = from;
  for (let i = 0; i < samples; i++) {
    sum[i] += (pcm[i] * g) | 0;
    g += step;
  }
}

/** Root-mean-square level of a frame in -dBov (0 = full-scale sine-ish, 127 = digital silence). */
export function frameLevelDbov(pcm: Int16Array, samples: number): number {
  let energy = 0;
  for (let i = 0; i < samples; i++) energy += pcm[i] * pcm[i];
  if (energy === 0) return 127;
  const rms = Math.sqrt(energy / samples) / 32_768;
  const dbov = -20 * Math.log10(rms);
  return dbov > 127 ? 127 : dbov < 0 ? 0 : Math.round(dbov);
}

/** Multiplies a frame by a linear ramp from `from` to `to` (fade in or out over one frame). */
export function applyRamp(pcm: Int16Array, samples: number, from: number, to: number): void {
  const step = (to - from) / samples;
  let g = from;
  for (let i = 0; i < samples; i++) {
    pcm[i] = pcm[i] * g;
    g += step;
  }
}
