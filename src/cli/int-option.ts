// The integer options of every command (`--nodes 3`, `--attempts 5`): parsed by commander
// through `int`, which refuses what is not an integer in range with a message that names the
// option, its range and the value, before anything runs.

import { InvalidArgumentError } from 'commander';

/** An integer option; with bounds, a value outside [min, max] is refused before anything runs. */
export function int(name: string, min = -Infinity, max = Infinity) {
  return (v: string): number => {
    const n = Number(v);
    // Decimal digits only: Number() also reads "0x10", "1e3" and "0b11", so a lease of "1e2"
    // seconds would live 100. A safe integer: past 2^53 a number is not the one typed, and an
    // unbounded option would take it silently.
    if (!/^[+-]?\d+$/.test(v.trim()))
      throw new InvalidArgumentError(`${name} must be an integer, got "${v}"`);
    // Digits past 2^53 are an integer all the same, just out of range: saying "must be an
    // integer" of `--delay 99999999999999999` sent users looking for a typo that was not there.
    if (!Number.isSafeInteger(n))
      throw new InvalidArgumentError(
        `${name} must be ${bounds(Math.max(min, Number.MIN_SAFE_INTEGER), Math.min(max, Number.MAX_SAFE_INTEGER))}, got ${v.trim()}`,
      );
    if (n < min || n > max)
      throw new InvalidArgumentError(`${name} must be ${bounds(min, max)}, got ${n}`);
    return n;
  };
}

/** The range an integer option takes, in words: "in 1..9", "at least 1", "at most 5". */
function bounds(min: number, max: number): string {
  if (min === -Infinity) return `at most ${max}`;
  if (max === Infinity) return `at least ${min}`;
  return `in ${min}..${max}`;
}
