// A small hand-written SVG line chart: linear or log axes, several series (solid, dashed, or
// stepped for CDFs), vertical reference lines with labels, and a legend. Self-contained SVG
// (no scripts, no external fonts) so it renders inline in HTML and as a file in the docs.

export interface Series {
  readonly name: string;
  readonly color: string;
  readonly points: readonly (readonly [number, number])[];
  readonly dashed?: boolean;
  /** Draw as a step function (for empirical CDFs). */
  readonly step?: boolean;
  readonly markers?: boolean;
}

export interface RefLine {
  readonly x: number;
  readonly label: string;
  readonly color?: string;
}

export interface ChartSpec {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly Series[];
  readonly xLog?: boolean;
  readonly yLog?: boolean;
  /** Tick positions on x (default: nice ticks, or powers of ten on a log axis). */
  readonly xTicks?: readonly number[];
  readonly xTickFormat?: (x: number) => string;
  readonly yMin?: number;
  readonly yMax?: number;
  readonly xMin?: number;
  readonly xMax?: number;
  readonly refLines?: readonly RefLine[];
  readonly note?: string;
  readonly width?: number;
  readonly height?: number;
}

export const palette = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b'];

export function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** 1, 2, 5 × 10^k ticks covering [lo, hi], about `count` of them. */
export function niceTicks(lo: number, hi: number, count = 6): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * mag >= raw) ?? 10) * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step)
    out.push(Math.round(v / step) * step);
  return out;
}

function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v);
    }
  }
  return out;
}

export function fmtNumber(v: number): string {
  if (Math.abs(v) >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (Math.abs(v) >= 1e4) return `${+(v / 1e3).toPrecision(3)}k`;
  if (Math.abs(v) >= 1000) return v.toLocaleString('en-US');
  return `${+v.toPrecision(3)}`;
}

function extent(spec: ChartSpec, axis: 0 | 1): [number, number] {
  const vals = spec.series.flatMap((s) => s.points.map((p) => p[axis]));
  if (axis === 0) vals.push(...(spec.refLines ?? []).map((r) => r.x));
  const log = axis === 0 ? spec.xLog : spec.yLog;
  const ok = vals.filter((v) => Number.isFinite(v) && (!log || v > 0));
  let lo = Math.min(...ok);
  let hi = Math.max(...ok);
  if (!Number.isFinite(lo)) [lo, hi] = [log ? 1 : 0, 1];
  if (!log && axis === 1) lo = Math.min(0, lo);
  if (hi === lo) hi = lo + (log ? lo * 9 : 1);
  if (log && axis === 1)
    [lo, hi] = [10 ** Math.floor(Math.log10(lo)), 10 ** Math.ceil(Math.log10(hi))];
  if (!log) hi = Math.max(hi, niceTicks(lo, hi).at(-1) ?? hi);
  return [lo, hi];
}

export function renderChart(spec: ChartSpec): string {
  const W = spec.width ?? 720;
  const H = spec.height ?? 420;
  const rows = legendRows(spec.series, W - 100);
  const m = { left: 74, right: 24, top: 44 + rows.length * 18, bottom: 62 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const [x0, x1] = extent(spec, 0);
  const [y0, y1] = extent(spec, 1);
  const xl = [spec.xMin ?? x0, spec.xMax ?? x1] as const;
  const yl = [spec.yMin ?? y0, spec.yMax ?? y1] as const;
  const tx = spec.xLog ? Math.log10 : (v: number): number => v;
  const ty = spec.yLog ? Math.log10 : (v: number): number => v;
  const sx = (v: number): number => m.left + ((tx(v) - tx(xl[0])) / (tx(xl[1]) - tx(xl[0]))) * pw;
  const sy = (v: number): number =>
    m.top + ph - ((ty(v) - ty(yl[0])) / (ty(yl[1]) - ty(yl[0]))) * ph;
  const f = (n: number): string => n.toFixed(1);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${m.left}" y="22" font-size="15" font-weight="bold">${escapeXml(spec.title)}</text>`,
  ];
  const xt = spec.xTicks ?? (spec.xLog ? logTicks(xl[0], xl[1]) : niceTicks(xl[0], xl[1]));
  const yt = spec.yLog ? logTicks(yl[0], yl[1]) : niceTicks(yl[0], yl[1]);
  const xfmt = spec.xTickFormat ?? fmtNumber;
  for (const v of yt) {
    const y = f(sy(v));
    out.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${y}" y2="${y}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${m.left - 6}" y="${y}" text-anchor="end" dy="4">${fmtNumber(v)}</text>`);
  }
  for (const v of xt) {
    const x = f(sx(v));
    out.push(`<line x1="${x}" x2="${x}" y1="${m.top}" y2="${m.top + ph}" stroke="#f0f0f0"/>`);
    out.push(
      `<text x="${x}" y="${m.top + ph + 18}" text-anchor="middle">${escapeXml(xfmt(v))}</text>`,
    );
  }
  out.push(
    `<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#888"/>`,
    `<text x="${m.left + pw / 2}" y="${H - 14}" text-anchor="middle">${escapeXml(spec.xLabel)}</text>`,
    `<text transform="translate(16 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">${escapeXml(spec.yLabel)}</text>`,
  );
  for (const [i, r] of (spec.refLines ?? []).entries()) {
    const x = f(sx(r.x));
    const c = r.color ?? '#555';
    out.push(
      `<line x1="${x}" x2="${x}" y1="${m.top}" y2="${m.top + ph}" stroke="${c}" stroke-dasharray="2 3"/>`,
    );
    out.push(
      `<text x="${f(sx(r.x) + 4)}" y="${m.top + 14 + i * 14}" fill="${c}" font-size="11">${escapeXml(r.label)}</text>`,
    );
  }
  for (const s of spec.series) out.push(seriesPath(s, sx, sy, f));
  out.push(legend(rows, m.left, 40));
  if (spec.note !== undefined)
    out.push(
      `<text x="${W - 8}" y="${H - 4}" text-anchor="end" font-size="10" fill="#666">${escapeXml(spec.note)}</text>`,
    );
  out.push('</svg>');
  return out.join('\n') + '\n';
}

function seriesPath(
  s: Series,
  sx: (v: number) => number,
  sy: (v: number) => number,
  f: (n: number) => string,
): string {
  const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  if (pts.length === 0) return '';
  let d = '';
  pts.forEach(([x, y], i) => {
    if (i === 0) d += `M${f(sx(x))} ${f(sy(y))}`;
    else if (s.step) d += `H${f(sx(x))}V${f(sy(y))}`;
    else d += `L${f(sx(x))} ${f(sy(y))}`;
  });
  const dash = s.dashed === true ? ' stroke-dasharray="6 4"' : '';
  const parts = [`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"${dash}/>`];
  if (s.markers !== false && s.step !== true)
    for (const [x, y] of pts)
      parts.push(`<circle cx="${f(sx(x))}" cy="${f(sy(y))}" r="3" fill="${s.color}"/>`);
  return parts.join('\n');
}

/** Legend entries laid out in rows under the title; widths estimated at 7 px a character. */
function legendRows(series: readonly Series[], width: number): Series[][] {
  const rows: Series[][] = [[]];
  let used = 0;
  for (const s of series) {
    const w = 40 + s.name.length * 7;
    if (used + w > width && (rows.at(-1)?.length ?? 0) > 0) {
      rows.push([]);
      used = 0;
    }
    rows.at(-1)?.push(s);
    used += w;
  }
  return rows;
}

function legend(rows: readonly Series[][], x0: number, y0: number): string {
  const out: string[] = [];
  rows.forEach((row, r) => {
    let x = x0;
    const y = y0 + r * 18;
    for (const s of row) {
      const dash = s.dashed === true ? ' stroke-dasharray="6 4"' : '';
      out.push(
        `<line x1="${x}" x2="${x + 22}" y1="${y}" y2="${y}" stroke="${s.color}" stroke-width="2"${dash}/>`,
        `<text x="${x + 28}" y="${y + 4}">${escapeXml(s.name)}</text>`,
      );
      x += 40 + s.name.length * 7;
    }
  });
  return out.join('\n');
}
