// Plain-text tables for a terminal: columns as wide as their widest cell as a terminal shows it
// (a CJK character or an emoji takes two columns, a combining mark none), cells on one line
// (control characters, a newline of a command's standard error among them, become spaces) and
// cut with an ellipsis past a column's limit, so that every row lines up with its header.

/** A column's cell limit in terminal columns, or none. */
export type ColumnLimit = number | undefined;

const zeroWidth = /^[\p{Mn}\p{Me}\u200b-\u200f\u2060-\u2064\ufeff]$/u;
const pictographic = /^\p{Extended_Pictographic}$/u;

/** Whether code point `cp` takes two terminal columns (East Asian Wide or Fullwidth). */
function isWide(cp: number): boolean {
  return (
    (cp >= 0x1100 && cp <= 0x115f) ||
    (cp >= 0x2e80 && cp <= 0x303e) ||
    (cp >= 0x3041 && cp <= 0x33ff) ||
    (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x4e00 && cp <= 0x9fff) ||
    (cp >= 0xa000 && cp <= 0xa4cf) ||
    (cp >= 0xac00 && cp <= 0xd7a3) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0xfe30 && cp <= 0xfe4f) ||
    (cp >= 0xff00 && cp <= 0xff60) ||
    (cp >= 0xffe0 && cp <= 0xffe6) ||
    (cp >= 0x1f300 && cp <= 0x1f64f) ||
    (cp >= 0x1f900 && cp <= 0x1f9ff) ||
    (cp >= 0x20000 && cp <= 0x3fffd)
  );
}

/** The terminal columns one character takes: 0, 1 or 2. */
function charWidth(ch: string): number {
  if (zeroWidth.test(ch)) return 0;
  const cp = ch.codePointAt(0) ?? 0;
  return isWide(cp) || (cp > 0xffff && pictographic.test(ch)) ? 2 : 1;
}

/** The terminal columns `s` takes (after `oneLine`). */
export function displayWidth(s: string): number {
  let w = 0;
  for (const ch of s) w += charWidth(ch);
  return w;
}

/** `s` on one line: every run of control characters (newlines, tabs, escapes) is one space. */
export function oneLine(s: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are what this removes
  return s.replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ');
}

/** `s` cut to at most `max` terminal columns, ending with an ellipsis when it was cut. */
export function truncate(s: string, max: number): string {
  if (displayWidth(s) <= max) return s;
  let out = '';
  let w = 0;
  for (const ch of s) {
    const cw = charWidth(ch);
    if (w + cw > max - 1) break;
    out += ch;
    w += cw;
  }
  return `${out}…`;
}

/**
 * The rows as lines: each cell on one line and cut to its column's limit, then padded to the
 * widest cell of its column, two spaces between columns; the last column is not padded.
 */
export function table(
  rows: readonly (readonly string[])[],
  limits: readonly ColumnLimit[] = [],
): string[] {
  const cells = rows.map((row) =>
    row.map((c, i) => {
      const flat = oneLine(c);
      const max = limits[i];
      return max === undefined ? flat : truncate(flat, max);
    }),
  );
  const widths: number[] = [];
  for (const row of cells)
    row.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, displayWidth(c))));
  return cells.map((row) =>
    row
      .map((c, i) =>
        i === row.length - 1 ? c : c + ' '.repeat((widths[i] ?? 0) - displayWidth(c)),
      )
      .join('  ')
      .trimEnd(),
  );
}
