/**
 * The last N packets sent on one stream, by sequence number, so a relay can answer a generic
 * NACK (RFC 4585 §6.2.1) from its own memory instead of forwarding it upstream (DESIGN.md:
 * "relays answer NACKs from their own retransmission buffer"). Retransmitting needs the whole
 * packet as sent, so whole packets are stored. Answering with RTX (RFC 4588) is the caller's
 * job: it rewraps what `get` returns.
 *
 * Slot = seq mod capacity with a power-of-two capacity, so 65536 is a multiple of it and the
 * slot of a sequence number stays the same across the 65535 → 0 wrap. Each slot remembers which
 * seq it holds: once a newer packet has taken the slot, the old one is gone.
 */
export interface RetransmissionBufferOptions {
  /** Packets kept; a power of two, at most 65536. 512 is ~1.7 s of 2.5 Mbit/s video at 1200-byte packets. */
  capacity?: number;
  /** Largest packet stored; larger ones are refused (`store` returns false). */
  maxPacketBytes?: number;
}

export const RETRANSMISSION_BUFFER_DEFAULTS: Readonly<Required<RetransmissionBufferOptions>> = Object.freeze({
  capacity: 512,
  maxPacketBytes: 1500,
});

export class RetransmissionBuffer {
  readonly capacity: number;
  readonly maxPacketBytes: number;
  readonly #mask: number;
  readonly #pool: Uint8Array;
  readonly #slotSeq: Int32Array; // -1 when empty
  readonly #slotLength: Int32Array;

  constructor(opts: RetransmissionBufferOptions = {}) {
    const o = { ...RETRANSMISSION_BUFFER_DEFAULTS, ...opts };
    if (!Number.isInteger(o.capacity) || o.capacity < 1 || o.capacity > 65536 || (o.capacity & (o.capacity - 1)) !== 0) {
      throw new RangeError(`capacity ${o.capacity} must be a power of two between 1 and 65536`);
    }
    if (!Number.isInteger(o.maxPacketBytes) || o.maxPacketBytes < 1) throw new RangeError('maxPacketBytes must be a positive integer');
    this.capacity = o.capacity;
    this.maxPacketBytes = o.maxPacketBytes;
    this.#mask = o.capacity - 1;
    this.#pool = new Uint8Array(o.capacity * o.maxPacketBytes);
    this.#slotSeq = new Int32Array(o.capacity).fill(-1);
    this.#slotLength = new Int32Array(o.capacity);
  }

  /**
   * Copies the first `length` bytes of `packet` into the slot of `seq`, replacing whatever was
   * there. Returns false (storing nothing) when the packet is larger than a slot or `length`
   * exceeds `packet`: the forward path counts that and goes on.
   */
  store(seq: number, packet: Uint8Array, length: number = packet.length): boolean {
    if (length > this.maxPacketBytes || length < 0 || length > packet.length) return false;
    const s = seq & 0xffff;
    const slot = s & this.#mask;
    const start = slot * this.maxPacketBytes;
    if (length === packet.length) this.#pool.set(packet, start);
    else for (let i = 0; i < length; i++) this.#pool[start + i] = packet[i];
    this.#slotSeq[slot] = s;
    this.#slotLength[slot] = length;
    return true;
  }

  /** The stored packet (a view into its slot, valid until that slot is overwritten), or null. */
  get(seq: number): Uint8Array | null {
    const s = seq & 0xffff;
    const slot = s & this.#mask;
    if (this.#slotSeq[slot] !== s) return null;
    const start = slot * this.maxPacketBytes;
    return this.#pool.subarray(start, start + this.#slotLength[slot]);
  }

  /** Forgets everything (e.g. the stream restarted with a new sequence space). */
  clear(): void {
    this.#slotSeq.fill(-1);
  }
}
