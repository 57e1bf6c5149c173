// Crash recovery of the WAL written through the node journal, on the simulated disk: the same
// property as wal-sim-crash.test.ts (every acknowledged write survives intact, nothing
// unacknowledged comes back corrupted, recovery never refuses to start), with the segments
// written unsynced behind the journal, the journal redone at every start, and checkpoints
// (a new journal file past 512 bytes) synced and removed in between. Acknowledging a write before the
// journal made it durable must make the property fail.
//
// FLOTILLA_PROPERTY_SEED and FLOTILLA_CRASH_RUNS as in wal-sim-crash.test.ts.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { NodeJournal } from '../../src/storage/journal.js';
import { emptyStats, runScenario, scenarioArb } from './crash-driver.js';
import type { ScenarioStats } from './crash-driver.js';

const SEED = Number(process.env['FLOTILLA_PROPERTY_SEED'] ?? 20261203);
const RUNS = Number(process.env['FLOTILLA_CRASH_RUNS'] ?? 300);
const JOURNAL_BYTES = 512;

function addStats(total: ScenarioStats, s: ScenarioStats): void {
  for (const k of Object.keys(total) as (keyof ScenarioStats)[]) total[k] += s[k];
}

/** A journal that acknowledges a write at once and makes it durable later, if ever. */
function ackingEarly(journal: NodeJournal): NodeJournal {
  const early = Object.create(journal) as NodeJournal;
  early.write = (file, position, bufs) => {
    // The planted bug: the write's outcome is not waited for, so a failure is not seen either.
    journal.write(file, position, bufs).catch(() => undefined);
    return Promise.resolve();
  };
  return early;
}

void describe('WAL through the node journal: crash recovery on the simulated disk', () => {
  void it('keeps every acknowledged write and never recovers a corrupted one', async () => {
    const total = emptyStats();
    await fc.assert(
      fc.asyncProperty(scenarioArb, async ({ cmds, ...cfg }) => {
        const journal = { journalBytes: JOURNAL_BYTES };
        addStats(total, await runScenario({ ...cfg, journal }, cmds));
      }),
      { numRuns: RUNS, seed: SEED, includeErrorInReport: true },
    );
    console.log(
      `journaled crash property, totals over ${RUNS} scenarios: ${JSON.stringify(total)}`,
    );
    const atLeast = (what: keyof ScenarioStats, perScenario: number): void =>
      assert.ok(total[what] >= RUNS * perScenario, `${what}: ${total[what]} in ${RUNS} scenarios`);
    atLeast('crashesWithSyncPending', 0.5);
    atLeast('crashesWhileRecovering', 0.2);
    atLeast('tornWrites', 0.5);
    atLeast('unackedSurvived', 0.3);
    // The journal did the work: segments rebuilt from it, and crashes between a checkpoint's
    // new journal file and the removal of the old one (two files found at a start).
    atLeast('journalWritesRedone', 1);
    atLeast('journalMidCheckpoint', 0.01);
  });

  void it('catches a journal that acknowledges before the shared sync (planted bug)', async () => {
    const planted = fc.asyncProperty(scenarioArb, async ({ cmds, ...cfg }) => {
      const journal = { journalBytes: JOURNAL_BYTES, plant: ackingEarly };
      await runScenario({ ...cfg, journal, disk: { tornWriteProbability: 0 } }, cmds);
    });
    await assert.rejects(fc.assert(planted, { numRuns: RUNS, seed: SEED }), (err: Error) => {
      const cause = err.cause instanceof Error ? err.cause.message : String(err.cause);
      // Either an acknowledged write is missing, or a segment holds bytes over a hole that the
      // journal cannot redo (the group file was written before the journal record was durable).
      assert.match(cause, /matches no state from the acknowledged op|Corrupt data in \/node\/data/);
      return true;
    });
  });
});
