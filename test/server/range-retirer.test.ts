// The retirer judges a range's copy only where its configuration (the core's) and its
// descriptor (the state machine's) describe the same point of the log (src/server/range-retirer.ts).
// A prepared copy sent an old snapshot by the range's leader holds, for a moment, the snapshot's
// configuration in its core (naming this node a voter, from before it was removed) beside the
// prepare's descriptor in its machine, which has not restored the snapshot yet. Judged then, it
// was taken as added back; once the machine restored the snapshot's older descriptor, the map's
// newer generation without this node gave it up, while the move that prepared it went on
// (seen in test/server/range-replicas.test.ts on a loaded machine: the move timed out, or
// answered with a replica that had deleted its copy).

import assert from 'node:assert/strict';
import test from 'node:test';
import pino from 'pino';
import type { ConfState } from '../../src/raft/index.js';
import type { RangeDescriptor } from '../../src/ranges/types.js';
import type { RangeGroup } from '../../src/server/range-groups.js';
import { RangeRetirer } from '../../src/server/range-retirer.js';
import { TimerClock } from '../support/timer-clock.js';

const RANGE = 3;

function descriptor(generation: number, replicas: number[]): RangeDescriptor {
  return { id: RANGE, start: new TextEncoder().encode('m'), end: null, generation, replicas };
}

function conf(voters: number[], learners: number[] = []): ConfState {
  return { voters, learners, outgoing: [], learnersNext: [], autoLeave: false };
}

void test('a prepared copy is judged only once its machine applied what its core committed', async () => {
  const clock = new TimerClock();
  // Node 4's copy, prepared at generation 2 (the range went from [1, 2, 3, 4] to [1, 2, 3]).
  const state = {
    conf: conf([1, 2, 3]),
    commit: 0,
    applied: 0,
    descriptor: descriptor(2, [1, 2, 3]),
  };
  const group = {
    runtime: {
      status: () => ({ conf: state.conf, commit: state.commit, incomingSnapshot: null }),
      appliedIndex: () => state.applied,
    },
    range: { descriptor: () => state.descriptor },
  } as unknown as RangeGroup;
  const preparing = new Map([[RANGE, 2]]);
  const retired: string[] = [];
  const retirer = new RangeRetirer({
    selfId: 4,
    groups: {
      ranges: () => [RANGE],
      group: (id) => (id === RANGE ? group : undefined),
      retire: (id) => {
        retired.push(`range ${id}`);
        return Promise.resolve();
      },
    },
    dirs: {
      preparedAt: (id) => preparing.get(id),
      added: (id) => {
        preparing.delete(id);
      },
    },
    lanes: { forget: () => undefined },
    // The map holds the range at generation 2 without node 4 until the move records it.
    mapped: () => descriptor(2, [1, 2, 3]),
    busy: new Set(),
    clock,
    checkEveryMs: 500,
    abandonAfterMs: 60_000,
    log: pino({ level: 'silent' }),
  });
  const check = async (): Promise<void> => {
    clock.advance(600);
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  };
  retirer.start();
  try {
    await check();
    assert.equal(preparing.get(RANGE), 2, 'added before it applied anything');

    // The leader's old snapshot (generation 1, node 4 a voter) is in the core, not yet in the
    // machine: the core's configuration names node 4, the machine still has the prepare's.
    state.conf = conf([1, 2, 3, 4]);
    state.commit = 24;
    await check();
    assert.equal(preparing.get(RANGE), 2, 'taken as added from the core alone');
    assert.deepEqual(retired, []);

    // The machine restored the snapshot: generation 1, older than the prepare's.
    state.applied = 24;
    state.descriptor = descriptor(1, [1, 2, 3, 4]);
    await check();
    assert.deepEqual(retired, [], 'the copy a move is promoting was given up');
    assert.equal(preparing.get(RANGE), 2);

    // The move added it as a learner and, done, recorded generation 3 naming it: added.
    state.conf = conf([1, 2, 3], [4]);
    state.commit = 30;
    state.applied = 30;
    state.descriptor = descriptor(3, [1, 2, 3, 4]);
    await check();
    assert.equal(preparing.get(RANGE), undefined, 'never taken as added');
    assert.deepEqual(retired, []);
  } finally {
    retirer.stop();
  }
});
