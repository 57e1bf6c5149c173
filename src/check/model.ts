// Sequential specifications for the linearizability search. A model says, for one operation
// applied to one state, whether the operation's recorded output is possible and what the state
// becomes. The search (linearizability.ts) is generic over the model, so a queue or lock model
// plugs in beside the register without touching the search.

import type { Value } from './history.js';

export interface StepResult<State> {
  /** False when the operation's recorded output is impossible in this state. */
  readonly ok: boolean;
  readonly next: State;
}

/**
 * A sequential specification.
 *
 * Contract:
 * - `step` is pure: the same state and operation always give the same result, and `state` is
 *   never mutated (the search keeps old states on its stack to backtrack to).
 * - `key` is injective on states that behave differently: two states with the same key must
 *   accept exactly the same futures, because the search memoises (linearized set, key) and
 *   skips any pair it has seen before.
 * - An operation whose outcome is unknown carries no output, and `step` must accept it in every
 *   state: it constrains nothing, it may only change the state.
 */
export interface Model<State, Op> {
  init(): State;
  step(state: State, op: Op): StepResult<State>;
  key(state: State): string;
}

/**
 * One register operation as the search sees it. `output` / `swapped` are undefined when the
 * outcome is unknown; unknown reads never reach the model (they constrain nothing).
 */
export type RegisterOp =
  | { readonly kind: 'read'; readonly output: Value }
  | { readonly kind: 'write'; readonly value: Value }
  | {
      readonly kind: 'cas';
      readonly expected: Value;
      readonly next: Value;
      readonly swapped: boolean | undefined;
    };

/** A single read/write/compare-and-swap register; the state is its value, null when absent. */
export function registerModel(initial: Value = null): Model<Value, RegisterOp> {
  return {
    init: () => initial,
    step: stepRegister,
    // JSON keeps null and the string "null" apart.
    key: (state) => JSON.stringify(state),
  };
}

function stepRegister(state: Value, op: RegisterOp): StepResult<Value> {
  switch (op.kind) {
    case 'read':
      return { ok: op.output === state, next: state };
    case 'write':
      return { ok: true, next: op.value };
    case 'cas': {
      const matches = state === op.expected;
      // An unknown cas is placed wherever the search likes; where it lands decides whether it
      // swapped. "Never executed" is covered too: the search can always place it after every
      // definite operation, where its effect is invisible.
      if (op.swapped === undefined) return { ok: true, next: matches ? op.next : state };
      if (op.swapped) return { ok: matches, next: op.next };
      return { ok: !matches, next: state };
    }
  }
}
