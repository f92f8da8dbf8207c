/**
 * Adaptive audio jitter buffer for one participant, pulled by the mixing clock once per frame.
 *
 * Packets arrive with network jitter, reordered, duplicated, late or not at all; the mixer needs
 * exactly one frame per 20 ms tick. `push` files each packet by sequence number into a slot of
 * a preallocated pool (copying the payload, so the socket's buffer can be reused at once);
 * `pop` advances the playout point by one frame and says what the mixer should do:
 *
 * - `'frame'`: decode `payload` (a view into the slot, no copy).
 * - `'lost'`: the frame at the playout point never came and newer ones are here. Conceal it:
 *   if `nextPayload` is set, decode Opus in-band FEC from it (RFC 6716 §2.1.7), else PLC.
 * - `'underrun'`: nothing to play this tick and the playout point did not move — the buffer is
 *   empty, or the next frame is missing but too little is buffered behind it to give up on it
 *   yet (it may only be reordered; the wait is bounded by the target delay). Conceal (PLC /
 *   fade out). Because the point does not move, the buffer gets one frame deeper: this is how
 *   it grows when the network gets worse.
 * - `'buffering'`: (re)filling up to the target delay before playout starts; play silence.
 * - `'stretch'`: the playout point did not move, on purpose: a lip-sync delay (`syncDelayMs`)
 *   grew, and the buffer must get one frame deeper. Conceal one frame (PLC, no fade). At most
 *   one per `catchUpAfterMs`; a lip-sync delay that shrinks discards a frame as often.
 *
 * Playout is in sequence order (wrap-safe): one packet is one frame of `frameDurationMs`.
 * Timestamps are used for the jitter estimate only; with Opus DTX the rare comfort-noise packets
 * are played back to back, and the buffer simply underruns and rebuffers during the silence.
 *
 * Adaptation: interarrival jitter J is estimated as in RFC 3550 §6.4.1 / A.8 (in ms) and the
 * target delay is `frame + 3·J`, clamped to [min, max] and rounded to whole frames. When the
 * buffer runs at least two frames deeper than the target for `catchUpAfterMs`, one frame is
 * discarded (accelerate); when it is too shallow, late packets turn into `'underrun'`s, which
 * deepen it. A jump of more than `maxSeqJump` sequence numbers (a restarted sender, or a long
 * outage) re-syncs instead of reporting hundreds of losses.
 *
 * Hot path: `push` and `pop` allocate nothing. Reading `payload`/`nextPayload` creates one
 * subarray view per frame (cached until the next `pop`).
 */
import { seqDiff, tsDiff } from './Sequence.js';

export interface JitterBufferOptions {
  /** Audio per packet (Opus ptime). */
  frameDurationMs?: number;
  /** RTP clock rate of the payload (Opus: 48000, RFC 7587 §4.1). */
  clockRate?: number;
  /** Delay before the first frame plays, and the target until jitter has been measured. */
  initialDelayMs?: number;
  minDelayMs?: number;
  maxDelayMs?: number;
  /** Packets the buffer can hold; when a packet arrives this far ahead, the oldest are discarded. */
  capacity?: number;
  /** Bytes per slot; larger packets are refused as `'too_large'`. */
  maxPayloadBytes?: number;
  /** Consecutive empty pops after which the buffer starts buffering again. */
  underrunsBeforeRebuffer?: number;
  /** A sequence jump larger than this (either way) is a new stream, not loss or reordering. */
  maxSeqJump?: number;
  /** How long the buffer must stay ≥ 2 frames over target before one frame is discarded. */
  catchUpAfterMs?: number;
}

export const JITTER_BUFFER_DEFAULTS: Readonly<Required<JitterBufferOptions>> = Object.freeze({
  frameDurationMs: 20,
  clockRate: 48_000,
  initialDelayMs: 40,
  minDelayMs: 20,
  maxDelayMs: 200,
  capacity: 64,
  maxPayloadBytes: 1500,
  underrunsBeforeRebuffer: 3,
  maxSeqJump: 100,
  catchUpAfterMs: 200,
});

export type PushResult = 'accepted' | 'late' | 'duplicate' | 'too_large';
export type PopKind = 'frame' | 'lost' | 'underrun' | 'buffering' | 'stretch';

export interface JitterBufferStats {
  /** Every packet pushed, whatever became of it. */
  received: number;
  /** Arrived after its frame was played, lost or skipped (including duplicates of played frames). */
  late: number;
  /** Arrived while an identical sequence number was still buffered. */
  duplicate: number;
  /** `'lost'` pops. */
  lost: number;
  /** `'underrun'` pops. */
  underruns: number;
  /** Buffered frames thrown away: catching up, overflow, or re-sync. */
  discarded: number;
  tooLarge: number;
  /** `'stretch'` pops: frames of delay added for lip sync. */
  stretched: number;
}

/**
 * Extended sequence numbers start here (a multiple of 2^16, so the low 16 bits stay the real
 * sequence number) to keep them positive when the playout point moves back before the anchor.
 */
const EXT_BASE = 1 << 24;
const EMPTY = new Uint8Array(0);
/** Fields per slot in `#slots`: extended sequence number, payload length, level, timestamp. */
const SLOT_FIELDS = 4;
/** Bytes per slot until a larger payload arrives. */
const INITIAL_STRIDE = 256;

export class JitterBuffer {
  readonly stats: JitterBufferStats = { received: 0, late: 0, duplicate: 0, lost: 0, underruns: 0, discarded: 0, tooLarge: 0, stretched: 0 };

  readonly #frameMs: number;
  readonly #clockRate: number;
  readonly #initialDelayMs: number;
  readonly #minDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #capacity: number;
  readonly #maxPayload: number;
  readonly #underrunsBeforeRebuffer: number;
  readonly #maxSeqJump: number;
  readonly #catchUpAfterMs: number;

  // Slots: slot i holds the packet whose extended sequence number ≡ i (mod capacity), its payload
  // at `i × #stride` of the pool. The stride starts small (an Opus frame is tens to a few hundred
  // bytes) and grows, up to `maxPayloadBytes`, with the first packet that needs it: a mixer keeps
  // one buffer per participant, and a pool of 64 × 1500 bytes each is megabytes of memory that
  // every push touches a new line and page of.
  #pool: Uint8Array;
  #stride: number;
  /**
   * Each slot's fields side by side (one cache line touched per packet, not one per field), at
   * `slot × SLOT_FIELDS`: its extended sequence number (-1 when empty), payload length, RFC 6464
   * byte and RTP timestamp.
   */
  readonly #slots: Float64Array;

  // Playout state, in extended sequence numbers.
  #anchored = false;
  #playing = false;
  /** Next frame to play. */
  #head = 0;
  /** Highest buffered frame (meaningful when #count > 0). */
  #highest = 0;
  #count = 0;
  /** Frames below this were played, lost or discarded: arriving now, they are late. */
  #floor = -Infinity;
  /** RFC 3550 A.1 `bad_seq`: a far-behind jump is believed when the next packet follows it. */
  #badSeq = -1;
  #emptyUnderruns = 0;
  /** Pops spent waiting for a missing frame at the playout point. */
  #waitedFrames = 0;
  #overTargetSinceMs = -1;
  /**
   * Lip-sync delay in frames on top of the jitter target: wanted, and in force (what the buffer
   * has been stretched by, or was filled with). Counting them keeps the delay exact whatever the
   * jitter target does meanwhile.
   */
  #syncWantFrames = 0;
  #syncFrames = 0;
  #lastSyncMoveMs = -Infinity;

  // Jitter estimate (RFC 3550 A.8, in ms).
  #jitterMs = 0;
  #targetDelayMs = 0;
  #hasLastArrival = false;
  #lastArrivalMs = 0;
  #lastTimestamp = 0;

  // Result of the last pop.
  #outSlot = -1;
  #outLevel = -1;
  #outTimestamp = -1;
  #outView: Uint8Array | null = null;
  #nextSlot = -1;
  #nextView: Uint8Array | null = null;

  constructor(opts: JitterBufferOptions = {}) {
    const o = { ...JITTER_BUFFER_DEFAULTS, ...opts };
    if (!(o.frameDurationMs > 0) || !(o.clockRate > 0)) throw new RangeError('frameDurationMs and clockRate must be > 0');
    if (!Number.isInteger(o.capacity) || o.capacity < 2) throw new RangeError(`capacity ${o.capacity} must be an integer >= 2`);
    if (!Number.isInteger(o.maxPayloadBytes) || o.maxPayloadBytes < 1) throw new RangeError('maxPayloadBytes must be a positive integer');
    if (o.minDelayMs > o.maxDelayMs) throw new RangeError(`minDelayMs ${o.minDelayMs} exceeds maxDelayMs ${o.maxDelayMs}`);
    this.#frameMs = o.frameDurationMs;
    this.#clockRate = o.clockRate;
    this.#initialDelayMs = o.initialDelayMs;
    this.#minDelayMs = o.minDelayMs;
    this.#maxDelayMs = o.maxDelayMs;
    this.#capacity = o.capacity;
    this.#maxPayload = o.maxPayloadBytes;
    this.#underrunsBeforeRebuffer = Math.max(1, o.underrunsBeforeRebuffer);
    this.#maxSeqJump = o.maxSeqJump;
    this.#catchUpAfterMs = o.catchUpAfterMs;
    this.#stride = Math.min(INITIAL_STRIDE, o.maxPayloadBytes);
    this.#pool = new Uint8Array(o.capacity * this.#stride);
    this.#slots = new Float64Array(o.capacity * SLOT_FIELDS).fill(-1);
    this.#resetJitter();
  }

  /**
   * Files one packet. The payload bytes `[payloadOffset, payloadOffset + payloadLength)` of
   * `payload` are copied, so a receive loop can pass the whole datagram with the offsets from
   * `parseRtp` and reuse it right after. `audioLevel` is the RFC 6464 byte from `readAudioLevel`
   * (-1 when none). Throws RangeError only when the offsets do not fit `payload` (a caller bug).
   */
  push(
    seq: number,
    timestamp: number,
    payload: Uint8Array,
    arrivalMs: number,
    audioLevel = -1,
    payloadOffset = 0,
    payloadLength: number = payload.length - payloadOffset,
  ): PushResult {
    this.stats.received++;
    if (payloadOffset < 0 || payloadLength < 0 || payloadOffset + payloadLength > payload.length) {
      throw new RangeError(`payload bytes ${payloadOffset}+${payloadLength} exceed the ${payload.length}-byte buffer`);
    }
    if (payloadLength > this.#maxPayload) {
      this.stats.tooLarge++;
      return 'too_large';
    }
    seq &= 0xffff;
    if (!this.#anchored) this.#resync(seq);

    let d = seqDiff(seq, this.#head & 0xffff);
    if (d > this.#maxSeqJump || d < -this.#maxSeqJump) {
      if (d > 0 || seq === this.#badSeq) {
        this.#resync(seq);
        d = 0;
      } else {
        this.#badSeq = (seq + 1) & 0xffff;
        this.stats.late++;
        return 'late';
      }
    }
    const ext = this.#head + d;
    if (ext < this.#floor) return this.#late(timestamp, arrivalMs);
    if (ext < this.#head) {
      // Before the first frame plays, a reordered packet may move the start back.
      if (this.#playing || (this.#count > 0 && this.#highest - ext >= this.#capacity)) return this.#late(timestamp, arrivalMs);
      this.#head = ext;
    } else if (!this.#playing && this.#count === 0) {
      // Re-sync: after a rebuffer, play from the first packet that comes, and do not report the
      // gap (the mixer already concealed it as underruns) as losses.
      this.#head = ext;
    }
    if (ext - this.#head >= this.#capacity) this.#dropOldestUntil(ext - this.#capacity + 1);

    const slot = ext % this.#capacity;
    if (this.#slots[slot * SLOT_FIELDS] === ext) {
      this.stats.duplicate++;
      return 'duplicate';
    }
    if (payloadLength > this.#stride) this.#widen(payloadLength);
    const start = slot * this.#stride;
    if (payloadOffset === 0 && payloadLength === payload.length) {
      this.#pool.set(payload, start);
    } else {
      // A byte loop: `set(subarray())` and `Buffer#copy` with offsets both allocate a view.
      const pool = this.#pool;
      for (let i = 0; i < payloadLength; i++) pool[start + i] = payload[payloadOffset + i];
    }
    this.#slots[slot * SLOT_FIELDS] = ext;
    this.#slots[slot * SLOT_FIELDS + 1] = payloadLength;
    this.#slots[slot * SLOT_FIELDS + 2] = audioLevel;
    this.#slots[slot * SLOT_FIELDS + 3] = timestamp >>> 0;
    this.#highest = this.#count === 0 || ext > this.#highest ? ext : this.#highest;
    this.#count++;
    this.#observeArrival(timestamp, arrivalMs);
    return 'accepted';
  }

  /** Advances playout by one frame; see the class comment for what each kind means. */
  pop(nowMs: number): PopKind {
    this.#outSlot = -1;
    this.#outLevel = -1;
    this.#outTimestamp = -1;
    this.#outView = null;
    this.#nextSlot = -1;
    this.#nextView = null;

    if (!this.#playing) {
      if (this.#syncFrames !== this.#syncWantFrames) {
        // Filling up anyway: take the whole lip-sync delay at once.
        this.#syncFrames = this.#syncWantFrames;
        this.#updateTarget();
      }
      if (this.#count === 0 || this.depthMs < this.#targetDelayMs) return 'buffering';
      this.#playing = true;
      this.#emptyUnderruns = 0;
      this.#overTargetSinceMs = -1;
    }
    if (this.#count === 0) {
      this.stats.underruns++;
      this.#waitedFrames = 0;
      if (++this.#emptyUnderruns >= this.#underrunsBeforeRebuffer) {
        this.#playing = false;
        this.#emptyUnderruns = 0;
      }
      return 'underrun';
    }
    this.#emptyUnderruns = 0;
    if (this.#stretch(nowMs)) return 'stretch';
    this.#catchUp(nowMs);

    const slot = this.#head % this.#capacity;
    if (this.#slots[slot * SLOT_FIELDS] === this.#head) {
      this.#waitedFrames = 0;
      this.#outSlot = slot;
      this.#outLevel = this.#slots[slot * SLOT_FIELDS + 2];
      this.#outTimestamp = this.#slots[slot * SLOT_FIELDS + 3];
      this.#slots[slot * SLOT_FIELDS] = -1;
      this.#count--;
      this.#advanceHead();
      return 'frame';
    }
    // The frame at the playout point is missing but newer ones are buffered. Wait for it while
    // the buffer is shallower than the target (it may just be reordered), but never longer than
    // the target in total (the sender may have stopped right after the hole); then give it up.
    if (this.depthMs < this.#targetDelayMs && (this.#waitedFrames + 1) * this.#frameMs < this.#targetDelayMs) {
      this.#waitedFrames++;
      this.stats.underruns++;
      return 'underrun';
    }
    this.#waitedFrames = 0;
    this.stats.lost++;
    this.#advanceHead();
    const next = this.#head % this.#capacity;
    if (this.#slots[next * SLOT_FIELDS] === this.#head) this.#nextSlot = next;
    return 'lost';
  }

  /** After `pop() === 'frame'`: the frame's payload, a view into its slot valid until the next push/pop. Empty otherwise. */
  get payload(): Uint8Array {
    if (this.#outSlot < 0) return EMPTY;
    this.#outView ??= this.#view(this.#outSlot);
    return this.#outView;
  }

  /** After `pop() === 'frame'`: its RFC 6464 byte (`(vad << 7) | level`), -1 when none. */
  get audioLevel(): number {
    return this.#outLevel;
  }

  /** After `pop() === 'frame'`: its RTP timestamp, -1 otherwise (lip sync maps it to the sender's clock). */
  get timestamp(): number {
    return this.#outTimestamp;
  }

  /** After `pop() === 'lost'`: the payload of the frame after the lost one when already buffered (for FEC), else null. */
  get nextPayload(): Uint8Array | null {
    if (this.#nextSlot < 0) return null;
    this.#nextView ??= this.#view(this.#nextSlot);
    return this.#nextView;
  }

  /**
   * RFC 6464 byte of the frame at the playout point (the one the next `pop` plays if it plays
   * one), -1 when that frame is missing or carried no level: speaker selection without decoding.
   */
  peekAudioLevel(): number {
    if (this.#count === 0) return -1;
    const slot = this.#head % this.#capacity;
    return this.#slots[slot * SLOT_FIELDS] === this.#head ? this.#slots[slot * SLOT_FIELDS + 2] : -1;
  }

  /** Current target playout delay, a whole number of frames (lip-sync delay included). */
  get targetDelayMs(): number {
    return this.#targetDelayMs;
  }

  /**
   * Extra playout delay so that this audio meets video that arrives later (lip sync), rounded to
   * whole frames and added to the jitter target. The buffer reaches a raised target by
   * `'stretch'` pops and a lowered one by catching up, one frame per `catchUpAfterMs` either way.
   */
  get syncDelayMs(): number {
    return this.#syncWantFrames * this.#frameMs;
  }

  set syncDelayMs(ms: number) {
    this.#syncWantFrames = Math.max(0, Math.round((Number.isFinite(ms) ? ms : 0) / this.#frameMs));
  }

  /** The part of the lip-sync delay already in force (it moves towards `syncDelayMs` one frame at a time). */
  get syncDelayAppliedMs(): number {
    return this.#syncFrames * this.#frameMs;
  }

  /** Buffered span from the playout point to the newest packet, holes included. */
  get depthMs(): number {
    return this.#count === 0 ? 0 : (this.#highest - this.#head + 1) * this.#frameMs;
  }

  /** Interarrival jitter estimate (RFC 3550 A.8) in ms. */
  get jitterMs(): number {
    return this.#jitterMs;
  }

  /**
   * Starts a new stream (e.g. the sender's SSRC changed): empty, buffering, initial target.
   * `stats` keep counting, so they stay monotonic counters for metrics.
   */
  reset(): void {
    this.#slots.fill(-1);
    this.#anchored = false;
    this.#playing = false;
    this.#count = 0;
    this.#head = 0;
    this.#highest = 0;
    this.#floor = -Infinity;
    this.#badSeq = -1;
    this.#emptyUnderruns = 0;
    this.#waitedFrames = 0;
    this.#overTargetSinceMs = -1;
    this.#outSlot = -1;
    this.#outLevel = -1;
    this.#outTimestamp = -1;
    this.#outView = null;
    this.#nextSlot = -1;
    this.#nextView = null;
    this.#lastSyncMoveMs = -Infinity;
    this.#resetJitter();
  }

  /** A larger stride for a payload of `bytes` (at most `maxPayloadBytes`); buffered payloads move along. */
  #widen(bytes: number): void {
    let stride = this.#stride;
    while (stride < bytes) stride *= 2;
    stride = Math.min(stride, this.#maxPayload);
    const pool = new Uint8Array(this.#capacity * stride);
    for (let slot = 0; slot < this.#capacity; slot++) {
      if (this.#slots[slot * SLOT_FIELDS] < 0) continue;
      const from = slot * this.#stride;
      pool.set(this.#pool.subarray(from, from + this.#slots[slot * SLOT_FIELDS + 1]), slot * stride);
    }
    this.#pool = pool;
    this.#stride = stride;
  }

  #view(slot: number): Uint8Array {
    const start = slot * this.#stride;
    return this.#pool.subarray(start, start + this.#slots[slot * SLOT_FIELDS + 1]);
  }

  #advanceHead(): void {
    this.#head++;
    this.#floor = this.#head;
  }

  #late(timestamp: number, arrivalMs: number): PushResult {
    this.stats.late++;
    // A late packet is the clearest evidence of jitter: let it raise the estimate.
    this.#observeArrival(timestamp, arrivalMs);
    return 'late';
  }

  /** Starts over at `seq`: a new sender, or one so far from the old position that it is one. */
  #resync(seq: number): void {
    this.stats.discarded += this.#count;
    this.#slots.fill(-1);
    this.#count = 0;
    this.#anchored = true;
    this.#playing = false;
    this.#head = EXT_BASE + seq;
    this.#highest = this.#head;
    this.#floor = -Infinity;
    this.#badSeq = -1;
    this.#emptyUnderruns = 0;
    this.#waitedFrames = 0;
    this.#overTargetSinceMs = -1;
    // The new stream has its own timestamp base; don't compare across it.
    this.#hasLastArrival = false;
  }

  /** The buffer is full: discard frames below `newHead` to make room (oldest first). */
  #dropOldestUntil(newHead: number): void {
    const stop = Math.min(newHead, this.#head + this.#capacity);
    for (let e = this.#head; e < stop; e++) {
      const slot = e % this.#capacity;
      if (this.#slots[slot * SLOT_FIELDS] === e) {
        this.#slots[slot * SLOT_FIELDS] = -1;
        this.#count--;
        this.stats.discarded++;
      }
    }
    this.#head = newHead;
    this.#floor = newHead;
  }

  /**
   * Moves the lip-sync delay in force one frame towards the wanted one: holds the playout point
   * for a frame (returns true: a `'stretch'`), or discards the frame at the playout point when its
   * successor is here (never creating a loss). Only for lip sync: the jitter target grows by late
   * packets and shrinks by catching up.
   */
  #stretch(nowMs: number): boolean {
    if (this.#syncFrames === this.#syncWantFrames || nowMs - this.#lastSyncMoveMs < this.#catchUpAfterMs) return false;
    if (this.#syncFrames < this.#syncWantFrames) {
      this.#syncFrames++;
      this.#updateTarget();
      this.#lastSyncMoveMs = nowMs;
      this.#overTargetSinceMs = -1;
      this.stats.stretched++;
      return true;
    }
    const slot = this.#head % this.#capacity;
    if (this.#slots[slot * SLOT_FIELDS] !== this.#head || this.#slots[((this.#head + 1) % this.#capacity) * SLOT_FIELDS] !== this.#head + 1) return false;
    this.#slots[slot * SLOT_FIELDS] = -1;
    this.#count--;
    this.#advanceHead();
    this.stats.discarded++;
    this.#syncFrames--;
    this.#updateTarget();
    this.#lastSyncMoveMs = nowMs;
    this.#overTargetSinceMs = -1;
    return false;
  }

  /** Discards one frame when the buffer has run ≥ 2 frames over target for `catchUpAfterMs`. */
  #catchUp(nowMs: number): void {
    if (this.depthMs < this.#targetDelayMs + 2 * this.#frameMs) {
      this.#overTargetSinceMs = -1;
      return;
    }
    if (this.#overTargetSinceMs < 0) {
      this.#overTargetSinceMs = nowMs;
      return;
    }
    if (nowMs - this.#overTargetSinceMs < this.#catchUpAfterMs) return;
    const slot = this.#head % this.#capacity;
    const next = (this.#head + 1) % this.#capacity;
    // Only drop a frame whose successor is here, so catching up never creates a loss.
    if (this.#slots[slot * SLOT_FIELDS] !== this.#head || this.#slots[next * SLOT_FIELDS] !== this.#head + 1) return;
    this.#slots[slot * SLOT_FIELDS] = -1;
    this.#count--;
    this.#advanceHead();
    this.stats.discarded++;
    this.#overTargetSinceMs = nowMs;
  }

  /** RFC 3550 A.8 in ms: D = (Rj − Ri) − (Sj − Si), J += (|D| − J) / 16, in arrival order. */
  #observeArrival(timestamp: number, arrivalMs: number): void {
    const ts = timestamp >>> 0;
    if (this.#hasLastArrival) {
      const d = arrivalMs - this.#lastArrivalMs - (tsDiff(ts, this.#lastTimestamp) * 1000) / this.#clockRate;
      // One freeze should not pin the target at the maximum for seconds: cap a single sample.
      const sample = Math.min(Math.abs(d), this.#maxDelayMs);
      this.#jitterMs += (sample - this.#jitterMs) / 16;
      this.#updateTarget();
    }
    this.#hasLastArrival = true;
    this.#lastArrivalMs = arrivalMs;
    this.#lastTimestamp = ts;
  }

  #updateTarget(): void {
    const wanted = this.#frameMs + 3 * this.#jitterMs;
    const clamped = Math.min(this.#maxDelayMs, Math.max(this.#minDelayMs, wanted));
    const jitterTargetMs = Math.max(this.#frameMs, Math.round(clamped / this.#frameMs) * this.#frameMs);
    this.#targetDelayMs = jitterTargetMs + this.#syncFrames * this.#frameMs;
  }

  #resetJitter(): void {
    // Seed the estimate so the target starts at the initial delay and adapts from there.
    this.#jitterMs = Math.max(0, (this.#initialDelayMs - this.#frameMs) / 3);
    this.#hasLastArrival = false;
    this.#updateTarget();
  }
}
