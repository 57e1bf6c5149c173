// Option parsers the command-line tools under test/ (chaos, fuzz) share: each refuses a bad
// value with a message that names the option and what it accepts.

import { InvalidArgumentError } from 'commander';

/**
 * An integer from min to max inclusive (min >= 0), written in decimal digits: Number() alone
 * would take an empty value as 0 and `0x10` or `1e3` as numbers, so a seed typed wrong would
 * run another seed instead of being refused.
 */
export function int(name: string, min: number, max: number): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!/^\d{1,16}$/.test(v) || !Number.isSafeInteger(n) || n < min || n > max)
      throw new InvalidArgumentError(
        `${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`,
      );
    return n;
  };
}

/** A comma-separated list of allowed names (`none` for the empty list). */
export function listOf<T extends string>(name: string, allowed: readonly T[]): (v: string) => T[] {
  return (v) => {
    if (v === 'none') return [];
    const items = v.split(',').map((s) => s.trim());
    for (const i of items) {
      if (!(allowed as readonly string[]).includes(i))
        throw new InvalidArgumentError(
          `${name}: unknown "${i}"; choose from ${allowed.join(', ')}`,
        );
    }
    return items as T[];
  };
}
