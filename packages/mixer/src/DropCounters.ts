/**
 * Packets dropped on the media path, by reason. The media path never throws per packet: it drops,
 * counts here, and goes on (exported as mcu_rtp_dropped_total{reason}).
 */
export class DropCounters {
  private readonly counts = new Map<string, number>();
  total = 0;

  drop(reason: string): void {
    this.counts.set(reason, (this.counts.get(reason) ?? 0) + 1);
    this.total++;
  }

  get(reason: string): number {
    return this.counts.get(reason) ?? 0;
  }

  snapshot(): Record<string, number> {
    return Object.fromEntries(this.counts);
  }
}
