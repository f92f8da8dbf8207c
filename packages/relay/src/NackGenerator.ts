/**
 * The receiving side of generic NACK (RFC 4585 §6.2.1) for one stream: notices sequence gaps,
 * waits `nackDelayMs` for reordered packets, then asks for each missing packet at most
 * `nackMaxAttempts` times, `nackRetryIntervalMs` apart (pion/interceptor's `nack` generator has
 * the same shape). It also remembers which of the last 1024 packets arrived, so a child's NACK for
 * a packet this relay never had is asked upstream once, and one it had is not.
 *
 * Sequence numbers are unwrapped to extended numbers, so gaps across 65535 → 0 are plain
 * subtraction. Per received packet: one unwrap, one bit set, and a map lookup only when something
 * is missing. Allocations happen per lost packet, never per received one.
 */
import { SequenceUnwrapper, seqDiff } from '@mcu/rtp';
import { relayDefaults } from './RelayConfig.js';

export interface NackGeneratorOptions {
  nackDelayMs?: number;
  nackRetryIntervalMs?: number;
  nackMaxAttempts?: number;
  nackMaxGapPackets?: number;
  nackMaxPending?: number;
}

interface MissingPacket {
  /** When the gap was noticed. */
  sinceMs: number;
  lastNackMs: number;
  attempts: number;
}

/** What `onPacket` learned about a packet. */
export const PacketArrival = {
  /** The newest so far, or a reordered one that was never NACKed. */
  InOrder: 0,
  /** A packet that had been NACKed: the retransmission worked. */
  Recovered: 1,
  /** Already received (or too old to tell): a duplicate. */
  Duplicate: 2,
} as const;
export type PacketArrival = (typeof PacketArrival)[keyof typeof PacketArrival];

const RECEIVED_BITS = 1024;

export class NackGenerator {
  readonly #delayMs: number;
  readonly #retryMs: number;
  readonly #maxAttempts: number;
  readonly #maxGap: number;
  readonly #maxPending: number;
  readonly #unwrapper = new SequenceUnwrapper();
  readonly #missing = new Map<number, MissingPacket>();
  /** Ring bitmap of the last RECEIVED_BITS extended sequence numbers: 1 = arrived. */
  readonly #received = new Uint32Array(RECEIVED_BITS / 32);
  #highest = 0;
  #started = false;
  /** Missing packets given up after `nackMaxAttempts` or pushed out by `nackMaxPending`. */
  gaveUp = 0;

  constructor(opts: NackGeneratorOptions = {}) {
    this.#delayMs = opts.nackDelayMs ?? relayDefaults.nackDelayMs;
    this.#retryMs = opts.nackRetryIntervalMs ?? relayDefaults.nackRetryIntervalMs;
    this.#maxAttempts = opts.nackMaxAttempts ?? relayDefaults.nackMaxAttempts;
    this.#maxGap = opts.nackMaxGapPackets ?? relayDefaults.nackMaxGapPackets;
    this.#maxPending = opts.nackMaxPending ?? relayDefaults.nackMaxPending;
  }

  /** Missing packets not yet recovered or given up. */
  get pending(): number {
    return this.#missing.size;
  }

  /** Extended sequence number of the newest packet received. */
  get highest(): number {
    return this.#highest;
  }

  #mark(ext: number): void {
    const b = ((ext % RECEIVED_BITS) + RECEIVED_BITS) % RECEIVED_BITS;
    this.#received[b >>> 5] |= 1 << (b & 31);
  }

  #clear(ext: number): void {
    const b = ((ext % RECEIVED_BITS) + RECEIVED_BITS) % RECEIVED_BITS;
    this.#received[b >>> 5] &= ~(1 << (b & 31));
  }

  #wasReceived(ext: number): boolean {
    const b = ((ext % RECEIVED_BITS) + RECEIVED_BITS) % RECEIVED_BITS;
    return (this.#received[b >>> 5] & (1 << (b & 31))) !== 0;
  }

  /** Records an authenticated packet with 16-bit sequence number `seq`, received at `nowMs`. */
  onPacket(seq: number, nowMs: number): PacketArrival {
    const ext = this.#unwrapper.unwrap(seq);
    if (!this.#started) {
      this.#started = true;
      this.#highest = ext;
      this.#mark(ext);
      return PacketArrival.InOrder;
    }
    const ahead = ext - this.#highest;
    if (ahead > 0) {
      if (ahead - 1 > this.#maxGap) {
        // A restart or a switch of source: start over instead of asking for the whole jump.
        this.#missing.clear();
        this.#received.fill(0);
      } else {
        for (let s = this.#highest + 1; s < ext; s++) {
          this.#clear(s);
          this.#missing.set(s, { sinceMs: nowMs, lastNackMs: 0, attempts: 0 });
        }
        this.#trim();
      }
      this.#highest = ext;
      this.#mark(ext);
      return PacketArrival.InOrder;
    }
    if (this.#highest - ext >= RECEIVED_BITS) return PacketArrival.Duplicate;
    if (this.#missing.size > 0) {
      const m = this.#missing.get(ext);
      if (m !== undefined) {
        this.#missing.delete(ext);
        this.#mark(ext);
        return m.attempts > 0 ? PacketArrival.Recovered : PacketArrival.InOrder;
      }
    }
    if (this.#wasReceived(ext)) return PacketArrival.Duplicate;
    this.#mark(ext); // given up on earlier, arrived after all
    return PacketArrival.InOrder;
  }

  /** Drops the oldest missing packets beyond `nackMaxPending` (the map keeps insertion order). */
  #trim(): void {
    while (this.#missing.size > this.#maxPending) {
      const oldest = this.#missing.keys().next().value as number;
      this.#missing.delete(oldest);
      this.gaveUp++;
    }
  }

  /**
   * A downstream receiver lacks `seq`. Returns true when this stream lacks it too, in which case
   * it is (or already was) scheduled to be NACKed upstream, without waiting for reordering; false
   * when the packet arrived here (it must have left the retransmission buffer) or is unknown.
   */
  requestMissing(seq: number, nowMs: number): boolean {
    if (!this.#started) return false;
    const ext = this.#highest + seqDiff(seq & 0xffff, this.#highest & 0xffff);
    if (ext > this.#highest || this.#highest - ext >= RECEIVED_BITS || this.#wasReceived(ext)) return false;
    const m = this.#missing.get(ext);
    if (m === undefined) {
      this.#missing.set(ext, { sinceMs: nowMs - this.#delayMs, lastNackMs: 0, attempts: 0 });
      this.#trim();
    } else if (m.attempts === 0) {
      m.sinceMs = Math.min(m.sinceMs, nowMs - this.#delayMs); // lost downstream too: no reordering to wait for
    }
    return true;
  }

  /**
   * Appends to `out` the 16-bit sequence numbers due for a NACK at `nowMs` and counts the
   * attempt; gives up on those asked `nackMaxAttempts` times. Returns how many were appended.
   */
  collect(nowMs: number, out: number[]): number {
    let n = 0;
    for (const [ext, m] of this.#missing) {
      if (nowMs - m.sinceMs < this.#delayMs) continue;
      if (m.attempts > 0 && nowMs - m.lastNackMs < this.#retryMs) continue;
      if (m.attempts >= this.#maxAttempts) {
        this.#missing.delete(ext);
        this.gaveUp++;
        continue;
      }
      m.attempts++;
      m.lastNackMs = nowMs;
      out.push(ext & 0xffff);
      n++;
    }
    return n;
  }

  /** Forgets everything (the stream restarted). */
  reset(): void {
    this.#missing.clear();
    this.#received.fill(0);
    this.#unwrapper.reset();
    this.#started = false;
    this.#highest = 0;
  }
}
