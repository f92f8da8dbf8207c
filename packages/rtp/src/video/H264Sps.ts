/**
 * Picture size from an H.264 sequence parameter set (ITU-T H.264 §7.3.2.1.1), enough of it to
 * size a decoder's output: the mixer scales each source to fit its tile and must know the source's
 * aspect before the first frame is decoded.
 */

/** Reads bits MSB first from an RBSP, skipping emulation-prevention bytes (00 00 03 → 00 00, §7.4.1). */
class RbspReader {
  private pos: number;
  private bit = 0;
  private zeros = 0;
  private current = 0;
  overrun = false;

  constructor(
    private readonly buf: Uint8Array,
    offset: number,
    private readonly end: number,
  ) {
    this.pos = offset;
    this.loadByte();
  }

  private loadByte(): void {
    if (this.pos >= this.end) {
      this.overrun = true;
      this.current = 0;
      return;
    }
    let b = this.buf[this.pos];
    if (this.zeros >= 2 && b === 0x03) {
      // Emulation prevention byte: drop it.
      this.pos++;
      this.zeros = 0;
      if (this.pos >= this.end) {
        this.overrun = true;
        this.current = 0;
        return;
      }
      b = this.buf[this.pos];
    }
    this.zeros = b === 0 ? this.zeros + 1 : 0;
    this.current = b;
  }

  u1(): number {
    const v = (this.current >> (7 - this.bit)) & 1;
    if (++this.bit === 8) {
      this.bit = 0;
      this.pos++;
      this.loadByte();
    }
    return v;
  }

  u(n: number): number {
    let v = 0;
    for (let i = 0; i < n; i++) v = v * 2 + this.u1();
    return v;
  }

  /** Exp-Golomb ue(v), §9.1. */
  ue(): number {
    let leadingZeros = 0;
    while (this.u1() === 0) {
      if (++leadingZeros > 31 || this.overrun) {
        this.overrun = true;
        return 0;
      }
    }
    return 2 ** leadingZeros - 1 + this.u(leadingZeros);
  }

  se(): number {
    const k = this.ue();
    return k % 2 === 1 ? (k + 1) / 2 : -k / 2;
  }
}

/** Profiles whose SPS carries chroma format and bit depth (§7.3.2.1.1, the `if (profile_idc == 100 || …)` list). */
const HIGH_PROFILES = new Set([100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135]);

function skipScalingList(r: RbspReader, size: number): void {
  let last = 8;
  let next = 8;
  for (let j = 0; j < size; j++) {
    if (next !== 0) next = (last + r.se() + 256) % 256;
    last = next === 0 ? last : next;
  }
}

/**
 * Parses the SPS NAL unit at `buf[offset .. offset + length)` (starting with its one-byte NAL
 * header) and writes the cropped picture width and height into `out[0..1]`. Returns false when
 * this is not an SPS or it is truncated or implausible.
 */
export function readH264SpsDimensions(buf: Uint8Array, offset: number, length: number, out: Int32Array | number[]): boolean {
  const end = Math.min(offset + length, buf.length);
  if (end - offset < 4 || (buf[offset] & 0x1f) !== 7) return false;
  const r = new RbspReader(buf, offset + 1, end);
  const profileIdc = r.u(8);
  r.u(8); // constraint flags
  r.u(8); // level_idc
  r.ue(); // seq_parameter_set_id
  let chromaFormatIdc = 1;
  let separateColourPlane = 0;
  if (HIGH_PROFILES.has(profileIdc)) {
    chromaFormatIdc = r.ue();
    if (chromaFormatIdc === 3) separateColourPlane = r.u1();
    r.ue(); // bit_depth_luma_minus8
    r.ue(); // bit_depth_chroma_minus8
    r.u1(); // qpprime_y_zero_transform_bypass_flag
    if (r.u1() === 1) {
      const lists = chromaFormatIdc !== 3 ? 8 : 12;
      for (let i = 0; i < lists; i++) if (r.u1() === 1) skipScalingList(r, i < 6 ? 16 : 64);
    }
  }
  r.ue(); // log2_max_frame_num_minus4
  const pocType = r.ue();
  if (pocType === 0) {
    r.ue(); // log2_max_pic_order_cnt_lsb_minus4
  } else if (pocType === 1) {
    r.u1(); // delta_pic_order_always_zero_flag
    r.se(); // offset_for_non_ref_pic
    r.se(); // offset_for_top_to_bottom_field
    const cycle = r.ue();
    if (cycle > 255) return false;
    for (let i = 0; i < cycle; i++) r.se();
  }
  r.ue(); // max_num_ref_frames
  r.u1(); // gaps_in_frame_num_value_allowed_flag
  const widthMbs = r.ue() + 1;
  const heightMapUnits = r.ue() + 1;
  const frameMbsOnly = r.u1();
  if (frameMbsOnly === 0) r.u1(); // mb_adaptive_frame_field_flag
  r.u1(); // direct_8x8_inference_flag
  let cropLeft = 0;
  let cropRight = 0;
  let cropTop = 0;
  let cropBottom = 0;
  if (r.u1() === 1) {
    cropLeft = r.ue();
    cropRight = r.ue();
    cropTop = r.ue();
    cropBottom = r.ue();
  }
  if (r.overrun) return false;
  // §7.4.2.1.1, Table 6-1: crop units depend on chroma subsampling and field coding.
  const chromaArrayType = separateColourPlane === 1 ? 0 : chromaFormatIdc;
  const subWidthC = chromaFormatIdc === 3 ? 1 : 2;
  const subHeightC = chromaFormatIdc === 1 ? 2 : 1;
  const cropUnitX = chromaArrayType === 0 ? 1 : subWidthC;
  const cropUnitY = (chromaArrayType === 0 ? 1 : subHeightC) * (2 - frameMbsOnly);
  const width = widthMbs * 16 - cropUnitX * (cropLeft + cropRight);
  const height = (2 - frameMbsOnly) * heightMapUnits * 16 - cropUnitY * (cropTop + cropBottom);
  if (width <= 0 || height <= 0 || width > 16384 || height > 16384) return false;
  out[0] = width;
  out[1] = height;
  return true;
}
