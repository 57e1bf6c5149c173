// The node's recovery across its groups (src/server/node-recovery.ts) on fake groups: a group
// started while the node recovers starts recovering; the map is read once the meta group
// caught up and applied what it then knew committed, and the ranges it names here are started;
// the identity file is told `none` only when no group is recovering or applying, no range is
// starting and the map was read, and never before. A range marked prepared here is not started
// from the map (its empty copy would take the map's replicas as its voters). The node is told
// when the map was read (it records which ranges can have run here), before one may be taken up.

import assert from 'node:assert/strict';
import test from 'node:test';
import { pino } from 'pino';
import type { Recovery } from '../../src/raft/index.js';
import type { RangeDescriptor } from '../../src/ranges/types.js';
import { NodeRecovery, type RecoveryGroup } from '../../src/server/node-recovery.js';

/** A group whose core state the test sets. */
class FakeGroup implements RecoveryGroup {
  recovery: Recovery = 'recovering';
  commit = 0;
  applied = 0;
  readonly runtime = {
    status: () => ({ recovery: this.recovery, lastIndex: this.applied, commit: this.commit }),
    appliedIndex: () => this.applied,
  };
  constructor(readonly id: number) {}
}

const never = { nowMs: () => 0, setTimeout: () => null, clearTimeout: () => undefined };

const desc = (id: number, replicas: number[]): RangeDescriptor => ({
  id,
  start: new TextEncoder().encode(`k${id}`),
  end: null,
  generation: 3,
  replicas,
});

void test('recovery finishes only when every group caught up and applied, the map read and its ranges started', () => {
  const stored: Recovery[] = [];
  const r = new NodeRecovery({
    selfId: 4,
    initial: 'recovering',
    store: (x) => stored.push(x),
    clock: never,
    checkEveryMs: 1_000,
    log: pino({ level: 'silent' }),
  });
  assert.equal(r.recoveryFor(0), 'recovering');
  assert.equal(r.recoveryFor(7), 'recovering', 'a range started while recovering recovers');
  const groups = new Map([0, 1, 2, 5].map((id) => [id, new FakeGroup(id)]));
  const pending = new Set<number>();
  const started: number[] = [];
  const mapReads: number[][] = [];
  r.start({
    groups: () => [...groups.values()],
    pendingRanges: () => [...pending],
    metaGroup: 2,
    map: () => [
      desc(0, [1, 2, 3, 4]),
      desc(5, [2, 3, 4]),
      desc(6, [1, 2, 4]),
      desc(7, [2, 3, 4]),
      desc(8, [1, 2, 3]),
    ],
    startRange: (d) => {
      started.push(d.id);
      pending.add(d.id);
    },
    // Range 7 was prepared here: a map older than the prepare may name this node in it.
    prepared: (id) => id === 7,
    mapRead: () => {
      mapReads.push([...started]);
      assert.equal(r.mapCurrent(), false, 'told before a range may be taken up');
    },
  });
  const at = (): readonly string[] => r.status().waitingFor;
  assert.deepEqual(r.status().recoveringGroups, [0, 1, 2, 5]);
  assert.ok(at().includes('the range map (the meta group catching up)'));

  // The meta group caught up but has not applied what it then knew committed: no map yet.
  const meta = groups.get(2) as FakeGroup;
  meta.recovery = 'none';
  meta.commit = 10;
  meta.applied = 8;
  r.check();
  assert.deepEqual(started, []);
  assert.deepEqual(mapReads, []);
  assert.ok(at().includes('group 2 applying (8 of 10)'), JSON.stringify(at()));
  meta.applied = 10;
  meta.commit = 12; // committed since: the mark stays where it caught up
  r.check();
  assert.deepEqual(started, [6], 'the range the map names here, nothing runs, not prepared');
  assert.ok(at().includes('range 6 starting'), JSON.stringify(at()));
  assert.deepEqual(mapReads, [[6]], 'told once, after the ranges the map names started');
  assert.equal(r.mapCurrent(), true);

  // Every group caught up but one: still recovering; the range starts and runs, recovering.
  for (const g of groups.values()) if (g.id !== 5) g.recovery = 'none';
  pending.delete(6);
  const six = new FakeGroup(6);
  groups.set(6, six);
  r.check();
  assert.deepEqual(r.status().recoveringGroups, [5, 6]);
  assert.equal(r.groupRecovering(six), true);
  assert.deepEqual(stored, []);
  (groups.get(5) as FakeGroup).recovery = 'none';
  six.recovery = 'none';
  six.commit = 4;
  r.check();
  assert.equal(r.groupRecovering(six), true, 'caught up, not yet applied');
  assert.deepEqual(stored, []);
  six.applied = 4;
  r.check();
  assert.deepEqual(stored, ['none']);
  assert.deepEqual(r.status(), { recovering: false, recoveringGroups: [], waitingFor: [] });
  assert.equal(r.recoveryFor(9), 'none', 'a range started after recovery does not recover');
  assert.equal(r.groupRecovering(six), false);
  r.check();
  assert.deepEqual(stored, ['none'], 'stored once');
  r.stop();
});

void test('a node that lost nothing stores nothing and waits for nothing; the planted skip starts ranges as members', () => {
  const stored: Recovery[] = [];
  const base = {
    selfId: 1,
    store: (x: Recovery) => stored.push(x),
    clock: never,
    checkEveryMs: 1_000,
    log: pino({ level: 'silent' }),
  };
  const fine = new NodeRecovery({ ...base, initial: 'none' });
  fine.start({
    groups: () => [new FakeGroup(0)],
    pendingRanges: () => [],
    metaGroup: 2,
    map: () => null,
    startRange: () => assert.fail('nothing to start'),
    prepared: () => false,
    mapRead: () => assert.fail('no map to read'),
  });
  assert.equal(fine.recoveryFor(5), 'none');
  assert.deepEqual(fine.status().waitingFor, []);
  assert.deepEqual(stored, []);
  const planted = new NodeRecovery({
    ...base,
    initial: 'recovering',
    unsafeSkipRangeRecovery: true,
  });
  assert.deepEqual(
    [0, 1, 2, 3].map((g) => planted.recoveryFor(g)),
    ['recovering', 'recovering', 'recovering', 'none'],
  );
});
