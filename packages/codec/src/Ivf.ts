/**
 * IVF, the framing libvpx tools use: a 32-byte file header, then each frame behind a 12-byte
 * header (size, 64-bit pts), all little-endian.
 *
 * ```
 *  0  "DKIF"  4  version (0)  6  header size (32)  8  fourcc  12 width  14 height
 *  16 timebase denominator  20 timebase numerator  24 frame count  28 unused
 *  frame: 0 size (32)  4 pts (64)  12 data
 * ```
 * We feed ffmpeg through it in both directions because every frame arrives whole and immediately:
 * compressed frames to decoders (VP8, and H.264 Annex-B access units: ffmpeg's ivf demuxer maps
 * the fourcc "H264" to H.264, so no parser waits for the next start code), raw I420 frames to
 * encoders ("I420" is rawvideo) with pts we choose, and VP8 frames back from encoders.
 */

export const IVF_FILE_HEADER_BYTES = 32;
export const IVF_FRAME_HEADER_BYTES = 12;

export function ivfFileHeader(fourcc: string, width: number, height: number, timebaseDen = 90_000, timebaseNum = 1): Buffer {
  if (fourcc.length !== 4) throw new RangeError(`fourcc must be 4 characters, got "${fourcc}"`);
  const h = Buffer.alloc(IVF_FILE_HEADER_BYTES);
  h.write('DKIF', 0, 'latin1');
  h.writeUInt16LE(0, 4);
  h.writeUInt16LE(IVF_FILE_HEADER_BYTES, 6);
  h.write(fourcc, 8, 'latin1');
  h.writeUInt16LE(width & 0xffff, 12);
  h.writeUInt16LE(height & 0xffff, 14);
  h.writeUInt32LE(timebaseDen, 16);
  h.writeUInt32LE(timebaseNum, 20);
  return h;
}

/** Writes a frame header at `out[offset]`; `pts` must be a non-negative integer below 2^53. */
export function writeIvfFrameHeader(out: Uint8Array, offset: number, size: number, pts: number): void {
  const v = new DataView(out.buffer, out.byteOffset + offset, IVF_FRAME_HEADER_BYTES);
  v.setUint32(0, size, true);
  v.setUint32(4, pts % 0x1_0000_0000, true);
  v.setUint32(8, Math.floor(pts / 0x1_0000_0000), true);
}

/** A whole IVF file of `frames` (frame k at pts k, in a 1/`fps` time base): for ffmpeg to decode. */
export function ivfFile(fourcc: string, width: number, height: number, frames: readonly Uint8Array[], fps = 30): Buffer {
  const parts: Uint8Array[] = [ivfFileHeader(fourcc, width, height, fps, 1)];
  frames.forEach((data, k) => {
    const h = Buffer.alloc(IVF_FRAME_HEADER_BYTES);
    writeIvfFrameHeader(h, 0, data.length, k);
    parts.push(h, data);
  });
  return Buffer.concat(parts);
}

/** Receives one frame: `data[0 .. length)` is valid during the call only. */
export type IvfFrameSink = (data: Uint8Array, length: number, pts: number) => void;

/**
 * Incremental IVF parser for a pipe: chunks in, whole frames out. Frames are assembled in one
 * growing buffer that is reused, so steady state allocates nothing.
 */
export class IvfReader {
  fourcc = '';
  width = 0;
  height = 0;
  frames = 0;
  /** Set when the stream is not IVF; the reader then ignores everything. */
  error: string | null = null;

  private header = new Uint8Array(IVF_FILE_HEADER_BYTES);
  private headerHave = 0;
  private fileHeaderDone = false;
  private frameHeader = new Uint8Array(IVF_FRAME_HEADER_BYTES);
  private frameHeaderHave = 0;
  private frameSize = -1;
  private framePts = 0;
  private buffer = new Uint8Array(64 * 1024);
  private have = 0;

  constructor(
    private readonly onFrame: IvfFrameSink,
    private readonly maxFrameBytes = 16 << 20,
  ) {}

  reset(): void {
    this.headerHave = 0;
    this.fileHeaderDone = false;
    this.frameHeaderHave = 0;
    this.frameSize = -1;
    this.have = 0;
    this.error = null;
  }

  push(chunk: Uint8Array): void {
    let o = 0;
    const n = chunk.length;
    while (o < n && this.error === null) {
      if (!this.fileHeaderDone) {
        const take = Math.min(IVF_FILE_HEADER_BYTES - this.headerHave, n - o);
        this.header.set(chunk.subarray(o, o + take), this.headerHave);
        this.headerHave += take;
        o += take;
        if (this.headerHave === IVF_FILE_HEADER_BYTES) this.parseFileHeader();
        continue;
      }
      if (this.frameSize < 0) {
        const take = Math.min(IVF_FRAME_HEADER_BYTES - this.frameHeaderHave, n - o);
        this.frameHeader.set(chunk.subarray(o, o + take), this.frameHeaderHave);
        this.frameHeaderHave += take;
        o += take;
        if (this.frameHeaderHave === IVF_FRAME_HEADER_BYTES) {
          const h = this.frameHeader;
          const size = (h[0] | (h[1] << 8) | (h[2] << 16) | (h[3] << 24)) >>> 0;
          const lo = (h[4] | (h[5] << 8) | (h[6] << 16) | (h[7] << 24)) >>> 0;
          const hi = (h[8] | (h[9] << 8) | (h[10] << 16) | (h[11] << 24)) >>> 0;
          if (size > this.maxFrameBytes) {
            this.error = `IVF frame of ${size} bytes exceeds ${this.maxFrameBytes}`;
            return;
          }
          this.frameSize = size;
          this.framePts = hi * 0x1_0000_0000 + lo;
          this.frameHeaderHave = 0;
          this.have = 0;
          if (this.buffer.length < size) this.buffer = new Uint8Array(Math.max(size, this.buffer.length * 2));
          if (size === 0) this.emit();
        }
        continue;
      }
      const take = Math.min(this.frameSize - this.have, n - o);
      this.buffer.set(chunk.subarray(o, o + take), this.have);
      this.have += take;
      o += take;
      if (this.have === this.frameSize) this.emit();
    }
  }

  private emit(): void {
    const size = this.frameSize;
    this.frameSize = -1;
    this.frames++;
    this.onFrame(this.buffer, size, this.framePts);
  }

  private parseFileHeader(): void {
    const h = this.header;
    if (h[0] !== 0x44 || h[1] !== 0x4b || h[2] !== 0x49 || h[3] !== 0x46) {
      this.error = 'not an IVF stream (no DKIF signature)';
      return;
    }
    const headerSize = h[6] | (h[7] << 8);
    if (headerSize !== IVF_FILE_HEADER_BYTES) {
      this.error = `unsupported IVF header size ${headerSize}`;
      return;
    }
    this.fourcc = String.fromCharCode(h[8], h[9], h[10], h[11]);
    this.width = h[12] | (h[13] << 8);
    this.height = h[14] | (h[15] << 8);
    this.fileHeaderDone = true;
  }
}

/** Splits a whole IVF file into frames (copies; for files, tests and benchmarks). */
export function readIvfFile(file: Uint8Array): { fourcc: string; width: number; height: number; frames: { data: Uint8Array; pts: number }[] } {
  const frames: { data: Uint8Array; pts: number }[] = [];
  const reader = new IvfReader((data, length, pts) => frames.push({ data: data.slice(0, length), pts }));
  reader.push(file);
  if (reader.error) throw new Error(reader.error);
  return { fourcc: reader.fourcc, width: reader.width, height: reader.height, frames };
}
