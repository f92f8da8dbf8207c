/**
 * One viewer-facing stream whose upstream source may change underneath it (the mixer restarted
 * with a new SSRC, or its sequence numbers and timestamps jumped) while the viewer's decoder and
 * jitter buffer must see one continuous stream: a fixed SSRC, sequence numbers that go on by +1,
 * and timestamps that advance by the wall time that passed (RFC 3550 §7.3: a translator that
 * switches sources rewrites them so receivers see no discontinuity).
 *
 * Per packet: two additions modulo 2^16 / 2^32 and an in-place header rewrite. The offsets change
 * only at a switch: next sequence number = last + 1; next timestamp = last + elapsed wall time ×
 * clock rate, rounded to whole frames for audio so Opus frame boundaries stay aligned.
 */
import { rewriteRtpHeader, seqDiff, tsDiff } from '@mcu/rtp';
import type { RtpHeader, RtpRewrite } from '@mcu/rtp';

export interface StreamContinuityOptions {
  /** The SSRC the viewer sees, for the life of the stream. */
  outputSsrc: number;
  /** 48000 for Opus, 90000 for video. */
  clockRate: number;
  /** Audio: samples per packet (960 = 20 ms of Opus at 48 kHz). A switch then advances by whole frames. */
  frameSamples?: number;
  /** A sequence number further than this from the last one (either way) means a new source. */
  maxSeqJump?: number;
  /** A timestamp further than this from where wall time says it should be means a new source. */
  maxTsJumpMs?: number;
  now?: () => number;
}

export const STREAM_CONTINUITY_DEFAULTS = {
  /** Loss bursts are far shorter; a restarted mixer starts at a random sequence number (RFC 3550 §5.1). */
  maxSeqJump: 1000,
  /** Larger than any jitter buffer or frame interval, far smaller than a random restart offset. */
  maxTsJumpMs: 10_000,
} as const;

export class StreamContinuity {
  readonly outputSsrc: number;
  readonly clockRate: number;
  /** Source changes seen. */
  switches = 0;
  readonly #frameSamples: number;
  readonly #maxSeqJump: number;
  readonly #maxTsJumpTicks: number;
  readonly #now: () => number;
  readonly #rewrite: RtpRewrite;

  #started = false;
  #inSsrc = 0;
  /** The source before the last switch: its stragglers are refused. */
  #previousSsrc = -1;
  #lastInSeq = 0;
  #lastInTs = 0;
  #lastInMs = 0;
  #seqOffset = 0;
  #tsOffset = 0;
  #lastOutSeq = 0;
  #lastOutTs = 0;
  #lastOutMs = 0;

  constructor(opts: StreamContinuityOptions) {
    if (!(opts.clockRate > 0)) throw new RangeError('clockRate must be positive');
    this.outputSsrc = opts.outputSsrc >>> 0;
    this.clockRate = opts.clockRate;
    this.#frameSamples = opts.frameSamples ?? 0;
    this.#maxSeqJump = opts.maxSeqJump ?? STREAM_CONTINUITY_DEFAULTS.maxSeqJump;
    this.#maxTsJumpTicks = ((opts.maxTsJumpMs ?? STREAM_CONTINUITY_DEFAULTS.maxTsJumpMs) * opts.clockRate) / 1000;
    this.#now = opts.now ?? (() => performance.now());
    this.#rewrite = { ssrc: this.outputSsrc, sequenceNumber: 0, timestamp: 0 };
  }

  /** Sequence number and timestamp of the newest packet written. */
  get lastSequenceNumber(): number {
    return this.#lastOutSeq;
  }

  get lastTimestamp(): number {
    return this.#lastOutTs;
  }

  /**
   * Rewrites SSRC, sequence number and timestamp of `packet` (parsed into `header`) in place, and
   * updates `header` to match. Returns false, touching nothing, for a late packet of the source
   * that was switched away from: the caller drops it.
   */
  rewrite(packet: Uint8Array, header: RtpHeader, nowMs: number = this.#now()): boolean {
    const inSeq = header.sequenceNumber;
    const inTs = header.timestamp >>> 0;
    const inSsrc = header.ssrc >>> 0;
    if (!this.#started) {
      this.#started = true;
      this.#inSsrc = inSsrc;
      // The first source keeps its numbers; only the SSRC is replaced.
      this.#seqOffset = 0;
      this.#tsOffset = 0;
      this.#lastOutSeq = (inSeq - 1) & 0xffff;
      this.#lastOutTs = inTs;
      this.#lastOutMs = nowMs;
      this.#lastInSeq = inSeq;
      this.#lastInTs = inTs;
      this.#lastInMs = nowMs;
    } else if (inSsrc !== this.#inSsrc) {
      if (inSsrc === this.#previousSsrc) return false;
      this.#switchTo(inSsrc, inSeq, inTs, nowMs);
    } else if (this.#isJump(inSeq, inTs, nowMs)) {
      this.#switchTo(inSsrc, inSeq, inTs, nowMs);
    }

    const outSeq = (inSeq + this.#seqOffset) & 0xffff;
    const outTs = (inTs + this.#tsOffset) >>> 0;
    if (seqDiff(outSeq, this.#lastOutSeq) > 0) {
      this.#lastOutSeq = outSeq;
      this.#lastOutTs = outTs;
      this.#lastOutMs = nowMs;
    }
    if (seqDiff(inSeq, this.#lastInSeq) > 0) {
      this.#lastInSeq = inSeq;
      this.#lastInTs = inTs;
      this.#lastInMs = nowMs;
    }
    const r = this.#rewrite;
    r.sequenceNumber = outSeq;
    r.timestamp = outTs;
    rewriteRtpHeader(packet, r);
    header.sequenceNumber = outSeq;
    header.timestamp = outTs;
    header.ssrc = this.outputSsrc;
    return true;
  }

  /** Same SSRC, but numbers far from where the last packet and the time since say they should be. */
  #isJump(inSeq: number, inTs: number, nowMs: number): boolean {
    const ds = seqDiff(inSeq, this.#lastInSeq);
    if (ds > this.#maxSeqJump || ds < -this.#maxSeqJump) return true;
    const expected = ((nowMs - this.#lastInMs) * this.clockRate) / 1000;
    const dt = tsDiff(inTs, this.#lastInTs) - expected;
    return dt > this.#maxTsJumpTicks || dt < -this.#maxTsJumpTicks;
  }

  #switchTo(inSsrc: number, inSeq: number, inTs: number, nowMs: number): void {
    let advance = Math.round(((nowMs - this.#lastOutMs) * this.clockRate) / 1000);
    if (this.#frameSamples > 0) advance = Math.max(1, Math.round(advance / this.#frameSamples)) * this.#frameSamples;
    else advance = Math.max(1, advance);
    const outSeq = (this.#lastOutSeq + 1) & 0xffff;
    const outTs = (this.#lastOutTs + advance) >>> 0;
    this.#seqOffset = (outSeq - inSeq) & 0xffff;
    this.#tsOffset = (outTs - inTs) >>> 0;
    if (inSsrc !== this.#inSsrc) this.#previousSsrc = this.#inSsrc;
    this.#inSsrc = inSsrc;
    this.#lastInSeq = inSeq;
    this.#lastInTs = inTs;
    this.#lastInMs = nowMs;
    this.switches++;
  }
}
