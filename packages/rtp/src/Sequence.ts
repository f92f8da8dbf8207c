/**
 * Wrap-safe arithmetic on RTP sequence numbers (16 bit) and timestamps (32 bit).
 *
 * RFC 3550 §5.1: both fields start at random values and wrap, so `<` on raw values is wrong
 * about half the time across a wrap. These helpers use "serial number arithmetic" (RFC 1982):
 * the shorter way round the circle wins. Two values exactly half a circle apart are ambiguous;
 * `seqDiff`/`tsDiff` then report the negative half (-32768 / -2^31).
 */

/** Signed 16-bit difference `a - b`, in [-32768, 32767]. */
export function seqDiff(a: number, b: number): number {
  return ((a - b) << 16) >> 16;
}

/** True when `a` comes before `b` in sequence order, across the 65535 → 0 wrap. */
export function seqLessThan(a: number, b: number): boolean {
  return seqDiff(a, b) < 0;
}

/** The sequence number after `a` (65535 → 0). */
export function seqNext(a: number): number {
  return (a + 1) & 0xffff;
}

/** Signed 32-bit difference `a - b`, in [-2^31, 2^31 - 1]. */
export function tsDiff(a: number, b: number): number {
  return (a - b) | 0;
}

/** True when timestamp `a` comes before `b`, across the 0xFFFFFFFF → 0 wrap. */
export function tsLessThan(a: number, b: number): boolean {
  return tsDiff(a, b) < 0;
}

/**
 * Turns a stream of 16-bit sequence numbers into extended (unwrapped) numbers that keep
 * counting across wraps, so a buffer can index and compare them with plain arithmetic.
 *
 * The first value is returned unchanged; each later value is placed at the shortest signed
 * distance from the previous one (reordered packets therefore unwrap to smaller numbers, and a
 * packet from before the first one can unwrap below zero). Like libwebrtc's `SeqNumUnwrapper`,
 * the reference follows the latest value rather than the highest, so a stream that jumps by more
 * than half the circle (a restarted sender) continues from where it jumped instead of being
 * stuck "behind" forever. Results stay exact integers for 2^37 wraps of 16 bits.
 */
export class SequenceUnwrapper {
  #last = 0;
  #started = false;

  unwrap(seq16: number): number {
    const seq = seq16 & 0xffff;
    if (!this.#started) {
      this.#started = true;
      this.#last = seq;
      return seq;
    }
    this.#last += seqDiff(seq, this.#last & 0xffff);
    return this.#last;
  }

  reset(): void {
    this.#started = false;
    this.#last = 0;
  }
}

/** Same as {@link SequenceUnwrapper} for 32-bit RTP timestamps. */
export class TimestampUnwrapper {
  #last = 0;
  #started = false;

  unwrap(ts32: number): number {
    const ts = ts32 >>> 0;
    if (!this.#started) {
      this.#started = true;
      this.#last = ts;
      return ts;
    }
    // `% 2^32` instead of `>>> 0` because #last may be negative or above 2^32.
    const lastLow = ((this.#last % 0x1_0000_0000) + 0x1_0000_0000) % 0x1_0000_0000;
    this.#last += tsDiff(ts, lastLow);
    return this.#last;
  }

  reset(): void {
    this.#started = false;
    this.#last = 0;
  }
}
