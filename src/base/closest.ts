// The name a misspelling most likely meant, for "did you mean" in an error or warning.

/**
 * Edits that turn `a` into `b`: insert, delete or substitute one character, or swap two
 * neighbours (the optimal string alignment distance). A swap is one edit: `mial` is one from
 * `mail`, as a typist's slip is, where counting it as two substitutions found nothing near.
 */
export function editDistance(a: string, b: string): number {
  let before: number[] = [];
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(
        (prev[j] as number) + 1,
        (row[j - 1] as number) + 1,
        (prev[j - 1] as number) + cost,
      );
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        d = Math.min(d, (before[j - 2] as number) + 1);
      row.push(d);
    }
    before = prev;
    prev = row;
  }
  return prev[b.length] as number;
}

/**
 * The candidate nearest `name` (case ignored), if within a third of its length in edits (at
 * least 1, at most 3): `FLOTILLA_JION` finds `FLOTILLA_JOIN`, `colour` finds nothing among
 * config fields. The first candidate wins a tie.
 */
export function closestName(name: string, candidates: Iterable<string>): string | undefined {
  const bound = Math.min(3, Math.max(1, Math.floor(name.length / 3)));
  const wanted = name.toLowerCase();
  let best: string | undefined;
  let bestDistance = bound + 1;
  for (const c of candidates) {
    const d = editDistance(wanted, c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}
