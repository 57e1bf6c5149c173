// Just enough of the Prometheus text format to sum counters: `name{labels} value` lines.

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

const maxLines = 200_000;

export function parsePrometheus(text: string): Sample[] {
  const out: Sample[] = [];
  const lines = text.split('\n');
  for (const raw of lines.slice(0, maxLines)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (m === null) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1] as string] = l[2] as string;
    const value = Number(m[4]);
    if (Number.isFinite(value)) out.push({ name: m[1] as string, labels, value });
  }
  return out;
}

/** Sum of a metric's samples grouped by one label ('' groups everything). */
export function sumBy(samples: readonly Sample[], name: string, label = ''): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of samples) {
    if (s.name !== name) continue;
    const k = label === '' ? '' : (s.labels[label] ?? '');
    out.set(k, (out.get(k) ?? 0) + s.value);
  }
  return out;
}

/** after − before for every key of `after`. */
export function delta(
  before: Map<string, number>,
  after: Map<string, number>,
): Map<string, number> {
  const out = new Map<string, number>();
  for (const [k, v] of after) out.set(k, v - (before.get(k) ?? 0));
  return out;
}
