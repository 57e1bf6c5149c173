// A five-field cron pattern (minute hour day-of-month month day-of-week), in UTC, and the
// next time it matches after a given one. Written here rather than taken from a library
// because the queue needs only this, it must be a pure function of its inputs (no local time
// zone, no clock), and it must fail on bad input with a clear message.
//
// Syntax per field: `*`, a number, a range `a-b`, a step `*/n` or `a-b/n` or `a/n` (from a to
// the field's end), and comma-separated lists of those. Day of week is 0-6 from Sunday, 7 also
// Sunday. No names (JAN, MON), no `?`, `L`, `W` or `#`. As in Vixie cron, when both day of month
// and day of week are restricted (neither is `*`), a day matching either one matches.

const MINUTE_MS = 60_000;
const DAY_MS = 24 * 60 * MINUTE_MS;
/** How far ahead `nextCronMs` searches before it gives up: covers every 29 February. */
const SEARCH_LIMIT_MS = 5 * 366 * DAY_MS;

export interface CronPattern {
  readonly source: string;
  readonly minutes: ReadonlySet<number>;
  readonly hours: ReadonlySet<number>;
  readonly days: ReadonlySet<number>;
  readonly months: ReadonlySet<number>;
  readonly weekdays: ReadonlySet<number>;
  readonly daysRestricted: boolean;
  readonly weekdaysRestricted: boolean;
}

const fieldRanges: readonly (readonly [name: string, min: number, max: number])[] = [
  ['minute', 0, 59],
  ['hour', 0, 23],
  ['day of month', 1, 31],
  ['month', 1, 12],
  ['day of week', 0, 7],
];

/** Parses a pattern; throws an Error naming the field and the text it could not read. */
export function parseCron(source: string): CronPattern {
  // An empty pattern has no field: "".split() would count one, the empty string.
  const fields = source.trim() === '' ? [] : source.trim().split(/\s+/);
  if (fields.length !== 5)
    throw new Error(
      `cron pattern "${source}" has ${fields.length} field${fields.length === 1 ? '' : 's'}, not 5 ` +
        '(minute hour day-of-month month day-of-week)',
    );
  const sets = fields.map((f, i) => parseField(f, fieldRanges[i] as (typeof fieldRanges)[number]));
  const weekdays = new Set([...(sets[4] as Set<number>)].map((d) => (d === 7 ? 0 : d)));
  return {
    source,
    minutes: sets[0] as Set<number>,
    hours: sets[1] as Set<number>,
    days: sets[2] as Set<number>,
    months: sets[3] as Set<number>,
    weekdays,
    daysRestricted: fields[2] !== '*',
    weekdaysRestricted: fields[4] !== '*',
  };
}

function parseField(
  text: string,
  [name, min, max]: readonly [string, number, number],
): Set<number> {
  const out = new Set<number>();
  for (const part of text.split(',')) {
    const m = /^(\*|(\d+)(?:-(\d+))?)(?:\/(\d+))?$/.exec(part);
    if (m === null) throw new Error(`cron ${name} field "${text}": cannot read "${part}"`);
    let lo = min;
    let hi = max;
    if (m[1] !== '*') {
      lo = Number(m[2]);
      hi = m[3] !== undefined ? Number(m[3]) : m[4] !== undefined ? max : lo;
    }
    const step = m[4] !== undefined ? Number(m[4]) : 1;
    if (lo < min || hi > max)
      throw new Error(`cron ${name} field "${text}": "${part}" is outside ${min}-${max}`);
    if (lo > hi)
      throw new Error(`cron ${name} field "${text}": "${part}" runs backwards (${lo} > ${hi})`);
    if (step < 1) throw new Error(`cron ${name} field "${text}": a step must be at least 1`);
    for (let v = lo; v <= hi; v += step) out.add(v);
  }
  return out;
}

function dayMatches(p: CronPattern, d: Date): boolean {
  const dom = p.days.has(d.getUTCDate());
  const dow = p.weekdays.has(d.getUTCDay());
  if (p.daysRestricted && p.weekdaysRestricted) return dom || dow;
  return dom && dow;
}

/**
 * The first minute strictly after `afterMs` that the pattern matches, or null if none does in
 * the next five years (e.g. "0 0 30 2 *"). Skips whole months, days and hours that cannot
 * match, so a search costs at most a few thousand steps.
 */
export function nextCronMs(p: CronPattern, afterMs: number): number | null {
  let t = Math.floor(afterMs / MINUTE_MS) * MINUTE_MS + MINUTE_MS;
  const end = afterMs + SEARCH_LIMIT_MS;
  while (t <= end) {
    const d = new Date(t);
    if (!p.months.has(d.getUTCMonth() + 1)) {
      t = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
    } else if (!dayMatches(p, d)) {
      t = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1);
    } else if (!p.hours.has(d.getUTCHours())) {
      t = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate(), d.getUTCHours() + 1);
    } else if (!p.minutes.has(d.getUTCMinutes())) {
      t += MINUTE_MS;
    } else {
      return t;
    }
  }
  return null;
}
