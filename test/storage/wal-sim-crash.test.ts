// Crash recovery of the real WAL on the simulated disk, as a property: for any sequence of
// persists, snapshots, snapshot installs, disk operations completing in any order, and
// crashes at any point (during a sync, a rotation, a snapshot, or recovery itself), with
// torn writes, every acknowledged write survives intact, nothing unacknowledged comes back
// corrupted, and recovery never refuses to start. A disk that lies about fsync must make the
// same property fail.
//
// FLOTILLA_PROPERTY_SEED picks the fast-check seed (each scenario's disk seed is drawn by it);
// FLOTILLA_CRASH_RUNS the number of scenarios per property (default 300; a few thousand run
// in about ten seconds). A failure prints the scenario; runScenario({ ...cfg, trace:
// console.log }, cmds) replays it step by step.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { lyingFs } from './lying-fs.js';
import { emptyStats, runScenario, scenarioArb } from './crash-driver.js';
import type { ScenarioConfig, ScenarioStats } from './crash-driver.js';

const SEED = Number(process.env['FLOTILLA_PROPERTY_SEED'] ?? 20261203);
const RUNS = Number(process.env['FLOTILLA_CRASH_RUNS'] ?? 300);

function addStats(total: ScenarioStats, s: ScenarioStats): void {
  for (const k of Object.keys(total) as (keyof ScenarioStats)[]) total[k] += s[k];
}

void describe('WAL crash recovery on the simulated disk', () => {
  void it('keeps every acknowledged write and never recovers a corrupted one', async () => {
    const total = emptyStats();
    await fc.assert(
      fc.asyncProperty(scenarioArb, async ({ cmds, ...cfg }) => {
        addStats(total, await runScenario(cfg, cmds));
      }),
      { numRuns: RUNS, seed: SEED, includeErrorInReport: true },
    );
    console.log(`crash property, totals over ${RUNS} scenarios: ${JSON.stringify(total)}`);
    // The property is only as good as what it exercised: each of these must have happened.
    const atLeast = (what: keyof ScenarioStats, perScenario: number): void =>
      assert.ok(total[what] >= RUNS * perScenario, `${what}: ${total[what]} in ${RUNS} scenarios`);
    atLeast('crashesWithSyncPending', 0.5);
    atLeast('crashesWhileRecovering', 0.2);
    atLeast('tornWrites', 0.5);
    atLeast('tailCuts', 0.1);
    atLeast('segmentsRemoved', 0.005);
    atLeast('unackedSurvived', 0.3);
  });

  void it('on disks that leave zeros or garbage after a torn write, recovers intact or refuses the torn segment', async () => {
    // A file system that can expose a new size before the data (ext4 data=writeback) or a
    // sector caught mid-write leaves tails the WAL's recovery rules do not all recognise as
    // torn, and so does an unsynced short write followed by a lost one (docs/STORAGE.md,
    // "Known limits"): it may refuse to start, naming the newest segment. What must never
    // happen is worse: an acknowledged write lost or a corrupted one recovered, or a refusal
    // naming anything but that segment.
    const total = emptyStats();
    const harsh = fc.record({
      tornZerosProbability: fc.constantFrom(0, 0.3, 0.6),
      tornGarbageProbability: fc.constantFrom(0, 0.3),
      shortWriteProbability: fc.constantFrom(0, 0.2),
    });
    await fc.assert(
      fc.asyncProperty(scenarioArb, harsh, async ({ cmds, ...cfg }, harshDisk) => {
        const disk = { ...cfg.disk, ...harshDisk };
        addStats(total, await runScenario({ ...cfg, disk, refusalsAllowed: true }, cmds));
      }),
      { numRuns: RUNS, seed: SEED, includeErrorInReport: true },
    );
    console.log(`harsh disks, totals over ${RUNS} scenarios: ${JSON.stringify(total)}`);
    assert.ok(total.tailCuts >= RUNS * 0.1, `torn tails cut: ${total.tailCuts}`);
  });

  void it('catches a disk that acknowledges before data is durable (planted bug)', async () => {
    const lying = fc.asyncProperty(scenarioArb, async ({ cmds, ...cfg }) => {
      // No torn writes: the only fault is the lie, so what catches it is the check of
      // acknowledged writes, not recovery refusing a torn tail.
      const config: ScenarioConfig = {
        ...cfg,
        wrapFs: lyingFs,
        disk: { tornWriteProbability: 0 },
      };
      await runScenario(config, cmds);
    });
    await assert.rejects(fc.assert(lying, { numRuns: RUNS, seed: SEED }), (err: Error) => {
      const cause = err.cause instanceof Error ? err.cause.message : String(err.cause);
      assert.match(cause, /matches no state from the acknowledged op|acknowledged snapshot/);
      return true;
    });
  });
});
