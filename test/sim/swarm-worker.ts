// Runs one slice of swarm seeds in a worker thread and posts back what failed. The swarm test
// files run their seeds here rather than inside node:test's test(): the test runner tracks
// async context on every promise, which doubled the cost of the simulated runtime's promises.

import { parentPort, workerData } from 'node:worker_threads';
import { runSeed } from '../../src/sim/index.js';

export interface SliceRequest {
  readonly start: number;
  readonly count: number;
  /** Runs every seed with ranges (splits under the faults). */
  readonly ranges?: boolean;
  /** With ranges: moves replicas under the faults too. */
  readonly moves?: boolean;
  /** With ranges: the nodes run the meta group, and clients route by its map. */
  readonly meta?: boolean;
  /** Idle groups quiesce (every range and the meta group too, with ranges). */
  readonly quiesce?: boolean;
  /** Clients try another node after one election timeout without an answer. */
  readonly impatient?: boolean;
  /** Wipes a node's data directory about this often (virtual ms) in every seed. */
  readonly wipeEveryMs?: number;
  /** With moves: moves under way at once, each on a range of its own. */
  readonly concurrentMoves?: number;
}

export interface SliceOutcome {
  readonly events: number;
  /** One line per failing seed: the first violation and the command that replays it. */
  readonly failures: readonly string[];
  /** Splits applied over the slice (ranges). */
  readonly splits: number;
  /** Replica moves done over the slice (moves), and those begun beside another. */
  readonly moves: number;
  readonly movesBeside: number;
  /** Splits recorded in the meta map by their own request over the slice (meta). */
  readonly splitsRecorded: number;
  /** Groups quiesced, and woken, over the slice (quiesce). */
  readonly quiesces: number;
  readonly wakes: number;
  /** Write retries the session table answered without applying them again. */
  readonly deduped: number;
  /** Data directories wiped over the slice. */
  readonly wipes: number;
}

async function runSlice({
  start,
  count,
  ranges,
  moves,
  meta,
  quiesce,
  impatient,
  wipeEveryMs,
  concurrentMoves,
}: SliceRequest): Promise<SliceOutcome> {
  const failures: string[] = [];
  let events = 0;
  let splits = 0;
  let moved = 0;
  let beside = 0;
  let recorded = 0;
  let quiesces = 0;
  let wakes = 0;
  let deduped = 0;
  let wipes = 0;
  for (let seed = start; seed < start + count; seed++) {
    const r = await runSeed({
      seed,
      ...(ranges === true ? { ranges } : {}),
      ...(moves === true ? { moves } : {}),
      ...(concurrentMoves !== undefined ? { concurrentMoves } : {}),
      ...(meta === true ? { meta } : {}),
      ...(quiesce === true || impatient === true || wipeEveryMs !== undefined
        ? {
            profile: {
              ...(quiesce === true ? { quiesce } : {}),
              ...(impatient === true ? { attemptTimeoutElections: 1 } : {}),
              ...(wipeEveryMs !== undefined ? { wipeEveryMs } : {}),
            },
          }
        : {}),
    });
    deduped += r.stats.deduped;
    wipes += r.stats.wipes;
    quiesces += r.stats.quiesces;
    wakes += r.stats.wakes;
    recorded += r.stats.splitsRecorded;
    events += r.stats.events;
    splits += r.stats.splits;
    moved += r.stats.moves;
    beside += r.stats.movesBeside;
    if (!r.ok) {
      const v = r.violations[0];
      failures.push(`seed ${seed} [${v?.kind}] ${v?.message.slice(0, 300)} -- replay: ${r.replay}`);
    }
  }
  return {
    events,
    failures,
    splits,
    moves: moved,
    movesBeside: beside,
    splitsRecorded: recorded,
    quiesces,
    wakes,
    deduped,
    wipes,
  };
}

if (parentPort !== null) {
  const port = parentPort;
  const outcome = await runSlice(workerData as SliceRequest);
  port.postMessage(outcome);
}
