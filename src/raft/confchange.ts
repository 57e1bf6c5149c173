// Membership changes (thesis §4.3; etcd-io/raft's confchange package, ConfChangeV2): pure
// functions from a configuration and a change to the next configuration, the refusals of
// changes that must not be proposed, and the encoding of a change as an entry's data. Nothing
// here knows the Raft state machine, so it is tested alone (test/raft/confchange.test.ts).
//
// A change is a list of single changes applied together. If it moves at most one voter into
// or out of the voters (the symmetric difference of the old and new voter sets has at most one
// node), it takes the one-step path: any majority of the old voters and any majority of the
// new ones share a node, so no two leaders can be elected in one term. Otherwise it enters a
// joint configuration: every decision needs a majority of the old voters (outgoing) and of the
// new ones (incoming) until the leader proposes the leave, an empty change. Learners are
// replicated to and count in no decision; a voter demoted to learner in a joint change stays a
// voter of the outgoing half and becomes a learner when the joint configuration is left
// (`learnersNext`), since a node is never a voter and a learner at once.

import { assert, fail, ok, type Result } from './errors.js';
import type { NodeId, SnapshotMeta } from './types.js';

/**
 * The membership in force; the configuration a snapshot records. Invariants: `voters` is not
 * empty; `voters`, `outgoing`, `learners` each hold distinct ids; no learner is a voter of
 * either half; `learnersNext` is a subset of `outgoing` minus `voters`; `learnersNext` and
 * `autoLeave` are empty and false unless `outgoing` is non-empty (joint).
 */
export interface ConfState {
  /** The voters (the incoming half of a joint configuration). */
  readonly voters: readonly NodeId[];
  /** Replicated to, counted in no decision. */
  readonly learners: readonly NodeId[];
  /** The voters being left, while joint; empty in a simple configuration. */
  readonly outgoing: readonly NodeId[];
  /** Outgoing voters that become learners when the joint configuration is left. */
  readonly learnersNext: readonly NodeId[];
  /** The leader proposes the leave by itself once the joint entry is applied. */
  readonly autoLeave: boolean;
}

export type ConfChangeKind = 'add-voter' | 'add-learner' | 'remove';

export interface ConfChangeSingle {
  readonly kind: ConfChangeKind;
  readonly node: NodeId;
}

/** Changes applied together. An empty list leaves a joint configuration. */
export interface ConfChange {
  readonly changes: readonly ConfChangeSingle[];
}

/** Most single changes in one ConfChange; the encoding stores the count in a u16. */
export const MAX_CONF_CHANGES = 1024;

export function simpleConf(voters: readonly NodeId[]): ConfState {
  return { voters: sorted(voters), learners: [], outgoing: [], learnersNext: [], autoLeave: false };
}

export function isJointConf(c: ConfState): boolean {
  return c.outgoing.length > 0;
}

export function sameConf(a: ConfState, b: ConfState): boolean {
  return (
    sameIds(a.voters, b.voters) &&
    sameIds(a.learners, b.learners) &&
    sameIds(a.outgoing, b.outgoing) &&
    sameIds(a.learnersNext, b.learnersNext) &&
    a.autoLeave === b.autoLeave
  );
}

/** Renders a configuration for messages and transcripts. */
export function describeConf(c: ConfState): string {
  const list = (ids: readonly NodeId[]): string => `(${ids.join(',')})`;
  let s = `voters=${list(c.voters)}`;
  if (isJointConf(c)) s += `&&${list(c.outgoing)}`;
  if (c.learners.length > 0) s += ` learners=${list(c.learners)}`;
  if (c.learnersNext.length > 0) s += ` learners-next=${list(c.learnersNext)}`;
  if (c.autoLeave) s += ' auto-leave';
  return s;
}

export function describeChange(cc: ConfChange): string {
  if (cc.changes.length === 0) return 'leave joint';
  const letter = { 'add-voter': 'v', 'add-learner': 'l', remove: 'r' } as const;
  return cc.changes.map((c) => `${letter[c.kind]}${c.node}`).join(' ');
}

/**
 * The configuration `cc` leads to from `c`, or the refusal of a change that must not be
 * proposed: a malformed change, a change while a joint configuration is unresolved (only the
 * leave may be), a leave outside one, an addition of a member in the role it has, a removal
 * of a node that is no member, a change that leaves no voter. One-change-at-a-time is the
 * proposer's rule (it knows what is pending), not this function's.
 */
export function changeConf(c: ConfState, cc: ConfChange): Result<ConfState> {
  const malformed = checkShape(cc);
  if (malformed !== null) return fail('MEMBERSHIP_INVALID', malformed);
  if (cc.changes.length === 0) return leaveJoint(c);
  if (isJointConf(c)) {
    return fail(
      'MEMBERSHIP_JOINT_UNRESOLVED',
      `The configuration ${describeConf(c)} is joint: only the leave may be proposed until it is left`,
    );
  }
  // Try the one-step path; a change of more than one voter must go through a joint one.
  const simple = applyChanges(c, cc, []);
  if (!simple.ok) return simple;
  const next =
    symmetricDifference(c.voters, simple.value.voters) <= 1
      ? simple
      : applyChanges(c, cc, c.voters);
  if (!next.ok) return next;
  return checkResult(next.value);
}

function leaveJoint(c: ConfState): Result<ConfState> {
  if (!isJointConf(c)) {
    return fail(
      'MEMBERSHIP_NOT_JOINT',
      `Cannot leave a joint configuration: ${describeConf(c)} is not joint`,
    );
  }
  return ok({
    voters: c.voters,
    learners: sorted([...c.learners, ...c.learnersNext]),
    outgoing: [],
    learnersNext: [],
    autoLeave: false,
  });
}

function checkShape(cc: ConfChange): string | null {
  // From plain JavaScript anything may come: undefined, {}, changes that is not an array.
  const changes: unknown = (cc as Partial<ConfChange> | null | undefined)?.changes;
  if (!Array.isArray(changes))
    return `A membership change is { changes: [...] }, got ${cc === null || cc === undefined ? String(cc) : `changes ${typeof changes}`}`;
  for (const ch of changes as unknown[])
    if (typeof ch !== 'object' || ch === null)
      return `Each single change is { kind, node }, got ${ch === null ? 'null' : typeof ch}`;
  if (cc.changes.length > MAX_CONF_CHANGES)
    return `A change holds ${cc.changes.length} single changes; at most ${MAX_CONF_CHANGES} are allowed`;
  const seen = new Set<NodeId>();
  for (const ch of cc.changes) {
    if (!Number.isSafeInteger(ch.node) || ch.node <= 0)
      return `Node ids are positive integers, got ${JSON.stringify(ch.node) ?? String(ch.node)}`;
    if (ch.kind !== 'add-voter' && ch.kind !== 'add-learner' && ch.kind !== 'remove')
      return `Unknown change kind ${String(ch.kind)} for node ${ch.node}`;
    if (seen.has(ch.node)) return `Node ${ch.node} is named twice in one change`;
    seen.add(ch.node);
  }
  return null;
}

/**
 * Applies the single changes in order on top of `c`, with `outgoing` as the outgoing half
 * (empty for the one-step path, the old voters for a joint one).
 */
function applyChanges(
  c: ConfState,
  cc: ConfChange,
  outgoing: readonly NodeId[],
): Result<ConfState> {
  const voters = new Set(c.voters);
  const learners = new Set(c.learners);
  const learnersNext = new Set<NodeId>();
  for (const { kind, node } of cc.changes) {
    const member = voters.has(node) || learners.has(node);
    if (kind === 'add-voter') {
      if (voters.has(node))
        return fail('MEMBERSHIP_ALREADY_MEMBER', `Node ${node} is already a voter`);
      learners.delete(node);
      voters.add(node);
    } else if (kind === 'add-learner') {
      if (learners.has(node))
        return fail('MEMBERSHIP_ALREADY_MEMBER', `Node ${node} is already a learner`);
      voters.delete(node);
      // A demoted voter still votes in the outgoing half: it becomes a learner on the leave.
      if (outgoing.includes(node)) learnersNext.add(node);
      else learners.add(node);
    } else {
      if (!member)
        return fail(
          'MEMBERSHIP_UNKNOWN_MEMBER',
          `Cannot remove node ${node}: it is not a member of ${describeConf(c)}`,
        );
      voters.delete(node);
      learners.delete(node);
    }
  }
  const joint = outgoing.length > 0;
  return ok({
    voters: sorted([...voters]),
    learners: sorted([...learners]),
    outgoing: sorted(outgoing),
    learnersNext: sorted([...learnersNext]),
    autoLeave: joint,
  });
}

/** The invariants of ConfState, checked on every configuration a change produces. */
function checkResult(n: ConfState): Result<ConfState> {
  if (n.voters.length === 0)
    return fail('MEMBERSHIP_NO_VOTERS', `The change would leave no voter (${describeConf(n)})`);
  for (const id of n.learners) {
    if (n.voters.includes(id) || n.outgoing.includes(id))
      return fail('MEMBERSHIP_INVALID', `Node ${id} would be a voter and a learner at once`);
  }
  return ok(n);
}

/** Every member replicated to: voters of either half, then learners (sorted, once each). */
export function confMembers(c: ConfState): NodeId[] {
  return sorted([...new Set([...c.voters, ...c.outgoing, ...c.learners, ...c.learnersNext])]);
}

// ---------------------------------------------------------------------------------------------
// Encoding of a change as the data of a `conf-change` entry:
//   u8 format (1) | u16 count | count × (u8 kind | u32 id high | u32 id low)
// Big-endian, with ids split in two u32 so every safe integer fits.

const CONF_CHANGE_FORMAT = 1;
const KIND_CODES: Readonly<Record<ConfChangeKind, number>> = {
  'add-voter': 1,
  'add-learner': 2,
  remove: 3,
};
const KINDS: readonly (ConfChangeKind | undefined)[] = [
  undefined,
  'add-voter',
  'add-learner',
  'remove',
];

export function encodeConfChange(cc: ConfChange): Uint8Array {
  // What the format cannot hold (kind "zzz", node "a") was encoded as garbage. A change the
  // proposal checks refuse (a node named twice) is still encodable: those checks judge it.
  const changes: unknown = (cc as Partial<ConfChange> | null | undefined)?.changes;
  if (!Array.isArray(changes) || changes.length > 0xffff)
    assert(false, 'Cannot encode a membership change: it is { changes: [...] }, at most 65,535');
  for (const c of changes as Partial<ConfChangeSingle>[])
    if (
      typeof c !== 'object' ||
      c === null ||
      typeof c.kind !== 'string' ||
      !Object.prototype.hasOwnProperty.call(KIND_CODES, c.kind) ||
      typeof c.node !== 'number' ||
      !Number.isSafeInteger(c.node) ||
      c.node <= 0
    )
      assert(
        false,
        `Cannot encode a membership change: each is { kind, node } with a known kind and a node id above 0, got ${JSON.stringify(c) ?? typeof c}`,
      );
  const out = new Uint8Array(3 + 9 * cc.changes.length);
  const view = new DataView(out.buffer);
  view.setUint8(0, CONF_CHANGE_FORMAT);
  view.setUint16(1, cc.changes.length);
  cc.changes.forEach((c, i) => {
    const at = 3 + 9 * i;
    view.setUint8(at, KIND_CODES[c.kind]);
    view.setUint32(at + 1, Math.floor(c.node / 2 ** 32));
    view.setUint32(at + 5, c.node % 2 ** 32);
  });
  return out;
}

/** Decodes an entry's data; returns a description of what is wrong when it is not a change. */
export function decodeConfChange(data: Uint8Array): ConfChange | string {
  if (!(data instanceof Uint8Array)) return `a conf-change entry is bytes, got ${typeof data}`;
  if (data.length < 3) return `a conf-change entry needs at least 3 bytes, got ${data.length}`;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const format = view.getUint8(0);
  if (format !== CONF_CHANGE_FORMAT)
    return `conf-change format ${format} is unknown (this build reads ${CONF_CHANGE_FORMAT})`;
  const count = view.getUint16(1);
  if (data.length !== 3 + 9 * count)
    return `a conf-change of ${count} changes is ${3 + 9 * count} bytes, got ${data.length}`;
  const changes: ConfChangeSingle[] = [];
  for (let i = 0; i < count; i++) {
    const at = 3 + 9 * i;
    const kind = KINDS[view.getUint8(at)];
    if (kind === undefined) return `conf-change kind ${view.getUint8(at)} is unknown`;
    const node = view.getUint32(at + 1) * 2 ** 32 + view.getUint32(at + 5);
    changes.push({ kind, node });
  }
  return { changes };
}

function sorted(ids: Iterable<NodeId>): NodeId[] {
  return [...ids].sort((a, b) => a - b);
}

function sameIds(a: readonly NodeId[], b: readonly NodeId[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function symmetricDifference(a: readonly NodeId[], b: readonly NodeId[]): number {
  let n = 0;
  for (const id of a) if (!b.includes(id)) n++;
  for (const id of b) if (!a.includes(id)) n++;
  return n;
}

// ---------------------------------------------------------------------------------------------
// A configuration in a snapshot's metadata (SnapshotMeta): the optional fields are present
// only when not empty, so metadata of equal configurations compares equal.

export function snapshotMetaOf(index: number, term: number, c: ConfState): SnapshotMeta {
  return {
    index,
    term,
    voters: c.voters,
    ...(c.learners.length > 0 ? { learners: c.learners } : {}),
    ...(c.outgoing.length > 0 ? { outgoing: c.outgoing } : {}),
    ...(c.learnersNext.length > 0 ? { learnersNext: c.learnersNext } : {}),
    ...(c.autoLeave ? { autoLeave: true } : {}),
  };
}

export function confOfSnapshot(meta: SnapshotMeta): ConfState {
  return {
    voters: sorted(meta.voters),
    learners: sorted(meta.learners ?? []),
    outgoing: sorted(meta.outgoing ?? []),
    learnersNext: sorted(meta.learnersNext ?? []),
    autoLeave: meta.autoLeave ?? false,
  };
}
