/**
 * Composes I420 tiles into one I420 canvas, in TypeScript on typed arrays.
 *
 * The canvas is filled with the background colour, then each tile is drawn into its region:
 * decoders deliver pictures already scaled by ffmpeg to fit the region with the source's aspect,
 * so drawing is a centred copy, one `set()` per row and plane, with the letterbox bars around it
 * filled black. A picture of another size (the last frame from before a layout change, until the
 * resized decoder delivers) is scaled here, nearest neighbour, which is cheap and only briefly
 * visible. Then the active speaker's border and the name label.
 *
 * Colours are BT.601 limited-range YUV, the same as ffmpeg's yuv420p (`rgbToYuv`).
 */
import type { I420Frame } from '@mcu/codec';
import { GLYPH_HEIGHT, GLYPH_WIDTH, glyphRows, textWidth } from './BitmapFont.js';
import { fitInside } from './Layouts.js';
import type { LayoutRegion } from './Layouts.js';

export interface Yuv {
  y: number;
  u: number;
  v: number;
}

/** BT.601 limited range, as ffmpeg converts rgb → yuv420p (swscale's default matrix). */
export function rgbToYuv(r: number, g: number, b: number): Yuv {
  const clamp = (x: number) => Math.max(0, Math.min(255, Math.round(x)));
  return {
    y: clamp(16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255),
    u: clamp(128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255),
    v: clamp(128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255),
  };
}

export const BLACK: Yuv = Object.freeze({ y: 16, u: 128, v: 128 });

export interface CompositorOptions {
  /** Canvas outside the regions. */
  background?: Yuv;
  /** Letterbox bars inside a region. */
  letterbox?: Yuv;
  /** A source with no picture (not started, or stalled). */
  placeholder?: Yuv;
  /** The active speaker's border. */
  border?: Yuv;
  /** Border width in pixels (even); default height / 180, at least 2. */
  borderWidth?: number;
  /** Draw name labels (tiles that have one). */
  labels?: boolean;
  /** Pixels per font pixel; default 1 below 480 lines, 2 from 480, 3 from 1080. */
  labelScale?: number;
}

export interface CompositorTile {
  region: LayoutRegion;
  /** The picture; null draws the placeholder. */
  frame: I420Frame | null;
  /** Draw the placeholder even though there is a (stale) picture. */
  placeholder?: boolean;
  /** Draw the active-speaker border. */
  highlight?: boolean;
  label?: string;
}

export class Compositor {
  readonly width: number;
  readonly height: number;
  /** Bytes of one canvas. */
  readonly frameBytes: number;
  private readonly background: Yuv;
  private readonly letterbox: Yuv;
  private readonly placeholder: Yuv;
  private readonly border: Yuv;
  private readonly borderWidth: number;
  private readonly labels: boolean;
  private readonly labelScale: number;
  private readonly uOffset: number;
  private readonly vOffset: number;
  private readonly chromaWidth: number;
  /** Source column per destination column, for nearest-neighbour scaling. */
  private readonly xMap: Int32Array;

  constructor(width: number, height: number, opts: CompositorOptions = {}) {
    if (!Number.isInteger(width) || !Number.isInteger(height) || width < 2 || height < 2 || width % 2 !== 0 || height % 2 !== 0) {
      throw new RangeError(`canvas ${width}x${height} must have even, positive dimensions`);
    }
    this.width = width;
    this.height = height;
    this.chromaWidth = width / 2;
    this.uOffset = width * height;
    this.vOffset = this.uOffset + (width / 2) * (height / 2);
    this.frameBytes = this.vOffset + (width / 2) * (height / 2);
    this.background = opts.background ?? rgbToYuv(18, 18, 22);
    this.letterbox = opts.letterbox ?? BLACK;
    this.placeholder = opts.placeholder ?? rgbToYuv(48, 48, 48);
    this.border = opts.border ?? rgbToYuv(255, 196, 0);
    this.borderWidth = Math.max(2, Math.floor((opts.borderWidth ?? Math.round(height / 180)) / 2) * 2);
    this.labels = opts.labels ?? false;
    this.labelScale = opts.labelScale ?? (height >= 1080 ? 3 : height >= 480 ? 2 : 1);
    this.xMap = new Int32Array(width);
  }

  /** Draws `tiles` (in order) over the background into `target` (at least `frameBytes` long). */
  compose(target: Uint8Array, tiles: readonly CompositorTile[]): void {
    if (target.length < this.frameBytes) throw new RangeError(`target of ${target.length} bytes is smaller than the ${this.frameBytes}-byte canvas`);
    const bg = this.background;
    target.fill(bg.y, 0, this.uOffset);
    target.fill(bg.u, this.uOffset, this.vOffset);
    target.fill(bg.v, this.vOffset, this.frameBytes);
    for (let i = 0; i < tiles.length; i++) this.drawTile(target, tiles[i]);
  }

  private drawTile(target: Uint8Array, tile: CompositorTile): void {
    const r = clipRegion(tile.region, this.width, this.height);
    if (r === null) return;
    const frame = tile.frame;
    if (frame === null || tile.placeholder === true || frame.width < 2 || frame.height < 2) {
      this.fillRect(target, r.x, r.y, r.width, r.height, this.placeholder);
    } else {
      let cw = frame.width & ~1;
      let ch = frame.height & ~1;
      // A picture that fits and touches two opposite edges (±2 px of rounding) is drawn as is.
      const fits = cw <= r.width && ch <= r.height && (r.width - cw <= 2 || r.height - ch <= 2);
      if (!fits) {
        const f = fitInside(frame.width, frame.height, r.width, r.height);
        cw = f.width;
        ch = f.height;
      }
      const cx = r.x + (((r.width - cw) >> 2) << 1);
      const cy = r.y + (((r.height - ch) >> 2) << 1);
      // Letterbox bars: above, below, left, right of the picture.
      const lb = this.letterbox;
      if (cy > r.y) this.fillRect(target, r.x, r.y, r.width, cy - r.y, lb);
      if (cy + ch < r.y + r.height) this.fillRect(target, r.x, cy + ch, r.width, r.y + r.height - cy - ch, lb);
      if (cx > r.x) this.fillRect(target, r.x, cy, cx - r.x, ch, lb);
      if (cx + cw < r.x + r.width) this.fillRect(target, cx + cw, cy, r.x + r.width - cx - cw, ch, lb);
      if (fits) this.blit(target, frame, cx, cy, cw, ch);
      else this.blitScaled(target, frame, cx, cy, cw, ch);
    }
    if (tile.highlight === true) this.drawBorder(target, r);
    if (this.labels && tile.label) this.drawLabel(target, r, tile.label);
  }

  /** Copies the top-left cw × ch of `frame` to (x, y): one `set()` per row and plane. */
  private blit(target: Uint8Array, frame: I420Frame, x: number, y: number, cw: number, ch: number): void {
    const src = frame.data;
    const sw = frame.width;
    const sh = frame.height;
    const W = this.width;
    for (let row = 0; row < ch; row++) {
      const s = row * sw;
      target.set(src.subarray(s, s + cw), (y + row) * W + x);
    }
    const scw = (sw + 1) >> 1;
    const sU = sw * sh;
    const sV = sU + scw * ((sh + 1) >> 1);
    const CW = this.chromaWidth;
    const hw = cw >> 1;
    const cx = x >> 1;
    const cy = y >> 1;
    for (let row = 0; row < ch >> 1; row++) {
      const s = row * scw;
      const d = (cy + row) * CW + cx;
      target.set(src.subarray(sU + s, sU + s + hw), this.uOffset + d);
      target.set(src.subarray(sV + s, sV + s + hw), this.vOffset + d);
    }
  }

  /** Nearest-neighbour scale of the whole `frame` into cw × ch at (x, y). */
  private blitScaled(target: Uint8Array, frame: I420Frame, x: number, y: number, cw: number, ch: number): void {
    const src = frame.data;
    const sw = frame.width;
    const sh = frame.height;
    const W = this.width;
    const xMap = this.xMap;
    for (let i = 0; i < cw; i++) xMap[i] = Math.min(sw - 1, Math.floor(((i + 0.5) * sw) / cw));
    for (let row = 0; row < ch; row++) {
      const s = Math.min(sh - 1, Math.floor(((row + 0.5) * sh) / ch)) * sw;
      const d = (y + row) * W + x;
      for (let i = 0; i < cw; i++) target[d + i] = src[s + xMap[i]];
    }
    const scw = (sw + 1) >> 1;
    const sch = (sh + 1) >> 1;
    const sU = sw * sh;
    const sV = sU + scw * sch;
    const hw = cw >> 1;
    const hh = ch >> 1;
    for (let i = 0; i < hw; i++) xMap[i] = Math.min(scw - 1, Math.floor(((i + 0.5) * scw) / hw));
    const CW = this.chromaWidth;
    for (let row = 0; row < hh; row++) {
      const s = Math.min(sch - 1, Math.floor(((row + 0.5) * sch) / hh)) * scw;
      const d = ((y >> 1) + row) * CW + (x >> 1);
      for (let i = 0; i < hw; i++) {
        target[this.uOffset + d + i] = src[sU + s + xMap[i]];
        target[this.vOffset + d + i] = src[sV + s + xMap[i]];
      }
    }
  }

  /** Fills a rectangle (even x, y, w, h) in all three planes. */
  private fillRect(target: Uint8Array, x: number, y: number, w: number, h: number, c: Yuv): void {
    if (w <= 0 || h <= 0) return;
    const W = this.width;
    for (let row = 0; row < h; row++) {
      const d = (y + row) * W + x;
      target.fill(c.y, d, d + w);
    }
    const CW = this.chromaWidth;
    const hw = w >> 1;
    for (let row = 0; row < h >> 1; row++) {
      const d = ((y >> 1) + row) * CW + (x >> 1);
      target.fill(c.u, this.uOffset + d, this.uOffset + d + hw);
      target.fill(c.v, this.vOffset + d, this.vOffset + d + hw);
    }
  }

  private drawBorder(target: Uint8Array, r: LayoutRegion): void {
    const b = Math.min(this.borderWidth, r.width >> 1, r.height >> 1) & ~1;
    if (b <= 0) return;
    const c = this.border;
    this.fillRect(target, r.x, r.y, r.width, b, c);
    this.fillRect(target, r.x, r.y + r.height - b, r.width, b, c);
    this.fillRect(target, r.x, r.y + b, b, r.height - 2 * b, c);
    this.fillRect(target, r.x + r.width - b, r.y + b, b, r.height - 2 * b, c);
  }

  /** White text on a black box at the region's bottom-left corner, cut to the region's width. */
  private drawLabel(target: Uint8Array, r: LayoutRegion, text: string): void {
    const s = this.labelScale;
    const pad = 2 * s;
    const margin = Math.max(this.borderWidth, 2) + 2;
    const maxChars = Math.floor((r.width - 2 * margin - 2 * pad + s) / ((GLYPH_WIDTH + 1) * s));
    if (maxChars <= 0) return;
    const label = text.length > maxChars ? text.slice(0, maxChars) : text;
    const boxW = (textWidth(label, s) + 2 * pad + 1) & ~1;
    const boxH = (GLYPH_HEIGHT * s + 2 * pad + 1) & ~1;
    const bx = (r.x + margin) & ~1;
    const by = (r.y + r.height - margin - boxH) & ~1;
    if (by < r.y || boxH > r.height) return;
    this.fillRect(target, bx, by, boxW, boxH, BLACK);
    const W = this.width;
    for (let i = 0; i < label.length; i++) {
      const rows = glyphRows(label[i]);
      const gx = bx + pad + i * (GLYPH_WIDTH + 1) * s;
      for (let gy = 0; gy < GLYPH_HEIGHT; gy++) {
        const bits = rows[gy];
        if (bits === 0) continue;
        for (let gxi = 0; gxi < GLYPH_WIDTH; gxi++) {
          if ((bits & (0x10 >> gxi)) === 0) continue;
          const px = gx + gxi * s;
          const py = by + pad + gy * s;
          for (let dy = 0; dy < s; dy++) target.fill(235, (py + dy) * W + px, (py + dy) * W + px + s);
        }
      }
    }
  }
}

/** The part of an (even-aligned) region inside the canvas, or null. */
function clipRegion(r: LayoutRegion, W: number, H: number): LayoutRegion | null {
  const x = Math.max(0, r.x & ~1);
  const y = Math.max(0, r.y & ~1);
  const x1 = Math.min(W, (r.x + r.width) & ~1);
  const y1 = Math.min(H, (r.y + r.height) & ~1);
  if (x1 - x < 2 || y1 - y < 2) return null;
  if (x === r.x && y === r.y && x1 - x === r.width && y1 - y === r.height) return r;
  return { sourceId: r.sourceId, x, y, width: x1 - x, height: y1 - y };
}
