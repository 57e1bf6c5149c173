// The end check of the move and drain nemeses (moves.ts, placementProblems), shown passing a
// placement that is in line (nodes that do not run a range name the leader they were told of,
// as nodes do) and catching each planted fault: a node that keeps running a range
// after it was moved off, a map not updated after a move (it names a node that does not run
// the range), a range a replica short, a drained node still holding a range, and a range
// without a leader.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RangesResponse } from '../../src/api/types.js';
import { placementProblems } from './moves.js';
import type { NodeMap } from './ranges.js';

type RangeJson = RangesResponse['ranges'][number];

function range(id: number, start: string, end: string | null, replicas: number[]): RangeJson {
  return {
    id,
    start,
    end,
    generation: 2,
    replicas,
    leader: replicas[0] ?? 0,
    keys: 2,
    bytes: 20,
    writesPerSec: 0,
    readsPerSec: 0,
    applied: 9,
  };
}

/**
 * Four nodes; range 3 on 1,2,3 and range 4 on 2,3,4, each node running what the map names
 * unless `runs` says otherwise (node -> ranges it runs from 3 on), the map as `tweak` leaves it.
 */
function maps(
  o: {
    runs?: Record<number, number[]>;
    tweak?: (rs: RangeJson[]) => RangeJson[];
  } = {},
): NodeMap[] {
  const base = [
    range(0, '', 'r3', [1, 2, 3, 4]),
    range(3, 'r3', 'r6', [1, 2, 3]),
    range(4, 'r6', null, [2, 3, 4]),
  ];
  const listed = (o.tweak ?? ((rs) => rs))(base);
  return [1, 2, 3, 4].map((id) => {
    const runs = o.runs?.[id] ?? listed.filter((r) => r.replicas.includes(id)).map((r) => r.id);
    return {
      id,
      running: runs.length + 1,
      map: {
        version: 7,
        node: id,
        ranges: listed.map((r) =>
          r.id === 0 || runs.includes(r.id) ? r : { ...r, leader: 2, keys: null, applied: null },
        ),
      },
    };
  });
}

const inLine = { members: [1, 2, 3, 4], draining: [], replicasPerRange: 3 };

void describe('chaos placementProblems', () => {
  void it('finds nothing when the replicas the map names run every range', () => {
    assert.deepEqual(placementProblems(maps(), inLine), []);
  });

  void it('catches a node that keeps its replica after being moved off', () => {
    // Range 3 moved from 1 to 4 in the map, but node 1 still runs it.
    const m = maps({
      tweak: (rs) => rs.map((r) => (r.id === 3 ? { ...r, replicas: [2, 3, 4] } : r)),
      runs: { 1: [3] },
    });
    assert.deepEqual(placementProblems(m, inLine), [
      'range 3: the map names replicas 2,3,4, nodes 1,2,3,4 run it',
    ]);
  });

  void it('catches a map not updated after a move', () => {
    // Node 4 took over range 3 from node 1, but the map still names 1,2,3.
    const m = maps({ runs: { 1: [], 4: [3, 4] } });
    assert.deepEqual(placementProblems(m, inLine), [
      'range 3: the map names replicas 1,2,3, nodes 2,3,4 run it',
    ]);
  });

  void it('catches a range a replica short', () => {
    const m = maps({
      tweak: (rs) => rs.map((r) => (r.id === 4 ? { ...r, replicas: [2, 3] } : r)),
      runs: { 4: [] },
    });
    assert.deepEqual(placementProblems(m, inLine), ['range 4: 2 replicas (2,3), want 3']);
  });

  void it('catches a drained node that still holds a range', () => {
    assert.deepEqual(placementProblems(maps(), { ...inLine, draining: [4] }), [
      'range 4: draining nodes 4 still hold it',
    ]);
  });

  void it('wants every member not draining when forced drains leave fewer than replicasPerRange', () => {
    const m = maps({
      tweak: (rs) => rs.map((r) => (r.id >= 3 ? { ...r, replicas: [1, 2, 3] } : r)),
    });
    const forced = { members: [1, 2, 3, 4], draining: [3, 4], forced: [3, 4], replicasPerRange: 3 };
    assert.deepEqual(placementProblems(m, forced), [
      'range 3: 3 replicas (1,2,3), want 2',
      'range 3: draining nodes 3 still hold it',
      'range 4: 3 replicas (1,2,3), want 2',
      'range 4: draining nodes 3 still hold it',
    ]);
  });

  void it('a drain blocked for want of members keeps the replicas; a member lacking one is caught', () => {
    const m = maps({
      tweak: (rs) => rs.map((r) => (r.id >= 3 ? { ...r, replicas: [1, 2, 3] } : r)),
    });
    const blocked = { members: [1, 2, 3, 4], draining: [3, 4], replicasPerRange: 3 };
    assert.deepEqual(placementProblems(m, blocked), []);
    const short = maps({
      tweak: (rs) => rs.map((r) => (r.id >= 3 ? { ...r, replicas: [1, 3, 4] } : r)),
    });
    assert.deepEqual(placementProblems(short, blocked), [
      'range 3: members 2 lack it while a drain is blocked',
      'range 4: members 2 lack it while a drain is blocked',
    ]);
  });

  void it('catches a range without a leader', () => {
    const m = maps({
      tweak: (rs) => rs.map((r) => (r.id === 3 ? { ...r, leader: 0 } : r)),
    });
    assert.deepEqual(placementProblems(m, inLine), ['range 3: no leader yet']);
  });

  void it('judges only the nodes that answered: a replica down is not a problem of the map', () => {
    const m = maps().filter((x) => x.id !== 1);
    assert.deepEqual(placementProblems(m, inLine), []);
  });
});
