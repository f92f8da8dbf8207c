/** What commands print: human text by default, one JSON document with --json (for scripts). */

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

export function printLines(lines: string[]): void {
  process.stdout.write(`${lines.join('\n')}\n`);
}

/** A plain text table, columns padded to their widest cell. */
export function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]?.length ?? 0)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join('  ');
  printLines([line(header), ...rows.map(line)]);
}

/**
 * Progress of a long operation on stderr, rewritten in place, and only when stderr is a terminal:
 * logs and pipes get the outcome, not the animation.
 */
export class Progress {
  readonly #enabled = process.stderr.isTTY === true;
  #shown = false;

  update(text: string): void {
    if (!this.#enabled) return;
    process.stderr.write(`\r\x1b[2K${text}`);
    this.#shown = true;
  }

  done(): void {
    if (this.#shown) process.stderr.write('\r\x1b[2K');
    this.#shown = false;
  }
}
