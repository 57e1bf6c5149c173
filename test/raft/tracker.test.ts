// The tracker takes every quorum decision of the core. These tests install a joint
// configuration directly: a decision that bypassed the tracker (a count over the incoming
// voters alone, as the core did before joint configurations) would decide early here, where
// both halves must agree. Learners are replicated to and counted in no decision.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { resolveConfig } from '../../src/raft/config.js';
import { changeConf } from '../../src/raft/confchange.js';
import type { Progress } from '../../src/raft/progress.js';
import type { JointConfig } from '../../src/raft/quorum.js';
import { Raft, type RaftHooks } from '../../src/raft/raft.js';
import { hup } from '../../src/raft/step-candidate.js';
import { flushBatched, leaderReadIndex, selfPersisted } from '../../src/raft/step-leader.js';
import { ProgressTracker } from '../../src/raft/tracker.js';
import { createRng, type Message, type Role } from '../../src/raft/index.js';

const JOINT: JointConfig = { incoming: [1, 2, 3], outgoing: [1, 4, 5] };

function tracker(voters: JointConfig): ProgressTracker {
  const t = new ProgressTracker(voters, 16, 1 << 20);
  t.resetProgress(1);
  return t;
}

function pr(t: ProgressTracker, id: number): Progress {
  const p = t.get(id);
  assert.ok(p !== undefined, `no progress for node ${id}`);
  return p;
}

function setMatch(t: ProgressTracker, match: Record<number, number>): void {
  for (const [id, m] of Object.entries(match)) pr(t, Number(id)).match = m;
}

// ---------------------------------------------------------------------------------------------
// The tracker alone

void test('a joint tracker tracks the voters of both halves', () => {
  const t = tracker(JOINT);
  assert.deepEqual(t.voterIds(), [1, 2, 3, 4, 5]);
  assert.deepEqual([...t.progress.keys()], [1, 2, 3, 4, 5]);
  assert.ok(t.isVoter(5));
  assert.ok(!t.isVoter(6));
  assert.ok(!tracker({ incoming: [1], outgoing: [1, 2] }).isSingleton(1));
  assert.ok(tracker({ incoming: [1], outgoing: [] }).isSingleton(1));
});

void test('the committed index of a joint tracker is the smaller of the halves', () => {
  const t = tracker(JOINT);
  // Incoming {1,2,3} holds 7 on a majority; outgoing {1,4,5} only 3.
  setMatch(t, { 1: 9, 2: 7, 3: 0, 4: 3, 5: 1 });
  assert.equal(t.committed(), 3);
  setMatch(t, { 5: 8 });
  assert.equal(t.committed(), 7);
});

void test('a follower recovering lost data counts as 0 in the committed index', () => {
  const t = tracker(JOINT);
  setMatch(t, { 1: 9, 2: 9, 3: 9, 4: 9, 5: 0 });
  assert.equal(t.committed(), 9);
  pr(t, 4).catchingUp = true;
  assert.equal(t.committed(), 0);
});

void test('a joint tracker wins an election only with a majority of both halves', () => {
  const t = tracker(JOINT);
  t.recordVote(1, true);
  t.recordVote(2, true);
  t.recordVote(3, true);
  assert.equal(t.tallyVotes(), 'pending');
  t.recordVote(4, false);
  assert.equal(t.tallyVotes(), 'pending');
  t.recordVote(5, false);
  assert.equal(t.tallyVotes(), 'lost');
  t.recordVote(5, true);
  assert.equal(t.tallyVotes(), 'won');
  t.resetVotes();
  assert.equal(t.tallyVotes(), 'pending');
});

void test('check-quorum and read confirmation of a joint tracker need both halves', () => {
  const t = tracker(JOINT);
  for (const id of [1, 2, 3]) pr(t, id).recentActive = true;
  assert.equal(t.quorumActive(), false);
  assert.equal(
    t.confirmedBy((id) => id <= 3),
    false,
  );
  pr(t, 4).recentActive = true;
  assert.equal(t.quorumActive(), true);
  assert.equal(
    t.confirmedBy((id) => id <= 4),
    true,
  );
  pr(t, 4).catchingUp = true;
  assert.equal(t.quorumActive(), false, 'a recovering follower counts toward no quorum');
});

void test('switching configuration keeps the progress of members that stay', () => {
  const t = tracker({ incoming: [1, 2, 3], outgoing: [] });
  setMatch(t, { 2: 5 });
  t.switchTo(JOINT, 10);
  assert.equal(t.get(2)?.match, 5);
  assert.equal(t.get(4)?.next, 10);
  t.switchTo({ incoming: [1, 4, 5], outgoing: [] }, 11);
  assert.equal(t.get(2), undefined);
  assert.deepEqual([...t.progress.keys()].sort(), [1, 4, 5]);
});

// ---------------------------------------------------------------------------------------------
// The core's decisions go through the tracker

/** Node 1 as a Raft with the rules RaftNode applies, stepped by hand. */
function node1(): Raft {
  const hooks: RaftHooks = {
    logIsUpToDate: (i, t) => r.log.isUpToDate(i, t),
    mayCommitAt: (i) => r.log.term(i) === r.term,
    withholdsVote: () => false,
    followerLostLog: (m, match) => m.lost && m.hintIndex < match,
    mustPersistBeforeSending: () => false,
    nextConf: changeConf,
    commitVoters: (voters) => voters,
    leaseEnd: (sent) => sent,
    wakes: () => true,
  };
  const cfg = resolveConfig({ id: 1, voters: [1, 2, 3], rng: createRng(1), preVote: false });
  const r: Raft = new Raft(cfg, hooks, undefined, 'none');
  r.trk.switchTo(JOINT, r.log.lastIndex() + 1);
  return r;
}

function sent(r: Raft): Message[] {
  const out = [...r.msgs, ...r.msgsAfterPersist];
  r.msgs = [];
  r.msgsAfterPersist = [];
  return out;
}

function voteFrom(r: Raft, from: number, granted: boolean): void {
  r.step({ type: 'vote-resp', from, to: 1, term: r.term, granted });
}

function ackFrom(r: Raft, from: number, index: number): void {
  r.step({
    type: 'append-resp',
    from,
    to: 1,
    term: r.term,
    success: true,
    index,
    hintIndex: 0,
    hintTerm: 0,
    lost: false,
    catchingUp: false,
  });
}

/** Persists the leader's log as the Ready loop would, so the leader counts itself. */
function persist(r: Raft): void {
  r.log.acceptInProgress();
  r.log.stableTo(r.log.lastIndex());
  selfPersisted(r);
}

function expectRole(r: Raft, role: Role, why: string): void {
  assert.equal(r.role, role, why);
}

/** Node 1 leading term 1 of the joint configuration, its no-op at index 1 not yet committed. */
function leader(): Raft {
  const r = node1();
  hup(r, false);
  for (const id of [2, 4]) voteFrom(r, id, true);
  expectRole(r, 'leader', 'votes from a majority of each half');
  persist(r);
  sent(r);
  return r;
}

void test('a candidate asks every voter of both halves', () => {
  const r = node1();
  hup(r, false);
  const to = sent(r)
    .filter((m) => m.type === 'vote')
    .map((m) => m.to);
  assert.deepEqual(to, [2, 3, 4, 5]);
});

void test('a candidate needs a majority of both halves to win', () => {
  const r = node1();
  hup(r, false);
  voteFrom(r, 2, true);
  voteFrom(r, 3, true);
  expectRole(r, 'candidate', 'the incoming half alone elected it');
  voteFrom(r, 4, true);
  expectRole(r, 'leader', 'a majority of both halves granted');
});

void test('a candidate refused by a majority of either half loses', () => {
  const r = node1();
  hup(r, false);
  voteFrom(r, 2, true);
  voteFrom(r, 4, false);
  expectRole(r, 'candidate', 'the election ended before a majority of either half refused');
  voteFrom(r, 5, false);
  expectRole(r, 'follower', 'the outgoing half refused');
});

void test('the leader commits only what a majority of both halves holds', () => {
  const r = leader();
  ackFrom(r, 2, 1);
  ackFrom(r, 3, 1);
  assert.equal(r.log.committed, 0, 'committed on the incoming half alone');
  ackFrom(r, 5, 1);
  assert.equal(r.log.committed, 1);
});

void test('check-quorum keeps a leader only in contact with a majority of both halves', () => {
  const cut = leader();
  ackFrom(cut, 2, 1);
  ackFrom(cut, 3, 1);
  for (let i = 0; i < cut.cfg.electionTicks; i++) cut.tickRole(cut);
  expectRole(cut, 'follower', 'the outgoing half was silent for an election timeout');

  const heard = leader();
  ackFrom(heard, 2, 1);
  ackFrom(heard, 4, 1);
  for (let i = 0; i < heard.cfg.electionTicks; i++) heard.tickRole(heard);
  expectRole(heard, 'leader', 'a majority of both halves answered');
});

void test('a ReadIndex round needs acknowledgements from a majority of both halves', () => {
  const r = leader();
  for (const id of [2, 3, 4, 5]) ackFrom(r, id, 1);
  assert.equal(r.log.committed, 1);
  leaderReadIndex(r, 7, 1, false);
  flushBatched(r);
  const round = sent(r).filter((m) => m.type === 'heartbeat');
  assert.deepEqual(
    round.map((m) => m.to),
    [2, 3, 4, 5],
  );
  const seq = r.readOnly.seq;
  for (const from of [2, 3]) {
    r.step({ type: 'heartbeat-resp', from, to: 1, term: r.term, seq, catchingUp: false });
  }
  assert.deepEqual(r.readStates, [], 'confirmed by the incoming half alone');
  r.step({ type: 'heartbeat-resp', from: 5, to: 1, term: r.term, seq, catchingUp: false });
  assert.deepEqual(r.readStates, [{ requestId: 7, index: 1, ok: true }]);
});

void test('learners are replicated to and counted in no decision', () => {
  const t = tracker({ incoming: [1, 2, 3], outgoing: [] });
  const added = t.switchToConf(
    { voters: [1, 2, 3], learners: [4, 5], outgoing: [], learnersNext: [], autoLeave: false },
    1,
  );
  assert.deepEqual(added, [4, 5]);
  assert.deepEqual(t.voterIds(), [1, 2, 3]);
  assert.deepEqual(t.memberIds(), [1, 2, 3, 4, 5]);
  assert.ok(t.isLearner(4) && !t.isVoter(4));
  // The leader and both learners hold index 9: one voter of three, nothing commits.
  setMatch(t, { 1: 9, 2: 0, 3: 0, 4: 9, 5: 9 });
  assert.equal(t.committed(), 0);
  for (const [id, p] of t.progress) p.recentActive = id !== 2 && id !== 3;
  assert.equal(t.quorumActive(), false);
  assert.equal(
    t.confirmedBy((id) => id !== 2 && id !== 3),
    false,
  );
  t.recordVote(1, true);
  t.recordVote(4, true);
  t.recordVote(5, true);
  assert.equal(t.tallyVotes(), 'pending');
});
