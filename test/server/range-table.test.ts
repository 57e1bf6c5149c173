// Routing from what a node knows of the ranges (src/server/range-table.ts): its running ranges,
// their children and the meta map, each range's newest descriptor and, of two that overlap,
// the newer; and the leader view a node keeps of a range it does not run (range-remote.ts).

import assert from 'node:assert/strict';
import test from 'node:test';
import { FlotillaError } from '../../src/base/errors.js';
import { systemClock } from '../../src/host/contracts.js';
import { RangeMap } from '../../src/ranges/range-map.js';
import type { RangeDescriptor } from '../../src/ranges/types.js';
import { RemoteLeaderView } from '../../src/server/range-remote.js';
import { covers, oneRange, rangesMet } from '../../src/server/range-table.js';
import { desc, key } from '../ranges/harness.js';

const one = (k: string) => [{ key: key(k), rangeEnd: null }];
const ids = (ds: readonly RangeDescriptor[]) => ds.map((d) => `${d.id}@${d.generation}`);

/** Range 0 [, m) and range 3 [m, end) on nodes 1, 2, 3, as the meta map records them. */
function mapOfTwo(): RangeMap {
  const m = RangeMap.bootstrap([1, 2, 3, 4]).recordSplit(
    desc(0, '', 'm', 1, [1, 2, 3, 4]),
    desc(3, 'm', null, 1, [1, 2, 3]),
  );
  assert.equal(m.outcome, 'applied');
  return (m as { map: RangeMap }).map;
}

void test('a node that does not run a range routes by the map, and fills range 0 with its replicas', () => {
  const map = mapOfTwo();
  const running = [{ ...desc(0, '', 'm', 1), replicas: [] }];
  const k = { running, children: [], map };
  assert.deepEqual(ids(rangesMet(k, one('x'))), ['3@1']);
  const zero = rangesMet(k, one('a'))[0];
  assert.deepEqual(zero?.replicas, [1, 2, 3, 4], "range 0's replicas from the map");
});

void test('a split the node applied and the map lags: the running range and its child win', () => {
  const map = mapOfTwo();
  const k = {
    running: [desc(3, 'm', 't', 2, [1, 2, 3])],
    children: [desc(7, 't', null, 2, [1, 2])],
    map,
  };
  assert.deepEqual(ids(rangesMet(k, one('x'))), ['7@2'], 'the child holds "x"');
  assert.deepEqual(ids(rangesMet(k, one('n'))), ['3@2']);
  // Without the child, the map's older [m, end) must not be taken: a gap, refused to refresh.
  const gap = rangesMet({ ...k, children: [] }, one('x'));
  assert.deepEqual(ids(gap), []);
  assert.throws(
    () => oneRange(gap, one('x'), 'write'),
    (e: unknown) => e instanceof FlotillaError && e.code === 'WRONG_RANGE',
  );
});

void test('the map newer than a running range that lags a split: the map wins', () => {
  const map = mapOfTwo().recordSplit(desc(3, 'm', 't', 2, [1, 2, 3]), desc(7, 't', null, 2, [1]));
  assert.equal(map.outcome, 'applied');
  const k = {
    running: [desc(3, 'm', null, 1, [1, 2, 3])],
    children: [],
    map: (map as { map: RangeMap }).map,
  };
  assert.deepEqual(ids(rangesMet(k, one('x'))), ['7@2']);
  assert.deepEqual(ids(rangesMet(k, one('n'))), ['3@2'], "the map's newer bounds of range 3");
});

void test('spans over two ranges are CROSS_RANGE; a multi-range read needs them to tile its interval', () => {
  const k = { running: [], children: [], map: mapOfTwo() };
  const span = [{ key: key('a'), rangeEnd: key('z') }];
  const met = rangesMet(k, span);
  assert.deepEqual(ids(met), ['0@1', '3@1']);
  assert.throws(
    () => oneRange(met, span, 'range read'),
    (e: unknown) => e instanceof FlotillaError && e.code === 'CROSS_RANGE',
  );
  assert.equal(covers(met, span[0] as (typeof span)[0]), true);
  assert.equal(covers([met[1] as RangeDescriptor], span[0] as (typeof span)[0]), false);
});

void test("a remote range's leader view: learned, forgotten, else the replicas in turn", async () => {
  const v = new RemoteLeaderView(4, [1, 2, 3], systemClock);
  assert.equal(v.leaderId(), 0);
  const first = await v.waitForLeader({});
  const second = await v.waitForLeader({ other: first });
  assert.notEqual(second, first, 'the next replica, not the one that refused');
  v.learn(4);
  v.learn(9);
  assert.equal(v.leaderId(), 0, 'neither this node nor a stranger to the range');
  v.learn(2);
  assert.equal(await v.waitForLeader({}), 2);
  assert.notEqual(await v.waitForLeader({ other: 2 }), 2);
  v.forget(3);
  assert.equal(v.leaderId(), 2, 'forgetting another node changes nothing');
  v.forget(2);
  assert.equal(v.leaderId(), 0);
  v.learn(1);
  v.setReplicas([2, 3, 5]);
  assert.equal(v.leaderId(), 0, 'a leader no longer a replica is dropped');
  const solo = new RemoteLeaderView(4, [4], systemClock);
  await assert.rejects(
    solo.waitForLeader({}),
    (e: unknown) => e instanceof FlotillaError && e.code === 'NO_LEADER',
  );
});
