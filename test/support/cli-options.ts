// Option parsers the command-line tools under test/ (chaos, fuzz) share: each refuses a bad
// value with a message that names the option and what it accepts.

import { InvalidArgumentError } from 'commander';

/** An integer from min to max inclusive. */
export function int(name: string, min: number, max: number): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}`);
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
