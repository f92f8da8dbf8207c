/**
 * When a relay reports its parent silent (`ClusterClient.reportParentSilent`): once the feed has been
 * silent for `silentMs`, then again after `intervalMs`, and after twice as long each time while the
 * same silence lasts, up to `maxIntervalMs`. The first two reports are what healing needs (the
 * registry declares a reported parent dead once its beats are two intervals old, so the second
 * report, 250 ms after the first, finds a killed parent's beats old enough); a parent that keeps
 * beating but sends nothing (an event whose mixer is quiet, a broken path) is not reported four
 * times a second for as long as that lasts. A packet ends the silence and starts the sequence over.
 */
import { controlDefaults } from '@mcu/control';

export interface SilenceReportOptions {
  silentMs?: number;
  intervalMs?: number;
  maxIntervalMs?: number;
}

export class SilenceReports {
  readonly #silentMs: number;
  readonly #intervalMs: number;
  readonly #maxIntervalMs: number;
  #gapMs: number;
  #lastAt = -Infinity;

  constructor(opts: SilenceReportOptions = {}) {
    this.#silentMs = opts.silentMs ?? controlDefaults.parentSilentMs;
    this.#intervalMs = opts.intervalMs ?? controlDefaults.parentSilentReportIntervalMs;
    this.#maxIntervalMs = opts.maxIntervalMs ?? controlDefaults.parentSilentReportMaxIntervalMs;
    this.#gapMs = this.#intervalMs;
  }

  /** At `now`, with the feed silent for `silentMs`: report now? (Counts the report when it says yes.) */
  due(now: number, silentMs: number): boolean {
    if (silentMs < this.#silentMs) {
      this.#gapMs = this.#intervalMs;
      this.#lastAt = -Infinity;
      return false;
    }
    if (now - this.#lastAt < this.#gapMs) return false;
    if (this.#lastAt !== -Infinity) this.#gapMs = Math.min(this.#maxIntervalMs, this.#gapMs * 2);
    this.#lastAt = now;
    return true;
  }
}
