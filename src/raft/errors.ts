// Refusals and broken invariants. The core never throws a refusal: operations that can be
// refused return a Result holding a FlotillaError (src/base/errors.ts, the one vocabulary from
// core to client), so that refusing a proposal is ordinary control flow. Broken invariants are
// bugs and go through assert() instead, which throws and is meant to crash the process.

export { FlotillaError, fail, ok, type ErrorCode, type Result } from '../base/errors.js';

/** Thrown when an invariant of the core is broken: a bug, never bad input. */
export class AssertionError extends Error {
  override readonly name = 'AssertionError';
}

export function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new AssertionError(message);
}
