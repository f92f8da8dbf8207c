/**
 * Reads H.264 from ffmpeg's FLV output (`-f flv`) and turns each video tag into an Annex-B access
 * unit. FLV is how the H.264 encoder hands us frames: ffmpeg's ivf muxer refuses H.264, and a raw
 * `-f h264` byte stream only shows where an access unit ends when the next one begins (a frame of
 * latency); an FLV tag is one whole access unit with its length up front.
 *
 * ```
 *  header: "FLV" version flags headerSize(32)   then PreviousTagSize0 (32)
 *  tag:    type(8) dataSize(24) timestamp(24) timestampExt(8) streamId(24) data  PreviousTagSize(32)
 *  video data (type 9): frameType(4)|codecId(4)=7  AVCPacketType(8)  compositionTime(24)  body
 *    AVCPacketType 0: AVCDecoderConfigurationRecord (ISO 14496-15 §5.2.4.1: SPS and PPS)
 *    AVCPacketType 1: NAL units, each behind a (lengthSizeMinusOne + 1)-byte length
 * ```
 * With a global header (which FLV requires) x264 puts SPS/PPS only in the configuration record,
 * so they are prepended to every IDR access unit: a receiver joining at any keyframe can decode.
 */

/** Receives one access unit: `data[0 .. length)` is valid during the call only. */
export type FlvH264Sink = (data: Uint8Array, length: number, keyframe: boolean, timestampMs: number) => void;

const FLV_HEADER_BYTES = 9;
const TAG_HEADER_BYTES = 11;

export class FlvH264Reader {
  frames = 0;
  error: string | null = null;

  private stage: 'header' | 'tagHeader' | 'tagData' = 'header';
  private small = new Uint8Array(16);
  private smallHave = 0;
  private tagType = 0;
  private tagSize = 0;
  private tagTimestamp = 0;
  private tag = new Uint8Array(64 * 1024);
  private tagHave = 0;
  private lengthSize = 4;
  /** SPS and PPS from the configuration record, Annex-B. */
  private parameterSets = new Uint8Array(0);
  private out = new Uint8Array(64 * 1024);

  constructor(
    private readonly onFrame: FlvH264Sink,
    private readonly maxTagBytes = 16 << 20,
  ) {}

  reset(): void {
    this.stage = 'header';
    this.smallHave = 0;
    this.tagHave = 0;
    this.error = null;
  }

  push(chunk: Uint8Array): void {
    let o = 0;
    const n = chunk.length;
    while (o < n && this.error === null) {
      if (this.stage === 'header') {
        // FLV header + PreviousTagSize0.
        const need = FLV_HEADER_BYTES + 4;
        const take = Math.min(need - this.smallHave, n - o);
        this.small.set(chunk.subarray(o, o + take), this.smallHave);
        this.smallHave += take;
        o += take;
        if (this.smallHave === need) {
          if (this.small[0] !== 0x46 || this.small[1] !== 0x4c || this.small[2] !== 0x56) {
            this.error = 'not an FLV stream';
            return;
          }
          this.smallHave = 0;
          this.stage = 'tagHeader';
        }
        continue;
      }
      if (this.stage === 'tagHeader') {
        const take = Math.min(TAG_HEADER_BYTES - this.smallHave, n - o);
        this.small.set(chunk.subarray(o, o + take), this.smallHave);
        this.smallHave += take;
        o += take;
        if (this.smallHave === TAG_HEADER_BYTES) {
          const s = this.small;
          this.tagType = s[0] & 0x1f;
          this.tagSize = (s[1] << 16) | (s[2] << 8) | s[3];
          this.tagTimestamp = ((s[7] << 24) | (s[4] << 16) | (s[5] << 8) | s[6]) >>> 0;
          if (this.tagSize + 4 > this.maxTagBytes) {
            this.error = `FLV tag of ${this.tagSize} bytes is too large`;
            return;
          }
          if (this.tag.length < this.tagSize + 4) this.tag = new Uint8Array(Math.max(this.tagSize + 4, this.tag.length * 2));
          this.smallHave = 0;
          this.tagHave = 0;
          this.stage = 'tagData';
        }
        continue;
      }
      // Tag body plus the PreviousTagSize after it.
      const need = this.tagSize + 4;
      const take = Math.min(need - this.tagHave, n - o);
      this.tag.set(chunk.subarray(o, o + take), this.tagHave);
      this.tagHave += take;
      o += take;
      if (this.tagHave === need) {
        this.stage = 'tagHeader';
        if (this.tagType === 9) this.videoTag(this.tag, this.tagSize);
      }
    }
  }

  private videoTag(t: Uint8Array, size: number): void {
    if (size < 5 || (t[0] & 0x0f) !== 7) return; // not AVC
    const packetType = t[1];
    if (packetType === 0) {
      this.configuration(t, 5, size);
      return;
    }
    if (packetType !== 1) return; // end of sequence
    // NAL units: length-prefixed → start codes.
    let keyframe = false;
    let hasSps = false;
    for (let o = 5; o + this.lengthSize <= size; ) {
      const len = this.readLength(t, o);
      o += this.lengthSize;
      if (len <= 0 || o + len > size) break;
      const type = t[o] & 0x1f;
      if (type === 5) keyframe = true;
      if (type === 7) hasSps = true;
      o += len;
    }
    const prefix = keyframe && !hasSps ? this.parameterSets.length : 0;
    if (this.out.length < prefix + size * 2) this.out = new Uint8Array(Math.max(prefix + size * 2, this.out.length * 2));
    const out = this.out;
    out.set(this.parameterSets.subarray(0, prefix), 0);
    let w = prefix;
    for (let o = 5; o + this.lengthSize <= size; ) {
      const len = this.readLength(t, o);
      o += this.lengthSize;
      if (len <= 0 || o + len > size) break;
      out[w] = 0;
      out[w + 1] = 0;
      out[w + 2] = 0;
      out[w + 3] = 1;
      out.set(t.subarray(o, o + len), w + 4);
      w += 4 + len;
      o += len;
    }
    if (w === prefix) return;
    this.frames++;
    this.onFrame(out, w, keyframe, this.tagTimestamp);
  }

  private readLength(t: Uint8Array, o: number): number {
    let len = 0;
    for (let i = 0; i < this.lengthSize; i++) len = len * 256 + t[o + i];
    return len;
  }

  /** AVCDecoderConfigurationRecord → lengthSize and Annex-B SPS/PPS. */
  private configuration(t: Uint8Array, start: number, end: number): void {
    if (end - start < 7) return;
    this.lengthSize = (t[start + 4] & 0x03) + 1;
    const sets: Uint8Array[] = [];
    let o = start + 5;
    for (let list = 0; list < 2 && o < end; list++) {
      const count = list === 0 ? t[o] & 0x1f : t[o];
      o++;
      for (let i = 0; i < count && o + 2 <= end; i++) {
        const len = (t[o] << 8) | t[o + 1];
        o += 2;
        if (o + len > end) return;
        sets.push(Uint8Array.of(0, 0, 0, 1), t.slice(o, o + len));
        o += len;
      }
    }
    this.parameterSets = Buffer.concat(sets);
  }
}
