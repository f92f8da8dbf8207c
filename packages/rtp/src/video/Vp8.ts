/**
 * VP8 over RTP, RFC 7741: the payload descriptor (§4.2), the payload header and keyframe header
 * of the VP8 bitstream (§4.3, RFC 6386 §9.1), and the packetizer for our own encoded frames.
 *
 * ```
 *  |X|R|N|S|R| PID |   X: extensions follow; N: non-reference frame; S: start of a partition
 *  |I|L|T|K| RSV   |   (if X)  I: PictureID, L: TL0PICIDX, T: TID/Y, K: KEYIDX
 *  |M| PictureID   |   (if I)  M = 1: 15-bit PictureID, one more byte
 *  |   TL0PICIDX   |   (if L)
 *  |TID|Y| KEYIDX  |   (if T or K)
 * ```
 * A frame is the packets with one RTP timestamp; the first has S = 1 and PID = 0, the last has
 * the RTP marker bit.
 */

/** The fields of one payload descriptor; reusable, `parseVp8Descriptor` overwrites every field. */
export class Vp8Descriptor {
  nonReference = false;
  /** S: this packet starts a partition. */
  start = false;
  partitionId = 0;
  /** -1 when absent. */
  pictureId = -1;
  /** 7 or 15; 0 when absent. */
  pictureIdBits = 0;
  /** -1 when absent. */
  tl0PicIdx = -1;
  /** -1 when absent. */
  temporalId = -1;
  layerSync = false;
  /** -1 when absent. */
  keyIdx = -1;
  /** Bytes of descriptor before the VP8 payload. */
  length = 0;

  /** First packet of a frame: start of partition 0 (RFC 7741 §4.4). */
  get startsFrame(): boolean {
    return this.start && this.partitionId === 0;
  }
}

/**
 * Parses the descriptor at `buf[offset .. offset + length)` into `out`. Returns the descriptor
 * length, or -1 when it runs past the payload or leaves no VP8 data behind it. Never throws.
 */
export function parseVp8Descriptor(buf: Uint8Array, offset: number, length: number, out: Vp8Descriptor): number {
  const end = Math.min(offset + length, buf.length);
  if (!(offset >= 0 && end > offset)) return -1;
  let o = offset;
  const b0 = buf[o++];
  let pictureId = -1;
  let pictureIdBits = 0;
  let tl0PicIdx = -1;
  let temporalId = -1;
  let layerSync = false;
  let keyIdx = -1;
  if ((b0 & 0x80) !== 0) {
    if (o >= end) return -1;
    const x = buf[o++];
    if ((x & 0x80) !== 0) {
      if (o >= end) return -1;
      const p0 = buf[o++];
      if ((p0 & 0x80) !== 0) {
        if (o >= end) return -1;
        pictureId = ((p0 & 0x7f) << 8) | buf[o++];
        pictureIdBits = 15;
      } else {
        pictureId = p0;
        pictureIdBits = 7;
      }
    }
    if ((x & 0x40) !== 0) {
      if (o >= end) return -1;
      tl0PicIdx = buf[o++];
    }
    if ((x & 0x30) !== 0) {
      if (o >= end) return -1;
      const t = buf[o++];
      if ((x & 0x20) !== 0) {
        temporalId = t >> 6;
        layerSync = (t & 0x20) !== 0;
      }
      if ((x & 0x10) !== 0) keyIdx = t & 0x1f;
    }
  }
  if (o >= end) return -1; // a descriptor with no VP8 data behind it
  out.nonReference = (b0 & 0x20) !== 0;
  out.start = (b0 & 0x10) !== 0;
  out.partitionId = b0 & 0x07;
  out.pictureId = pictureId;
  out.pictureIdBits = pictureIdBits;
  out.tl0PicIdx = tl0PicIdx;
  out.temporalId = temporalId;
  out.layerSync = layerSync;
  out.keyIdx = keyIdx;
  out.length = o - offset;
  return out.length;
}

/** RFC 6386 §9.1: bit 0 of the first byte of a frame (P, "show_frame" is bit 4) is 0 on keyframes. */
export function isVp8KeyframeData(frame: Uint8Array, offset = 0): boolean {
  return offset < frame.length && (frame[offset] & 0x01) === 0;
}

/**
 * Width and height from a keyframe's header (RFC 6386 §9.1: 3-byte frame tag, start code
 * 9d 01 2a, then 14-bit width and height, each with a 2-bit scale in the top bits). Writes them
 * into `out[0..1]` and returns true, or returns false for an interframe or a truncated header.
 */
export function readVp8Dimensions(frame: Uint8Array, offset: number, length: number, out: Int32Array | number[]): boolean {
  if (length < 10 || offset + 10 > frame.length) return false;
  if ((frame[offset] & 0x01) !== 0) return false;
  if (frame[offset + 3] !== 0x9d || frame[offset + 4] !== 0x01 || frame[offset + 5] !== 0x2a) return false;
  out[0] = (frame[offset + 6] | (frame[offset + 7] << 8)) & 0x3fff;
  out[1] = (frame[offset + 8] | (frame[offset + 9] << 8)) & 0x3fff;
  return out[0] > 0 && out[1] > 0;
}

export interface Vp8PacketizerOptions {
  /** Largest RTP payload (descriptor + VP8 data) to produce. Default 1188: 1200-byte packets with a 12-byte RTP header. */
  maxPayloadBytes?: number;
  /** First PictureID (15-bit); random by default (RFC 7741 §4.2 recommends a random start). */
  initialPictureId?: number;
}

/** Receives one RTP payload; `payload` is reused by the next call, copy it to keep it. */
export type PayloadSink = (payload: Uint8Array, length: number, lastOfFrame: boolean) => void;

/** Bytes of the descriptor we write: X, I with a 15-bit PictureID. */
const VP8_DESCRIPTOR_BYTES = 4;

/**
 * Splits encoded frames into RTP payloads. Every packet carries X = 1, I = 1 with a 15-bit
 * PictureID (one per frame, so a receiver can tell which frame a loss hit, RFC 7741 §4.2), the
 * first packet S = 1, PID = 0. The frame is spread evenly over the fewest packets that fit, so
 * no packet is a small runt (as libwebrtc does).
 */
export class Vp8Packetizer {
  readonly maxPayloadBytes: number;
  private pictureId: number;
  private readonly scratch: Uint8Array;

  constructor(opts: Vp8PacketizerOptions = {}) {
    this.maxPayloadBytes = opts.maxPayloadBytes ?? 1188;
    if (!Number.isInteger(this.maxPayloadBytes) || this.maxPayloadBytes <= VP8_DESCRIPTOR_BYTES) {
      throw new RangeError(`maxPayloadBytes ${this.maxPayloadBytes} leaves no room after the ${VP8_DESCRIPTOR_BYTES}-byte descriptor`);
    }
    this.pictureId = (opts.initialPictureId ?? Math.floor(Math.random() * 0x8000)) & 0x7fff;
    this.scratch = new Uint8Array(this.maxPayloadBytes);
  }

  /** PictureID the next frame gets. */
  get nextPictureId(): number {
    return this.pictureId;
  }

  /** Packetizes `frame[0 .. length)`; returns the number of payloads given to `sink`. */
  packetize(frame: Uint8Array, length: number, sink: PayloadSink): number {
    if (length <= 0) return 0;
    const room = this.maxPayloadBytes - VP8_DESCRIPTOR_BYTES;
    const packets = Math.ceil(length / room);
    const base = Math.floor(length / packets);
    const extra = length % packets; // the first `extra` packets carry one byte more
    const out = this.scratch;
    const pid = this.pictureId;
    this.pictureId = (pid + 1) & 0x7fff;
    let offset = 0;
    for (let i = 0; i < packets; i++) {
      const n = base + (i < extra ? 1 : 0);
      out[0] = 0x80 | (i === 0 ? 0x10 : 0); // X, S on the first packet, PID 0
      out[1] = 0x80; // I
      out[2] = 0x80 | (pid >> 8); // M = 1: 15-bit PictureID
      out[3] = pid & 0xff;
      out.set(frame.subarray(offset, offset + n), VP8_DESCRIPTOR_BYTES);
      offset += n;
      sink(out, VP8_DESCRIPTOR_BYTES + n, i === packets - 1);
    }
    return packets;
  }
}
