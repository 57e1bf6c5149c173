// A node takes up a range the map names it in and that never ran here
// (src/server/range-retirer.ts, `rangesToTakeUp`; docs/DESIGN.md, "Changing a range's
// replicas"): a voter down when a split committed, removed from the parent before it caught
// up, never applies the split and so never starts the new range. Once the map has named it so
// for the grace, the node prepares the range (an empty, recovering copy). Not a range it runs,
// is starting, gave up or is busy with, not ranges 0-2, not a range naming it alone, not within
// the grace, and not while the map is not current enough. A range prepared here whose copy a
// crash left empty (deleted at the restart, its mark kept) is taken up again.

import assert from 'node:assert/strict';
import test from 'node:test';
import pino from 'pino';
import type { RangeDescriptor, RangeId } from '../../src/ranges/types.js';
import type { RangeGroup } from '../../src/server/range-groups.js';
import { RangeRetirer, rangesToTakeUp } from '../../src/server/range-retirer.js';
import { TimerClock } from '../support/timer-clock.js';

const desc = (id: number, replicas: number[]): RangeDescriptor => ({
  id,
  start: new TextEncoder().encode(`k${id}`),
  end: null,
  generation: 4,
  replicas,
});

void test('the ranges to take up: named here, held or handled by nothing', () => {
  const no = (_id: RangeId): boolean => false;
  const none = { here: no, retired: no, busy: new Set<RangeId>() };
  const map = [desc(0, [1, 2, 3]), desc(5, [1, 2, 3]), desc(6, [2, 3, 4]), desc(7, [1])];
  const ids = (o: Partial<typeof none>) =>
    rangesToTakeUp(1, map, { ...none, ...o }).map((d) => d.id);
  assert.deepEqual(ids({}), [5], 'range 0, one not naming it, one naming it alone: left');
  assert.deepEqual(ids({ here: (id) => id === 5 }), [], 'running or starting here');
  assert.deepEqual(ids({ retired: (id) => id === 5 }), [], 'given up');
  assert.deepEqual(ids({ busy: new Set([5]) }), [], 'busy');
});

void test('a range the map names this node in is taken up once missing past the grace', async () => {
  const clock = new TimerClock();
  const map = [desc(5, [1, 2, 3]), desc(6, [2, 3, 4])];
  const taken: number[] = [];
  let mapCurrent = false;
  const retirer = new RangeRetirer({
    selfId: 1,
    groups: {
      ranges: () => [],
      group: (): RangeGroup | undefined => undefined,
      retire: () => Promise.reject(new Error('nothing runs here to give up')),
      pending: () => [],
      isRetired: () => false,
    },
    dirs: { preparedAt: () => undefined, added: () => undefined },
    lanes: { forget: () => undefined },
    mapped: (id) => map.find((d) => d.id === id),
    mapCurrent: () => mapCurrent,
    busy: new Set(),
    clock,
    checkEveryMs: 500,
    abandonAfterMs: 30_000,
    takeUp: {
      map: () => map,
      afterMs: 10_000,
      run: (d) => {
        taken.push(d.id);
        return Promise.resolve();
      },
    },
    log: pino({ level: 'silent' }),
  });
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  };
  retirer.start();
  try {
    // A recovering node's map is not current yet: nothing is judged, nothing taken up.
    clock.advance(20_000);
    await settle();
    assert.deepEqual(taken, []);
    mapCurrent = true;
    clock.advance(9_000);
    await settle();
    assert.deepEqual(taken, [], 'taken up within the grace');
    clock.advance(1_500);
    await settle();
    assert.deepEqual(taken, [5], 'the missing range was not taken up');
  } finally {
    retirer.stop();
  }
});
