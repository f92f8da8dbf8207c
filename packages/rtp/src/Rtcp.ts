/**
 * RTCP, RFC 3550 §6 (SR, RR, SDES, BYE), with the RFC 4585 feedback messages a conference
 * server needs: generic NACK (RTPFB fmt 1), PLI (PSFB fmt 1), FIR (RFC 5104 §4.3.1, PSFB fmt 4)
 * and REMB (draft-alvestrand-rmcat-remb, PSFB fmt 15 "REMB").
 *
 * RTCP is a few packets per second per stream, so parsing builds plain objects for clarity;
 * it never throws on received bytes. Every packet starts with the common header (§6.4.1):
 *
 * ```
 * |V=2|P| RC/FMT  |      PT       |     length (32-bit words - 1)  |
 * ```
 *
 * and a compound packet is several of them back to back in one datagram (§6.1).
 */

/** RTCP packet types (RFC 3550 §12.1, RFC 4585 §6.1). */
export const RtcpPacketType = {
  SR: 200,
  RR: 201,
  SDES: 202,
  BYE: 203,
  APP: 204,
  RTPFB: 205,
  PSFB: 206,
} as const;

export type RtcpDropReason = 'too_short' | 'bad_version' | 'bad_length';

/** RFC 3550 §6.4.1 report block: reception quality of one source. */
export interface ReportBlock {
  ssrc: number;
  /** Fraction of packets lost since the previous report, in 1/256 (0..255). */
  fractionLost: number;
  /** Packets lost since the start, signed 24-bit (duplicates can make it negative). */
  cumulativeLost: number;
  /** Extended highest sequence number received (cycles << 16 | seq). */
  highestSeq: number;
  /** Interarrival jitter in timestamp units. */
  jitter: number;
  /** Middle 32 bits of the NTP timestamp of the last SR received from this source, 0 if none. */
  lsr: number;
  /** Delay since that SR, in 1/65536 s. */
  dlsr: number;
}

export interface SenderReport {
  type: 'sr';
  ssrc: number;
  ntpSec: number;
  ntpFrac: number;
  rtpTimestamp: number;
  packetCount: number;
  octetCount: number;
  reports: ReportBlock[];
}

export interface ReceiverReport {
  type: 'rr';
  ssrc: number;
  reports: ReportBlock[];
}

export interface SdesChunk {
  ssrc: number;
  /** The CNAME item (§6.5.1), null when the chunk has none; other items are skipped. */
  cname: string | null;
}

export interface Sdes {
  type: 'sdes';
  chunks: SdesChunk[];
}

export interface Bye {
  type: 'bye';
  ssrcs: number[];
  reason: string | null;
}

/** RFC 4585 §6.2.1 generic NACK, with the PID/BLP pairs expanded into sequence numbers. */
export interface Nack {
  type: 'nack';
  senderSsrc: number;
  mediaSsrc: number;
  lost: number[];
}

/** RFC 4585 §6.3.1 picture loss indication. */
export interface Pli {
  type: 'pli';
  senderSsrc: number;
  mediaSsrc: number;
}

export interface FirEntry {
  ssrc: number;
  /** Command sequence number, 0..255; a repeated request keeps the same number (RFC 5104 §4.3.1.1). */
  seqNr: number;
}

/** RFC 5104 §4.3.1 full intra request. */
export interface Fir {
  type: 'fir';
  senderSsrc: number;
  entries: FirEntry[];
}

/** Receiver estimated maximum bitrate (draft-alvestrand-rmcat-remb §2.2). */
export interface Remb {
  type: 'remb';
  senderSsrc: number;
  /** Bits per second. */
  bitrate: number;
  ssrcs: number[];
}

/** Anything else (APP, XR, transport-cc, …): identified, not decoded. */
export interface UnknownRtcp {
  type: 'unknown';
  packetType: number;
  /** The 5-bit RC/FMT field. */
  fmt: number;
  /** The whole packet, a view into the parsed buffer (valid as long as that buffer is). */
  bytes: Uint8Array;
}

export type RtcpPacket = SenderReport | ReceiverReport | Sdes | Bye | Nack | Pli | Fir | Remb | UnknownRtcp;

export interface RtcpParseResult {
  /** Packets decoded before the first error (all of them when `error` is null). */
  packets: RtcpPacket[];
  error: RtcpDropReason | null;
}

function u32(b: Uint8Array, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}

function u16(b: Uint8Array, o: number): number {
  return (b[o] << 8) | b[o + 1];
}

const REPORT_BLOCK_LENGTH = 24;
const utf8 = new TextDecoder('utf-8', { fatal: false });

function readReportBlocks(b: Uint8Array, offset: number, count: number): ReportBlock[] {
  const reports: ReportBlock[] = [];
  for (let i = 0; i < count; i++, offset += REPORT_BLOCK_LENGTH) {
    reports.push({
      ssrc: u32(b, offset),
      fractionLost: b[offset + 4],
      cumulativeLost: (((b[offset + 5] << 16) | (b[offset + 6] << 8) | b[offset + 7]) << 8) >> 8,
      highestSeq: u32(b, offset + 8),
      jitter: u32(b, offset + 12),
      lsr: u32(b, offset + 16),
      dlsr: u32(b, offset + 20),
    });
  }
  return reports;
}

/** SDES chunks (§6.5): SSRC, items `type(8) len(8) text`, ended by a zero type and padded to 32 bits. */
function readSdes(b: Uint8Array, start: number, end: number, count: number): Sdes | null {
  const chunks: SdesChunk[] = [];
  let o = start;
  for (let c = 0; c < count; c++) {
    if (o + 4 > end) return null;
    const ssrc = u32(b, o);
    o += 4;
    let cname: string | null = null;
    for (;;) {
      if (o >= end) return null;
      const itemType = b[o];
      if (itemType === 0) {
        o = (o + 4) & ~3; // the terminating null octet(s) pad the chunk to a 32-bit boundary
        break;
      }
      if (o + 2 > end) return null;
      const len = b[o + 1];
      if (o + 2 + len > end) return null;
      if (itemType === 1) cname = utf8.decode(b.subarray(o + 2, o + 2 + len));
      o += 2 + len;
    }
    chunks.push({ ssrc, cname });
  }
  return { type: 'sdes', chunks };
}

function readRemb(b: Uint8Array, o: number, end: number, senderSsrc: number): Remb | null {
  // FCI: 'R' 'E' 'M' 'B' | num ssrc (8) | exp (6) mantissa (18) | ssrc feedback × num
  if (o + 8 > end || b[o] !== 0x52 || b[o + 1] !== 0x45 || b[o + 2] !== 0x4d || b[o + 3] !== 0x42) return null;
  const count = b[o + 4];
  const exponent = b[o + 5] >> 2;
  const mantissa = ((b[o + 5] & 0x03) << 16) | u16(b, o + 6);
  if (o + 8 + count * 4 > end) return null;
  const ssrcs: number[] = [];
  for (let i = 0; i < count; i++) ssrcs.push(u32(b, o + 8 + i * 4));
  return { type: 'remb', senderSsrc, bitrate: mantissa * 2 ** exponent, ssrcs };
}

/**
 * Decodes one packet's body, `start`..`end` (padding removed). Returns null when the body is
 * too short for what its header announces.
 */
function readPacket(b: Uint8Array, start: number, end: number, fullEnd: number): RtcpPacket | null {
  const count = b[start] & 0x1f;
  const pt = b[start + 1];
  const body = start + 4;
  switch (pt) {
    case RtcpPacketType.SR: {
      if (body + 24 + count * REPORT_BLOCK_LENGTH > end) return null;
      return {
        type: 'sr',
        ssrc: u32(b, body),
        ntpSec: u32(b, body + 4),
        ntpFrac: u32(b, body + 8),
        rtpTimestamp: u32(b, body + 12),
        packetCount: u32(b, body + 16),
        octetCount: u32(b, body + 20),
        reports: readReportBlocks(b, body + 24, count),
      };
    }
    case RtcpPacketType.RR: {
      if (body + 4 + count * REPORT_BLOCK_LENGTH > end) return null;
      return { type: 'rr', ssrc: u32(b, body), reports: readReportBlocks(b, body + 4, count) };
    }
    case RtcpPacketType.SDES:
      return readSdes(b, body, end, count);
    case RtcpPacketType.BYE: {
      if (body + count * 4 > end) return null;
      const ssrcs: number[] = [];
      for (let i = 0; i < count; i++) ssrcs.push(u32(b, body + i * 4));
      let reason: string | null = null;
      const r = body + count * 4;
      if (r < end) {
        const len = b[r];
        if (r + 1 + len > end) return null;
        reason = utf8.decode(b.subarray(r + 1, r + 1 + len));
      }
      return { type: 'bye', ssrcs, reason };
    }
    case RtcpPacketType.RTPFB:
    case RtcpPacketType.PSFB: {
      // RFC 4585 §6.1: sender SSRC, media source SSRC, then feedback control information (FCI).
      if (body + 8 > end) return null;
      const senderSsrc = u32(b, body);
      const mediaSsrc = u32(b, body + 4);
      const fci = body + 8;
      if (pt === RtcpPacketType.RTPFB && count === 1) {
        const lost: number[] = [];
        for (let o = fci; o + 4 <= end; o += 4) {
          const pid = u16(b, o);
          const blp = u16(b, o + 2);
          lost.push(pid);
          for (let bit = 0; bit < 16; bit++) if ((blp & (1 << bit)) !== 0) lost.push((pid + bit + 1) & 0xffff);
        }
        return { type: 'nack', senderSsrc, mediaSsrc, lost };
      }
      if (pt === RtcpPacketType.PSFB && count === 1) return { type: 'pli', senderSsrc, mediaSsrc };
      if (pt === RtcpPacketType.PSFB && count === 4) {
        const entries: FirEntry[] = [];
        for (let o = fci; o + 8 <= end; o += 8) entries.push({ ssrc: u32(b, o), seqNr: b[o + 4] });
        return { type: 'fir', senderSsrc, entries };
      }
      if (pt === RtcpPacketType.PSFB && count === 15) {
        const remb = readRemb(b, fci, end, senderSsrc);
        if (remb !== null) return remb;
        // Some other application-layer feedback (§6.4): not ours to decode.
      }
      break;
    }
  }
  return { type: 'unknown', packetType: pt, fmt: count, bytes: b.subarray(start, fullEnd) };
}

/**
 * Parses a (compound) RTCP datagram. Never throws: on the first malformed packet it stops and
 * returns what it decoded before, plus the reason, so the caller can count the drop and still
 * act on, say, a NACK that preceded the garbage.
 */
export function parseRtcp(buf: Uint8Array): RtcpParseResult {
  const packets: RtcpPacket[] = [];
  const len = buf.length;
  if (len < 4) return { packets, error: 'too_short' };
  let o = 0;
  while (o < len) {
    if (o + 4 > len) return { packets, error: 'bad_length' };
    if (buf[o] >> 6 !== 2) return { packets, error: 'bad_version' };
    const size = (u16(buf, o + 2) + 1) * 4;
    const next = o + size;
    if (next > len) return { packets, error: 'bad_length' };
    let end = next;
    if ((buf[o] & 0x20) !== 0) {
      // §6.4.1: the last octet counts the padding octets, itself included.
      const pad = buf[next - 1];
      if (pad === 0 || pad > size - 4) return { packets, error: 'bad_length' };
      end -= pad;
    }
    const packet = readPacket(buf, o, end, next);
    if (packet === null) return { packets, error: 'bad_length' };
    packets.push(packet);
    o = next;
  }
  return { packets, error: null };
}

// ---------------------------------------------------------------------------------------------
// Builders. Our own output: values out of range throw RangeError.

function header(out: Buffer, countOrFmt: number, pt: number): void {
  if (countOrFmt > 31) throw new RangeError(`RTCP count/fmt ${countOrFmt} exceeds 31`);
  out[0] = 0x80 | countOrFmt;
  out[1] = pt;
  out.writeUInt16BE(out.length / 4 - 1, 2);
}

function writeReportBlocks(out: Buffer, offset: number, reports: readonly ReportBlock[]): void {
  for (const r of reports) {
    out.writeUInt32BE(r.ssrc >>> 0, offset);
    out[offset + 4] = r.fractionLost & 0xff;
    const lost = Math.max(-0x800000, Math.min(0x7fffff, Math.trunc(r.cumulativeLost))) & 0xffffff;
    out[offset + 5] = lost >> 16;
    out.writeUInt16BE(lost & 0xffff, offset + 6);
    out.writeUInt32BE(r.highestSeq >>> 0, offset + 8);
    out.writeUInt32BE(r.jitter >>> 0, offset + 12);
    out.writeUInt32BE(r.lsr >>> 0, offset + 16);
    out.writeUInt32BE(r.dlsr >>> 0, offset + 20);
    offset += REPORT_BLOCK_LENGTH;
  }
}

export interface SenderReportFields {
  ssrc: number;
  ntpSec: number;
  ntpFrac: number;
  rtpTimestamp: number;
  packetCount: number;
  octetCount: number;
  reports?: readonly ReportBlock[];
}

/** RFC 3550 §6.4.1 sender report with up to 31 report blocks. */
export function buildSenderReport(sr: SenderReportFields): Buffer {
  const reports = sr.reports ?? [];
  const out = Buffer.alloc(28 + reports.length * REPORT_BLOCK_LENGTH);
  header(out, reports.length, RtcpPacketType.SR);
  out.writeUInt32BE(sr.ssrc >>> 0, 4);
  out.writeUInt32BE(sr.ntpSec >>> 0, 8);
  out.writeUInt32BE(sr.ntpFrac >>> 0, 12);
  out.writeUInt32BE(sr.rtpTimestamp >>> 0, 16);
  out.writeUInt32BE(sr.packetCount >>> 0, 20);
  out.writeUInt32BE(sr.octetCount >>> 0, 24);
  writeReportBlocks(out, 28, reports);
  return out;
}

/** RFC 3550 §6.4.2 receiver report with up to 31 report blocks. */
export function buildReceiverReport(rr: { ssrc: number; reports?: readonly ReportBlock[] }): Buffer {
  const reports = rr.reports ?? [];
  const out = Buffer.alloc(8 + reports.length * REPORT_BLOCK_LENGTH);
  header(out, reports.length, RtcpPacketType.RR);
  out.writeUInt32BE(rr.ssrc >>> 0, 4);
  writeReportBlocks(out, 8, reports);
  return out;
}

/** RFC 3550 §6.5 SDES with one chunk holding the CNAME (required in every compound packet, §6.1). */
export function buildSdes(ssrc: number, cname: string): Buffer {
  const text = Buffer.from(cname, 'utf8');
  if (text.length > 255) throw new RangeError(`CNAME is ${text.length} bytes; at most 255 fit`);
  // chunk: SSRC(4) + CNAME item (2 + text) + at least one null octet, padded to 32 bits
  const chunk = (4 + 2 + text.length + 1 + 3) & ~3;
  const out = Buffer.alloc(4 + chunk);
  header(out, 1, RtcpPacketType.SDES);
  out.writeUInt32BE(ssrc >>> 0, 4);
  out[8] = 1; // CNAME
  out[9] = text.length;
  text.copy(out, 10);
  return out;
}

/** RFC 3550 §6.6 BYE for up to 31 sources, with an optional reason. */
export function buildBye(ssrcs: readonly number[], reason?: string): Buffer {
  const text = reason === undefined ? null : Buffer.from(reason, 'utf8');
  if (text !== null && text.length > 255) throw new RangeError(`BYE reason is ${text.length} bytes; at most 255 fit`);
  const reasonLength = text === null ? 0 : 1 + text.length;
  const out = Buffer.alloc((4 + ssrcs.length * 4 + reasonLength + 3) & ~3);
  header(out, ssrcs.length, RtcpPacketType.BYE);
  ssrcs.forEach((ssrc, i) => out.writeUInt32BE(ssrc >>> 0, 4 + i * 4));
  if (text !== null) {
    const r = 4 + ssrcs.length * 4;
    out[r] = text.length;
    text.copy(out, r + 1);
  }
  return out;
}

/**
 * RFC 4585 §6.2.1 generic NACK. The sequence numbers may come in any order, repeat, and span
 * the 65535 → 0 wrap (they must lie within half the sequence space of each other); they are
 * ordered wrap-safely and packed greedily into PID/BLP pairs, where bit i of BLP marks
 * PID + i + 1 as lost, so up to 17 numbers share one pair.
 */
export function buildNack(senderSsrc: number, mediaSsrc: number, seqs: readonly number[]): Buffer {
  if (seqs.length === 0) throw new RangeError('a NACK needs at least one sequence number');
  const reference = seqs[0] & 0xffff;
  // Order by signed distance from the first number, which is wrap-safe within half the space.
  const distances = [...new Set(seqs.map((s) => (((s & 0xffff) - reference) << 16) >> 16))].sort((a, b) => a - b);
  const pairs: number[] = [];
  let pid = distances[0];
  let blp = 0;
  for (let i = 1; i < distances.length; i++) {
    const gap = distances[i] - pid;
    if (gap <= 16) {
      blp |= 1 << (gap - 1);
    } else {
      pairs.push(pid, blp);
      pid = distances[i];
      blp = 0;
    }
  }
  pairs.push(pid, blp);
  const out = Buffer.alloc(12 + (pairs.length / 2) * 4);
  header(out, 1, RtcpPacketType.RTPFB);
  out.writeUInt32BE(senderSsrc >>> 0, 4);
  out.writeUInt32BE(mediaSsrc >>> 0, 8);
  for (let i = 0; i < pairs.length; i += 2) {
    out.writeUInt16BE((reference + pairs[i]) & 0xffff, 12 + i * 2);
    out.writeUInt16BE(pairs[i + 1], 14 + i * 2);
  }
  return out;
}

/** RFC 4585 §6.3.1 picture loss indication: "send me a keyframe". */
export function buildPli(senderSsrc: number, mediaSsrc: number): Buffer {
  const out = Buffer.alloc(12);
  header(out, 1, RtcpPacketType.PSFB);
  out.writeUInt32BE(senderSsrc >>> 0, 4);
  out.writeUInt32BE(mediaSsrc >>> 0, 8);
  return out;
}

/** RFC 5104 §4.3.1 full intra request; the media source field is 0, targets are in the entries. */
export function buildFir(senderSsrc: number, entries: readonly FirEntry[]): Buffer {
  const out = Buffer.alloc(12 + entries.length * 8);
  header(out, 4, RtcpPacketType.PSFB);
  out.writeUInt32BE(senderSsrc >>> 0, 4);
  entries.forEach((e, i) => {
    out.writeUInt32BE(e.ssrc >>> 0, 12 + i * 8);
    out[16 + i * 8] = e.seqNr & 0xff;
  });
  return out;
}

/**
 * REMB (draft-alvestrand-rmcat-remb §2.2). The bitrate is sent as an 18-bit mantissa and a 6-bit
 * exponent, so large values are rounded down to 18 significant bits.
 */
export function buildRemb(senderSsrc: number, bitrate: number, ssrcs: readonly number[]): Buffer {
  if (!(bitrate >= 0) || ssrcs.length > 255) throw new RangeError('REMB needs bitrate >= 0 and at most 255 SSRCs');
  let mantissa = Math.floor(bitrate);
  let exponent = 0;
  while (mantissa > 0x3ffff) {
    mantissa = Math.floor(mantissa / 2);
    exponent++;
  }
  if (exponent > 63) throw new RangeError(`REMB bitrate ${bitrate} is too large`);
  const out = Buffer.alloc(20 + ssrcs.length * 4);
  header(out, 15, RtcpPacketType.PSFB);
  out.writeUInt32BE(senderSsrc >>> 0, 4);
  // media source SSRC (bytes 8..11) is 0
  out.write('REMB', 12, 'latin1');
  out[16] = ssrcs.length;
  out[17] = (exponent << 2) | (mantissa >> 16);
  out.writeUInt16BE(mantissa & 0xffff, 18);
  ssrcs.forEach((s, i) => out.writeUInt32BE(s >>> 0, 20 + i * 4));
  return out;
}

/** §6.1: several RTCP packets in one datagram (e.g. SR + SDES). */
export function buildCompound(parts: readonly Uint8Array[]): Buffer {
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------------------------------------
// NTP time (RFC 3550 §4): seconds since 1900-01-01 plus a 32-bit binary fraction.

/** Seconds from the NTP epoch (1900) to the Unix epoch (1970). */
const NTP_UNIX_OFFSET_S = 2_208_988_800;
const TWO_32 = 0x1_0000_0000;

export interface NtpTime {
  sec: number;
  frac: number;
}

/** NTP timestamp for a Unix time in ms; seconds wrap modulo 2^32 (NTP era 1 starts in 2036). */
export function ntpFromUnixMs(ms: number): NtpTime {
  const wholeSec = Math.floor(ms / 1000);
  const fracMs = ms - wholeSec * 1000;
  return {
    sec: (((wholeSec + NTP_UNIX_OFFSET_S) % TWO_32) + TWO_32) % TWO_32,
    frac: Math.floor((fracMs / 1000) * TWO_32),
  };
}

/**
 * Unix time in ms for an NTP timestamp. Era by the top bit as RFC 4330 §3 suggests: set means
 * 1968-2036 (era 0), clear means 2036-2104 (era 1).
 */
export function unixMsFromNtp(sec: number, frac: number): number {
  const s = (sec >>> 0) >= 0x8000_0000 ? (sec >>> 0) - NTP_UNIX_OFFSET_S : (sec >>> 0) + TWO_32 - NTP_UNIX_OFFSET_S;
  return s * 1000 + ((frac >>> 0) / TWO_32) * 1000;
}

/** The middle 32 bits of a 64-bit NTP timestamp: the LSR field of a report block (§6.4.1). */
export function middleNtp32(sec: number, frac: number): number {
  return (((sec & 0xffff) << 16) | (frac >>> 16)) >>> 0;
}

/**
 * Round-trip time from a report block about one of our streams, received at `arrivalMs`
 * (§6.4.1: A - LSR - DLSR, in 1/65536 s). -1 when the receiver has not yet seen an SR from us.
 */
export function roundTripTimeMs(block: ReportBlock, arrivalMs: number): number {
  if (block.lsr === 0) return -1;
  const now = ntpFromUnixMs(arrivalMs);
  const a = middleNtp32(now.sec, now.frac);
  const rtt = (a - block.lsr - block.dlsr) >>> 0;
  return rtt >= 0x8000_0000 ? 0 : (rtt / 65536) * 1000;
}
