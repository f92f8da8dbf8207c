/**
 * Replay protection of one source, RFC 3711 §3.3.2: a sliding window of the last `size` packet
 * indices (48-bit SRTP index, or 31-bit SRTCP index) behind the highest one authenticated.
 * Anything at or behind the window's trailing edge, or already marked inside it, is a replay.
 *
 * The bitmap is a ring indexed by `index mod size`, so advancing the window by d clears d bits
 * instead of shifting the whole map. Indices stay below 2^53, so plain numbers are exact.
 */
export class ReplayWindow {
  readonly size: number;
  readonly #bits: Uint32Array;
  #highest = -1;

  /** `size` packets, a multiple of 32 (RFC 3711 requires at least 64). */
  constructor(size = 1024) {
    ReplayWindow.validateSize(size);
    this.size = size;
    this.#bits = new Uint32Array(size / 32);
  }

  /** Throws RangeError unless `size` is a multiple of 32 and at least 64. */
  static validateSize(size: number): void {
    if (!Number.isInteger(size) || size < 64 || size % 32 !== 0) throw new RangeError(`replay window ${size} must be a multiple of 32, at least 64`);
  }

  /** Highest index accepted so far, -1 before the first. */
  get highest(): number {
    return this.#highest;
  }

  /** False when `index` was accepted already or is too old to tell. Changes nothing. */
  check(index: number): boolean {
    if (index > this.#highest) return true;
    if (this.#highest - index >= this.size) return false;
    const bit = index % this.size;
    return (this.#bits[bit >>> 5] & (1 << (bit & 31))) === 0;
  }

  /** Marks an authenticated `index` as received, advancing the window when it is the newest. */
  accept(index: number): void {
    if (index > this.#highest) {
      const advance = this.#highest < 0 ? this.size : index - this.#highest;
      if (advance >= this.size) {
        this.#bits.fill(0);
      } else {
        for (let i = this.#highest + 1; i < index; i++) {
          const b = i % this.size;
          this.#bits[b >>> 5] &= ~(1 << (b & 31));
        }
      }
      this.#highest = index;
    }
    const bit = index % this.size;
    this.#bits[bit >>> 5] |= 1 << (bit & 31);
  }
}
