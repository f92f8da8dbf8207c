/**
 * What a stream actually sends, in kbps, smoothed over seconds: a still composite sends a fraction
 * of its encoder's target bitrate, and a viewer's rendition is chosen by what would really reach it.
 *
 * The owner keeps a running byte count (a plain number: nothing is allocated per packet) and calls
 * `measure` with it at least once a second; each window of at least `windowMs` moves the estimate
 * half way to the window's rate.
 */
export class BitrateMeter {
  /** The smoothed rate, or null before the first full window. */
  kbps: number | null = null;
  #at = -1;
  #bytes = 0;

  constructor(readonly windowMs = 1000) {}

  /** Takes the running byte count at `nowMs`; updates `kbps` when a window has passed. */
  measure(nowMs: number, totalBytes: number): void {
    if (this.#at < 0) {
      this.#at = nowMs;
      this.#bytes = totalBytes;
      return;
    }
    const elapsed = nowMs - this.#at;
    if (elapsed < this.windowMs) return;
    const kbps = ((totalBytes - this.#bytes) * 8) / elapsed;
    this.kbps = this.kbps === null ? kbps : 0.5 * this.kbps + 0.5 * kbps;
    this.#at = nowMs;
    this.#bytes = totalBytes;
  }
}
