/**
 * A 5×7 pixel font (the classic LCD-controller glyph shapes) for name labels on video tiles:
 * upper-case letters, digits and common punctuation; lower case is drawn as upper case and any
 * other character as '?'. Tiny and dependency-free, which is all a label needs.
 */

export const GLYPH_WIDTH = 5;
export const GLYPH_HEIGHT = 7;

const CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_.:'()/!?,#&@+";
/** Seven rows per glyph, each a base-32 digit whose 5 bits are the row's pixels, MSB left. */
const ROWS =
  'ehhvhhhuhhuhhuehgggheuhhhhhuvgguggvvggugggehgnhhfhhhvhhhe44444e72222ichikokihggggggvhrllhhhhhpljhhehhhhheuhhugggehhhliduhhukihfgge11uv444444hhhhhhehhhhha4hhhlllahha4ahhhha4444v1248gvehjlphe4c4444eeh1248vv2421he26aiv22vgu11he68guhhev124888ehhehheehhf12c0000000000v000000000v00000cc0cc0cc044800002488842842224801248g04444404eh124040000c48aavavaacik8lideh1dlle044v440';

const glyphs = new Map<string, Uint8Array>();
for (let i = 0; i < CHARS.length; i++) {
  const rows = new Uint8Array(GLYPH_HEIGHT);
  for (let r = 0; r < GLYPH_HEIGHT; r++) rows[r] = parseInt(ROWS[i * GLYPH_HEIGHT + r], 32);
  glyphs.set(CHARS[i], rows);
}
const unknown = glyphs.get('?')!;

/** The seven row bitmaps of `ch` (bit 4 is the leftmost pixel). */
export function glyphRows(ch: string): Uint8Array {
  return glyphs.get(ch) ?? glyphs.get(ch.toUpperCase()) ?? unknown;
}

/** Width in pixels of `text` at `scale`, with one blank column between glyphs. */
export function textWidth(text: string, scale: number): number {
  return text.length === 0 ? 0 : (text.length * (GLYPH_WIDTH + 1) - 1) * scale;
}
