import { describe, expect, it } from 'vitest';
import type { I420Frame } from '@mcu/codec';
import { BLACK, Compositor, computeLayout, fitInside, parseLayout, rgbToYuv } from '../src/index.js';
import type { CompositorTile, LayoutRegion, Yuv } from '../src/index.js';

const RED = rgbToYuv(255, 0, 0);
const BLUE = rgbToYuv(0, 0, 255);
const GREEN = rgbToYuv(0, 255, 0);
const BG = rgbToYuv(10, 20, 30);
const BORDER = rgbToYuv(255, 255, 0);
const GREY = rgbToYuv(60, 60, 60);

function solid(width: number, height: number, c: Yuv): I420Frame {
  const data = new Uint8Array(width * height * 1.5);
  data.fill(c.y, 0, width * height);
  data.fill(c.u, width * height, width * height * 1.25);
  data.fill(c.v, width * height * 1.25);
  return { data, width, height };
}

/** The Y, U and V of canvas pixel (x, y). */
function pixel(canvas: Uint8Array, W: number, H: number, x: number, y: number): Yuv {
  return {
    y: canvas[y * W + x],
    u: canvas[W * H + (y >> 1) * (W / 2) + (x >> 1)],
    v: canvas[W * H * 1.25 + (y >> 1) * (W / 2) + (x >> 1)],
  };
}

function compose(W: number, H: number, tiles: CompositorTile[], labels = false): Uint8Array {
  const c = new Compositor(W, H, { background: BG, border: BORDER, placeholder: GREY, borderWidth: 2, labels });
  const canvas = new Uint8Array(c.frameBytes);
  c.compose(canvas, tiles);
  return canvas;
}

describe('layouts', () => {
  const ids = (n: number) => Array.from({ length: n }, (_, i) => `s${i}`);

  it('grid grows from 1×1 to 5×5, centres an incomplete last row and stays on even pixels', () => {
    const canvas = { width: 1280, height: 720 };
    /** [columns, rows] */
    const shape = (n: number) => {
      const r = computeLayout({ kind: 'grid' }, ids(n), canvas);
      const rows = new Map<number, number>();
      for (const x of r) rows.set(x.y, (rows.get(x.y) ?? 0) + 1);
      return [Math.max(...rows.values()), rows.size];
    };
    expect([1, 2, 4, 5, 9, 10, 16, 25].map(shape)).toEqual([[1, 1], [2, 1], [2, 2], [3, 2], [3, 3], [4, 3], [4, 4], [5, 5]]);
    const three = computeLayout({ kind: 'grid' }, ids(3), canvas);
    expect(three).toEqual([
      { sourceId: 's0', x: 0, y: 0, width: 640, height: 360 },
      { sourceId: 's1', x: 640, y: 0, width: 640, height: 360 },
      { sourceId: 's2', x: 320, y: 360, width: 640, height: 360 },
    ]);
    const nine = computeLayout({ kind: 'grid' }, ids(9), canvas);
    expect(nine.every((r) => r.x % 2 === 0 && r.y % 2 === 0 && r.width === 426 && r.height === 240)).toBe(true);
  });

  it('grid shows at most 25, and puts the active speaker in when it would be left out', () => {
    const r = computeLayout({ kind: 'grid' }, ids(30), { width: 1280, height: 720 }, 's29');
    expect(r.length).toBe(25);
    expect(r.map((x) => x.sourceId)).toContain('s29');
  });

  it('speaker: the active speaker large on top, the others in a centred strip below', () => {
    const r = computeLayout({ kind: 'speaker' }, ids(4), { width: 1280, height: 720 }, 's2');
    expect(r[0]).toEqual({ sourceId: 's2', x: 0, y: 0, width: 1280, height: 576 });
    expect(r.slice(1).map((x) => x.sourceId)).toEqual(['s0', 's1', 's3']);
    for (const t of r.slice(1)) {
      expect(t.y).toBe(576);
      expect(t.height).toBe(144);
      expect(t.width).toBe(256);
    }
    expect(r[1].x).toBe((1280 - 3 * 256) / 2);
    // No speaker: the first source is large; alone: full canvas.
    expect(computeLayout({ kind: 'speaker' }, ids(3), { width: 1280, height: 720 })[0].sourceId).toBe('s0');
    expect(computeLayout({ kind: 'speaker' }, ids(1), { width: 1280, height: 720 })).toEqual([{ sourceId: 's0', x: 0, y: 0, width: 1280, height: 720 }]);
  });

  it('presentation puts the named source large; a missing one falls back to the grid', () => {
    const r = computeLayout({ kind: 'presentation', sourceId: 's3' }, ids(4), { width: 640, height: 360 }, 's1');
    expect(r[0].sourceId).toBe('s3');
    expect(r[0].height).toBe(288);
    expect(computeLayout({ kind: 'presentation', sourceId: 'gone' }, ids(4), { width: 640, height: 360 })).toEqual(
      computeLayout({ kind: 'grid' }, ids(4), { width: 640, height: 360 }),
    );
  });

  it('custom maps relative regions to even pixels, in order, skipping unknown sources', () => {
    const layout = parseLayout({
      kind: 'custom',
      regions: [
        { sourceId: 's0', x: 0, y: 0, width: 1, height: 1 },
        { sourceId: 'nobody', x: 0, y: 0, width: 0.5, height: 0.5 },
        { sourceId: 's1', x: 0.7, y: 0.7, width: 0.25, height: 0.25 },
      ],
    });
    expect(computeLayout(layout, ids(2), { width: 1280, height: 720 })).toEqual([
      { sourceId: 's0', x: 0, y: 0, width: 1280, height: 720 },
      { sourceId: 's1', x: 896, y: 504, width: 320, height: 180 },
    ]);
  });

  it('parseLayout says what is wrong with a bad layout', () => {
    expect(() => parseLayout({ kind: 'mosaic' })).toThrow(/unknown layout kind/);
    expect(() => parseLayout({ kind: 'presentation' })).toThrow(/sourceId/);
    expect(() => parseLayout({ kind: 'custom', regions: [{ sourceId: 'a', x: 0.5, y: 0, width: 0.6, height: 1 }] })).toThrow(/past the canvas/);
    expect(() => parseLayout({ kind: 'custom', regions: [{ sourceId: 'a', x: -1, y: 0, width: 0.5, height: 1 }] })).toThrow(/x must be/);
  });

  it('fitInside keeps the aspect on even sizes', () => {
    expect(fitInside(1280, 720, 426, 240)).toEqual({ width: 426, height: 240 });
    expect(fitInside(320, 240, 160, 180)).toEqual({ width: 160, height: 120 });
    expect(fitInside(720, 1280, 640, 360)).toEqual({ width: 202, height: 360 });
  });
});

describe('Compositor', () => {
  it('grid: each picture centred in its tile, letterbox bars black, background where no tile is', () => {
    const W = 64;
    const H = 36;
    const regions = computeLayout({ kind: 'grid' }, ['a', 'b', 'c'], { width: W, height: H });
    // 2×2 grid of 32×18 tiles, the third centred on the second row. Pictures 4:3 → 24×18.
    const frames: Record<string, I420Frame> = { a: solid(24, 18, RED), b: solid(24, 18, BLUE), c: solid(24, 18, GREEN) };
    const canvas = compose(W, H, regions.map((region) => ({ region, frame: frames[region.sourceId] })));
    expect(pixel(canvas, W, H, 16, 9)).toEqual(RED);
    expect(pixel(canvas, W, H, 48, 9)).toEqual(BLUE);
    expect(pixel(canvas, W, H, 32, 27)).toEqual(GREEN);
    // Picture a spans x 4..27 (bars 0..3 and 28..31).
    expect(pixel(canvas, W, H, 4, 0)).toEqual(RED);
    expect(pixel(canvas, W, H, 27, 17)).toEqual(RED);
    expect(pixel(canvas, W, H, 2, 9)).toEqual(BLACK);
    expect(pixel(canvas, W, H, 29, 9)).toEqual(BLACK);
    // Second row: tile c at x 16..47; outside it, background.
    expect(pixel(canvas, W, H, 4, 27)).toEqual(BG);
    expect(pixel(canvas, W, H, 60, 30)).toEqual(BG);
    expect(pixel(canvas, W, H, 18, 27)).toEqual(BLACK);
  });

  it('speaker: large region with border on the active speaker, strip below, placeholder for a source without picture', () => {
    const W = 128;
    const H = 72;
    const regions = computeLayout({ kind: 'speaker' }, ['a', 'b', 'c'], { width: W, height: H }, 'b');
    expect(regions[0]).toMatchObject({ sourceId: 'b', x: 0, y: 0, width: 128, height: 58 });
    const canvas = compose(
      W,
      H,
      regions.map((region) => ({
        region,
        frame: region.sourceId === 'b' ? solid(98, 56, BLUE) : region.sourceId === 'a' ? solid(28, 16, RED) : null,
        highlight: region.sourceId === 'b',
      })),
    );
    expect(pixel(canvas, W, H, 64, 28)).toEqual(BLUE);
    expect(pixel(canvas, W, H, 0, 28)).toEqual(BORDER); // border over the bar
    expect(pixel(canvas, W, H, 64, 1)).toEqual(BORDER);
    expect(pixel(canvas, W, H, 64, 2)).toEqual(BLUE);
    expect(pixel(canvas, W, H, 10, 28)).toEqual(BLACK); // letterbox bar (98 wide in 128)
    const [a, c] = [regions[1], regions[2]];
    expect(pixel(canvas, W, H, a.x + a.width / 2, a.y + a.height / 2)).toEqual(RED);
    expect(pixel(canvas, W, H, c.x + c.width / 2, c.y + c.height / 2)).toEqual(GREY);
  });

  it('presentation and custom: later regions are drawn on top (picture in picture)', () => {
    const W = 64;
    const H = 36;
    const regions = computeLayout(
      parseLayout({
        kind: 'custom',
        regions: [
          { sourceId: 'a', x: 0, y: 0, width: 1, height: 1 },
          { sourceId: 'b', x: 0.5, y: 0.5, width: 0.5, height: 0.5 },
        ],
      }),
      ['a', 'b'],
      { width: W, height: H },
    );
    const canvas = compose(W, H, [
      { region: regions[0], frame: solid(64, 36, RED) },
      { region: regions[1], frame: solid(32, 18, BLUE) },
    ]);
    expect(pixel(canvas, W, H, 10, 10)).toEqual(RED);
    expect(pixel(canvas, W, H, 50, 30)).toEqual(BLUE);
    const p = computeLayout({ kind: 'presentation', sourceId: 'b' }, ['a', 'b'], { width: W, height: H });
    const canvas2 = compose(W, H, p.map((region) => ({ region, frame: region.sourceId === 'a' ? solid(12, 6, RED) : solid(48, 28, BLUE) })));
    expect(pixel(canvas2, W, H, 32, 14)).toEqual(BLUE);
    expect(pixel(canvas2, W, H, p[1].x + 6, p[1].y + 3)).toEqual(RED);
  });

  it('scales a picture of another size (nearest neighbour) to fit with the right aspect', () => {
    const W = 64;
    const H = 36;
    const region: LayoutRegion = { sourceId: 'a', x: 0, y: 0, width: 32, height: 36 };
    // A 16×12 picture (4:3) in a 32×36 region: drawn 32×24 at y 6..29.
    const f = solid(16, 12, RED);
    for (let y = 0; y < 6; y++) f.data.fill(200, y * 16, y * 16 + 16); // top half brighter
    const canvas = compose(W, H, [{ region, frame: f }]);
    expect(pixel(canvas, W, H, 16, 4)).toEqual(BLACK);
    expect(pixel(canvas, W, H, 16, 7).y).toBe(200);
    expect(pixel(canvas, W, H, 16, 28)).toEqual(RED);
    expect(pixel(canvas, W, H, 16, 31)).toEqual(BLACK);
  });

  it('draws a name label in white on black when labels are on', () => {
    const W = 160;
    const H = 90;
    const region: LayoutRegion = { sourceId: 'a', x: 0, y: 0, width: 160, height: 90 };
    const without = compose(W, H, [{ region, frame: solid(160, 90, BLUE), label: 'ALICE' }]);
    const withLabel = compose(W, H, [{ region, frame: solid(160, 90, BLUE), label: 'ALICE' }], true);
    expect(without.every((v, i) => i >= W * H || v === BLUE.y)).toBe(true);
    let white = 0;
    let black = 0;
    for (let i = 0; i < W * H; i++) {
      if (withLabel[i] === 235) white++;
      if (withLabel[i] === BLACK.y) black++;
    }
    expect(white).toBeGreaterThan(20);
    expect(black).toBeGreaterThan(white);
    // Bottom-left corner, not the top.
    expect(withLabel.subarray(0, W * 40).includes(235)).toBe(false);
  });
});
