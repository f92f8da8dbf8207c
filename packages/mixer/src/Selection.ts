/**
 * Speaker selection: the loudest N participants, with hysteresis so that the mix does not flap.
 *
 * Loudness is in -dBov as RFC 6464 carries it (0 = full scale, 127 = silence), smoothed over about
 * 100 ms. Participants are addressed by small integer slots so that the per-tick update runs over
 * typed arrays and allocates nothing.
 *
 * Rules, per tick:
 * - a free speaker slot goes at once to the loudest active participant;
 * - a speaker holds the floor for at least `holdMs`; after that a challenger louder by at least
 *   `switchMarginDb` takes the place of the quietest speaker;
 * - a speaker silent for `releaseMs` leaves the speaker set (once its hold is over).
 */
export interface SelectionOptions {
  maxSpeakers?: number;
  holdMs?: number;
  releaseMs?: number;
  /** Smoothed level (in -dBov) below which a participant counts as talking. */
  activityThresholdDbov?: number;
  switchMarginDb?: number;
  /** Time constant of the level smoothing. */
  smoothingMs?: number;
  tickMs?: number;
  /** The dominant speaker changes only after holding this long (and by the margin). */
  dominantHoldMs?: number;
}

export const SILENCE_DBOV = 127;

export class SpeakerSelection {
  readonly maxSpeakers: number;
  private readonly holdMs: number;
  private readonly releaseMs: number;
  private readonly threshold: number;
  private readonly margin: number;
  private readonly alpha: number;
  private readonly dominantHoldMs: number;

  private capacity = 0;
  private present = new Uint8Array(0);
  private speakerFlag = new Uint8Array(0);
  /** Muted by the producer: never a candidate, never a speaker. */
  private excluded = new Uint8Array(0);
  private smoothed = new Float32Array(0);
  private lastActiveMs = new Float64Array(0);
  private selectedAtMs = new Float64Array(0);

  /** Current speaker slots, first `speakerCount` entries valid. */
  readonly speakers: Int32Array;
  speakerCount = 0;
  /** The loudest speaker, or -1. */
  dominant = -1;
  private dominantSinceMs = 0;

  constructor(opts: SelectionOptions = {}) {
    this.maxSpeakers = opts.maxSpeakers ?? 3;
    this.holdMs = opts.holdMs ?? 400;
    this.releaseMs = opts.releaseMs ?? 1500;
    this.threshold = opts.activityThresholdDbov ?? 55;
    this.margin = opts.switchMarginDb ?? 3;
    const tickMs = opts.tickMs ?? 20;
    this.alpha = Math.min(1, tickMs / (opts.smoothingMs ?? 100));
    this.dominantHoldMs = opts.dominantHoldMs ?? 1000;
    this.speakers = new Int32Array(this.maxSpeakers);
    this.ensureCapacity(64);
  }

  add(slot: number): void {
    this.ensureCapacity(slot + 1);
    this.present[slot] = 1;
    this.speakerFlag[slot] = 0;
    this.excluded[slot] = 0;
    this.smoothed[slot] = SILENCE_DBOV;
    this.lastActiveMs[slot] = -Infinity;
  }

  remove(slot: number): void {
    if (slot >= this.capacity || !this.present[slot]) return;
    if (this.speakerFlag[slot]) this.dropSpeaker(slot);
    this.present[slot] = 0;
    if (this.dominant === slot) this.dominant = -1;
  }

  /**
   * Excludes a participant from selection (muted) or lets it compete again. An excluded speaker
   * leaves the speaker set at once, without waiting for its hold. Returns true when the speaker
   * set changed.
   */
  setExcluded(slot: number, excluded: boolean): boolean {
    if (slot >= this.capacity || !this.present[slot]) return false;
    this.excluded[slot] = excluded ? 1 : 0;
    if (!excluded) return false;
    if (this.dominant === slot) this.dominant = -1;
    if (!this.speakerFlag[slot]) return false;
    this.dropSpeaker(slot);
    return true;
  }

  isExcluded(slot: number): boolean {
    return this.excluded[slot] === 1;
  }

  isSpeaker(slot: number): boolean {
    return this.speakerFlag[slot] === 1;
  }

  levelOf(slot: number): number {
    return this.smoothed[slot];
  }

  /** Feeds this tick's level of one participant (0..127 -dBov; 127 when nothing was received). */
  setLevel(slot: number, levelDbov: number, nowMs: number): void {
    const s = this.smoothed[slot] + this.alpha * (levelDbov - this.smoothed[slot]);
    this.smoothed[slot] = s;
    if (s < this.threshold) this.lastActiveMs[slot] = nowMs;
  }

  /** Applies the selection rules; returns true when the speaker set changed. */
  update(nowMs: number): boolean {
    let changed = false;
    // Release speakers that have been silent long enough (and held their minimum).
    for (let i = this.speakerCount - 1; i >= 0; i--) {
      const s = this.speakers[i];
      if (nowMs - this.lastActiveMs[s] >= this.releaseMs && nowMs - this.selectedAtMs[s] >= this.holdMs) {
        this.dropSpeaker(s);
        changed = true;
      }
    }
    // Fill free slots with the loudest active non-speakers.
    while (this.speakerCount < this.maxSpeakers) {
      const c = this.loudestCandidate();
      if (c < 0) break;
      this.addSpeaker(c, nowMs);
      changed = true;
    }
    // Replace the quietest speaker whose hold is over by a clearly louder challenger.
    if (this.speakerCount === this.maxSpeakers) {
      const c = this.loudestCandidate();
      if (c >= 0) {
        let quietest = -1;
        for (let i = 0; i < this.speakerCount; i++) {
          const s = this.speakers[i];
          if (nowMs - this.selectedAtMs[s] < this.holdMs) continue;
          if (quietest < 0 || this.smoothed[s] > this.smoothed[quietest]) quietest = s;
        }
        if (quietest >= 0 && this.smoothed[c] < this.smoothed[quietest] - this.margin) {
          this.dropSpeaker(quietest);
          this.addSpeaker(c, nowMs);
          changed = true;
        }
      }
    }
    this.updateDominant(nowMs);
    return changed;
  }

  private updateDominant(nowMs: number): void {
    let loudest = -1;
    for (let i = 0; i < this.speakerCount; i++) {
      const s = this.speakers[i];
      if (this.smoothed[s] >= this.threshold) continue;
      if (loudest < 0 || this.smoothed[s] < this.smoothed[loudest]) loudest = s;
    }
    if (loudest < 0 || loudest === this.dominant) {
      if (this.dominant >= 0 && !this.speakerFlag[this.dominant]) this.dominant = -1;
      return;
    }
    const current = this.dominant;
    const currentValid = current >= 0 && this.speakerFlag[current] === 1;
    if (
      !currentValid ||
      (nowMs - this.dominantSinceMs >= this.dominantHoldMs && this.smoothed[loudest] < this.smoothed[current] - this.margin) ||
      nowMs - this.lastActiveMs[current] >= this.holdMs
    ) {
      this.dominant = loudest;
      this.dominantSinceMs = nowMs;
    }
  }

  private loudestCandidate(): number {
    let best = -1;
    let bestLevel = this.threshold;
    for (let slot = 0; slot < this.capacity; slot++) {
      if (!this.present[slot] || this.speakerFlag[slot] || this.excluded[slot]) continue;
      const l = this.smoothed[slot];
      if (l < bestLevel) {
        bestLevel = l;
        best = slot;
      }
    }
    return best;
  }

  private addSpeaker(slot: number, nowMs: number): void {
    this.speakers[this.speakerCount++] = slot;
    this.speakerFlag[slot] = 1;
    this.selectedAtMs[slot] = nowMs;
  }

  private dropSpeaker(slot: number): void {
    this.speakerFlag[slot] = 0;
    for (let i = 0; i < this.speakerCount; i++) {
      if (this.speakers[i] === slot) {
        this.speakers[i] = this.speakers[this.speakerCount - 1];
        this.speakerCount--;
        break;
      }
    }
  }

  private ensureCapacity(n: number): void {
    if (n <= this.capacity) return;
    let cap = Math.max(64, this.capacity);
    while (cap < n) cap *= 2;
    const grow = <T extends Uint8Array | Float32Array | Float64Array>(old: T, make: (n: number) => T): T => {
      const a = make(cap);
      a.set(old as never);
      return a;
    };
    this.present = grow(this.present, (k) => new Uint8Array(k));
    this.speakerFlag = grow(this.speakerFlag, (k) => new Uint8Array(k));
    this.excluded = grow(this.excluded, (k) => new Uint8Array(k));
    this.smoothed = grow(this.smoothed, (k) => new Float32Array(k));
    this.lastActiveMs = grow(this.lastActiveMs, (k) => new Float64Array(k));
    this.selectedAtMs = grow(this.selectedAtMs, (k) => new Float64Array(k));
    this.capacity = cap;
  }
}
