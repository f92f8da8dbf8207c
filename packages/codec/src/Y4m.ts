/**
 * YUV4MPEG2 (y4m) as written by ffmpeg's `-f yuv4mpegpipe`: one text header line
 * ("YUV4MPEG2 W320 H180 F30:1 Ip A1:1 C420jpeg …\n"), then per frame a "FRAME\n" line and the
 * raw planes.
 *
 * Decoders write y4m rather than `-f rawvideo`: the header states the size ffmpeg really produces
 * (so a mismatch is caught instead of tearing every later frame), the FRAME marker re-checks sync
 * on every frame, and — measured with ffmpeg 5.1 — the rawvideo muxer held each frame back until
 * the next one arrived (one frame of added latency), the y4m muxer does not.
 */

import { i420FrameBytes } from './VideoFrame.js';

const MAX_LINE = 512;

/**
 * Incremental y4m parser. Frame bytes are copied straight from the pipe's chunks into a buffer
 * the owner hands out (`acquire`), typically from a pool, so no frame is allocated.
 */
export class Y4mReader {
  width = 0;
  height = 0;
  frames = 0;
  /** Set on a stream this reader cannot follow; everything after is ignored. */
  error: string | null = null;

  private line = new Uint8Array(MAX_LINE);
  private lineLength = 0;
  private headerDone = false;
  private inFrame = false;
  private frameBytes = 0;
  private target: Uint8Array | null = null;
  private have = 0;

  constructor(
    /** A buffer of at least `bytes` for the next frame. */
    private readonly acquire: (bytes: number, width: number, height: number) => Uint8Array,
    /** A whole frame is in `buffer` (the one `acquire` gave). */
    private readonly onFrame: (buffer: Uint8Array, width: number, height: number) => void,
  ) {}

  reset(): void {
    this.lineLength = 0;
    this.headerDone = false;
    this.inFrame = false;
    this.target = null;
    this.have = 0;
    this.error = null;
  }

  push(chunk: Uint8Array): void {
    let o = 0;
    const n = chunk.length;
    while (o < n && this.error === null) {
      if (this.inFrame) {
        const take = Math.min(this.frameBytes - this.have, n - o);
        this.target!.set(chunk.subarray(o, o + take), this.have);
        this.have += take;
        o += take;
        if (this.have === this.frameBytes) {
          this.inFrame = false;
          this.frames++;
          const target = this.target!;
          this.target = null;
          this.onFrame(target, this.width, this.height);
        }
        continue;
      }
      // A text line: the stream header, or a FRAME marker.
      const nl = chunk.indexOf(0x0a, o);
      const end = nl < 0 ? n : nl;
      if (this.lineLength + (end - o) > MAX_LINE) {
        this.error = 'y4m header line too long';
        return;
      }
      this.line.set(chunk.subarray(o, end), this.lineLength);
      this.lineLength += end - o;
      o = end;
      if (nl < 0) continue;
      o++; // the newline
      const text = Buffer.from(this.line.buffer, this.line.byteOffset, this.lineLength).toString('latin1');
      this.lineLength = 0;
      if (!this.headerDone) this.parseHeader(text);
      else if (text.startsWith('FRAME')) this.beginFrame();
      else this.error = `expected FRAME, got "${text.slice(0, 20)}"`;
    }
  }

  private parseHeader(text: string): void {
    if (!text.startsWith('YUV4MPEG2')) {
      this.error = 'not a y4m stream';
      return;
    }
    let colour = '420';
    for (const token of text.split(' ')) {
      if (token[0] === 'W') this.width = Number(token.slice(1));
      else if (token[0] === 'H') this.height = Number(token.slice(1));
      else if (token[0] === 'C') colour = token.slice(1);
    }
    if (!colour.startsWith('420') || !(this.width > 0 && this.height > 0)) {
      this.error = `unsupported y4m stream: ${this.width}x${this.height} C${colour}`;
      return;
    }
    this.frameBytes = i420FrameBytes(this.width, this.height);
    this.headerDone = true;
  }

  private beginFrame(): void {
    const target = this.acquire(this.frameBytes, this.width, this.height);
    if (target.length < this.frameBytes) {
      this.error = `frame buffer of ${target.length} bytes is too small for ${this.width}x${this.height}`;
      return;
    }
    this.target = target;
    this.have = 0;
    this.inFrame = true;
  }
}
