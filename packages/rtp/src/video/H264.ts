/**
 * H.264 over RTP, RFC 6184, packetization-mode 1 (non-interleaved): single NAL unit packets
 * (§5.6), STAP-A aggregation (§5.7.1) and FU-A fragmentation (§5.8). Frames on our side of the
 * wire are Annex-B access units (start code 00 00 00 01 before each NAL unit), the byte stream
 * ffmpeg reads and writes.
 *
 * ```
 *  |F|NRI| Type |                    NAL unit header; Type 1..23 a single NAL unit
 *  STAP-A:  |F|NRI| 24 | size(16) | NAL | size(16) | NAL ...
 *  FU-A:    |F|NRI| 28 | |S|E|R| Type | fragment ...     S: first fragment, E: last
 * ```
 */

export const H264NalType = {
  slice: 1,
  idr: 5,
  sei: 6,
  sps: 7,
  pps: 8,
  aud: 9,
  filler: 12,
  stapA: 24,
  fuA: 28,
} as const;

/** 4-byte Annex-B start code. */
export const ANNEX_B_START_CODE = Uint8Array.of(0, 0, 0, 1);

/**
 * NAL units of an Annex-B byte string. `starts[i]` indexes the NAL header byte (after the start
 * code), `ends[i]` is exclusive with trailing zero bytes removed. The arrays grow as needed and
 * are reused by the next `scan`.
 */
export class AnnexBNalUnits {
  starts = new Int32Array(64);
  ends = new Int32Array(64);
  count = 0;

  scan(buf: Uint8Array, offset: number, length: number): number {
    const end = Math.min(offset + length, buf.length);
    this.count = 0;
    let i = offset;
    let nalStart = -1;
    while (i + 2 < end) {
      // Find 00 00 01; the byte after a zero pair can only start a code if it is 01.
      if (buf[i + 2] > 1) {
        i += 3;
        continue;
      }
      if (buf[i] === 0 && buf[i + 1] === 0 && buf[i + 2] === 1) {
        if (nalStart >= 0) this.add(buf, nalStart, i);
        nalStart = i + 3;
        i += 3;
        continue;
      }
      i++;
    }
    if (nalStart >= 0 && nalStart < end) this.add(buf, nalStart, end);
    return this.count;
  }

  private add(buf: Uint8Array, start: number, end: number): void {
    while (end > start && buf[end - 1] === 0) end--; // trailing_zero_8bits / the 4-byte code's first zero
    if (end <= start) return;
    if (this.count === this.starts.length) {
      const s = new Int32Array(this.count * 2);
      s.set(this.starts);
      this.starts = s;
      const e = new Int32Array(this.count * 2);
      e.set(this.ends);
      this.ends = e;
    }
    this.starts[this.count] = start;
    this.ends[this.count] = end;
    this.count++;
  }
}

export interface H264PacketizerOptions {
  /** Largest RTP payload. Default 1188: 1200-byte packets with a 12-byte RTP header. */
  maxPayloadBytes?: number;
}

/** Receives one RTP payload; `payload` is reused by the next call, copy it to keep it. */
export type H264PayloadSink = (payload: Uint8Array, length: number, lastOfFrame: boolean) => void;

/**
 * Splits Annex-B access units into RTP payloads: runs of small NAL units that fit together
 * (SPS + PPS before an IDR, SEI) become one STAP-A, a NAL unit that fits alone is sent as is, a
 * larger one is cut into FU-A fragments of even size. AUD and filler NAL units are dropped
 * (RFC 6184 §5.3 leaves them optional and WebRTC receivers ignore them).
 */
export class H264Packetizer {
  readonly maxPayloadBytes: number;
  private readonly nals = new AnnexBNalUnits();
  private readonly scratch: Uint8Array;

  constructor(opts: H264PacketizerOptions = {}) {
    this.maxPayloadBytes = opts.maxPayloadBytes ?? 1188;
    if (!Number.isInteger(this.maxPayloadBytes) || this.maxPayloadBytes < 8) {
      throw new RangeError(`maxPayloadBytes ${this.maxPayloadBytes} is too small for FU-A`);
    }
    this.scratch = new Uint8Array(this.maxPayloadBytes);
  }

  /** Packetizes the access unit `au[0 .. length)`; returns the number of payloads given to `sink`. */
  packetize(au: Uint8Array, length: number, sink: H264PayloadSink): number {
    const nals = this.nals;
    nals.scan(au, 0, length);
    // Drop AUD/filler in place so the last kept NAL unit is known (for the marker bit).
    let kept = 0;
    for (let i = 0; i < nals.count; i++) {
      const type = au[nals.starts[i]] & 0x1f;
      if (type === H264NalType.aud || type === H264NalType.filler) continue;
      nals.starts[kept] = nals.starts[i];
      nals.ends[kept] = nals.ends[i];
      kept++;
    }
    const max = this.maxPayloadBytes;
    const out = this.scratch;
    let packets = 0;
    let i = 0;
    while (i < kept) {
      const size = nals.ends[i] - nals.starts[i];
      if (size > max) {
        packets += this.fragment(au, nals.starts[i], nals.ends[i], i === kept - 1, sink);
        i++;
        continue;
      }
      // How many NAL units from i fit one STAP-A (1-byte header, 2-byte size before each)?
      let total = 1;
      let j = i;
      let nri = 0;
      let f = 0;
      while (j < kept) {
        const s = nals.ends[j] - nals.starts[j];
        if (total + 2 + s > max) break;
        total += 2 + s;
        const h = au[nals.starts[j]];
        if ((h & 0x60) > nri) nri = h & 0x60;
        f |= h & 0x80;
        j++;
      }
      if (j - i >= 2) {
        out[0] = f | nri | H264NalType.stapA;
        let o = 1;
        for (let k = i; k < j; k++) {
          const s = nals.ends[k] - nals.starts[k];
          out[o] = s >> 8;
          out[o + 1] = s & 0xff;
          out.set(au.subarray(nals.starts[k], nals.ends[k]), o + 2);
          o += 2 + s;
        }
        sink(out, o, j === kept);
        packets++;
        i = j;
      } else {
        out.set(au.subarray(nals.starts[i], nals.ends[i]), 0);
        sink(out, size, i === kept - 1);
        packets++;
        i++;
      }
    }
    return packets;
  }

  private fragment(au: Uint8Array, start: number, end: number, lastNal: boolean, sink: H264PayloadSink): number {
    const header = au[start];
    const data = end - start - 1; // the NAL header is carried in the FU indicator/header
    const room = this.maxPayloadBytes - 2;
    const packets = Math.ceil(data / room);
    const base = Math.floor(data / packets);
    const extra = data % packets;
    const out = this.scratch;
    let o = start + 1;
    for (let i = 0; i < packets; i++) {
      const n = base + (i < extra ? 1 : 0);
      out[0] = (header & 0xe0) | H264NalType.fuA;
      out[1] = (i === 0 ? 0x80 : 0) | (i === packets - 1 ? 0x40 : 0) | (header & 0x1f);
      out.set(au.subarray(o, o + n), 2);
      o += n;
      sink(out, n + 2, lastNal && i === packets - 1);
    }
    return packets;
  }
}

/** True for the first VCL NAL unit of a picture: first_mb_in_slice = 0, i.e. ue(v) "1", the first bit set. */
export function isFirstSliceOfPicture(buf: Uint8Array, nalStart: number, nalEnd: number): boolean {
  const type = buf[nalStart] & 0x1f;
  return (type === H264NalType.slice || type === H264NalType.idr) && nalStart + 1 < nalEnd && (buf[nalStart + 1] & 0x80) !== 0;
}

/**
 * Splits an Annex-B byte stream (a `.h264` file, ffmpeg's `-f h264` output) into access units
 * (H.264 §7.4.1.2.3: an AUD, SPS, PPS or SEI, or the first slice of a new picture, after the
 * previous picture's slices begins a new one). Allocates: for files, tests and benchmarks.
 */
export function splitAnnexBAccessUnits(stream: Uint8Array): Uint8Array[] {
  const nals = new AnnexBNalUnits();
  nals.scan(stream, 0, stream.length);
  const units: Uint8Array[] = [];
  let current: number[] = [];
  let hasSlice = false;
  const flush = () => {
    if (current.length === 0) return;
    let size = 0;
    for (const i of current) size += 4 + nals.ends[i] - nals.starts[i];
    const au = new Uint8Array(size);
    let o = 0;
    for (const i of current) {
      au.set(ANNEX_B_START_CODE, o);
      au.set(stream.subarray(nals.starts[i], nals.ends[i]), o + 4);
      o += 4 + nals.ends[i] - nals.starts[i];
    }
    units.push(au);
    current = [];
    hasSlice = false;
  };
  for (let i = 0; i < nals.count; i++) {
    const s = nals.starts[i];
    const type = stream[s] & 0x1f;
    const vcl = type === H264NalType.slice || type === H264NalType.idr;
    const startsUnit =
      type === H264NalType.aud ||
      type === H264NalType.sps ||
      type === H264NalType.pps ||
      type === H264NalType.sei ||
      (type >= 14 && type <= 18) ||
      (vcl && isFirstSliceOfPicture(stream, s, nals.ends[i]));
    if (hasSlice && startsUnit) flush();
    current.push(i);
    if (vcl) hasSlice = true;
  }
  flush();
  return units;
}
