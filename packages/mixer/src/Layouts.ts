/**
 * Video layouts: pure functions from (sources, canvas size, active speaker, options) to the
 * regions of the canvas each visible source occupies. Regions are in pixels, on even
 * coordinates (4:2:0 chroma covers 2×2 pixels), drawn in list order (later ones on top, which
 * custom layouts use for picture-in-picture). A source without a region is not visible, and the
 * mixer does not decode it.
 */

export interface LayoutRegion {
  sourceId: string;
  x: number;
  y: number;
  width: number;
  height: number;
}

/** A region of a custom layout, in fractions of the canvas (0..1). */
export interface RelativeRegion {
  sourceId: string;
  x: number;
  y: number;
  width: number;
  height: number;
}

export type VideoLayout =
  /** Everyone in equal tiles, 1×1 up to 5×5 (the active speaker replaces the last tile when there are more than 25). */
  | { kind: 'grid' }
  /** The active speaker (or the first source) large, the others in a strip below. */
  | { kind: 'speaker' }
  /** One named source large (a screen share, the keynote), the others in a strip below. */
  | { kind: 'presentation'; sourceId: string }
  | { kind: 'custom'; regions: RelativeRegion[] };

export interface LayoutOptions {
  /** Pixels between tiles and around the strip. */
  gap?: number;
  /** Height of the strip in speaker/presentation layouts, as a fraction of the canvas height. */
  stripFraction?: number;
  /** Most tiles in the strip; further sources are not shown. */
  maxStripTiles?: number;
  /** Aspect (width / height) the strip's tiles are sized for. */
  stripTileAspect?: number;
}

export const LAYOUT_DEFAULTS = Object.freeze({
  gap: 0,
  stripFraction: 0.2,
  maxStripTiles: 8,
  stripTileAspect: 16 / 9,
});

/** Largest grid: 5 × 5. */
export const MAX_GRID_TILES = 25;

export interface CanvasSize {
  width: number;
  height: number;
}

const even = (v: number): number => Math.max(0, Math.floor(v / 2) * 2);

export function computeLayout(
  layout: VideoLayout,
  sources: readonly string[],
  canvas: CanvasSize,
  activeSpeaker: string | null = null,
  opts: LayoutOptions = {},
): LayoutRegion[] {
  const o = { ...LAYOUT_DEFAULTS, ...opts };
  if (sources.length === 0) return [];
  switch (layout.kind) {
    case 'grid':
      return gridLayout(sources, canvas, activeSpeaker, o.gap);
    case 'speaker': {
      const main = activeSpeaker !== null && sources.includes(activeSpeaker) ? activeSpeaker : sources[0];
      return mainAndStrip(main, sources, canvas, o);
    }
    case 'presentation':
      return sources.includes(layout.sourceId)
        ? mainAndStrip(layout.sourceId, sources, canvas, o)
        : gridLayout(sources, canvas, activeSpeaker, o.gap);
    case 'custom':
      return customLayout(layout.regions, sources, canvas);
  }
}

function gridLayout(sources: readonly string[], canvas: CanvasSize, activeSpeaker: string | null, gap: number): LayoutRegion[] {
  let shown = sources.slice(0, MAX_GRID_TILES);
  if (sources.length > MAX_GRID_TILES && activeSpeaker !== null && sources.includes(activeSpeaker) && !shown.includes(activeSpeaker)) {
    shown = [...shown.slice(0, MAX_GRID_TILES - 1), activeSpeaker];
  }
  const n = shown.length;
  const cols = Math.ceil(Math.sqrt(n));
  const rows = Math.ceil(n / cols);
  const tileW = even((canvas.width - gap * (cols + 1)) / cols);
  const tileH = even((canvas.height - gap * (rows + 1)) / rows);
  const gridH = rows * tileH + (rows - 1) * gap;
  const y0 = even((canvas.height - gridH) / 2);
  const regions: LayoutRegion[] = [];
  for (let r = 0; r < rows; r++) {
    // An incomplete last row is centred.
    const inRow = Math.min(cols, n - r * cols);
    const rowW = inRow * tileW + (inRow - 1) * gap;
    const x0 = even((canvas.width - rowW) / 2);
    for (let c = 0; c < inRow; c++) {
      regions.push({ sourceId: shown[r * cols + c], x: x0 + c * (tileW + gap), y: y0 + r * (tileH + gap), width: tileW, height: tileH });
    }
  }
  return regions;
}

function mainAndStrip(main: string, sources: readonly string[], canvas: CanvasSize, o: Required<LayoutOptions>): LayoutRegion[] {
  const others = sources.filter((s) => s !== main).slice(0, o.maxStripTiles);
  if (others.length === 0) return [{ sourceId: main, x: 0, y: 0, width: even(canvas.width), height: even(canvas.height) }];
  const stripH = even(canvas.height * o.stripFraction);
  const mainH = even(canvas.height - stripH - o.gap);
  const regions: LayoutRegion[] = [{ sourceId: main, x: 0, y: 0, width: even(canvas.width), height: mainH }];
  const tileH = even(stripH - o.gap);
  const tileW = even(Math.min(tileH * o.stripTileAspect, (canvas.width - o.gap * (others.length + 1)) / others.length));
  const rowW = others.length * tileW + (others.length - 1) * o.gap;
  const x0 = even((canvas.width - rowW) / 2);
  const y = even(canvas.height - tileH - o.gap / 2);
  others.forEach((id, i) => regions.push({ sourceId: id, x: x0 + i * (tileW + o.gap), y, width: tileW, height: tileH }));
  return regions;
}

function customLayout(regions: readonly RelativeRegion[], sources: readonly string[], canvas: CanvasSize): LayoutRegion[] {
  const out: LayoutRegion[] = [];
  for (const r of regions) {
    if (!sources.includes(r.sourceId)) continue;
    const x = even(Math.round(r.x * canvas.width));
    const y = even(Math.round(r.y * canvas.height));
    const width = Math.min(even(Math.round(r.width * canvas.width)), even(canvas.width) - x);
    const height = Math.min(even(Math.round(r.height * canvas.height)), even(canvas.height) - y);
    if (width >= 2 && height >= 2) out.push({ sourceId: r.sourceId, x, y, width, height });
  }
  return out;
}

/**
 * Checks a layout that came from outside (an API body, a config file) and returns it typed.
 * Throws a TypeError/RangeError that says what is wrong.
 */
export function parseLayout(value: unknown): VideoLayout {
  if (typeof value !== 'object' || value === null) throw new TypeError('layout must be an object');
  const v = value as Record<string, unknown>;
  switch (v.kind) {
    case 'grid':
    case 'speaker':
      return { kind: v.kind };
    case 'presentation':
      if (typeof v.sourceId !== 'string' || v.sourceId.length === 0) throw new TypeError('presentation layout needs a sourceId');
      return { kind: 'presentation', sourceId: v.sourceId };
    case 'custom': {
      if (!Array.isArray(v.regions)) throw new TypeError('custom layout needs a regions array');
      if (v.regions.length > 64) throw new RangeError('custom layout has more than 64 regions');
      const regions = v.regions.map((r: unknown, i: number): RelativeRegion => {
        const q = r as Record<string, unknown>;
        if (typeof q !== 'object' || q === null || typeof q.sourceId !== 'string') throw new TypeError(`region ${i} needs a sourceId`);
        for (const k of ['x', 'y', 'width', 'height'] as const) {
          const n = q[k];
          if (typeof n !== 'number' || !Number.isFinite(n) || n < 0 || n > 1) throw new RangeError(`region ${i}: ${k} must be a number in 0..1`);
        }
        const [x, y, width, height] = [q.x, q.y, q.width, q.height] as number[];
        if (width === 0 || height === 0) throw new RangeError(`region ${i} is empty`);
        if (x + width > 1 + 1e-9 || y + height > 1 + 1e-9) throw new RangeError(`region ${i} extends past the canvas`);
        return { sourceId: q.sourceId, x, y, width, height };
      });
      return { kind: 'custom', regions };
    }
    default:
      throw new RangeError(`unknown layout kind ${JSON.stringify(v.kind)}`);
  }
}

/** Largest even size with the aspect of `srcW × srcH` that fits `boxW × boxH` (letterboxing). */
export function fitInside(srcW: number, srcH: number, boxW: number, boxH: number): { width: number; height: number } {
  if (srcW <= 0 || srcH <= 0) return { width: even(boxW), height: even(boxH) };
  const scale = Math.min(boxW / srcW, boxH / srcH);
  return { width: Math.max(2, Math.min(even(boxW), even(Math.round(srcW * scale)))), height: Math.max(2, Math.min(even(boxH), even(Math.round(srcH * scale)))) };
}
