// Reconnect delays: exponential with "equal jitter" (half fixed, half random). The fixed half
// keeps a flapping peer from being hammered; the random half keeps the nodes of a cluster that
// lost a peer at the same instant from redialling in lockstep.

import type { Rng } from '../raft/rng.js';

export interface BackoffOptions {
  readonly baseMs: number;
  readonly maxMs: number;
}

/** The delay before redial number `attempt` (0 = first retry after a failure). */
export function backoffDelayMs(attempt: number, opts: BackoffOptions, rng: Rng): number {
  const exponent = Math.min(Math.max(attempt, 0), 30);
  const ceilingMs = Math.min(opts.maxMs, opts.baseMs * 2 ** exponent);
  return Math.round(ceilingMs / 2 + rng.float() * (ceilingMs / 2));
}
