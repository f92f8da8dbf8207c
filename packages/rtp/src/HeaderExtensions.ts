/**
 * RTP header extensions, RFC 8285 ("A General Mechanism for RTP Header Extensions").
 *
 * The RFC 3550 §5.3.1 extension block is one opaque blob with a 16-bit profile. RFC 8285 splits
 * it into elements, each with a local id negotiated in SDP (`a=extmap`):
 *
 * - one-byte form (§4.2), profile 0xBEDE: each element starts with a byte `id(4) | len-1(4)`,
 *   so ids 1..14 carry 1..16 data bytes; id 15 is reserved and ends processing; zero bytes
 *   between elements are padding (id 0).
 * - two-byte form (§4.3), profile 0x100X (the low 4 bits are "appbits" for the application):
 *   each element starts with `id(8)`, `len(8)`, so ids 1..255 carry 0..255 data bytes; a zero
 *   id byte is padding.
 *
 * Lookups walk the elements in place and allocate nothing; a malformed element (one whose
 * length runs past the block) ends the walk, so it and everything after it count as absent.
 */
import type { RtpHeader } from './RtpPacket.js';

/** RFC 8285 §4.2 profile for the one-byte form. */
export const ONE_BYTE_PROFILE = 0xbede;
/** RFC 8285 §4.3 profile for the two-byte form, with appbits 0. */
export const TWO_BYTE_PROFILE = 0x1000;

/** One header extension element to send: a negotiated id and its data. */
export interface HeaderExtension {
  id: number;
  data: Uint8Array;
}

/**
 * Where an element's data lies in the packet. Reuse one instance per receive loop; a lookup
 * writes into it instead of allocating a result.
 */
export class ExtensionLocation {
  /** Byte offset of the element's data in the packet buffer, -1 when absent. */
  offset = -1;
  /** Bytes of data (two-byte elements may have 0). */
  length = 0;
}

function isTwoByteProfile(profile: number): boolean {
  return (profile & 0xfff0) === TWO_BYTE_PROFILE;
}

/**
 * Finds extension element `id` in a packet already parsed into `header`.
 *
 * Returns the byte offset of the element's data in `buf` (not of its element header), or -1 when
 * the packet has no RFC 8285 extension block, the id is not present, or the walk hits a
 * malformed element first. When `out` is given, its `offset` and `length` are set as well
 * (`-1`/`0` when absent): that is how the caller gets the length without an allocation.
 */
export function findHeaderExtension(
  buf: Uint8Array,
  header: RtpHeader,
  id: number,
  out?: ExtensionLocation,
): number {
  if (out !== undefined) {
    out.offset = -1;
    out.length = 0;
  }
  if (!header.hasExtension || id < 1) return -1;
  let i = header.extensionOffset;
  const end = i + header.extensionLength;
  if (end > buf.length) return -1;

  if (header.extensionProfile === ONE_BYTE_PROFILE) {
    if (id > 14) return -1;
    while (i < end) {
      const b = buf[i];
      if (b === 0) {
        i++; // padding between elements
        continue;
      }
      const elementId = b >> 4;
      if (elementId === 15) return -1; // §4.2: id 15 stops processing, its length is ignored
      const len = (b & 0x0f) + 1;
      if (i + 1 + len > end) return -1;
      if (elementId === id) {
        if (out !== undefined) {
          out.offset = i + 1;
          out.length = len;
        }
        return i + 1;
      }
      i += 1 + len;
    }
    return -1;
  }

  if (isTwoByteProfile(header.extensionProfile)) {
    if (id > 255) return -1;
    while (i < end) {
      const elementId = buf[i];
      if (elementId === 0) {
        i++;
        continue;
      }
      if (i + 2 > end) return -1;
      const len = buf[i + 1];
      if (i + 2 + len > end) return -1;
      if (elementId === id) {
        if (out !== undefined) {
          out.offset = i + 2;
          out.length = len;
        }
        return i + 2;
      }
      i += 2 + len;
    }
  }
  return -1;
}

/**
 * True when every RFC 8285 element fits inside the extension block, so the caller can drop and
 * count a packet as `bad_extension` instead of silently missing its elements. Packets without an
 * extension, or with a profile that is not RFC 8285, are valid (their block is opaque to us).
 */
export function validateHeaderExtensions(buf: Uint8Array, header: RtpHeader): boolean {
  if (!header.hasExtension) return true;
  let i = header.extensionOffset;
  const end = i + header.extensionLength;
  if (end > buf.length) return false;
  if (header.extensionProfile === ONE_BYTE_PROFILE) {
    while (i < end) {
      const b = buf[i];
      if (b === 0) {
        i++;
        continue;
      }
      if (b >> 4 === 15) return true; // the rest is deliberately ignored (§4.2)
      i += 1 + (b & 0x0f) + 1;
      if (i > end) return false;
    }
    return true;
  }
  if (isTwoByteProfile(header.extensionProfile)) {
    while (i < end) {
      if (buf[i] === 0) {
        i++;
        continue;
      }
      if (i + 2 > end) return false;
      i += 2 + buf[i + 1];
      if (i > end) return false;
    }
  }
  return true;
}

/**
 * Whether `extensions` need the two-byte form: an id above 14, or data of 0 or more than 16
 * bytes, cannot be said in one-byte elements (§4.2). Throws RangeError for ids or lengths that
 * neither form can carry, since this is our own output.
 */
export function needsTwoByteForm(extensions: readonly HeaderExtension[]): boolean {
  let twoByte = false;
  for (const { id, data } of extensions) {
    if (!Number.isInteger(id) || id < 1 || id > 255) {
      throw new RangeError(`header extension id ${id} is outside 1..255`);
    }
    if (data.length > 255) {
      throw new RangeError(`header extension ${id} has ${data.length} bytes; at most 255 fit`);
    }
    if (id > 14 || data.length === 0 || data.length > 16) twoByte = true;
  }
  return twoByte;
}

/** Bytes of extension data (elements plus zero padding to a 32-bit boundary), without the 4-byte block header. */
export function headerExtensionDataLength(extensions: readonly HeaderExtension[]): number {
  const perElement = needsTwoByteForm(extensions) ? 2 : 1;
  let n = 0;
  for (const { data } of extensions) n += perElement + data.length;
  n = (n + 3) & ~3;
  if (n > 0xffff * 4) throw new RangeError(`header extensions need ${n} bytes; the block holds at most ${0xffff * 4}`);
  return n;
}

/**
 * Writes the RFC 3550 §5.3.1 extension block (profile, length in words, RFC 8285 elements,
 * zero padding) at `offset` and returns the offset after it. The caller has checked the room.
 */
export function writeHeaderExtensionBlock(
  out: Uint8Array,
  offset: number,
  extensions: readonly HeaderExtension[],
): number {
  const twoByte = needsTwoByteForm(extensions);
  const dataLength = headerExtensionDataLength(extensions);
  const profile = twoByte ? TWO_BYTE_PROFILE : ONE_BYTE_PROFILE;
  out[offset] = profile >> 8;
  out[offset + 1] = profile & 0xff;
  out[offset + 2] = (dataLength >> 10) & 0xff;
  out[offset + 3] = (dataLength >> 2) & 0xff;
  let i = offset + 4;
  const end = i + dataLength;
  for (const { id, data } of extensions) {
    if (twoByte) {
      out[i++] = id;
      out[i++] = data.length;
    } else {
      out[i++] = (id << 4) | (data.length - 1);
    }
    out.set(data, i);
    i += data.length;
  }
  out.fill(0, i, end);
  return end;
}
