// The simulator's meta-group checks must be able to fail: a meta machine with one bug, planted
// on every node, is caught within a bounded number of meta seeds as the check for it, and the
// same seed with the product's machine breaks nothing.

import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { decodeMetaCommand, type MetaStateMachine } from '../../src/ranges/meta-machine.js';
import type { RangeMap } from '../../src/ranges/range-map.js';
import { runSeed, type MetaPlant, type SimResult } from '../../src/sim/index.js';
import type { Profile } from '../../src/sim/profile.js';
import { SAFETY_KINDS } from './planted.js';

const SEED_BOUND = 60;

/** Splits often, so that every seed records some. */
const SPLIT_HEAVY: Partial<Profile> = {
  nodes: 3,
  ranges: 6,
  splitRatio: 0.1,
  keys: 5,
  clients: 4,
  thinkMs: 5,
  readRatio: 0.3,
  leaseReadRatio: 0,
};

/** The map the machine holds, replaced behind its back (as a bug in the machine would). */
function setMap(machine: MetaStateMachine, map: RangeMap): void {
  Reflect.set(machine, 'current', map);
}

/** A split's left half keeps the range's old end in the map: it overlaps the new range. */
const overlapsRight: MetaPlant = (machine) => {
  const apply = machine.apply.bind(machine);
  machine.apply = (commands) => {
    const before = machine.map();
    const results = apply(commands);
    const after = machine.map();
    if (before === null || after === null || after.size <= before.size) return results;
    const list = after.ranges();
    const i = list.findIndex((d) => before.get(d.id) === undefined);
    const left = list[i - 1];
    const right = list[i];
    if (left !== undefined && right !== undefined)
      setMap(machine, after.spliced(i - 1, 1, [{ ...left, end: right.end }]));
    return results;
  };
};

/** The next command after a split forgets it: the map goes back to the one before. */
const forgetsLastSplit: MetaPlant = (machine) => {
  const apply = machine.apply.bind(machine);
  let beforeSplit: RangeMap | null = null;
  machine.apply = (commands) => {
    const before = machine.map();
    const results = apply(commands);
    const after = machine.map();
    if (beforeSplit !== null) {
      setMap(machine, beforeSplit);
      beforeSplit = null;
    } else if (before !== null && after !== null && after.size > before.size) {
      beforeSplit = before;
    }
    return results;
  };
};

/**
 * Every record of a range's new replicas is answered as known and not recorded: the map tiles,
 * never goes back and routes every key right, but holds the replicas from before each move.
 */
const ignoresReplicas: MetaPlant = (machine) => {
  const apply = machine.apply.bind(machine);
  machine.apply = (commands) =>
    commands.flatMap((c) => {
      let ignore = false;
      try {
        ignore = decodeMetaCommand(c.payload).op === 'recordReplicas';
      } catch {
        ignore = false; // not a command: the machine refuses it itself
      }
      if (!ignore) return apply([c]);
      return [{ outcome: 'known' as const, version: machine.version, message: 'planted' }];
    });
};

function note(t: TestContext, r: SimResult): void {
  const v = r.violations[0];
  t.diagnostic(`seed ${r.seed}: [${v?.kind}] ${v?.message.slice(0, 240)}`);
}

async function caughtBy(
  plant: MetaPlant,
  kind: string,
  o: { readonly moves?: boolean } = {},
): Promise<SimResult> {
  const options = o.moves === true ? { moves: true } : { profile: SPLIT_HEAVY };
  for (let seed = 0; seed < SEED_BOUND; seed++) {
    const r = await runSeed({ seed, ranges: true, meta: true, ...options, plantMeta: plant });
    if (r.violations.some((v) => v.kind === kind)) {
      const control = await runSeed({ seed, ranges: true, meta: true, ...options });
      const broken = control.violations.filter((v) => SAFETY_KINDS.has(v.kind));
      assert.deepEqual(broken, [], `the product's meta machine also fails seed ${seed}`);
      assert.ok(control.stats.splitsRecorded > 0, `seed ${seed} recorded no split`);
      // A seed that moves nothing shows nothing of moves: the search goes on to one that does.
      if (o.moves === true && control.stats.moves === 0) continue;
      return r;
    }
  }
  assert.fail(`no ${kind} violation in ${SEED_BOUND} meta seeds`);
}

void test('the simulator catches a meta map whose split record overlaps the new range', async (t) => {
  note(t, await caughtBy(overlapsRight, 'meta-map'));
});

void test('the simulator catches a meta map that takes a range back to an older generation', async (t) => {
  const r = await caughtBy(forgetsLastSplit, 'meta-map');
  assert.match(r.violations[0]?.message ?? '', /lost range|lower generation/);
  note(t, r);
});

void test('the simulator catches a meta map that never agrees with the ranges once settled', async (t) => {
  note(t, await caughtBy(ignoresReplicas, 'meta-agreement', { moves: true }));
});
