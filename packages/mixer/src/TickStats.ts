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

  reset(): void {
    this.count = 0;
    this.maxMs = 0;
  }
}
