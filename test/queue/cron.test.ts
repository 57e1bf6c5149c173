// The five-field cron parser and its next-time search, against hand-worked cases and, by
// property, against a brute-force minute-by-minute search.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { nextCronMs, parseCron, type CronPattern } from '../../src/queue/cron.js';

const at = (y: number, mo: number, d: number, h = 0, mi = 0) => Date.UTC(y, mo - 1, d, h, mi);

void test('fields: lists, ranges, steps; Sunday as 0 or 7', () => {
  const p = parseCron('0,30 9-17/4 1 */3 7');
  assert.deepEqual([...p.minutes], [0, 30]);
  assert.deepEqual([...p.hours], [9, 13, 17]);
  assert.deepEqual([...p.months], [1, 4, 7, 10]);
  assert.deepEqual([...p.weekdays], [0]);
  assert.deepEqual([...parseCron('5/20 * * * *').minutes], [5, 25, 45]);
});

void test('bad patterns are refused, naming the field', () => {
  for (const [src, why] of [
    ['* * * *', /4 fields, not 5/],
    ['', /has 0 fields, not 5/],
    ['   ', /has 0 fields, not 5/],
    ['*', /has 1 field, not 5/],
    ['60 * * * *', /minute field "60"/],
    ['* 24 * * *', /hour field/],
    ['* * 0 * *', /day of month/],
    ['* * * 13 *', /month field/],
    ['* * * * 8', /day of week/],
    ['*/0 * * * *', /step/],
    ['5-1 * * * *', /"5-1" runs backwards \(5 > 1\)/],
    ['0-60 * * * *', /outside 0-59/],
    ['MON * * * *', /cannot read "MON"/],
    ['1,,2 * * * *', /cannot read ""/],
  ] as const)
    assert.throws(() => parseCron(src), why, src);
});

void test('next: strictly after the given time, in UTC', () => {
  const every15 = parseCron('*/15 * * * *');
  assert.equal(nextCronMs(every15, at(2026, 1, 1, 10, 7)), at(2026, 1, 1, 10, 15));
  assert.equal(
    nextCronMs(every15, at(2026, 1, 1, 10, 15)),
    at(2026, 1, 1, 10, 30),
    'not the same minute',
  );
  assert.equal(nextCronMs(every15, at(2026, 1, 1, 10, 14) + 59_999), at(2026, 1, 1, 10, 15));
  assert.equal(nextCronMs(parseCron('0 0 1 1 *'), at(2026, 6, 1)), at(2027, 1, 1));
  assert.equal(nextCronMs(parseCron('0 12 29 2 *'), at(2026, 3, 1)), at(2028, 2, 29, 12));
  assert.equal(nextCronMs(parseCron('30 23 31 * *'), at(2026, 4, 1)), at(2026, 5, 31, 23, 30));
  assert.equal(nextCronMs(parseCron('0 0 30 2 *'), at(2026, 1, 1)), null);
});

void test('day of month and day of week: either matches when both are restricted', () => {
  // 2026-03-01 is a Sunday. "the 15th or any Monday".
  const p = parseCron('0 0 15 * 1');
  assert.equal(nextCronMs(p, at(2026, 3, 1)), at(2026, 3, 2));
  assert.equal(nextCronMs(p, at(2026, 3, 12)), at(2026, 3, 15));
  // Only the weekday restricted: Mondays only.
  assert.equal(nextCronMs(parseCron('0 0 * * 1'), at(2026, 3, 12)), at(2026, 3, 16));
});

function bruteNext(p: CronPattern, afterMs: number): number {
  let t = Math.floor(afterMs / 60_000) * 60_000 + 60_000;
  for (;;) {
    const d = new Date(t);
    const dom = p.days.has(d.getUTCDate());
    const dow = p.weekdays.has(d.getUTCDay());
    const day = p.daysRestricted && p.weekdaysRestricted ? dom || dow : dom && dow;
    if (
      p.months.has(d.getUTCMonth() + 1) &&
      day &&
      p.hours.has(d.getUTCHours()) &&
      p.minutes.has(d.getUTCMinutes())
    )
      return t;
    t += 60_000;
  }
}

void test('next agrees with a minute-by-minute search', () => {
  const field = (min: number, max: number) =>
    fc.oneof(
      fc.constant('*'),
      fc.integer({ min, max }).map(String),
      fc
        .tuple(fc.integer({ min, max }), fc.integer({ min: 1, max: 7 }))
        .map(([a, s]) => `${a}/${s}`),
      fc
        .tuple(fc.integer({ min, max }), fc.integer({ min, max }))
        .map(([a, b]) => `${Math.min(a, b)}-${Math.max(a, b)}`),
    );
  fc.assert(
    fc.property(
      fc.tuple(field(0, 59), field(0, 23), field(1, 28), fc.constant('*'), field(0, 6)),
      fc.integer({ min: at(2020, 1, 1), max: at(2030, 1, 1) }),
      (fields, after) => {
        const p = parseCron(fields.join(' '));
        assert.equal(nextCronMs(p, after), bruteNext(p, after), fields.join(' '));
      },
    ),
    { numRuns: 300, seed: 42 },
  );
});
