/**
 * Receive statistics of one RTP source, as RFC 3550 Appendix A.1, A.3 and A.8 compute them,
 * and the report block (§6.4.1) a receiver sends about it.
 */
import { middleNtp32 } from './Rtcp.js';
import type { ReportBlock, SenderReport } from './Rtcp.js';
import { tsDiff } from './Sequence.js';

export interface ReceiverStatsOptions {
  /** SSRC of the source being received. */
  ssrc: number;
  /** RTP clock rate of its payload format (48000 for Opus, 90000 for video). */
  clockRate: number;
  /**
   * In-order packets needed before a new source counts as valid (A.1 `MIN_SEQUENTIAL`). The RFC
   * uses 2 to ignore stray packets from unknown sources; ours are negotiated in signalling and
   * authenticated by SRTP, so by default the first packet counts.
   */
  minSequential?: number;
}

/** A.1: a jump of up to this many packets ahead is a loss, not a restart. */
const MAX_DROPOUT = 3000;
/** A.1: a packet up to this many behind is reordered, not a restart. */
const MAX_MISORDER = 100;
const SEQ_MOD = 1 << 16;

export class ReceiverStats {
  readonly ssrc: number;
  readonly clockRate: number;
  readonly #minSequential: number;

  // A.1 source state
  #maxSeq = 0;
  #cycles = 0;
  #baseSeq = 0;
  #badSeq = SEQ_MOD + 1;
  #probation: number;
  #received = 0;
  #expectedPrior = 0;
  #receivedPrior = 0;
  #started = false;

  // A.8 jitter state
  #jitter = 0;
  #hasTransit = false;
  #lastArrivalMs = 0;
  #lastTimestamp = 0;

  // Last SR from this source, for LSR/DLSR
  #lastSrNtp32 = 0;
  #lastSrArrivalMs = -1;

  constructor(opts: ReceiverStatsOptions) {
    this.ssrc = opts.ssrc >>> 0;
    this.clockRate = opts.clockRate;
    this.#minSequential = Math.max(1, opts.minSequential ?? 1);
    this.#probation = this.#minSequential;
  }

  /** A.1 `init_seq`. */
  #initSeq(seq: number): void {
    this.#baseSeq = seq;
    this.#maxSeq = seq;
    this.#badSeq = SEQ_MOD + 1;
    this.#cycles = 0;
    this.#received = 0;
    this.#receivedPrior = 0;
    this.#expectedPrior = 0;
  }

  /** A.1 `update_seq`: true when the packet counts towards the statistics. */
  #updateSeq(seq: number): boolean {
    const udelta = (seq - this.#maxSeq + SEQ_MOD) % SEQ_MOD;
    if (this.#probation > 0) {
      // Source not yet valid: it must send minSequential packets in a row.
      if (seq === (this.#maxSeq + 1) % SEQ_MOD) {
        this.#probation--;
        this.#maxSeq = seq;
        if (this.#probation === 0) {
          this.#initSeq(seq);
          this.#received++;
          return true;
        }
      } else {
        this.#probation = this.#minSequential - 1;
        this.#maxSeq = seq;
      }
      return false;
    }
    if (udelta < MAX_DROPOUT) {
      // In order, with a permissible gap.
      if (seq < this.#maxSeq) this.#cycles += SEQ_MOD; // wrapped
      this.#maxSeq = seq;
    } else if (udelta <= SEQ_MOD - MAX_MISORDER) {
      // A very large jump: accept it only if the next packet follows it (the sender restarted).
      if (seq === this.#badSeq) {
        this.#initSeq(seq);
      } else {
        this.#badSeq = (seq + 1) & (SEQ_MOD - 1);
        return false;
      }
    }
    // else: a duplicate or reordered packet; it still counts as received.
    this.#received++;
    return true;
  }

  /**
   * Records one received packet. Returns false when A.1 does not count it (source still on
   * probation, or an unconfirmed jump).
   */
  onPacket(sequenceNumber: number, timestamp: number, arrivalMs: number): boolean {
    const seq = sequenceNumber & 0xffff;
    if (!this.#started) {
      this.#started = true;
      this.#initSeq(seq);
      this.#maxSeq = (seq - 1 + SEQ_MOD) % SEQ_MOD;
      this.#probation = this.#minSequential;
    }
    if (!this.#updateSeq(seq)) return false;

    // A.8: D = (Rj - Ri) - (Sj - Si) in timestamp units; J += (|D| - J) / 16.
    if (this.#hasTransit) {
      const d = ((arrivalMs - this.#lastArrivalMs) * this.clockRate) / 1000 - tsDiff(timestamp >>> 0, this.#lastTimestamp);
      this.#jitter += (Math.abs(d) - this.#jitter) / 16;
    }
    this.#hasTransit = true;
    this.#lastArrivalMs = arrivalMs;
    this.#lastTimestamp = timestamp >>> 0;
    return true;
  }

  /** Remembers an SR from this source so the next report block carries LSR/DLSR (§6.4.1). */
  onSenderReport(sr: Pick<SenderReport, 'ntpSec' | 'ntpFrac'>, arrivalMs: number): void {
    this.#lastSrNtp32 = middleNtp32(sr.ntpSec, sr.ntpFrac);
    this.#lastSrArrivalMs = arrivalMs;
  }

  /** Packets counted as received (duplicates included, as in A.3). */
  get received(): number {
    return this.#received;
  }

  /** Extended highest sequence number: cycles × 65536 + highest seq. */
  get extendedHighestSeq(): number {
    return this.#cycles + this.#maxSeq;
  }

  /** A.3: packets expected since the first one. */
  get expected(): number {
    return this.#received === 0 ? 0 : this.extendedHighestSeq - this.#baseSeq + 1;
  }

  /** A.3: expected - received; negative with duplicates. */
  get cumulativeLost(): number {
    return this.expected - this.#received;
  }

  /** A.8 interarrival jitter in timestamp units (fractional; the report block truncates it). */
  get jitter(): number {
    return this.#jitter;
  }

  /** Interarrival jitter in milliseconds. */
  get jitterMs(): number {
    return (this.#jitter * 1000) / this.clockRate;
  }

  /**
   * The report block about this source, and the start of a new reporting interval: the
   * fraction lost covers the packets since the previous call (A.3).
   */
  reportBlock(nowMs: number): ReportBlock {
    const expected = this.expected;
    const expectedInterval = expected - this.#expectedPrior;
    const receivedInterval = this.#received - this.#receivedPrior;
    this.#expectedPrior = expected;
    this.#receivedPrior = this.#received;
    const lostInterval = expectedInterval - receivedInterval;
    // A.3: fraction = lost_interval / expected_interval in 1/256, 0 when nothing was lost
    // (duplicates can make lost_interval negative).
    const fractionLost = expectedInterval === 0 || lostInterval <= 0 ? 0 : Math.min(255, Math.floor((lostInterval * 256) / expectedInterval));
    const cumulativeLost = Math.max(-0x800000, Math.min(0x7fffff, this.cumulativeLost));
    const hasSr = this.#lastSrArrivalMs >= 0;
    return {
      ssrc: this.ssrc,
      fractionLost,
      cumulativeLost,
      highestSeq: this.extendedHighestSeq >>> 0,
      jitter: Math.floor(this.#jitter) >>> 0,
      lsr: hasSr ? this.#lastSrNtp32 : 0,
      dlsr: hasSr ? Math.max(0, Math.floor(((nowMs - this.#lastSrArrivalMs) * 65536) / 1000)) >>> 0 : 0,
    };
  }
}
