// The simulator's range checks must be able to fail: a split with one rule broken, planted in
// every range machine of every node, is caught within a bounded number of range seeds, and the
// same seed with correct splits breaks nothing.

import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { SessionMachine, type SessionsPart } from '../../src/host/sessions.js';
import type { RangeDescriptor } from '../../src/ranges/types.js';
import { runSeed, type RangePlant, type SimResult } from '../../src/sim/index.js';
import type { Profile } from '../../src/sim/profile.js';
import { SAFETY_KINDS } from './planted.js';

const SEED_BOUND = 200;

/** Splits often, with faults that lose answers, and reads that look at split keys. */
const SPLIT_HEAVY: Partial<Profile> = {
  nodes: 3,
  ranges: 6,
  splitRatio: 0.1,
  keys: 5,
  clients: 4,
  thinkMs: 5,
  readRatio: 0.5,
  leaseReadRatio: 0,
};

/** The left range keeps its old end: the keys from the split on are in both halves. */
const keepsLeftEnd: RangePlant = (range) => {
  const apply = range.apply.bind(range);
  range.apply = (commands) => {
    const before = range.descriptor();
    const results = apply(commands);
    for (const r of results)
      if ((r as { kind?: string }).kind === 'split')
        Reflect.set(range, 'desc', { ...range.descriptor(), end: before.end } as RangeDescriptor);
    return results;
  };
};

/** The right-hand seed leaves out the split key itself (it stays behind, outside the left). */
const dropsSplitKey: RangePlant = (range) => {
  const splitOff = range.kv.splitOff.bind(range.kv);
  range.kv.splitOff = (at) => splitOff(new Uint8Array([...at, 0]));
};

/** The right-hand seed carries an empty session table: every session record is lost. */
const losesSessions: RangePlant = (range) => {
  let emptyNow: (() => SessionsPart) | null = null;
  const probe = {
    apply: () => [],
    snapshot: () => (async function* () {})(),
    restore: () => Promise.resolve(),
    readsSessions: () => false,
    bindSessions: (now: () => SessionsPart) => {
      emptyNow = now;
    },
  };
  new SessionMachine(probe);
  range.bindSessions(() => (emptyNow as () => SessionsPart)());
};

/** Says which seed caught the bug, and as what. */
function note(t: TestContext, r: SimResult): void {
  const v = r.violations[0];
  t.diagnostic(`seed ${r.seed}: [${v?.kind}] ${v?.message.slice(0, 200)}`);
}

async function caughtBy(
  plant: RangePlant,
  kinds: readonly string[],
  profile: Partial<Profile>,
): Promise<SimResult> {
  for (let seed = 0; seed < SEED_BOUND; seed++) {
    const r = await runSeed({ seed, ranges: true, profile, plantRange: plant });
    if (r.violations.some((v) => kinds.includes(v.kind))) {
      const control = await runSeed({ seed, ranges: true, profile });
      const broken = control.violations.filter((v) => SAFETY_KINDS.has(v.kind));
      assert.deepEqual(broken, [], `correct splits also fail seed ${seed}`);
      assert.ok(control.stats.splits > 0, `seed ${seed} split no range`);
      return r;
    }
  }
  assert.fail(`no ${kinds.join(' or ')} violation in ${SEED_BOUND} range seeds`);
}

void test('the simulator catches a split that leaves keys in both halves (the range map)', async (t) => {
  note(t, await caughtBy(keepsLeftEnd, ['range-map'], SPLIT_HEAVY));
});

void test('the simulator catches a split that drops the split key from the right half', async (t) => {
  note(t, await caughtBy(dropsSplitKey, ['stale-read', 'linearizability'], SPLIT_HEAVY));
});

void test('the simulator catches a split whose seed loses the session table', async (t) => {
  const lossy = { ...SPLIT_HEAVY, readRatio: 0, crashEveryMs: 150, dropRate: 0.1 };
  note(t, await caughtBy(losesSessions, ['exactly-once', 'linearizability'], lossy));
});
