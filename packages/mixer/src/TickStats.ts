/** Durations of recent mixing ticks, for p50/p99 in the API, metrics and benchmarks. */
export class TickStats {
  private readonly ring: Float64Array;
  private count = 0;
  total = 0;
  maxMs = 0;

  constructor(capacity = 3000) {
    this.ring = new Float64Array(capacity);
  }

  record(ms: number): void {
    this.ring[this.count % this.ring.length] = ms;
    this.count++;
    this.total++;
    if (ms > this.maxMs) this.maxMs = ms;
  }

  /** Percentile (0..100) over the retained window; 0 when empty. */
  percentile(p: number): number {
    const n = Math.min(this.count, this.ring.length);
    if (n === 0) return 0;
    const sorted = this.ring.slice(0, n).sort();
    const idx = Math.min(n - 1, Math.max(0, Math.ceil((p / 100) * n) - 1));
    return sorted[idx];
  }

  /**
   * Percentile (0..100) over the last `ticks` ticks only (at most the retained window), so that a
   * benchmark compares the ticks of one phase with another's; 0 when empty.
   */
  percentileOfLast(p: number, ticks: number): number {
    const n = Math.min(this.count, this.ring.length, Math.max(0, Math.floor(ticks)));
    if (n === 0) return 0;
    const last = new Float64Array(n);
    for (let i = 0; i < n; i++) last[i] = this.ring[(this.count - 1 - i) % this.ring.length];
    last.sort();
    return last[Math.min(n - 1, Math.max(0, Math.ceil((p / 100) * n) - 1))];
  }

  reset(): void {
    this.count = 0;
    this.maxMs = 0;
  }
}
