/**
 * The current group of pictures of one video stream: every packet since the start of the last
 * keyframe, as received (protected), so a new viewer or a new child relay can start decoding at
 * once instead of asking the mixer for a keyframe (which every other viewer would then pay for in
 * bitrate).
 *
 * One slab of `maxBytes`, allocated at the first keyframe and reused: a keyframe start rewinds
 * it. A group larger than the slab is not cached at all (half a group is useless to a decoder)
 * until the next keyframe.
 */
export class GopCache {
  readonly maxBytes: number;
  #slab: Uint8Array | null = null;
  readonly #offsets: number[] = [];
  readonly #lengths: number[] = [];
  #used = 0;
  #valid = false;
  /** Groups not cached because they outgrew `maxBytes`. */
  overflows = 0;

  constructor(maxBytes: number) {
    if (!Number.isInteger(maxBytes) || maxBytes < 1) throw new RangeError('GopCache maxBytes must be a positive integer');
    this.maxBytes = maxBytes;
  }

  /** Bytes cached now. */
  get bytes(): number {
    return this.#valid ? this.#used : 0;
  }

  /** Packets cached now (0 while no complete group is cached). */
  get packetCount(): number {
    return this.#valid ? this.#offsets.length : 0;
  }

  /** Starts a new group with this keyframe packet. */
  startKeyframe(packet: Uint8Array, length: number): void {
    this.#slab ??= new Uint8Array(this.maxBytes);
    this.#offsets.length = 0;
    this.#lengths.length = 0;
    this.#used = 0;
    this.#valid = true;
    this.append(packet, length);
  }

  /** Adds a packet of the current group (ignored while no keyframe started one). */
  append(packet: Uint8Array, length: number): void {
    if (!this.#valid) return;
    if (this.#used + length > this.maxBytes || length > packet.length) {
      this.#valid = false;
      this.#offsets.length = 0;
      this.#lengths.length = 0;
      this.#used = 0;
      this.overflows++;
      return;
    }
    const slab = this.#slab!;
    if (length === packet.length) slab.set(packet, this.#used);
    else slab.set(packet.subarray(0, length), this.#used);
    this.#offsets.push(this.#used);
    this.#lengths.push(length);
    this.#used += length;
  }

  /** The i-th cached packet, in arrival order: a view valid until the next keyframe. */
  packet(i: number): Uint8Array {
    const o = this.#offsets[i];
    return this.#slab!.subarray(o, o + this.#lengths[i]);
  }

  clear(): void {
    this.#valid = false;
    this.#offsets.length = 0;
    this.#lengths.length = 0;
    this.#used = 0;
  }
}
