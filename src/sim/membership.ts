// Membership churn in the simulator, and the checker of configurations. Off unless a profile
// sets `membershipEveryMs` (it is never drawn, so every seed without it runs as before).
//
// Churn: every so often the leader is asked for a random change among the simulated nodes,
// through the runtime as an operator would: promote a learner, demote a voter (three voters
// always stay), swap a voter and a learner (a joint change), remove a learner, add a node as
// learner. Nodes never leave
// the simulation: a removed node keeps running and may be added again later.
//
// The checker: every node's configuration must be one the log holds, that is the initial one
// followed by the committed membership changes up to some index between the node's applied
// index and its commit index (a configuration takes effect when applied; a restart puts the
// committed ones in force at once). It folds the changes with the real changeConf, so a core
// that computes configurations another way is caught here, whatever else it breaks.

import {
  changeConf,
  decodeConfChange,
  jointHasQuorum,
  describeConf,
  sameConf,
  simpleConf,
  type ConfChange,
  type ConfChangeSingle,
  type ConfState,
  type Entry,
  type Rng,
} from '../raft/index.js';
import { FlotillaError } from '../base/errors.js';
import type { SimNode } from './sim-node.js';

/** The next change to ask of a leader whose configuration is `c`, or null for none. */
export function drawChange(rng: Rng, nodes: number, c: ConfState): ConfChange | null {
  if (c.outgoing.length > 0) return null; // the leader is leaving a joint configuration
  const all = Array.from({ length: nodes }, (_, i) => i + 1);
  const absent = all.filter((id) => !c.voters.includes(id) && !c.learners.includes(id));
  const pickOf = (ids: readonly number[]): number => ids[rng.int(ids.length)] as number;
  const options: (() => ConfChangeSingle[])[] = [];
  if (c.learners.length > 0) {
    options.push(() => [{ kind: 'add-voter', node: pickOf(c.learners) }]);
    options.push(() => [{ kind: 'remove', node: pickOf(c.learners) }]);
  }
  // At least three voters stay: the fault model is any minority of failures, and with two
  // voters that is none (a node that crashed before its first write restarts recovering and
  // counts in no quorum); a lone voter with no disk latency would even complete writes
  // without virtual time moving. A three-node cluster therefore sees no changes.
  if (c.voters.length > 3) options.push(() => [{ kind: 'add-learner', node: pickOf(c.voters) }]);
  if (c.learners.length > 0) {
    options.push(() => [
      { kind: 'add-learner', node: pickOf(c.voters) },
      { kind: 'add-voter', node: pickOf(c.learners) },
    ]);
  }
  if (absent.length > 0) options.push(() => [{ kind: 'add-learner', node: pickOf(absent) }]);
  if (options.length === 0) return null;
  return { changes: (options[rng.int(options.length)] as () => ConfChangeSingle[])() };
}

/**
 * Asks the leader among `nodes`, if any, for a random change (drawChange); returns whether
 * one was asked. A refusal (one in flight, leadership moved) or a timeout is what an operator
 * would see; anything else is a failure of the code under test.
 */
export function proposeRandomChange(
  rng: Rng,
  nodes: readonly SimNode[],
  fail: (what: string, err: unknown) => void,
): boolean {
  const leader = nodes.find((n) => n.up && n.runtime.isLeader());
  if (leader === undefined) return false;
  const cc = drawChange(rng, nodes.length, leader.raft.confState());
  if (cc === null) return false;
  leader.runtime.proposeConfChange(cc, { timeoutMs: 1_000 }).catch((err: unknown) => {
    if (!(err instanceof FlotillaError)) fail(`membership change on node ${leader.id}`, err);
  });
  return true;
}

/** What the checker needs of a node: its configuration, indexes and log. */
export interface ConfView {
  readonly id: number;
  conf(): ConfState;
  applied(): number;
  commit(): number;
  /** The index the node's log starts after (its snapshot's). */
  snapshotIndex(): number;
  entry(index: number): Entry | undefined;
}

export class ConfChecker {
  /** Committed membership changes by index, as some node applied them. */
  private readonly changes = new Map<number, ConfChange>();
  private readonly initial: ConfState;
  /** Committed entries up to here were looked at (onCommit). */
  private scannedTo = 0;
  private cached: { index: number; conf: ConfState }[] | null = null;

  constructor(voters: readonly number[]) {
    this.initial = simpleConf(voters);
  }

  /** An entry some node applied (committed entries only). */
  onApply(e: Entry): void {
    if (e.type !== 'conf-change' || this.changes.has(e.index)) return;
    const cc = decodeConfChange(e.data);
    if (typeof cc !== 'string') this.changes.set(e.index, cc);
    this.cached = null;
  }

  /** Records the membership changes among a node's newly committed entries (up to `commit`). */
  onCommit(commit: number, entry: (index: number) => Entry | undefined): void {
    for (let i = this.scannedTo + 1; i <= commit; i++) {
      const e = entry(i);
      if (e !== undefined) this.onApply(e);
    }
    this.scannedTo = Math.max(this.scannedTo, commit);
  }

  /**
   * Whether the nodes for which `holds` is true can have committed entry `index`: a quorum of
   * the configuration in force before it, or of the one before that. A leader counts in the
   * configuration it applied, at most one change behind the last in its log (it proposes a
   * change only once it applied the previous one, and campaigns only with every committed
   * change applied), so one of the two committed the entry.
   */
  durableOn(index: number, holds: (id: number) => boolean): boolean {
    const confs = this.history().filter((h) => h.index < index);
    return confs
      .slice(-2)
      .some(({ conf }) =>
        jointHasQuorum({ incoming: conf.voters, outgoing: conf.outgoing }, holds),
      );
  }

  /**
   * Whether the nodes for which `holds` is true meet every quorum of the last configuration
   * the log committed (those that do not hold it are no quorum): every leader that
   * configuration can elect then needs a vote from a node holding the entry, which it gets
   * only holding the entry too. With replicas moved, the nodes that committed an old entry
   * may have left since, and a configuration of four leaves two enough.
   */
  durableInLast(holds: (id: number) => boolean): boolean {
    const last = this.history().at(-1);
    return (
      last !== undefined &&
      !jointHasQuorum(
        { incoming: last.conf.voters, outgoing: last.conf.outgoing },
        (id) => !holds(id),
      )
    );
  }

  private history(): { index: number; conf: ConfState }[] {
    if (this.cached !== null) return this.cached;
    const out = [{ index: 0, conf: this.initial }];
    let c = this.initial;
    for (const i of [...this.changes.keys()].sort((a, b) => a - b)) {
      const next = changeConf(c, this.changes.get(i) as ConfChange);
      if (!next.ok) break; // check() reports it
      c = next.value;
      out.push({ index: i, conf: c });
    }
    this.cached = out;
    return out;
  }

  /** Whether any change was applied so far (the check costs nothing before). */
  active(): boolean {
    return this.changes.size > 0;
  }

  /** A description of what is wrong with the configuration of the first running node, or null. */
  checkNodes(nodes: readonly SimNode[]): string | null {
    for (const n of nodes) {
      if (!n.up) continue;
      const st = n.raft.status();
      const problem = this.check({
        id: n.id,
        conf: () => st.conf,
        applied: () => st.applied,
        commit: () => st.commit,
        snapshotIndex: () => st.firstIndex - 1,
        entry: (i) => n.raft.entry(i),
      });
      if (problem !== null) return problem;
    }
    return null;
  }

  /** A description of what is wrong with `n`'s configuration, or null. */
  check(n: ConfView): string | null {
    const applied = n.applied();
    const commit = Math.max(applied, n.commit());
    let c = this.initial;
    const indexes = [...this.changes.keys()].filter((i) => i <= applied).sort((a, b) => a - b);
    for (const i of indexes) {
      const next = changeConf(c, this.changes.get(i) as ConfChange);
      if (!next.ok) return `the committed change at ${i} is refused: ${next.error.message}`;
      c = next.value;
    }
    const candidates = [c];
    const snapshotIndex = n.snapshotIndex();
    for (let i = applied + 1; i <= commit; i++) {
      // A snapshot being installed covers up to its index: the changes there were applied by
      // the node that took it. Past the snapshot, the node's own committed entries.
      let cc: ConfChange | string | undefined;
      if (i <= snapshotIndex) cc = this.changes.get(i);
      else {
        const e = n.entry(i);
        if (e === undefined) break; // not held: cannot judge further
        if (e.type === 'conf-change') cc = decodeConfChange(e.data);
      }
      if (cc === undefined) continue;
      if (typeof cc === 'string') return `entry ${i} is not a membership change: ${cc}`;
      const next = changeConf(c, cc);
      if (!next.ok) break;
      c = next.value;
      candidates.push(c);
    }
    const actual = n.conf();
    if (candidates.some((x) => sameConf(x, actual))) return null;
    return `node ${n.id} holds ${describeConf(actual)}, but its log (applied ${applied}, commit ${commit}) holds ${candidates.map(describeConf).join(' or ')}`;
  }
}
