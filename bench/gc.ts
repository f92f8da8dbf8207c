/**
 * V8's garbage collections in this process, counted from when this module is first imported:
 * major (mark-compact) and minor (scavenge) collections and the main thread's pauses for them.
 * A bench takes a snapshot before and after a measured window and reports the difference, so that
 * a window holding a collection (V8's memory reducer runs three full ones 8–9 s after start-up and
 * again after a full collection its allocations cause) can be told from one that does not.
 */
import { constants, PerformanceObserver } from 'node:perf_hooks';

export interface GcCounts {
  major: number;
  minor: number;
  pauseMs: number;
}

const counts: GcCounts = { major: 0, minor: 0, pauseMs: 0 };
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind;
    if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) counts.major++;
    else if (kind === constants.NODE_PERFORMANCE_GC_MINOR) counts.minor++;
    counts.pauseMs += e.duration;
  }
}).observe({ entryTypes: ['gc'] });

export const gcSnapshot = (): GcCounts => ({ ...counts });

/** The collections since `before` (the pauses rounded to 0.1 ms). */
export const gcSince = (before: GcCounts): GcCounts => ({
  major: counts.major - before.major,
  minor: counts.minor - before.minor,
  pauseMs: +(counts.pauseMs - before.pauseMs).toFixed(1),
});
