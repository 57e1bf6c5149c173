// Membership on one node: the configurations that took effect since the snapshot, and what
// applying a membership change does (thesis §4.3; the change arithmetic is confchange.ts). A
// configuration takes effect when its entry is applied (DESIGN.md, "Membership"), so the
// history is a function of the committed prefix: nothing in it is ever taken back.

import {
  confOfSnapshot,
  decodeConfChange,
  describeChange,
  describeConf,
  type ConfChange,
  type ConfState,
} from './confchange.js';
import { AssertionError, assert } from './errors.js';
import type { Raft } from './raft.js';
import { leaderConfApplied } from './step-leader.js';
import { NONE, type Entry, type Index, type SnapshotMeta } from './types.js';

/**
 * The configurations in force since the snapshot, oldest first, each with the index of the
 * entry that brought it (the first: the snapshot's, or 0). Invariant: not empty; indexes
 * ascend; the last is the configuration in force.
 */
export class ConfHistory {
  private list: { readonly index: Index; readonly conf: ConfState }[];

  constructor(index: Index, conf: ConfState) {
    this.list = [{ index, conf }];
  }

  private last(): { readonly index: Index; readonly conf: ConfState } {
    return this.list[this.list.length - 1] as { index: Index; conf: ConfState };
  }

  /** The configuration in force. */
  current(): ConfState {
    return this.last().conf;
  }

  /** The index of the entry (or snapshot) that brought the configuration in force. */
  currentIndex(): Index {
    return this.last().index;
  }

  /** The configuration in force at `index`, which is at or after the snapshot's index. */
  at(index: Index): ConfState {
    let found = this.list[0] as { index: Index; conf: ConfState };
    for (const c of this.list) if (c.index <= index) found = c;
    return found.conf;
  }

  push(index: Index, conf: ConfState): void {
    assert(index > this.currentIndex(), `Configuration at ${index} after ${this.currentIndex()}`);
    this.list.push({ index, conf });
  }

  /** A snapshot replaced the log: its configuration is the only one known. */
  reset(index: Index, conf: ConfState): void {
    this.list = [{ index, conf }];
  }

  /** The log was compacted to `index`: forget configurations in force only before it. */
  compacted(index: Index): void {
    while (this.list.length > 1 && (this.list[1] as { index: Index }).index <= index)
      this.list.shift();
  }
}

/**
 * Puts the change of conf-change entry `e` on top of the configuration in force. A committed
 * change was valid against the configuration its proposer had applied, which is the one in
 * force here (one change in flight at a time); a refusal now is a bug.
 */
export function recordConf(r: Raft, e: Entry): ConfChange {
  const change = decodeConfChange(e.data);
  if (typeof change === 'string')
    throw new AssertionError(`Entry ${e.index} is not a membership change: ${change}`);
  const next = r.hooks.nextConf(r.conf(), change);
  assert(
    next.ok,
    `Committed membership change at ${e.index} refused: ${next.ok ? '' : next.error.message} ` +
      `(the configuration it applies to: voters ${r.conf().voters.join(',')}). A node started ` +
      'without a snapshot must be given the initial voters (RaftConfig.voters) at every start, ' +
      'not the membership of today: the log applies its changes to them again',
  );
  r.confs.push(e.index, next.value);
  return change;
}

/** The caller applied the conf-change entry `e`: its configuration takes effect. */
export function applyConfEntry(r: Raft, e: Entry): void {
  // Already in force: put there on restart, as committed (see the Raft constructor).
  if (e.index <= r.confs.currentIndex()) return;
  const before = r.conf();
  const change = recordConf(r, e);
  const after = r.conf();
  r.emit(
    'conf-applied',
    NONE,
    `${describeChange(change)} at ${e.index}: ${describeConf(before)} -> ${describeConf(after)}`,
  );
  const added = r.trk.switchToConf(after, r.log.lastIndex() + 1);
  if (r.role === 'leader') leaderConfApplied(r, added);
  else if (r.role !== 'follower' && !r.promotable())
    r.becomeFollower(r.term, NONE, `removed from the voters: ${describeConf(after)}`);
}

/**
 * The index of a committed membership change not yet in force (applied), or 0. A node does
 * not campaign while one exists (hup).
 */
export function unappliedConfChange(r: Raft): Index {
  const from = Math.max(r.log.applied, r.confs.currentIndex(), r.log.snapshotIndex) + 1;
  for (let i = from; i <= r.log.committed; i++) {
    if (r.log.entryAt(i)?.type === 'conf-change') return i;
  }
  return 0;
}

/**
 * A snapshot from the leader replaces the log: its configuration is in force. A candidate (or
 * pre-candidate) it leaves no voter stops campaigning, as when a change is applied: it can win
 * nothing, and its requests would only disturb the voters.
 */
export function switchToSnapshotConf(r: Raft, meta: SnapshotMeta): void {
  r.confs.reset(meta.index, confOfSnapshot(meta));
  r.trk.switchToConf(r.conf(), r.log.lastIndex() + 1);
  if (r.role !== 'follower' && r.role !== 'leader' && !r.promotable())
    r.becomeFollower(r.term, NONE, `not a voter of the snapshot's: ${describeConf(r.conf())}`);
}
