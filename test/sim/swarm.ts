// Shared body of the swarm test files: each runs one slice of the seed space, so node --test
// runs the slices as separate files; the seeds themselves run in a worker thread
// (swarm-worker.ts says why).

import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import type { SliceOutcome, SliceRequest } from './swarm-worker.js';

/** What a slice turns on for every seed; everything else is drawn from each seed. */
export interface SliceMode {
  readonly ranges?: boolean;
  readonly moves?: boolean;
  readonly meta?: boolean;
  readonly quiesce?: boolean;
  /** Clients that try another node after one election timeout (`--impatient`). */
  readonly impatient?: boolean;
  /** Wipes a node's data directory about this often, virtual ms (`--wipe-every`). */
  readonly wipeEveryMs?: number;
  /** With moves: moves under way at once (`--concurrent-moves`). */
  readonly concurrentMoves?: number;
}

/** Runs seeds [start, start+count) with everything drawn from each seed but what `mode` sets. */
export async function runSwarmSlice(
  start: number,
  count: number,
  mode: SliceMode = {},
): Promise<void> {
  const { ranges = false, moves = false, meta = false, quiesce = false } = mode;
  const impatient = mode.impatient ?? false;
  const request: SliceRequest = {
    start,
    count,
    ...(ranges ? { ranges } : {}),
    ...(moves ? { moves } : {}),
    ...(meta ? { meta } : {}),
    ...(quiesce ? { quiesce } : {}),
    ...(impatient ? { impatient } : {}),
    ...(mode.wipeEveryMs !== undefined ? { wipeEveryMs: mode.wipeEveryMs } : {}),
    ...(mode.concurrentMoves !== undefined ? { concurrentMoves: mode.concurrentMoves } : {}),
  };
  const worker = new Worker(new URL('./swarm-worker.js', import.meta.url), {
    workerData: request,
  });
  const outcome = await new Promise<SliceOutcome>((resolve, reject) => {
    worker.once('message', (m: SliceOutcome) => resolve(m));
    worker.once('error', reject);
    worker.once('exit', (code) =>
      reject(new Error(`swarm worker for seeds ${start}.. exited with ${code} before answering`)),
    );
  });
  await worker.terminate();
  // Guards against a simulator that silently does nothing.
  assert.ok(outcome.events > count * 500, `only ${outcome.events} events over ${count} seeds`);
  // ... and against range seeds that never split.
  if (ranges)
    assert.ok(outcome.splits > count, `only ${outcome.splits} splits over ${count} seeds`);
  // ... and against move seeds that never move.
  if (moves)
    assert.ok(outcome.moves > count / 2, `only ${outcome.moves} moves over ${count} seeds`);
  // ... and against concurrent movers that never moved two ranges at once.
  if (mode.concurrentMoves !== undefined && mode.concurrentMoves > 1)
    assert.ok(
      outcome.movesBeside > count / 4,
      `only ${outcome.movesBeside} moves begun beside another over ${count} seeds`,
    );
  // ... and against meta seeds whose splits never reach the map by their own request.
  if (meta)
    assert.ok(
      outcome.splitsRecorded > count / 2,
      `only ${outcome.splitsRecorded} splits recorded over ${count} seeds`,
    );
  // ... and against quiescing seeds in which no group quiesced, or none woke again.
  if (quiesce) {
    assert.ok(
      outcome.quiesces > count * 5,
      `only ${outcome.quiesces} quiesces over ${count} seeds`,
    );
    assert.ok(outcome.wakes > count * 5, `only ${outcome.wakes} wakes over ${count} seeds`);
  }
  // ... and against impatient seeds whose clients never send a write again while its first
  // copy may still commit (a retry the session table must recognise).
  if (impatient)
    assert.ok(
      outcome.deduped > count * 10,
      `only ${outcome.deduped} retries deduplicated over ${count} seeds`,
    );
  // ... and against wipe seeds that never lost a disk.
  if (mode.wipeEveryMs !== undefined)
    assert.ok(outcome.wipes > count / 2, `only ${outcome.wipes} wipes over ${count} seeds`);
  assert.deepEqual(outcome.failures, []);
}
