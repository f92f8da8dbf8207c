/**
 * Does this RTP payload start a keyframe? A relay needs the answer to cache the current group of
 * pictures (so a new viewer starts decoding at once) and to know that a keyframe request has been
 * served. Only the payload descriptor and the first bytes of the codec payload are read; nothing is
 * allocated and malformed payloads are simply "not a keyframe".
 *
 * Each function takes the payload as `buf[offset .. offset + length)`, so the forward path can
 * pass the received datagram and the offsets `parseRtp` found instead of a subarray.
 */

export type VideoCodec = 'vp8' | 'h264';

/**
 * RFC 7741 §4.2 payload descriptor, then §4.3 payload header.
 *
 * ```
 *  |X|R|N|S|R| PID |   X: extensions follow; S: start of a partition; PID: partition index
 *  |I|L|T|K| RSV   |   (if X)  I: PictureID, L: TL0PICIDX, T: TID/Y, K: KEYIDX
 *  |M| PictureID   |   (if I)  M = 1: 15-bit PictureID, one more byte
 *  |   TL0PICIDX   |   (if L)
 *  |TID|Y| KEYIDX  |   (if T or K)
 *  |Size0|H| VER |P|   payload header, only at the start of partition 0: P = 0 is a keyframe
 * ```
 */
export function isVp8Keyframe(payload: Uint8Array, offset = 0, length: number = payload.length - offset): boolean {
  const end = endOf(payload, offset, length);
  if (!(end > offset && offset >= 0)) return false; // also rejects NaN
  const b0 = payload[offset];
  // Start of partition 0 only: later packets of the frame carry no payload header.
  if ((b0 & 0x10) === 0 || (b0 & 0x07) !== 0) return false;
  let o = offset + 1;
  if ((b0 & 0x80) !== 0) {
    if (o >= end) return false;
    const x = payload[o++];
    if ((x & 0x80) !== 0) {
      if (o >= end) return false;
      o += (payload[o] & 0x80) !== 0 ? 2 : 1;
    }
    if ((x & 0x40) !== 0) o++;
    if ((x & 0x30) !== 0) o++;
  }
  if (o >= end) return false;
  return (payload[o] & 0x01) === 0;
}

/** End index of the payload, clamped to the buffer. */
function endOf(buf: Uint8Array, offset: number, length: number): number {
  const end = offset + length;
  return end < buf.length ? end : buf.length;
}

const H264_IDR = 5;
const H264_SPS = 7;
const H264_STAP_A = 24;
const H264_FU_A = 28;

function isH264KeyNal(type: number): boolean {
  return type === H264_IDR || type === H264_SPS;
}

/**
 * RFC 6184 §5.6–5.8: a single NAL unit of type 5 (IDR slice) or 7 (SPS, which encoders send
 * right before an IDR); a STAP-A aggregating one; or the first fragment (S bit) of an FU-A whose
 * original NAL type is one of them.
 *
 * ```
 *  |F|NRI| Type |                          NAL unit header (type 1..23 single, 24 STAP-A, 28 FU-A)
 *  STAP-A:  header | size(16) | NAL | size(16) | NAL ...
 *  FU-A:    indicator (F|NRI|28) | |S|E|R| Type | | fragment ...
 * ```
 */
export function isH264Keyframe(payload: Uint8Array, offset = 0, length: number = payload.length - offset): boolean {
  const end = endOf(payload, offset, length);
  if (!(end > offset && offset >= 0)) return false;
  const type = payload[offset] & 0x1f;
  if (type >= 1 && type <= 23) return isH264KeyNal(type);
  if (type === H264_STAP_A) {
    let o = offset + 1;
    while (o + 2 < end) {
      const size = (payload[o] << 8) | payload[o + 1];
      o += 2;
      if (size === 0 || o + size > end) return false;
      if (isH264KeyNal(payload[o] & 0x1f)) return true;
      o += size;
    }
    return false;
  }
  if (type === H264_FU_A) {
    if (end < offset + 2) return false;
    const fu = payload[offset + 1];
    return (fu & 0x80) !== 0 && isH264KeyNal(fu & 0x1f);
  }
  return false;
}

/**
 * True when this RTP payload (the bytes after the RTP header, `header.payloadOffset` and
 * `header.payloadLength` of a parsed packet) starts a keyframe of `codec`.
 */
export function isKeyframePacket(
  payload: Uint8Array,
  codec: VideoCodec,
  offset = 0,
  length: number = payload.length - offset,
): boolean {
  return codec === 'vp8' ? isVp8Keyframe(payload, offset, length) : isH264Keyframe(payload, offset, length);
}
