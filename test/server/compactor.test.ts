// The leader's automatic compaction decided from a clock the test drives: by revisions kept,
// by time kept, both (the later revision stays), a bound on the history's bytes over both,
// and never while following.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AutoCompactor } from '../../src/server/compactor.js';
import { ManualClock } from '../support/manual-clock.js';

function compactor(o: {
  keepRevisions: number;
  keepMs: number;
  keepBytes?: number;
  revisionToFit?: (bytes: number) => number | null;
}) {
  const clock = new ManualClock();
  const state = { leader: true, revision: 1, compacted: 0, proposals: [] as number[] };
  const c = new AutoCompactor({
    clock,
    ...o,
    checkEveryMs: 1_000,
    isLeader: () => state.leader,
    revision: () => state.revision,
    compacted: () => state.compacted,
    compact: (rev) => {
      state.proposals.push(rev);
      state.compacted = rev;
      return Promise.resolve();
    },
    onError: (err) => {
      throw err;
    },
  });
  return { c, clock, state };
}

async function settle(): Promise<void> {
  await new Promise((r) => setImmediate(r));
}

void test('by revisions: keeps the last N, proposes only when there is something to forget', async () => {
  const { c, state } = compactor({ keepRevisions: 100, keepMs: 0 });
  state.revision = 90;
  c.check();
  await settle();
  assert.deepEqual(state.proposals, [], 'fewer than 100 revisions: nothing to compact');
  state.revision = 250;
  c.check();
  await settle();
  c.check();
  await settle();
  assert.deepEqual(state.proposals, [150], 'once to 150, not again at the same revision');
});

void test('by time: keeps every revision made within the window of the leader clock', async () => {
  const { c, clock, state } = compactor({ keepRevisions: 0, keepMs: 10_000 });
  for (let t = 0; t <= 15_000; t += 1_000) {
    clock.now = t;
    state.revision = 1 + t / 100; // 10 revisions a second
    c.check();
    await settle();
  }
  // At 10 s the sample from 0 s (revision 1) could go, then one more each second: at 15 s the
  // revision current at 5 s (51).
  assert.equal(state.proposals.at(-1), 51, `proposals ${state.proposals.join(',')}`);
  assert.equal(state.compacted, 51);
});

void test('both rules: a revision stays while either keeps it; a follower never proposes', async () => {
  const { c, clock, state } = compactor({ keepRevisions: 10, keepMs: 10_000 });
  state.leader = false;
  for (let t = 0; t <= 20_000; t += 1_000) {
    clock.now = t;
    state.revision = 1 + t / 100;
    c.check();
    await settle();
  }
  assert.deepEqual(state.proposals, [], 'a follower proposes nothing');
  state.leader = true;
  for (let t = 21_000; t <= 32_000; t += 1_000) {
    clock.now = t;
    state.revision = 1 + t / 100;
    c.check();
    await settle();
  }
  // Time rule: the revision current at 22 s (221), sampled only since leading began; the
  // revision rule alone would allow 311.
  assert.equal(state.proposals.at(-1), 221, `proposals ${state.proposals.join(',')}`);
});

void test('the byte bound compacts past what the keep rules keep, and only while over it', async () => {
  // The history: 1 KiB replaced at every revision from 2 on, nothing before `compacted`.
  let fitAsked: number[] = [];
  const { c, state } = compactor({
    keepRevisions: 1_000,
    keepMs: 0,
    keepBytes: 10 * 1024,
    revisionToFit: (bytes) => {
      fitAsked.push(bytes);
      const held = (state.revision - Math.max(1, state.compacted)) * 1024;
      return held <= bytes ? null : state.revision - bytes / 1024;
    },
  });
  state.revision = 8;
  c.check();
  await settle();
  assert.deepEqual(state.proposals, [], '7 KiB held: under the bound, and 1,000 revisions kept');
  assert.deepEqual(fitAsked, [10 * 1024]);
  state.revision = 50;
  c.check();
  await settle();
  assert.deepEqual(state.proposals, [40], 'over the bound: to the lowest revision that fits');
  fitAsked = [];
  c.check();
  await settle();
  assert.deepEqual(state.proposals, [40], 'fits now: nothing more');
});

void test('without a byte bound (0) the keep rules alone decide, and none at all turns it off', async () => {
  const asked: number[] = [];
  const fit = (bytes: number): number | null => {
    asked.push(bytes);
    return 99;
  };
  const { c, state } = compactor({
    keepRevisions: 10,
    keepMs: 0,
    keepBytes: 0,
    revisionToFit: fit,
  });
  state.revision = 100;
  c.check();
  await settle();
  assert.deepEqual(state.proposals, [90]);
  assert.deepEqual(asked, []);
  assert.equal(
    compactor({ keepRevisions: 0, keepMs: 0, keepBytes: 0, revisionToFit: fit }).c.enabled,
    false,
  );
  assert.equal(
    compactor({ keepRevisions: 0, keepMs: 0, keepBytes: 1, revisionToFit: fit }).c.enabled,
    true,
  );
});
