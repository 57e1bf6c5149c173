// The queue group following the key-value group's configuration (nextFollowChange), when a
// removed member stops, the data directory mark of a removed member, and the `join` settings:
// small pieces of membership.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { simpleConf, type ConfState } from '../../src/raft/index.js';
import {
  Membership,
  nextFollowChange,
  type MembershipOptions,
} from '../../src/server/membership.js';
import { MemberDirectory } from '../../src/host/directory.js';
import { systemClock } from '../../src/host/contracts.js';
import type { RaftRuntime } from '../../src/host/runtime.js';
import { pino } from 'pino';
import {
  DataDirError,
  IDENTITY_FILE,
  checkNotRemoved,
  readIdentity,
  writeIdentity,
} from '../../src/server/data-dir.js';
import { ConfigError, resolveNodeConfig } from '../../src/server/config.js';
import type { FlotillaError } from '../../src/base/errors.js';

const conf = (voters: number[], learners: number[] = []): ConfState => ({
  ...simpleConf(voters),
  learners,
});

/** Applies follow changes to c1 until none is left (at most 20), as the queue leader would. */
function follow(c0: ConfState, c1: ConfState, caughtUp: (id: number) => boolean): string[] {
  const steps: string[] = [];
  let voters = [...c1.voters];
  let learners = [...c1.learners];
  for (let i = 0; i < 20; i++) {
    const ch = nextFollowChange(c0, conf(voters, learners), caughtUp);
    if (ch === null) return steps;
    steps.push(`${ch.kind} ${ch.node}`);
    voters = voters.filter((v) => v !== ch.node);
    learners = learners.filter((l) => l !== ch.node);
    if (ch.kind === 'add-voter') voters.push(ch.node);
    if (ch.kind === 'add-learner') learners.push(ch.node);
  }
  throw new Error(`no fixed point: ${steps.join(', ')}`);
}

void test('the queue group follows: removals first, new members as learners, voters once caught up', () => {
  assert.deepEqual(
    follow(conf([1, 2, 3, 4]), conf([1, 2, 3, 5]), () => true),
    ['remove 5', 'add-learner 4', 'add-voter 4'],
  );
  // Not caught up: a learner it stays, and nothing else is proposed meanwhile.
  assert.deepEqual(
    follow(conf([1, 2, 3, 4]), conf([1, 2, 3]), () => false),
    ['add-learner 4'],
  );
  // A learner of group 0 that votes in group 1 is demoted; the same configuration: nothing.
  assert.deepEqual(
    follow(conf([1, 2], [3]), conf([1, 2, 3]), () => true),
    ['add-learner 3'],
  );
  assert.equal(
    nextFollowChange(conf([1, 2, 3]), conf([1, 2, 3]), () => true),
    null,
  );
});

void test("a removed member's data directory refuses to start, with DATA_DIR_REMOVED", () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-removed-'));
  try {
    const id = { clusterId: 'c', memberId: 4, members: [1, 2, 3], storage: 'wal' as const };
    writeIdentity(dir, { ...id, recovery: 'none', joined: true });
    const found = readIdentity(dir);
    assert.ok(found !== null);
    assert.equal(found.joined, true);
    assert.doesNotThrow(() => checkNotRemoved(dir, found));
    writeIdentity(dir, { ...id, recovery: 'none', joined: true, removed: true });
    assert.throws(
      () => checkNotRemoved(dir, readIdentity(dir)!),
      (e: unknown) =>
        e instanceof DataDirError && e.code === 'DATA_DIR_REMOVED' && /member 4/.test(e.message),
    );
    writeFileSync(
      join(dir, IDENTITY_FILE),
      JSON.stringify({ format: 2, ...id, recovery: 'none', removed: 'yes' }),
    );
    assert.throws(() => readIdentity(dir), /removed must be a boolean/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

void test('join takes client URLs and refuses anything else', () => {
  const base = {
    id: 4,
    dataDir: '/tmp/x',
    initialCluster: '4=127.0.0.1:7004@http://127.0.0.1:8004',
  };
  assert.deepEqual(resolveNodeConfig(base).join, []);
  assert.deepEqual(
    resolveNodeConfig({ ...base, join: 'http://127.0.0.1:8001/, http://127.0.0.1:8002' }).join,
    ['http://127.0.0.1:8001', 'http://127.0.0.1:8002'],
  );
  assert.throws(() => resolveNodeConfig({ ...base, join: 'not a url' }), ConfigError);
  assert.throws(() => resolveNodeConfig({ ...base, join: 5 }), /join must be client URLs/);
  assert.equal(resolveNodeConfig(base).learnerPromoteLagEntries, 1_000);
});

/** A runtime as Membership reads it: its configuration, whether it leads, what it proposes. */
function fakeRuntime(
  confNow: () => ConfState,
  leader = false,
  proposeConfChange?: (cc: { changes: { kind: string; node: number }[] }) => Promise<ConfState>,
): RaftRuntime {
  return {
    status: () => ({ conf: confNow(), progress: {}, lastIndex: 0 }),
    isLeader: () => leader,
    proposeConfChange,
  } as unknown as RaftRuntime;
}

/** A Membership of member `selfId` over fake runtimes, with member 3 marked removed. */
function membershipWith(
  selfId: number,
  kv: RaftRuntime,
  queue: RaftRuntime,
  hooks: { onBookChanged?: () => void; onSelfRemoved?: () => void } = {},
  extra: Pick<MembershipOptions, 'bootstrap' | 'heardFrom'> = { bootstrap: [] },
): Membership {
  const directory = new MemberDirectory();
  directory.apply({ op: 'remove', id: 3 });
  return new Membership({
    selfId,
    ...extra,
    kv,
    queue,
    directory,
    clock: systemClock,
    learnerPromoteLagEntries: 100,
    checkEveryMs: 1_000,
    followWaitMs: 0,
    notifyRemoved: () => Promise.resolve(),
    onBookChanged: hooks.onBookChanged ?? (() => undefined),
    onSelfRemoved: hooks.onSelfRemoved ?? (() => undefined),
    log: pino({ level: 'silent' }),
  });
}

void test('a removed member stops only once the queue group removed it too', async () => {
  const confs = { 0: conf([1, 2]), 1: conf([1, 2, 3]) };
  let stopped = 0;
  let refreshed = 0;
  const m = membershipWith(
    3,
    fakeRuntime(() => confs[0]),
    fakeRuntime(() => confs[1]),
    { onBookChanged: () => refreshed++, onSelfRemoved: () => stopped++ },
  );
  await m.check();
  assert.equal(stopped, 0, 'still a voter of the queue group: it keeps running');
  confs[1] = conf([1, 2]);
  await m.check();
  assert.equal(stopped, 1, 'out of both groups: it stops');
  // Every check refreshes the address book, on every node: a removed member's peers drop it
  // once it is out of both groups, though none of them made the change.
  assert.equal(refreshed, 2);
});

void test('the leader finishes a removal whose configuration change never happened', async () => {
  // The directory marks 3 removed, but the request gave up before the configuration change.
  let voters = [1, 2, 3];
  const proposed: unknown[] = [];
  const kv = fakeRuntime(
    () => conf(voters),
    true,
    (cc) => {
      proposed.push(cc.changes);
      voters = voters.filter((v) => !cc.changes.some((c) => c.kind === 'remove' && c.node === v));
      return Promise.resolve(conf(voters));
    },
  );
  const m = membershipWith(
    1,
    kv,
    fakeRuntime(() => conf([1, 2])),
  );
  await m.check();
  assert.deepEqual(proposed, [[{ kind: 'remove', node: 3 }]]);
  await m.check();
  assert.equal(proposed.length, 1, 'once out of the configuration, nothing more');
});

void test("the leader's own row in the member list shows no lag while its write is in flight", () => {
  // The leader's match is its durable index: under load its own write in flight made it
  // LAG 1 behind itself. A follower's lag is the leader's last index less its match.
  const progress = {
    1: { match: 9, next: 11, state: 'replicate', learner: false },
    2: { match: 7, next: 11, state: 'replicate', learner: false },
  };
  const kv = {
    status: () => ({ conf: conf([1, 2]), progress, lastIndex: 10 }),
    isLeader: () => true,
    leaderId: () => 1,
  } as unknown as RaftRuntime;
  const m = membershipWith(
    1,
    kv,
    fakeRuntime(() => conf([1, 2])),
    {},
    {
      bootstrap: [1, 2].map((id) => ({
        id,
        peer: `127.0.0.1:${7000 + id}`,
        client: `http://127.0.0.1:${8000 + id}`,
      })),
    },
  );
  assert.deepEqual(
    m.list().members.map((r) => [r.id, r.match, r.lag]),
    [
      [1, 9, 0],
      [2, 7, 3],
    ],
  );
});

void test('a change whose voters would lack a quorum of members heard from lately is refused, unless forced', async () => {
  // Five voters; the leader (1) hears from 4 only: 6 and 7 are down. Removing 8 leaves 1, 4,
  // 6, 7, of which two answer: a quorum needs three, so nothing could be written after it.
  const heard = new Set([4, 8]);
  const voters = [1, 4, 6, 7, 8];
  const proposed: unknown[] = [];
  const kv = {
    status: () => ({
      conf: conf(voters),
      lastIndex: 10,
      progress: Object.fromEntries(
        voters.map((id) => [
          id,
          { match: 10, next: 11, state: 'replicate', learner: false, heardRecently: heard.has(id) },
        ]),
      ),
    }),
    isLeader: () => true,
    leaderId: () => 1,
    propose: (d: unknown) => {
      proposed.push(d);
      return Promise.reject(new Error('stop here: the change was let through'));
    },
  } as unknown as RaftRuntime;
  const m = membershipWith(
    1,
    kv,
    fakeRuntime(() => conf(voters)),
  );
  const signal = new AbortController().signal;
  await assert.rejects(m.remove(8, signal), (e: FlotillaError) => {
    assert.equal(e.code, 'MEMBERSHIP_QUORUM_AT_RISK');
    assert.match(
      e.message,
      /removing voter 8 leaves voters 1, 4, 6, 7, and the leader heard lately from 1, 4: 2 of the 3 a quorum needs \(silent: 6, 7\)/,
    );
    return true;
  });
  await assert.rejects(
    m.add(
      { id: 9, peer: '127.0.0.1:7009', client: 'http://127.0.0.1:8009' },
      { learner: false, autoPromote: false, signal },
    ),
    /MEMBERSHIP_QUORUM_AT_RISK|adding voter 9/,
  );
  assert.equal(proposed.length, 0, 'nothing proposed');
  // Removing a silent one is fine (1, 4, 7, 8: three of four heard), and so is a forced removal.
  await assert.rejects(m.remove(6, signal), /stop here/);
  await assert.rejects(m.remove(8, signal, { force: true }), /stop here/);
  // A leader elected a moment ago has heard from no one in its replication progress; what the
  // transport heard (the votes that elected it) counts as well.
  const fresh = membershipWith(
    1,
    kv,
    fakeRuntime(() => conf(voters)),
    {},
    {
      bootstrap: [],
      heardFrom: (id) => id === 6,
    },
  );
  await assert.rejects(fresh.remove(8, signal), /stop here/);
  // A learner counts toward no quorum: adding one is never refused so.
  await assert.rejects(
    m.add(
      { id: 9, peer: '127.0.0.1:7009', client: 'http://127.0.0.1:8009' },
      { learner: true, autoPromote: false, signal },
    ),
    /stop here/,
  );
});

void test('readiness waits for the groups that follow the key-value group', () => {
  // The queue group as member 2's node sees it: what it has it in, its leader, log and apply.
  let q = { conf: conf([1, 3], [2]), leader: 1, lastIndex: 9, commit: 9, recovery: 'none' };
  let applied = 9;
  const queue = {
    status: () => ({ ...q, progress: {} }),
    appliedIndex: () => applied,
  } as unknown as RaftRuntime;
  const m = membershipWith(
    2,
    fakeRuntime(() => conf([1, 2, 3])),
    queue,
  );
  assert.match(
    m.followerNotReady(2, 0) ?? '',
    /the queue group has this member as a learner, the key-value group as a voter/,
  );
  q = { ...q, conf: conf([1, 2, 3]) };
  assert.equal(m.followerNotReady(2, 0), null);
  q = { ...q, leader: 0 };
  assert.equal(m.followerNotReady(2, 0), 'the queue group knows no leader');
  q = { ...q, leader: 1, recovery: 'recovering' };
  assert.match(m.followerNotReady(2, 0) ?? '', /queue group is recovering lost data/);
  q = { ...q, recovery: 'none', lastIndex: 0, commit: 0 };
  assert.equal(m.followerNotReady(2, 0), "waiting for the queue group's log from leader 1");
  q = { ...q, lastIndex: 40, commit: 40 };
  applied = 20;
  assert.equal(m.followerNotReady(2, 100), null, 'within the lag');
  assert.equal(m.followerNotReady(2, 10), 'applying the queue group: 20 of 40');
  // A member the key-value group does not hold yet is none in both: nothing to wait for.
  q = { ...q, conf: conf([1, 3]) };
  assert.equal(m.followerNotReady(4, 10), null);
});
