// The state machine of one range: the key-value store's machine (src/kv/machine.ts) confined to
// the range's bounds, with the range's descriptor and the children it split off as replicated
// state (docs/DESIGN.md, "Splitting a range"). A range's own log is the authority on its
// bounds: a command with a key outside them is refused when it applies (WRONG_RANGE, definite,
// carrying the descriptor so a router can refresh its map), deterministically on every replica.
//
// A split is a command in the range's log. Applied, the range keeps [start, K) and every
// replica builds, from the same state at the same entry, the right-hand range's initial state
// [K, end): its keys with their history (revisions continue from the split revision), the
// leases and the exactly-once session table, in the snapshot format the right-hand group's
// machine restores. Nothing of it crosses the network: each replica seeds the new group from
// its own copy (src/server/range-groups.ts).
//
// Range 0 that never split (the whole key space) behaves as the key-value machine alone, and a
// snapshot written before ranges existed (the key-value machine's own) restores as range 0.

import { Packr } from 'msgpackr';
import { FlotillaError } from '../base/errors.js';
import type { Command, Refusal, StateMachine } from '../host/contracts.js';
import { compareBytes, type Changes, type Op, type OpResult, type Range } from '../kv/kv-store.js';
import {
  KvStateMachine,
  type ApplyResult,
  type KvCommand,
  type KvError,
  type KvLimits,
} from '../kv/machine.js';
import { FIRST_ALLOCATED_RANGE, FIRST_RANGE, type RangeDescriptor, type RangeId } from './types.js';

/** Split the range at `key` into [start, key) and a new range `id` of [key, end). */
export interface SplitCommand {
  readonly split: {
    readonly key: Uint8Array;
    readonly id: RangeId;
    /** The range's generation the proposer saw: a split of any other is refused. */
    readonly generation: number;
    /** The new range's voters, ascending node ids. */
    readonly replicas: readonly number[];
    /**
     * Refuse the split (LEASES_HELD) if the store holds a lease when it applies (feature
     * `splitWithoutLeases`: a release before it ignores the field and splits).
     */
    readonly noLeases?: true;
  };
}

/**
 * Records the range's replicas after a change of its configuration: the voters the range's
 * leader applied, proposed by it once the change applied (src/server/range-replicas.ts). The
 * range's own log decides the descriptor every replica holds, so every replica agrees on it.
 */
export interface ReplicasCommand {
  readonly replicas: {
    /** The range's generation the proposer saw: a record against any other is refused. */
    readonly generation: number;
    /** The voters after the change, ascending node ids. */
    readonly voters: readonly number[];
  };
}

/**
 * Marks the range's voters as due to be recorded at its next generation, before a learner is
 * removed (src/server/range-replicas.ts, removeLearner). Removing a learner leaves the voters
 * as they were, so the range's descriptor would match them whether or not the removal was
 * recorded; without the mark, a removal whose record was lost (its leader deposed between the
 * two) left the map at the generation the removed node was prepared at, and the node's copy,
 * sent nothing more, was never given up (range-retirer.ts, third rule). The next record of the
 * replicas, or a split, clears it; the range's leaders record a range marked so
 * (range-map-repair.ts).
 */
export interface RecordDueCommand {
  readonly recordDue: {
    /** The range's generation the proposer saw: a mark against any other is refused. */
    readonly generation: number;
  };
}

export type RangeCommand = KvCommand | SplitCommand | ReplicasCommand | RecordDueCommand;

/** What a split answers when it applied: both halves' descriptors. */
export interface SplitResult {
  readonly kind: 'split';
  /** The store's revision at the split: both halves continue from it. */
  readonly revision: number;
  readonly left: RangeDescriptor;
  readonly right: RangeDescriptor;
}

/** A command refused because a key lies outside the range: carries the range's descriptor. */
export interface WrongRangeResult {
  readonly kind: 'error';
  readonly revision: number;
  readonly error: {
    readonly code: 'WRONG_RANGE';
    readonly message: string;
    readonly range: RangeDescriptor;
  };
}

/**
 * What a replicas record answers when it applied: the range's new descriptor (a mark's: the
 * range's descriptor, unchanged).
 */
export interface ReplicasResult {
  readonly kind: 'replicas';
  readonly revision: number;
  readonly range: RangeDescriptor;
}

export type RangeApplyResult = ApplyResult | SplitResult | ReplicasResult | WrongRangeResult;

/** A split as it applied on this replica, with the right-hand range's initial state. */
export interface SplitApplied {
  /** The split entry's index and term: the right-hand group's snapshot is at them. */
  readonly index: number;
  readonly term: number;
  readonly left: RangeDescriptor;
  readonly right: RangeDescriptor;
  /**
   * The right-hand group's initial state, in the snapshot format its machine restores (the
   * session layer's, followed by this machine's, when a session layer wraps this one). Read it
   * once; it is encoded as it is read.
   */
  readonly seed: AsyncIterable<Uint8Array>;
  /** Gives the seed up unread (a node that does not replicate the right-hand range). */
  discard(): void;
}

/** The session layer's part of a seed (src/host/sessions.ts, SessionsPart). */
interface SessionsPart {
  readonly chunks: AsyncIterable<Uint8Array>;
  close(): void;
}

/** A read outside the range's bounds, refused with the range's descriptor. */
export class WrongRangeError extends FlotillaError {
  constructor(
    readonly descriptor: RangeDescriptor,
    message: string,
  ) {
    super('WRONG_RANGE', message, false);
  }
}

/** The whole key space as range 0: what a store that never split is. */
export const WHOLE_KEY_SPACE: RangeDescriptor = {
  id: FIRST_RANGE,
  start: new Uint8Array(0),
  end: null,
  generation: 0,
  replicas: [],
};

const packr = new Packr({ useRecords: false, moreTypes: false });

/** Every split command's bytes begin so (a one-entry map whose key is "split"). */
const SPLIT_PREFIX = packr.pack({ split: 0 }).subarray(0, 7);

/** The version of this machine's snapshot header (its first chunk). */
const RANGE_SNAPSHOT_VERSION = 1;

export interface RangeMachineOptions {
  readonly limits: KvLimits;
  /** The range before any snapshot is restored. Default: range 0, the whole key space. */
  readonly descriptor?: RangeDescriptor;
}

export class RangeMachine implements StateMachine {
  readonly kv: KvStateMachine;
  private desc: RangeDescriptor;
  /** The ranges split off this one, in split order. */
  private kids: RangeDescriptor[] = [];
  private sessionsNow: (() => SessionsPart) | null = null;
  private splitListener: ((s: SplitApplied) => Promise<void>) | null = null;
  private restoredListener: (() => void) | null = null;
  private restores = 0;
  /** The voters are to be recorded at the next generation (RecordDueCommand). */
  private due = false;
  /**
   * Right-hand seeds not yet durable (a rejected one stays): a snapshot of this range waits for
   * them, so that no snapshot at or past a split index is saved before the split's seed is.
   */
  private readonly seeding = new Set<Promise<void>>();

  constructor(o: RangeMachineOptions) {
    this.kv = new KvStateMachine(o.limits);
    this.desc = o.descriptor ?? WHOLE_KEY_SPACE;
  }

  descriptor(): RangeDescriptor {
    return this.desc;
  }

  /**
   * Whether a learner's removal marked the range's voters due to be recorded at its next
   * generation, and no record or split followed yet (RecordDueCommand).
   */
  recordDue(): boolean {
    return this.due;
  }

  /** The ranges split off this one (each as it was at its split), in split order. */
  children(): readonly RangeDescriptor[] {
    return this.kids;
  }

  /**
   * Sets the one listener told of each split as it applies, with the right-hand seed; the
   * promise it answers settles once the seed is durable (a snapshot of this range waits for
   * it; a rejection fails every later snapshot, so the group stops rather than lose the right
   * half). Called on the apply path: it must not throw.
   */
  onSplit(listener: ((s: SplitApplied) => Promise<void>) | null): void {
    this.splitListener = listener;
  }

  /**
   * How many snapshots replaced the whole state since this machine was made: a revision that
   * rose by a restore was not written here (the range's load counts writes by its revision).
   */
  restoreCount(): number {
    return this.restores;
  }

  /** Sets the one listener told when a snapshot replaced the whole state (children included). */
  onRestored(listener: (() => void) | null): void {
    this.restoredListener = listener;
  }

  /** The session layer's hook (sessions.ts, SessionReader): a split reads the table. */
  bindSessions(sessionsNow: () => SessionsPart): void {
    this.sessionsNow = sessionsNow;
  }

  readsSessions(payload: Uint8Array): boolean {
    if (payload.length < SPLIT_PREFIX.length) return false;
    for (let i = 0; i < SPLIT_PREFIX.length; i++) if (payload[i] !== SPLIT_PREFIX[i]) return false;
    return true;
  }

  static encode(cmd: RangeCommand): Uint8Array {
    if ('recordDue' in cmd)
      return packr.pack({ recordDue: { generation: cmd.recordDue.generation } });
    if ('replicas' in cmd)
      return packr.pack({
        replicas: { generation: cmd.replicas.generation, voters: [...cmd.replicas.voters] },
      });
    if ('split' in cmd) {
      const s = cmd.split;
      return packr.pack({
        split: {
          key: s.key,
          id: s.id,
          generation: s.generation,
          replicas: s.replicas,
          ...(s.noLeases === true ? { noLeases: true } : {}),
        },
      });
    }
    return KvStateMachine.encode(cmd);
  }

  apply(commands: readonly Command[]): RangeApplyResult[] {
    return commands.map((c) => {
      let cmd: RangeCommand;
      try {
        const x = packr.unpack(c.payload) as unknown;
        cmd = isSplit(x)
          ? decodeSplit(x)
          : isReplicas(x)
            ? decodeReplicasCommand(x)
            : isRecordDue(x)
              ? decodeRecordDue(x)
              : this.kv.decode(x);
      } catch (err) {
        return badCommand(c, err);
      }
      if ('split' in cmd) return this.split(c, cmd.split);
      if ('replicas' in cmd) return this.recordReplicas(cmd.replicas);
      if ('recordDue' in cmd) return this.markRecordDue(cmd.recordDue.generation);
      const outside = outsideKey(cmd, this.desc);
      if (outside !== null) return this.wrongRange(outside);
      return this.kv.applyDecoded(c, cmd);
    });
  }

  /** A read of `op.range` (RangeMachine.kv's), refused with WRONG_RANGE outside the bounds. */
  range(op: Parameters<KvStateMachine['range']>[0]): Extract<OpResult, { kind: 'range' }> {
    this.checkRange(op.range);
    return this.kv.range(op);
  }

  /** The changes to `range` from `from` on (a watch's replay), within the bounds only. */
  changesSince(range: Range, from: number): Changes[] {
    this.checkRange(range);
    return this.kv.changesSince(range, from);
  }

  /** Throws WRONG_RANGE when `range` reaches outside the bounds. */
  checkRange(range: Range): void {
    const what = rangeWithin(range, this.desc);
    if (what !== null) throw new WrongRangeError(this.desc, this.wrongRangeMessage(what));
  }

  /**
   * This machine's state as of this call: its header (descriptor and children), then the
   * key-value machine's chunks. Captured now; the chunks wait for every right-hand seed not
   * yet durable before they are produced (see `seeding`).
   */
  snapshot(): AsyncIterable<Uint8Array> {
    const header = encodeHeader(this.desc, this.kids, this.due);
    const kv = this.kv.snapshot();
    const waiting = [...this.seeding];
    return (async function* () {
      await Promise.all(waiting);
      yield header;
      yield* kv;
    })();
  }

  /** Restores this machine's snapshot, or a key-value machine's (written before ranges). */
  async restore(source: AsyncIterable<Uint8Array>): Promise<void> {
    const it = source[Symbol.asyncIterator]();
    const first = await it.next();
    if (first.done === true) throw new Error('Range snapshot is empty');
    const header = packr.unpack(first.value) as unknown;
    let parsed: { descriptor: RangeDescriptor; children: RangeDescriptor[]; due: boolean };
    let rest: AsyncIterable<Uint8Array>;
    if (isRecord(header) && 'range' in header) {
      parsed = decodeHeader(header);
      rest = { [Symbol.asyncIterator]: () => it };
    } else {
      // The key-value machine's own header: a store from before ranges, the whole key space.
      parsed = { descriptor: WHOLE_KEY_SPACE, children: [], due: false };
      rest = prepend(first.value, it);
    }
    await this.kv.restore(rest);
    this.desc = parsed.descriptor;
    this.kids = parsed.children;
    this.due = parsed.due;
    this.restores++;
    this.restoredListener?.();
  }

  private split(c: Command, s: SplitCommand['split']): SplitResult | KvError | WrongRangeResult {
    const d = this.desc;
    const revision = this.kv.revision();
    if (s.generation !== d.generation)
      return this.wrongRange(
        `Cannot split range ${d.id}: it is at generation ${d.generation}, the split expected generation ${s.generation}`,
      );
    const refuse = (why: string): KvError => ({
      kind: 'error',
      revision,
      error: {
        code: 'BAD_REQUEST',
        message: `Cannot split range ${d.id} at ${show(s.key)}: ${why}`,
      },
    });
    if (compareBytes(s.key, d.start) <= 0 || (d.end !== null && compareBytes(s.key, d.end) >= 0))
      return refuse(
        `the key must lie strictly inside the range [${show(d.start)}, ${showEnd(d.end)})`,
      );
    if (s.id < FIRST_ALLOCATED_RANGE || s.id === d.id || this.kids.some((k) => k.id === s.id))
      return refuse(
        `range id ${s.id} is not a new range id (new ids start at ${FIRST_ALLOCATED_RANGE})`,
      );
    // Leases are kept and expired by range 0 alone: a leased key moved to the new range would
    // outlive its lease. A store that splits holds none (a split store refuses new ones). Only
    // a split that asks: entries written before the field must apply as they did.
    const leases = s.noLeases === true ? this.kv.leases() : [];
    if (leases.length > 0)
      return {
        kind: 'error',
        revision,
        error: {
          code: 'LEASES_HELD',
          message:
            `Cannot split range ${d.id}: the store holds ${leases.length} lease(s) (ids ${leases
              .slice(0, 5)
              .map((l) => l.id)
              .join(', ')}${leases.length > 5 ? ', ...' : ''}), and the keys of a lease in the ` +
            'range split off would outlive it; revoke them (or let them expire) first',
        },
      };
    const generation = d.generation + 1;
    const left: RangeDescriptor = { ...d, end: s.key, generation };
    const right: RangeDescriptor = {
      id: s.id,
      start: s.key,
      end: d.end,
      generation,
      replicas: s.replicas,
    };
    // Both captured now, at this entry: the session table holds every command before it.
    const sessions = this.splitListener === null ? null : (this.sessionsNow?.() ?? null);
    const kv = this.kv.splitOff(s.key);
    this.desc = left;
    this.kids = [...this.kids, right];
    // The new generation tells a removed learner's copy as a record would.
    this.due = false;
    const rightHeader = encodeHeader(right, [], false);
    const seed = (async function* () {
      if (sessions !== null) yield* sessions.chunks;
      yield rightHeader;
      yield* kv;
    })();
    const durable = this.splitListener?.({
      index: c.index,
      term: c.term,
      left,
      right,
      seed,
      discard: () => sessions?.close(),
    });
    if (durable !== undefined) {
      const p: Promise<void> = durable.then(() => {
        this.seeding.delete(p);
      });
      // Kept (rejected) in `seeding`: every later snapshot fails with it.
      p.catch(() => undefined);
      this.seeding.add(p);
    }
    return { kind: 'split', revision, left, right };
  }

  /**
   * A change of the range's replicas: the same bounds, the voters given, the generation plus
   * one. Refused (definite, WRONG_RANGE with the descriptor) when the proposer saw another
   * generation, so a record repeated or overtaken by a split or another record changes nothing.
   */
  private recordReplicas(r: ReplicasCommand['replicas']): ReplicasResult | WrongRangeResult {
    const d = this.desc;
    if (r.generation !== d.generation)
      return this.wrongRange(
        `Cannot record the replicas of range ${d.id}: it is at generation ${d.generation}, the record expected generation ${r.generation}`,
      );
    this.desc = { ...d, generation: d.generation + 1, replicas: [...r.voters] };
    this.due = false;
    return { kind: 'replicas', revision: this.kv.revision(), range: this.desc };
  }

  /** Marks the voters due to be recorded (RecordDueCommand); refused as a record would be. */
  private markRecordDue(generation: number): ReplicasResult | WrongRangeResult {
    const d = this.desc;
    if (generation !== d.generation)
      return this.wrongRange(
        `Cannot mark the replicas of range ${d.id} due to be recorded: it is at generation ${d.generation}, the mark expected generation ${generation}`,
      );
    this.due = true;
    return { kind: 'replicas', revision: this.kv.revision(), range: d };
  }

  private wrongRange(message: string): WrongRangeResult {
    return {
      kind: 'error',
      revision: this.kv.revision(),
      error: { code: 'WRONG_RANGE', message: this.wrongRangeMessage(message), range: this.desc },
    };
  }

  private wrongRangeMessage(what: string): string {
    const d = this.desc;
    return `${what}: range ${d.id} (generation ${d.generation}) holds [${show(d.start)}, ${showEnd(d.end)})`;
  }
}

// ---------------------------------------------------------------------------------------------
// Bounds.

function keyWithin(key: Uint8Array, d: RangeDescriptor): boolean {
  return compareBytes(key, d.start) >= 0 && (d.end === null || compareBytes(key, d.end) < 0);
}

/** Null when every key `r` can name lies in the range; else what lies outside. */
function rangeWithin(r: Range, d: RangeDescriptor): string | null {
  if (!keyWithin(r.key, d)) return `Key ${show(r.key)} is outside the range`;
  const end = r.rangeEnd;
  if (end === null) return null;
  // [0]: every key from r.key on (etcd's convention).
  if (end.length === 1 && end[0] === 0)
    return d.end === null ? null : `Keys from ${show(r.key)} to the end reach past the range`;
  // An end at or below the key names no key at all.
  if (compareBytes(end, r.key) <= 0 || d.end === null || compareBytes(end, d.end) <= 0) return null;
  return `Keys [${show(r.key)}, ${show(end)}) reach past the range`;
}

function opWithin(op: Op, d: RangeDescriptor): string | null {
  if (op.kind === 'put')
    return keyWithin(op.key, d) ? null : `Key ${show(op.key)} is outside the range`;
  return rangeWithin(op.range, d);
}

/** What of a key-value command lies outside the range, or null. Compactions and leases have no keys. */
function outsideKey(cmd: KvCommand, d: RangeDescriptor): string | null {
  if (!('compare' in cmd)) return null;
  for (const c of cmd.compare)
    if (!keyWithin(c.key, d)) return `Key ${show(c.key)} (a compare) is outside the range`;
  for (const op of cmd.success) {
    const what = opWithin(op, d);
    if (what !== null) return what;
  }
  for (const op of cmd.failure) {
    const what = opWithin(op, d);
    if (what !== null) return what;
  }
  return null;
}

/** A key for a message: as text when it is printable ASCII, else as hex. */
function show(key: Uint8Array): string {
  if (key.length === 0) return '""';
  if (key.every((b) => b >= 0x20 && b < 0x7f)) return JSON.stringify(String.fromCharCode(...key));
  let hex = '0x';
  for (const b of key) hex += b.toString(16).padStart(2, '0');
  return hex;
}

function showEnd(end: Uint8Array | null): string {
  return end === null ? 'end' : show(end);
}

// ---------------------------------------------------------------------------------------------
// Encoding: the snapshot header and the split command, decoded trusting nothing.

function encodeHeader(
  d: RangeDescriptor,
  children: readonly RangeDescriptor[],
  due: boolean,
): Uint8Array {
  return packr.pack({
    range: RANGE_SNAPSHOT_VERSION,
    descriptor: plain(d),
    children: children.map(plain),
    // Only when set: a header without it is read by every release as before.
    ...(due ? { recordDue: true } : {}),
  });
}

function plain(d: RangeDescriptor): Record<string, unknown> {
  return { id: d.id, start: d.start, end: d.end, generation: d.generation, replicas: d.replicas };
}

function decodeHeader(h: Record<string, unknown>): {
  descriptor: RangeDescriptor;
  children: RangeDescriptor[];
  due: boolean;
} {
  if (h['range'] !== RANGE_SNAPSHOT_VERSION)
    throw new Error(`Unsupported range snapshot version ${String(h['range'])}`);
  const children = h['children'];
  if (!Array.isArray(children)) throw new Error('Range snapshot children are malformed');
  const due = h['recordDue'];
  if (due !== undefined && due !== true) throw new Error('Range snapshot recordDue is malformed');
  return {
    descriptor: decodeDescriptor(h['descriptor']),
    children: children.map(decodeDescriptor),
    due: due === true,
  };
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return x !== null && typeof x === 'object' && !Array.isArray(x) && !(x instanceof Uint8Array);
}

function isCount(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

function decodeReplicas(x: unknown): number[] {
  if (
    !Array.isArray(x) ||
    !x.every((n, i) => isCount(n) && n > 0 && (i === 0 || n > (x[i - 1] as number)))
  )
    throw new Error('replicas must be ascending positive node ids');
  return x as number[];
}

function decodeDescriptor(x: unknown): RangeDescriptor {
  if (!isRecord(x)) throw new Error('Range descriptor is not a map');
  const { id, start, end, generation, replicas } = x;
  if (!isCount(id) || !isCount(generation) || !(start instanceof Uint8Array))
    throw new Error('Range descriptor is malformed');
  if (end !== null && !(end instanceof Uint8Array))
    throw new Error('Range descriptor end is malformed');
  return {
    id,
    start: new Uint8Array(start),
    end: end === null ? null : new Uint8Array(end),
    generation,
    replicas: decodeReplicas(replicas),
  };
}

function isSplit(x: unknown): x is { split: unknown } {
  return isRecord(x) && 'split' in x;
}

function decodeSplit(x: { split: unknown }): SplitCommand {
  if (Object.keys(x).length !== 1) throw new Error('a split command holds only "split"');
  const s = x.split;
  if (!isRecord(s)) throw new Error('a split is not a map');
  const { key, id, generation, replicas, noLeases } = s;
  if (!(key instanceof Uint8Array) || key.length === 0) throw new Error('bad split key');
  if (!isCount(id)) throw new Error('bad split range id');
  if (!isCount(generation)) throw new Error('bad split generation');
  if (noLeases !== undefined && noLeases !== true) throw new Error('bad split noLeases');
  const r = decodeReplicas(replicas);
  if (r.length === 0) throw new Error('a split names no replicas');
  return {
    split: {
      key: new Uint8Array(key),
      id,
      generation,
      replicas: r,
      ...(noLeases === true ? { noLeases } : {}),
    },
  };
}

function isReplicas(x: unknown): x is { replicas: unknown } {
  return isRecord(x) && 'replicas' in x;
}

function decodeReplicasCommand(x: { replicas: unknown }): ReplicasCommand {
  if (Object.keys(x).length !== 1) throw new Error('a replicas command holds only "replicas"');
  const r = x.replicas;
  if (!isRecord(r)) throw new Error('a replicas record is not a map');
  const { generation, voters } = r;
  if (!isCount(generation)) throw new Error('bad replicas generation');
  const v = decodeReplicas(voters);
  if (v.length === 0) throw new Error('a replicas record names no voter');
  return { replicas: { generation, voters: v } };
}

function isRecordDue(x: unknown): x is { recordDue: unknown } {
  return isRecord(x) && 'recordDue' in x;
}

function decodeRecordDue(x: { recordDue: unknown }): RecordDueCommand {
  if (Object.keys(x).length !== 1) throw new Error('a recordDue command holds only "recordDue"');
  const r = x.recordDue;
  if (!isRecord(r) || Object.keys(r).length !== 1 || !isCount(r['generation']))
    throw new Error('a recordDue mark holds only a generation');
  return { recordDue: { generation: r['generation'] } };
}

function badCommand(c: Command, err: unknown): Refusal {
  return {
    refused: 'BAD_COMMAND',
    message: `Entry ${c.index} holds no valid range command: ${(err as Error).message}`,
  };
}

/** `first`, then the rest of `it`. */
function prepend(first: Uint8Array, it: AsyncIterator<Uint8Array>): AsyncIterable<Uint8Array> {
  return (async function* () {
    yield first;
    for (let r = await it.next(); r.done !== true; r = await it.next()) yield r.value;
  })();
}
