// The map repair's loop on one node (src/server/range-map-repair.ts), against a range and a map
// held by the test, on a clock the test moves: a node that does not lead the range sends
// nothing; once it comes to lead it, it records the range's newer descriptor at once (well
// before the next full pass), and a range whose change lock is held is left to the change. A
// planted loop that looks for new leadership too seldom shows the first check can fail. A
// learner no change wants is removed by the range's leader once it stayed so for the grace, not
// before, not while a change holds the range, not by a follower, and not from ranges 0-2; the
// range's voters are recorded at its next generation after. A removal whose record was lost
// (its leader deposed between the two) leaves the mark the removal began with, and the next
// leader records the voters past the grace; without the mark nothing would.

import assert from 'node:assert/strict';
import test from 'node:test';
import { unpack } from 'msgpackr';
import pino from 'pino';
import { simpleConf, type ConfChange, type ConfState } from '../../src/raft/index.js';
import { RangeMap } from '../../src/ranges/range-map.js';
import type { RangeDescriptor } from '../../src/ranges/types.js';
import type { MetaResult, MetaStateMachine } from '../../src/ranges/meta-machine.js';
import type { RangeLane } from '../../src/server/range-lanes.js';
import { decodeEnvelope } from '../../src/host/envelope.js';
import { RangeMachine } from '../../src/ranges/range-machine.js';
import { MapRepair, strayLearners, unrecordedVoters } from '../../src/server/range-map-repair.js';
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
      range: { descriptor: () => own, children: () => [], recordDue: () => false },
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
    strayLearnerGraceMs: 10_000,
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

/**
 * Range `id`, recorded as in the map, led by `leader`, with learner 4 left over (or, with
 * `removedUnrecorded`, removed already by a leader deposed before its record: the range's log
 * marked the voters due, `due` unless told otherwise). Its log applies the marks and records
 * proposed (`failRecords`: each record's proposal fails, as a deposed leader's does).
 */
function strayWorld(o: {
  readonly id: number;
  readonly graceMs: number;
  readonly removedUnrecorded?: boolean;
  readonly due?: boolean;
  readonly failRecords?: boolean;
}) {
  let conf: ConfState =
    o.removedUnrecorded === true
      ? simpleConf([1, 2, 3])
      : { ...simpleConf([1, 2, 3]), learners: [4] };
  let due = o.removedUnrecorded === true && o.due !== false;
  const own: RangeDescriptor = {
    id: o.id,
    start: key(''),
    end: null,
    generation: 2,
    replicas: [1, 2, 3],
  };
  let leader = 1;
  const proposed: ConfChange[] = [];
  const recorded: Uint8Array[] = [];
  const lane = {
    id: o.id,
    group: {
      runtime: {
        leaderId: () => leader,
        appliedIndex: () => 10,
        status: () => ({ commit: 10, conf }),
        propose: (data: Uint8Array) => {
          const payload = decodeEnvelope(data).payload;
          // Decoded from a copy: msgpackr leaves a property on the bytes it reads.
          const marks = 'recordDue' in (unpack(payload.slice()) as object);
          if (!marks && o.failRecords === true)
            return Promise.reject(new Error('no longer the leader'));
          recorded.push(payload);
          due = marks;
          return Promise.resolve(null);
        },
        proposeConfChange: (cc: ConfChange) => {
          proposed.push(cc);
          for (const c of cc.changes)
            if (c.kind === 'remove')
              conf = { ...conf, learners: conf.learners.filter((l) => l !== c.node) };
          return Promise.resolve(conf);
        },
      },
      range: { descriptor: () => own, children: () => [], recordDue: () => due },
    },
  } as unknown as RangeLane;
  // The map already holds the range as its log says: only the stray learner is left to do.
  const map = {
    get: (id: number) => (id === o.id ? own : undefined),
  };
  const clock = new TimerClock();
  const busy = new Set<number>();
  const repair = new MapRepair({
    selfId: 1,
    lanes: { all: () => [lane] },
    meta: {
      machine: { map: () => map } as unknown as MetaStateMachine,
      recordReplicas: () => Promise.reject(new Error('nothing to record')),
      recordSplit: () => Promise.reject(new Error('nothing to record')),
    },
    metaForwarder: { forward: () => Promise.resolve(null) },
    nodeAuthorization: undefined,
    busy,
    clock,
    checkEveryMs: 1_000,
    leaderCheckMs: 100,
    recordTimeoutMs: 1_000,
    strayLearnerGraceMs: o.graceMs,
    log: pino({ level: 'silent' }),
  });
  return {
    repair,
    clock,
    busy,
    proposed,
    recorded,
    conf: () => conf,
    due: () => due,
    follow: () => (leader = 2),
    lead: () => (leader = 1),
  };
}

void test('the leader removes a learner no change wants once it stayed past the grace', async () => {
  const w = strayWorld({ id: 5, graceMs: 10_000 });
  w.repair.start();
  try {
    // Half the grace, then a change holds the range: the grace starts again once it is free.
    w.clock.advance(5_000);
    w.busy.add(5);
    w.clock.advance(8_000);
    assert.equal(await settle(() => w.proposed.length > 0), false, 'removed under a change');
    w.busy.delete(5);
    w.clock.advance(6_000);
    assert.equal(await settle(() => w.proposed.length > 0), false, 'removed within the grace');
    // Leadership lost and regained: the grace starts again as well.
    w.follow();
    w.clock.advance(12_000);
    assert.equal(await settle(() => w.proposed.length > 0), false, 'removed by a follower');
    w.lead();
    w.clock.advance(9_000);
    assert.equal(await settle(() => w.proposed.length > 0), false, 'grace kept from before');
    w.clock.advance(2_000);
    assert.equal(await settle(() => w.proposed.length > 0), true, 'stray learner never removed');
    assert.deepEqual(w.proposed, [{ changes: [{ kind: 'remove', node: 4 }] }]);
    assert.deepEqual(w.conf().learners, []);
    // Then the voters are recorded at the next generation: the map, once it copied that, tells
    // the removed node's copy (sent nothing more) that the range left it.
    assert.equal(await settle(() => w.recorded.length > 0), true, 'nothing recorded after');
    // The log marked them due first: a leader deposed before the record leaves the mark.
    assert.deepEqual(w.recorded, [
      RangeMachine.encode({ recordDue: { generation: 2 } }),
      RangeMachine.encode({ replicas: { generation: 2, voters: [1, 2, 3] } }),
    ]);
    assert.equal(w.due(), false, 'the record left the mark');
    assert.equal(await settle(() => w.repair.straysRemoved === 1), true, 'not counted');
    assert.equal(w.busy.size, 0, 'the range lock was not given back');
    w.clock.advance(30_000);
    assert.equal(await settle(() => w.proposed.length > 1), false, 'removed twice');
  } finally {
    w.repair.stop();
  }
  // Planted: a grace longer than the run (no removal, as before this repair) leaves it.
  const planted = strayWorld({ id: 5, graceMs: Number.POSITIVE_INFINITY });
  planted.repair.start();
  try {
    planted.clock.advance(60_000);
    assert.equal(await settle(() => planted.proposed.length > 0), false);
    assert.deepEqual(planted.conf().learners, [4]);
  } finally {
    planted.repair.stop();
  }
});

void test("a learner's removal whose record was lost leaves a mark, and the next leader records the voters", async () => {
  // The leader that removes the learner is deposed before its record: the mark stays.
  const first = strayWorld({ id: 5, graceMs: 10_000, failRecords: true });
  first.repair.start();
  try {
    first.clock.advance(11_000);
    assert.equal(await settle(() => first.conf().learners.length === 0), true, 'not removed');
    assert.deepEqual(first.recorded, [RangeMachine.encode({ recordDue: { generation: 2 } })]);
    assert.equal(first.due(), true, 'the removal left no mark');
  } finally {
    first.repair.stop();
  }
  // The next leader: voters [1, 2, 3] are the replicas recorded, yet the mark says a record is
  // owed. Within the grace nothing; past it, the voters at the next generation.
  const next = strayWorld({ id: 5, graceMs: 10_000, removedUnrecorded: true });
  next.repair.start();
  try {
    next.clock.advance(9_000);
    assert.equal(await settle(() => next.recorded.length > 0), false, 'recorded within the grace');
    next.clock.advance(2_000);
    assert.equal(await settle(() => next.recorded.length > 0), true, 'the owed record never sent');
    assert.deepEqual(next.recorded, [
      RangeMachine.encode({ replicas: { generation: 2, voters: [1, 2, 3] } }),
    ]);
    assert.equal(await settle(() => next.repair.votersRecorded === 1), true, 'not counted');
    assert.deepEqual(next.proposed, [], 'a configuration change was proposed');
  } finally {
    next.repair.stop();
  }
  // Planted: without the mark (as before it), the same range is never recorded again.
  const unmarked = strayWorld({ id: 5, graceMs: 10_000, removedUnrecorded: true, due: false });
  unmarked.repair.start();
  try {
    unmarked.clock.advance(60_000);
    assert.equal(await settle(() => unmarked.recorded.length > 0), false);
  } finally {
    unmarked.repair.stop();
  }
});

void test('unrecorded voters: different from the replicas, or marked due; never mid-change', () => {
  const c = simpleConf([1, 2, 3]);
  const d = { replicas: [1, 2, 3] };
  assert.equal(unrecordedVoters(3, c, d, false), null);
  assert.deepEqual(unrecordedVoters(3, c, d, true), [1, 2, 3]);
  assert.deepEqual(unrecordedVoters(3, simpleConf([3, 1, 2, 4]), d, false), [1, 2, 3, 4]);
  assert.equal(unrecordedVoters(3, { ...c, learners: [4] }, d, true), null, 'a learner is there');
  assert.equal(unrecordedVoters(3, { ...c, outgoing: [1, 2, 4] }, d, true), null, 'joint');
  assert.equal(unrecordedVoters(0, c, d, true), null, 'range 0 follows the membership');
});

void test('stray learners: only of ranges split off range 0, and not while joint', () => {
  const c: ConfState = { ...simpleConf([1, 2, 3]), learners: [4] };
  assert.deepEqual(strayLearners(3, c), [4]);
  assert.deepEqual(strayLearners(0, c), [], 'a member joining range 0 is no stray');
  assert.deepEqual(strayLearners(2, c), []);
  assert.deepEqual(strayLearners(3, { ...c, outgoing: [1, 2, 5] }), []);
  assert.deepEqual(strayLearners(3, simpleConf([1, 2, 3])), []);
});
