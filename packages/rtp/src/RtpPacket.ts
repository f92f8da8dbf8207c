/**
 * RTP fixed header, RFC 3550 §5.1, parsed and written in place.
 *
 * ```
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * |V=2|P|X|  CC   |M|     PT      |       sequence number         |
 * |                           timestamp                           |
 * |           synchronization source (SSRC) identifier            |
 * |            contributing source (CSRC) identifiers  (CC × 32)  |
 * |  defined by profile (16)      |        length (16, words)     |   if X (§5.3.1)
 * |                        header extension                       |
 * |                     payload ... [padding, last byte = count]  |   if P
 * ```
 *
 * The receive path keeps one {@link RtpHeader} and parses every packet into it: no object,
 * view or closure is created per packet, and malformed input is reported, never thrown.
 */
import { headerExtensionDataLength, writeHeaderExtensionBlock } from './HeaderExtensions.js';
import type { HeaderExtension } from './HeaderExtensions.js';

/** Why a received packet was dropped; used as the `reason` label of the drop counter. */
export type RtpDropReason = 'too_short' | 'bad_version' | 'bad_csrc_count' | 'bad_extension' | 'bad_padding';

/** RFC 3550 §5.1: the fixed part of the header. */
export const RTP_FIXED_HEADER_LENGTH = 12;

/**
 * The parsed fields of one packet. Mutable and reusable: `parseRtp` overwrites every field.
 * Offsets index the buffer that was parsed (a `Uint8Array` index, so independent of the
 * buffer's `byteOffset` in its `ArrayBuffer`).
 */
export class RtpHeader {
  padding = false;
  marker = false;
  payloadType = 0;
  sequenceNumber = 0;
  timestamp = 0;
  ssrc = 0;
  csrcCount = 0;
  /** Only the first `csrcCount` entries belong to the current packet. */
  readonly csrcs = new Uint32Array(15);
  hasExtension = false;
  /** The 16-bit "defined by profile" field: 0xBEDE or 0x100X for RFC 8285 extensions. */
  extensionProfile = 0;
  /** Offset of the extension DATA (after the 4-byte extension header); 0 when absent. */
  extensionOffset = 0;
  /** Bytes of extension data (the header's length field × 4). */
  extensionLength = 0;
  payloadOffset = 0;
  /** Bytes of payload, excluding padding. */
  payloadLength = 0;
  /** Bytes of padding at the end (including the count byte); 0 when `padding` is false. */
  paddingLength = 0;
}

function readU32(b: Uint8Array, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}

function writeU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
}

/**
 * Parses the first `length` bytes of `buf` (clamped to the buffer) into `header`. Returns null
 * when the packet is well formed, otherwise the drop reason; `header` is left untouched on a
 * drop. Never throws.
 *
 * Checks, in order: at least 12 bytes; version 2; the CSRC list (CC × 4 bytes) fits; the
 * extension header and its declared length fit (RFC 8285 elements inside are checked lazily,
 * see `validateHeaderExtensions`); with P set, the padding count (last byte) is non-zero and
 * not larger than what follows the header (§5.1: "the last octet of the padding contains a
 * count of how many padding octets should be ignored, including itself").
 */
export function parseRtp(buf: Uint8Array, header: RtpHeader, length: number = buf.length): RtpDropReason | null {
  const len = length < buf.length ? length : buf.length;
  if (!(len >= RTP_FIXED_HEADER_LENGTH)) return 'too_short'; // also rejects NaN
  const b0 = buf[0];
  if (b0 >> 6 !== 2) return 'bad_version';
  const csrcCount = b0 & 0x0f;
  let offset = RTP_FIXED_HEADER_LENGTH + csrcCount * 4;
  if (offset > len) return 'bad_csrc_count';

  const hasExtension = (b0 & 0x10) !== 0;
  let extensionProfile = 0;
  let extensionOffset = 0;
  let extensionLength = 0;
  if (hasExtension) {
    if (offset + 4 > len) return 'bad_extension';
    extensionProfile = (buf[offset] << 8) | buf[offset + 1];
    extensionLength = ((buf[offset + 2] << 8) | buf[offset + 3]) * 4;
    extensionOffset = offset + 4;
    offset = extensionOffset + extensionLength;
    if (offset > len) return 'bad_extension';
  }

  const padding = (b0 & 0x20) !== 0;
  let paddingLength = 0;
  if (padding) {
    if (offset === len) return 'bad_padding'; // no byte left to hold the count
    paddingLength = buf[len - 1];
    if (paddingLength === 0 || paddingLength > len - offset) return 'bad_padding';
  }

  const b1 = buf[1];
  header.padding = padding;
  header.marker = (b1 & 0x80) !== 0;
  header.payloadType = b1 & 0x7f;
  header.sequenceNumber = (buf[2] << 8) | buf[3];
  header.timestamp = readU32(buf, 4);
  header.ssrc = readU32(buf, 8);
  header.csrcCount = csrcCount;
  for (let i = 0; i < csrcCount; i++) header.csrcs[i] = readU32(buf, 12 + i * 4);
  header.hasExtension = hasExtension;
  header.extensionProfile = extensionProfile;
  header.extensionOffset = extensionOffset;
  header.extensionLength = extensionLength;
  header.payloadOffset = offset;
  header.payloadLength = len - offset - paddingLength;
  header.paddingLength = paddingLength;
  return null;
}

/** The fields of a packet to send. */
export interface RtpBuildFields {
  /** 0..127. */
  payloadType: number;
  /** Taken modulo 2^16, so a sender may keep counting past 65535. */
  sequenceNumber: number;
  /** Taken modulo 2^32. */
  timestamp: number;
  /** Taken modulo 2^32. */
  ssrc: number;
  marker?: boolean;
  /** Contributing sources (a mixer lists the speakers it mixed, RFC 3550 §7.1). */
  csrcs?: ArrayLike<number>;
  /** How many of `csrcs` to write (lets a mixer reuse one array); defaults to `csrcs.length`. */
  csrcCount?: number;
  /** RFC 8285 elements; one-byte form (0xBEDE) unless an id > 14 or a length of 0 or > 16 needs the two-byte form. */
  extensions?: readonly HeaderExtension[];
  /** Bytes of padding to append (1..255, count byte included), e.g. for SRTP length hiding; 0/absent = none. */
  paddingLength?: number;
}

function csrcCountOf(fields: RtpBuildFields): number {
  const available = fields.csrcs?.length ?? 0;
  const count = fields.csrcCount ?? available;
  if (!Number.isInteger(count) || count < 0 || count > 15 || count > available) {
    throw new RangeError(`csrcCount ${count} must be 0..15 and at most csrcs.length (${available})`);
  }
  return count;
}

/** Bytes `writeRtp` will write for these fields and payload length. */
export function rtpPacketLength(fields: RtpBuildFields, payloadLength: number): number {
  let n = RTP_FIXED_HEADER_LENGTH + csrcCountOf(fields) * 4 + payloadLength + (fields.paddingLength ?? 0);
  if (fields.extensions !== undefined && fields.extensions.length > 0) {
    n += 4 + headerExtensionDataLength(fields.extensions);
  }
  return n;
}

/**
 * Writes a packet into `out` and returns its length in bytes. Throws RangeError when `out` is
 * too small or a field is out of range: this builds our own output, not hot input.
 */
export function writeRtp(
  out: Uint8Array,
  fields: RtpBuildFields,
  payload: Uint8Array,
  payloadLength: number = payload.length,
): number {
  if (!Number.isInteger(fields.payloadType) || fields.payloadType < 0 || fields.payloadType > 127) {
    throw new RangeError(`payloadType ${fields.payloadType} is outside 0..127`);
  }
  if (!Number.isInteger(payloadLength) || payloadLength < 0 || payloadLength > payload.length) {
    throw new RangeError(`payloadLength ${payloadLength} is outside 0..${payload.length}`);
  }
  const paddingLength = fields.paddingLength ?? 0;
  if (!Number.isInteger(paddingLength) || paddingLength < 0 || paddingLength > 255) {
    throw new RangeError(`paddingLength ${paddingLength} is outside 0..255`);
  }
  const total = rtpPacketLength(fields, payloadLength);
  if (total > out.length) {
    throw new RangeError(`packet needs ${total} bytes but the output buffer has ${out.length}`);
  }
  const csrcCount = csrcCountOf(fields);
  const hasExtension = fields.extensions !== undefined && fields.extensions.length > 0;

  let offset = writeRtpHeader(out, fields.payloadType, fields.marker === true, fields.sequenceNumber, fields.timestamp, fields.ssrc, fields.csrcs ?? NO_CSRCS, csrcCount);
  out[0] |= (paddingLength > 0 ? 0x20 : 0) | (hasExtension ? 0x10 : 0);
  if (hasExtension) offset = writeHeaderExtensionBlock(out, offset, fields.extensions!);
  if (payloadLength === payload.length) out.set(payload, offset);
  else out.set(payload.subarray(0, payloadLength), offset);
  offset += payloadLength;
  if (paddingLength > 0) {
    out.fill(0, offset, offset + paddingLength - 1);
    offset += paddingLength;
    out[offset - 1] = paddingLength;
  }
  return offset;
}

const NO_CSRCS: ArrayLike<number> = [];

/**
 * Writes the fixed header and `csrcCount` CSRCs (no extension, no padding) at the start of `out`;
 * returns its length. The send path's form of `writeRtp`: nothing is checked (`out` must hold
 * 12 + 4 × csrcCount bytes, csrcCount ≤ 15, payloadType 0..127), nothing allocated; the payload
 * goes wherever the caller puts it (a batch gathers one shared payload behind many headers).
 * Sequence number and timestamps are taken modulo their field width.
 */
export function writeRtpHeader(
  out: Uint8Array,
  payloadType: number,
  marker: boolean,
  sequenceNumber: number,
  timestamp: number,
  ssrc: number,
  csrcs: ArrayLike<number>,
  csrcCount: number,
): number {
  out[0] = 0x80 | csrcCount;
  out[1] = (marker ? 0x80 : 0) | payloadType;
  out[2] = (sequenceNumber >> 8) & 0xff;
  out[3] = sequenceNumber & 0xff;
  writeU32(out, 4, timestamp >>> 0);
  writeU32(out, 8, ssrc >>> 0);
  let offset = RTP_FIXED_HEADER_LENGTH;
  for (let i = 0; i < csrcCount; i++, offset += 4) writeU32(out, offset, csrcs[i] >>> 0);
  return offset;
}

/** Builds a packet into a new Buffer (convenience for tests and control paths; allocates). */
export function buildRtp(fields: RtpBuildFields, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(rtpPacketLength(fields, payload.length));
  writeRtp(out, fields, payload);
  return out;
}

/**
 * RFC 5761 §4 demultiplexing of RTP and RTCP on one port: RTCP packet types 192..223 sit where
 * an RTP header has marker + payload type 64..95, which RTP must therefore not use.
 */
export function isRtcpPacket(buf: Uint8Array): boolean {
  if (buf.length < 2) return false;
  const pt = buf[1];
  return pt >= 192 && pt <= 223;
}

/** Header fields a forwarder may rewrite; absent fields are left as they are. */
export interface RtpRewrite {
  sequenceNumber?: number;
  timestamp?: number;
  ssrc?: number;
  payloadType?: number;
  marker?: boolean;
}

/**
 * Rewrites header fields in place (a relay maps each incoming stream onto its outgoing SSRC,
 * sequence and timestamp space, §7.3 of RFC 3550 for translators). Reuse one `RtpRewrite`
 * object per stream to keep the forward loop allocation-free. Returns false, touching nothing,
 * when `buf` is shorter than the fixed header; values are taken modulo their field width.
 */
export function rewriteRtpHeader(buf: Uint8Array, fields: RtpRewrite): boolean {
  if (buf.length < RTP_FIXED_HEADER_LENGTH) return false;
  if (fields.marker !== undefined || fields.payloadType !== undefined) {
    const marker = fields.marker ?? (buf[1] & 0x80) !== 0;
    const payloadType = fields.payloadType ?? buf[1] & 0x7f;
    buf[1] = (marker ? 0x80 : 0) | (payloadType & 0x7f);
  }
  if (fields.sequenceNumber !== undefined) {
    buf[2] = (fields.sequenceNumber >> 8) & 0xff;
    buf[3] = fields.sequenceNumber & 0xff;
  }
  if (fields.timestamp !== undefined) writeU32(buf, 4, fields.timestamp >>> 0);
  if (fields.ssrc !== undefined) writeU32(buf, 8, fields.ssrc >>> 0);
  return true;
}
