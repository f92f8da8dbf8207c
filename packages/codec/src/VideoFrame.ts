/**
 * A raw picture in I420 (planar YUV 4:2:0, BT.601 limited range as ffmpeg's yuv420p): the Y plane
 * (width × height), then U and V at half width and height (rounded up), each row tightly packed.
 */
export interface I420Frame {
  /** The planes back to back; may be longer than `i420FrameBytes(width, height)`. */
  readonly data: Uint8Array;
  readonly width: number;
  readonly height: number;
}

/** Bytes of a 4:2:0 frame. */
export function i420FrameBytes(width: number, height: number): number {
  return width * height + 2 * ((width + 1) >> 1) * ((height + 1) >> 1);
}
