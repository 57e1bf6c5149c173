// The member directory: the peer and client addresses of the members added while the cluster
// runs, and the ids of the members removed. It is replicated state, not a local file: a
// directory change is a log entry of its own kind (envelope kind 2) that the session layer
// applies in log order beside the state machine's commands, and the directory rides in the
// session layer's snapshot. So every node learns a new member's address from its log (or from
// the snapshot that replaced it), and knows it again after a restart, before it needs it.
//
// The members a cluster was bootstrapped with are in every node's configuration and need no
// entry here; an entry overrides them (a member that moved). A removed id stays removed: the
// directory refuses to add it again, so a wiped or forgotten node can never come back under an
// id whose votes and log positions the others still remember.

import { Packr } from 'msgpackr';
import type { Refusal } from './contracts.js';

export interface DirectoryMember {
  readonly id: number;
  /** host:port of its peer (Raft) listener. */
  readonly peer: string;
  /** Base URL of its client (HTTP) listener. */
  readonly client: string;
  /** Promote it from learner to voter once its log is close enough to the leader's. */
  readonly autoPromote: boolean;
}

export type DirectoryChange =
  | { readonly op: 'set'; readonly member: DirectoryMember }
  | { readonly op: 'remove'; readonly id: number };

/** What a directory change answers when it applied. */
export interface DirectoryApplied {
  readonly directory: true;
}

/** A directory change refused when it applied: the id was removed before. */
export interface DirectoryRefusal {
  readonly refused: 'MEMBER_REMOVED';
  readonly message: string;
}

export interface DirectorySnapshot {
  readonly members: readonly DirectoryMember[];
  readonly removed: readonly number[];
}

const packr = new Packr({ useRecords: false, moreTypes: false });

export function encodeDirectoryChange(c: DirectoryChange): Uint8Array {
  return c.op === 'set'
    ? packr.pack(['set', c.member.id, c.member.peer, c.member.client, c.member.autoPromote])
    : packr.pack(['remove', c.id]);
}

/** Decodes a change, trusting nothing: any deviation is an Error naming it. */
export function decodeDirectoryChange(data: Uint8Array): DirectoryChange {
  const raw = packr.unpack(data) as unknown;
  if (!Array.isArray(raw)) throw new Error('not a directory change');
  const [op, id, peer, client, autoPromote] = raw as unknown[];
  if (!isMemberId(id)) throw new Error(`bad member id ${String(id)}`);
  if (op === 'remove' && raw.length === 2) return { op, id };
  if (
    op === 'set' &&
    raw.length === 5 &&
    typeof peer === 'string' &&
    typeof client === 'string' &&
    typeof autoPromote === 'boolean'
  )
    return { op, member: { id, peer, client, autoPromote } };
  throw new Error(`malformed directory change ${JSON.stringify(raw)}`);
}

function isMemberId(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v > 0;
}

export class MemberDirectory {
  private members = new Map<number, DirectoryMember>();
  private removedIds = new Set<number>();
  private readonly listeners = new Set<() => void>();

  /** The members added at run time and not removed, by id. */
  list(): DirectoryMember[] {
    return [...this.members.values()].sort((a, b) => a.id - b.id);
  }

  get(id: number): DirectoryMember | undefined {
    return this.members.get(id);
  }

  isRemoved(id: number): boolean {
    return this.removedIds.has(id);
  }

  removed(): number[] {
    return [...this.removedIds].sort((a, b) => a - b);
  }

  /** Calls `listener` after every change applied or snapshot restored. Returns its remover. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Applies one change; deterministic, as every replica applies the same one. */
  apply(c: DirectoryChange): DirectoryApplied | DirectoryRefusal {
    const id = c.op === 'set' ? c.member.id : c.id;
    if (c.op === 'set') {
      if (this.removedIds.has(id))
        return {
          refused: 'MEMBER_REMOVED',
          message: `Member ${id} was removed from the cluster; its id cannot be used again: give the node a new id`,
        };
      this.members.set(id, c.member);
    } else {
      this.members.delete(id);
      this.removedIds.add(id);
    }
    this.changed();
    return { directory: true };
  }

  save(): DirectorySnapshot {
    return { members: this.list(), removed: this.removed() };
  }

  /** Replaces the directory with a snapshot's (absent in snapshots written before it existed). */
  load(s: DirectorySnapshot | undefined): void {
    this.members = new Map((s?.members ?? []).map((m) => [m.id, m]));
    this.removedIds = new Set(s?.removed ?? []);
    this.changed();
  }

  private changed(): void {
    for (const l of this.listeners) l();
  }
}

/** Checks a snapshot's directory section; null when it is absent. */
export function parseDirectorySnapshot(v: unknown): DirectorySnapshot | undefined {
  if (v === undefined) return undefined;
  const o = v as { members?: unknown; removed?: unknown };
  if (typeof v !== 'object' || v === null || !Array.isArray(o.members) || !Array.isArray(o.removed))
    throw new Error('Session snapshot directory is malformed');
  for (const m of o.members as unknown[]) {
    const r = m as Partial<DirectoryMember> | null;
    if (
      r === null ||
      typeof r !== 'object' ||
      !isMemberId(r.id) ||
      typeof r.peer !== 'string' ||
      typeof r.client !== 'string' ||
      typeof r.autoPromote !== 'boolean'
    )
      throw new Error('Session snapshot directory holds a malformed member');
  }
  if (!(o.removed as unknown[]).every(isMemberId))
    throw new Error('Session snapshot directory holds a malformed removed id');
  return { members: o.members as DirectoryMember[], removed: o.removed as number[] };
}

export function isDirectoryRefusal(r: unknown): r is DirectoryRefusal | Refusal {
  return typeof r === 'object' && r !== null && 'refused' in r;
}
