// The map repair's loop on one node (src/server/range-map-repair.ts), against a range and a map
// held by the test, on a clock the test moves: a node that does not lead the range sends
// nothing; once it comes to lead it, it records the range's newer descriptor at once (well
// before the next full pass), and a range whose change lock is held is left to the change. A
// planted loop that looks for new leadership too seldom shows the first check can fail.

import assert from 'node:assert/strict';
import test from 'node:test';
import pino from 'pino';
import { simpleConf } from '../../src/raft/index.js';
import { RangeMap } from '../../src/ranges/range-map.js';
import type { RangeDescriptor } from '../../src/ranges/types.js';
import type { MetaResult, MetaStateMachine } from '../../src/ranges/meta-machine.js';
import type { RangeLane } from '../../src/server/range-lanes.js';
import { MapRepair } from '../../src/server/range-map-repair.js';
import { TimerClock } from '../support/timer-clock.js';

const key = (s: string) => new TextEncoder().encode(s);

/** Range 3 split off range 0 at "m", recorded; its own log is one replica change ahead. */
function world(leaderCheckMs: number) {
  const left: RangeDescriptor = {
    id: 0,
    start: key(''),
    end: key('m'),
    generation: 1,
    replicas: [1, 2, 3],
  };
  const right: RangeDescriptor = { ...left, id: 3, start: key('m'), end: null };
  const split = RangeMap.bootstrap([1, 2, 3]).recordSplit(left, right);
  assert.equal(split.outcome, 'applied');
  let map = (split as { map: RangeMap }).map;
  const own: RangeDescriptor = { ...right, generation: 2, replicas: [1, 2, 4] };
  let leader = 2;
  const sent: RangeDescriptor[] = [];
  const lane = {
    id: 3,
    group: {
      runtime: {
        leaderId: () => leader,
        appliedIndex: () => 10,
        status: () => ({ commit: 10, conf: simpleConf([1, 2, 4]) }),
      },
      range: { descriptor: () => own, children: () => [] },
    },
  } as unknown as RangeLane;
  const record = (d: RangeDescriptor): Promise<MetaResult> => {
    sent.push(d);
    const c = map.recordReplicas(d);
    if (c.outcome === 'applied') map = c.map;
    return Promise.resolve({ outcome: 'applied', version: map.version } as MetaResult);
  };
  const clock = new TimerClock();
  const busy = new Set<number>();
  const repair = new MapRepair({
    selfId: 1,
    lanes: { all: () => [lane] },
    meta: {
      machine: { map: () => map } as unknown as MetaStateMachine,
      recordReplicas: record,
      recordSplit: () => Promise.reject(new Error('no split is missing')),
    },
    metaForwarder: { forward: () => Promise.resolve(null) },
    nodeAuthorization: undefined,
    busy,
    clock,
    checkEveryMs: 1_000,
    leaderCheckMs,
    recordTimeoutMs: 1_000,
    log: pino({ level: 'silent' }),
  });
  return {
    repair,
    clock,
    busy,
    sent,
    own,
    map: () => map,
    lead: () => (leader = 1),
  };
}

/** Lets the pass the clock started run its awaits; bounded, and says what it saw. */
async function settle(what: () => boolean): Promise<boolean> {
  for (let i = 0; i < 50 && !what(); i++) await new Promise((r) => setImmediate(r));
  return what();
}

void test('the repair records a range once this node leads it, at once, and not while it is busy', async () => {
  const w = world(100);
  w.repair.start();
  try {
    w.clock.advance(2_500);
    assert.equal(await settle(() => w.sent.length > 0), false, 'a follower sent a record');
    w.busy.add(3);
    w.lead();
    w.clock.advance(1_100);
    assert.equal(await settle(() => w.sent.length > 0), false, 'sent while the range was busy');
    w.busy.delete(3);
    w.clock.advance(1_000);
    assert.equal(await settle(() => w.sent.length > 0), true, 'nothing sent once free');
    assert.equal(w.map().get(3)?.generation, 2);
    assert.deepEqual(w.map().get(3)?.replicas, [1, 2, 4]);
  } finally {
    w.repair.stop();
  }
});

void test('a range this node has just come to lead is repaired before the next full pass', async () => {
  const w = world(100);
  w.repair.start();
  try {
    // Between two full passes (at 1 s and 2 s): only the look for new leadership can send.
    w.clock.advance(1_050);
    w.lead();
    w.clock.advance(150);
    assert.equal(await settle(() => w.sent.length > 0), true, 'nothing sent on becoming leader');
  } finally {
    w.repair.stop();
  }
  // Planted: a loop that looks for new leadership only every 10 s sends nothing this soon.
  const slow = world(10_000);
  slow.repair.start();
  try {
    slow.clock.advance(1_050);
    slow.lead();
    slow.clock.advance(150);
    assert.equal(await settle(() => slow.sent.length > 0), false);
  } finally {
    slow.repair.stop();
  }
});
