// The pure parts of the chaos suite's ranges (ranges.ts): where the layout splits, and the
// end check of the nodes' maps, shown passing a map every node agrees on and catching each
// planted fault: nodes that differ, a gap, an overlap, an acknowledged split missing, a range
// the nodes run that the map lacks, a range a node does not run, a range without a leader,
// and a range whose nodes hold different keys.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RangesResponse } from '../../src/api/types.js';
import { byteOrder, disagreement, layoutSplitKeys, type NodeMap } from './ranges.js';
import { registerKey } from './workload.js';

type RangeJson = RangesResponse['ranges'][number];

function range(id: number, start: string, end: string | null, over: Partial<RangeJson> = {}) {
  return {
    id,
    start,
    end,
    generation: 1,
    replicas: [1, 2, 3],
    leader: 1,
    keys: 2,
    bytes: 20,
    writesPerSec: 0,
    readsPerSec: 0,
    applied: 9,
    ...over,
  };
}

/** Three ranges split at r3 and r6, as every node shows them unless `tweak` changes one. */
function maps(tweak: (id: number, rs: RangeJson[]) => RangeJson[] = (_, rs) => rs): NodeMap[] {
  return [1, 2, 3].map((id) => ({
    id,
    running: 3,
    map: {
      version: 3,
      node: id,
      ranges: tweak(id, [range(0, '', 'r3'), range(3, 'r3', 'r6'), range(4, 'r6', null)]),
    },
  }));
}

const want = { wantStarts: ['r3', 'r6'], everyNodeRuns: true };

void describe('the layout of the register keys over ranges', () => {
  void it('splits at keys evenly spaced in byte order, never at the first', () => {
    const keys = byteOrder(Array.from({ length: 12 }, (_, i) => registerKey(i)));
    assert.deepEqual(keys.slice(0, 4), ['r0', 'r1', 'r10', 'r11']);
    assert.deepEqual(layoutSplitKeys(keys, 4), ['r11', 'r4', 'r7']);
    assert.deepEqual(layoutSplitKeys(keys, 1), []);
    assert.deepEqual(layoutSplitKeys(keys, 12), keys.slice(1));
    assert.throws(() => layoutSplitKeys(keys, 13), /Cannot spread 12 register keys over 13/);
    assert.throws(() => layoutSplitKeys(keys, 0), /positive integer/);
  });
});

void describe('the end check of the range maps', () => {
  void it('passes maps every node agrees on that tile the key space', () => {
    assert.equal(disagreement(maps(), want), null);
  });

  void it('catches nodes that show different maps', () => {
    const m = maps((id, rs) => (id === 2 ? [range(0, '', 'r3'), range(3, 'r3', null)] : rs));
    assert.match(disagreement(m, want) ?? '', /different maps/);
    const v = maps().map((x) => (x.id === 3 ? { ...x, map: { ...x.map, version: 2 } } : x));
    assert.match(disagreement(v, want) ?? '', /different maps \(1: v3, 2: v3, 3: v2\)/);
  });

  void it('catches a gap and an overlap', () => {
    const gap = maps(() => [range(0, '', 'r3'), range(3, 'r4', 'r6'), range(4, 'r6', null)]);
    assert.match(disagreement(gap, want) ?? '', /not a tiling: .*a gap/);
    const overlap = maps(() => [range(0, '', 'r4'), range(3, 'r3', 'r6'), range(4, 'r6', null)]);
    assert.match(disagreement(overlap, want) ?? '', /not a tiling: .*overlaps/);
    const short = maps(() => [range(0, '', 'r3'), range(3, 'r3', 'r6')]);
    assert.match(disagreement(short, want) ?? '', /does not reach the end/);
  });

  void it('catches an acknowledged split the map lacks', () => {
    assert.match(
      disagreement(maps(), { ...want, wantStarts: ['r3', 'r5', 'r6'] }) ?? '',
      /lacks the acknowledged splits at r5/,
    );
  });

  void it('catches a range the nodes run that the map does not list', () => {
    const m = maps().map((x) => (x.id === 2 ? { ...x, running: 4 } : x));
    assert.match(disagreement(m, want) ?? '', /the map lists 3 ranges, nodes run more \(2: 4\)/);
  });

  void it('catches a range a node does not run, unless members may have joined', () => {
    const m = maps((id, rs) =>
      id === 3
        ? rs.map((r) => (r.id === 4 ? { ...r, leader: null, keys: null, applied: null } : r))
        : rs,
    );
    assert.match(disagreement(m, want) ?? '', /range 4 is not running on nodes 3/);
    assert.equal(disagreement(m, { ...want, everyNodeRuns: false }), null);
  });

  void it('catches a range without a leader and a range whose nodes hold different keys', () => {
    const leaderless = maps((id, rs) =>
      id === 1 ? rs.map((r) => (r.id === 3 ? { ...r, leader: 0 } : r)) : rs,
    );
    assert.match(disagreement(leaderless, want) ?? '', /range 3 has no leader yet/);
    const keys = maps((id, rs) =>
      id === 2 ? rs.map((r) => (r.id === 0 ? { ...r, keys: 3 } : r)) : rs,
    );
    assert.match(
      disagreement(keys, want) ?? '',
      /range 0 holds different numbers of keys \(1: 2, 2: 3, 3: 2\)/,
    );
  });
});
