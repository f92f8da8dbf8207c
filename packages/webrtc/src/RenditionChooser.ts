/**
 * Which program rendition a WHEP viewer should receive, from what the viewer tells us about its
 * link: the bandwidth in its offer (`b=AS`/`b=TIAS`, RFC 8866 §5.8 / RFC 3890), then its receiver
 * estimate (REMB, draft-alvestrand-rmcat-remb) and the loss in its receiver reports.
 *
 * Renditions are compared by what they actually send when that is known (a still composite sends
 * a fraction of its target bitrate), else by their target.
 *
 * Decisions are held before they are acted on, since both signals are noisy: a switch costs the
 * viewer a keyframe. A receive-side estimate rarely rises far above what the viewer already gets
 * (Chrome caps it near 1.5× the incoming rate) and climbs slowly when the picture starts moving,
 * so an estimate below what we send means congestion only when it is not rising (Chrome's overuse
 * answer is 0.85× what arrives); a rising one is catching up. And a viewer moved down could never
 * earn its way back up on the estimate alone: after a long clean spell it is tried one step up
 * again, and the wait before the next try doubles each time a try fails.
 */

export interface RenditionOption {
  id: string;
  /** Target bitrate: the quality order. */
  bitrateKbps: number;
  /** What it actually sends now, when measured. */
  sendingKbps?: number | null;
}

export interface RenditionChooserOptions {
  /** A rendition fits when its bitrate × headroom is within the estimate. */
  headroom?: number;
  /** Estimates are ignored this long after the start and after each switch (estimators ramp up). */
  settleMs?: number;
  /** An estimate this much above the oldest one within `settleMs` is rising (catching up). */
  risingRatio?: number;
  /** The estimate must stay below the current rendition this long before moving down. */
  downAfterMs?: number;
  /** The estimate must fit a higher rendition this long before moving up. */
  upAfterMs?: number;
  /** Receiver-reported loss at or above this fraction, held for `downAfterMs`, moves one step down. */
  lossDown?: number;
  /** After this long without loss on a lower rendition, try one step up (doubles after a failed try). */
  probeAfterMs?: number;
}

export const renditionChooserDefaults: Required<RenditionChooserOptions> = {
  headroom: 1.25,
  settleMs: 3000,
  risingRatio: 1.02,
  downAfterMs: 2000,
  upAfterMs: 6000,
  lossDown: 0.1,
  probeAfterMs: 20_000,
};

export class RenditionChooser {
  private readonly o: Required<RenditionChooserOptions>;
  /** Highest bitrate first. */
  private readonly options: RenditionOption[];
  private index: number;
  private settledAt: number;
  private belowSince = -1;
  private lossySince = -1;
  private aboveSince = -1;
  private cleanSince: number;
  private probeAfterMs: number;
  /** True while on a rendition reached by a probe that has not yet held for `probeAfterMs`. */
  private probing = false;
  private probeStartedAt = -1;
  /** Recent estimates (within `settleMs`), oldest first. */
  private readonly recent: { kbps: number; at: number }[] = [];
  private readonly sending = new Map<string, number>();
  switches = 0;
  lastEstimateKbps: number | null = null;

  constructor(options: readonly RenditionOption[], nowMs: number, initialKbps?: number, opts: RenditionChooserOptions = {}) {
    if (options.length === 0) throw new Error('RenditionChooser needs at least one rendition');
    this.o = { ...renditionChooserDefaults, ...opts };
    this.options = [...options].sort((a, b) => b.bitrateKbps - a.bitrateKbps);
    this.index = initialKbps !== undefined && initialKbps > 0 ? this.fit(initialKbps) : 0;
    this.settledAt = nowMs;
    this.cleanSince = nowMs;
    this.probeAfterMs = this.o.probeAfterMs;
  }

  get current(): string {
    return this.options[this.index].id;
  }

  /** What a rendition costs: what it sends when measured, else its target. */
  private rate(i: number): number {
    const o = this.options[i];
    return this.sending.get(o.id) ?? o.bitrateKbps;
  }

  /** The highest rendition whose bitrate (with headroom) the estimate holds; the lowest when none does. */
  private fit(estimateKbps: number): number {
    for (let i = 0; i < this.options.length; i++) if (this.rate(i) * this.o.headroom <= estimateKbps) return i;
    return this.options.length - 1;
  }

  /** Takes the renditions' measured send rates (kbps; null or absent: not measured yet). */
  setSending(rates: readonly RenditionOption[]): void {
    for (const r of rates) {
      if (r.sendingKbps !== undefined && r.sendingKbps !== null && r.sendingKbps > 0) this.sending.set(r.id, r.sendingKbps);
      else this.sending.delete(r.id);
    }
  }

  /**
   * Takes the viewer's latest estimate (kbps, or undefined when it sent none) and loss fraction
   * (0..1, or undefined) at `nowMs`; returns the rendition to switch to, or null to stay.
   */
  update(nowMs: number, estimateKbps: number | undefined, lossFraction: number | undefined): string | null {
    if (estimateKbps !== undefined) {
      this.lastEstimateKbps = estimateKbps;
      this.recent.push({ kbps: estimateKbps, at: nowMs });
      while (this.recent.length > 1 && nowMs - this.recent[0].at > this.o.settleMs) this.recent.shift();
    }
    const lossy = lossFraction !== undefined && lossFraction >= this.o.lossDown;
    if (lossFraction !== undefined && lossFraction > 0.01) this.cleanSince = nowMs;
    if (nowMs - this.settledAt < this.o.settleMs) return null;

    const estimate = this.lastEstimateKbps;
    const below = estimate !== null && estimate < this.rate(this.index);
    const rising = estimate !== null && this.recent.length > 1 && estimate > this.recent[0].kbps * this.o.risingRatio;
    // The clock starts when the estimate is below what we send and not climbing, and runs while it stays below.
    if (!below) this.belowSince = -1;
    else if (this.belowSince < 0 && !rising) this.belowSince = nowMs;
    this.lossySince = lossy ? (this.lossySince < 0 ? nowMs : this.lossySince) : -1;
    const target = estimate !== null ? this.fit(estimate) : this.index;
    const above = estimate !== null && target < this.index;
    this.aboveSince = above ? (this.aboveSince < 0 ? nowMs : this.aboveSince) : -1;

    if (this.index < this.options.length - 1) {
      if (this.belowSince >= 0 && nowMs - this.belowSince >= this.o.downAfterMs) return this.moveTo(Math.max(target, this.index + 1), nowMs, true);
      if (this.lossySince >= 0 && nowMs - this.lossySince >= this.o.downAfterMs) return this.moveTo(this.index + 1, nowMs, true);
    }
    if (this.index > 0) {
      if (this.aboveSince >= 0 && nowMs - this.aboveSince >= this.o.upAfterMs) return this.moveTo(this.index - 1, nowMs, false);
      if (nowMs - this.cleanSince >= this.probeAfterMs && nowMs - this.settledAt >= this.probeAfterMs) {
        this.probing = true;
        this.probeStartedAt = nowMs;
        return this.moveTo(this.index - 1, nowMs, false);
      }
    }
    if (this.probing && nowMs - this.probeStartedAt >= this.o.probeAfterMs) {
      this.probing = false; // the probe held: back to the normal wait
      this.probeAfterMs = this.o.probeAfterMs;
    }
    return null;
  }

  private moveTo(index: number, nowMs: number, down: boolean): string {
    if (down && this.probing) {
      // The step up did not hold: wait twice as long before the next try.
      this.probing = false;
      this.probeAfterMs = Math.min(this.probeAfterMs * 2, 8 * this.o.probeAfterMs);
    }
    this.index = index;
    this.settledAt = nowMs;
    this.cleanSince = nowMs;
    this.belowSince = this.lossySince = this.aboveSince = -1;
    this.switches++;
    return this.current;
  }
}
