// The meta group's state machine (group META_GROUP): the range map and the allocator of range
// ids, replicated like any other group's state. Its commands record what happened elsewhere;
// the ranges' own logs decide their bounds, and this map follows them (range-map.ts), so a
// late, repeated or out-of-order record is answered "already known" or refused with a reason,
// and never breaks the map.
//
// Commands are msgpack maps, `op` naming them: `bootstrap` (the first map: one range over the
// whole key space), `allocate` (the next range id, never reused), `recordSplit` and
// `recordReplicas`; `drain` and `undrain` mark a node whose replicas the placement loop is to
// move away, and clear the mark (placement-loop.ts in src/server). A `drain` with `force` also
// lets the loop take ranges below their replication factor to empty the node, which a plain
// drain never does. Decoding trusts nothing it reads back from the log: every field is checked
// for type and limit, unknown fields are refused, and bytes that are no valid command are
// answered BAD_COMMAND, the same on every replica.
//
// The snapshot is the map itself (immutable, so capturing it is keeping a reference) in chunks
// of descriptors, after a header with the version, the next id and (from format 2) the nodes
// being drained; a format 1 snapshot, written before draining existed, restores with none.
// Format 3 adds the forced drains, and is written only while there is one: a forced drain is
// proposed only once every member reads it (features.forcedDrain), so a release that reads
// format 2 at most still receives the snapshots of a cluster that never forced a drain.

import { Packr } from 'msgpackr';
import { FlotillaError } from '../base/errors.js';
import { defaultLimits } from '../base/limits.js';
import { chunkStream, type Command, type Refusal, type StateMachine } from '../host/contracts.js';
import { RangeMap, type RangeMapChange, type RangeMapRefusalCode } from './range-map.js';
import { FIRST_ALLOCATED_RANGE, type RangeDescriptor, type RangeId } from './types.js';

const packr = new Packr({ useRecords: false, moreTypes: false });
export const META_SNAPSHOT_FORMAT = 3;
/** The format written while no drain is forced: the same as before forced drains existed. */
const META_SNAPSHOT_FORMAT_UNFORCED = 2;
/** Snapshots of this format and later are read; format 1 has no draining nodes. */
const OLDEST_META_SNAPSHOT_FORMAT = 1;
const PER_CHUNK = 1_024;

export type MetaCommand =
  | { readonly op: 'bootstrap'; readonly replicas: readonly number[] }
  | { readonly op: 'allocate' }
  | { readonly op: 'recordSplit'; readonly left: RangeDescriptor; readonly right: RangeDescriptor }
  | { readonly op: 'recordReplicas'; readonly range: RangeDescriptor }
  | { readonly op: 'drain'; readonly node: number; readonly force?: true }
  | { readonly op: 'undrain'; readonly node: number };

/** Why the meta machine refused a command; nothing changed. */
export type MetaRefusalCode =
  | RangeMapRefusalCode
  /** `bootstrap` when a map exists. */
  | 'MAP_EXISTS'
  /** Any other command before `bootstrap`. */
  | 'NO_MAP'
  /** A split's new range id was never handed out by `allocate`. */
  | 'NOT_ALLOCATED'
  /** The map holds `maxRanges` ranges. */
  | 'TOO_MANY_RANGES'
  /** `drain` when `maxDraining` nodes are being drained already. */
  | 'TOO_MANY_DRAINING';

/** A command's result; `version` is the map's version after it (0: no map). */
export type MetaResult =
  | { readonly outcome: 'applied'; readonly version: number; readonly range?: RangeId }
  | { readonly outcome: 'known'; readonly version: number; readonly message: string }
  | {
      readonly outcome: 'refused';
      readonly version: number;
      readonly code: MetaRefusalCode;
      readonly message: string;
    };

export interface MetaLimits {
  /** The longest key a range may start at (the key-value store's limit). */
  readonly maxKeyBytes: number;
  /** The most ranges the map holds: a split past it is refused. */
  readonly maxRanges: number;
  /** The most replicas a range may have. */
  readonly maxReplicas: number;
  /** The most nodes marked draining at once. */
  readonly maxDraining: number;
}

export const defaultMetaLimits: MetaLimits = {
  maxKeyBytes: defaultLimits.maxKeyBytes,
  maxRanges: 100_000,
  maxReplicas: 15,
  maxDraining: 64,
};

export class MetaStateMachine implements StateMachine {
  private readonly limits: MetaLimits;
  /** Null until `bootstrap` applied. */
  private current: RangeMap | null = null;
  /** Invariant: above every id in the map other than FIRST_RANGE, and never lowered. */
  private nextRange: RangeId = FIRST_ALLOCATED_RANGE;
  /**
   * The nodes being drained, ascending. Replaced, never changed in place, so a snapshot holds
   * it by reference. Invariant: unique, at most `maxDraining`.
   */
  private drainingNodes: readonly number[] = Object.freeze([]);
  /**
   * The nodes whose drain was forced, ascending: their replicas move off even when that leaves
   * a range below its replication factor. Replaced, never changed in place. Invariant: a subset
   * of `drainingNodes`.
   */
  private forcedNodes: readonly number[] = Object.freeze([]);

  /** Throws a RangeError naming a limit that is not a positive integer. */
  constructor(limits: Partial<MetaLimits> = {}) {
    this.limits = { ...defaultMetaLimits, ...limits };
    for (const [name, v] of Object.entries(this.limits))
      if (!Number.isSafeInteger(v) || (v as number) < 1)
        throw new RangeError(`Meta limit ${name} must be a positive integer, got ${String(v)}`);
  }

  static encode(c: MetaCommand): Uint8Array {
    return encodeMetaCommand(c);
  }

  /** The current map, or null before bootstrap. Immutable: later commands do not change it. */
  map(): RangeMap | null {
    return this.current;
  }

  /** The map's version, 0 before bootstrap. */
  get version(): number {
    return this.current?.version ?? 0;
  }

  /** The id the next `allocate` hands out. */
  get nextRangeId(): RangeId {
    return this.nextRange;
  }

  /** The nodes being drained, ascending (a node id may name a member since removed). */
  draining(): readonly number[] {
    return this.drainingNodes;
  }

  /** The nodes being drained with `force`, ascending: a subset of `draining()`. */
  forced(): readonly number[] {
    return this.forcedNodes;
  }

  apply(commands: readonly Command[]): (MetaResult | Refusal)[] {
    return commands.map((c) => {
      let cmd: MetaCommand;
      try {
        cmd = decodeMetaCommand(c.payload, this.limits);
      } catch (err) {
        const why = err instanceof FlotillaError ? err.message : String(err);
        return {
          refused: 'BAD_COMMAND',
          message: `Entry ${c.index} holds no valid meta command: ${why}`,
        };
      }
      return this.run(cmd);
    });
  }

  private run(cmd: MetaCommand): MetaResult {
    // Draining is about nodes, not ranges: it needs no map.
    if (cmd.op === 'drain') return this.mark('drain', cmd.node, cmd.force === true);
    if (cmd.op === 'undrain') return this.mark('undrain', cmd.node, false);
    if (cmd.op === 'bootstrap') {
      if (this.current !== null)
        return this.refuse('MAP_EXISTS', `The range map exists (version ${this.version})`);
      this.current = RangeMap.bootstrap(cmd.replicas);
      return { outcome: 'applied', version: this.version };
    }
    const map = this.current;
    if (map === null) return this.refuse('NO_MAP', `No range map yet: cannot ${cmd.op}`);
    switch (cmd.op) {
      case 'allocate':
        return { outcome: 'applied', version: this.version, range: this.nextRange++ };
      case 'recordSplit': {
        if (cmd.right.id >= this.nextRange)
          return this.refuse(
            'NOT_ALLOCATED',
            `Range id ${cmd.right.id} was never allocated (the next is ${this.nextRange})`,
          );
        return this.take(map.recordSplit(cmd.left, cmd.right));
      }
      case 'recordReplicas':
        return this.take(map.recordReplicas(cmd.range));
    }
  }

  private mark(op: 'drain' | 'undrain', node: number, force: boolean): MetaResult {
    const has = this.drainingNodes.includes(node);
    const forced = this.forcedNodes.includes(node);
    if (op === 'drain' && has && force && !forced) {
      // A drain under way, now forced: only the mark of force changes.
      this.forcedNodes = Object.freeze([...this.forcedNodes, node].sort((a, b) => a - b));
      return { outcome: 'applied', version: this.version };
    }
    if (op === 'drain' ? has : !has)
      return {
        outcome: 'known',
        version: this.version,
        message: `Node ${node} is ${has ? 'already' : 'not'} being drained${forced ? ' (forced)' : ''}`,
      };
    if (op === 'drain' && this.drainingNodes.length >= this.limits.maxDraining)
      return this.refuse(
        'TOO_MANY_DRAINING',
        `${this.drainingNodes.length} nodes are being drained, the limit: cannot drain node ${node}`,
      );
    const next =
      op === 'drain'
        ? [...this.drainingNodes, node].sort((a, b) => a - b)
        : this.drainingNodes.filter((n) => n !== node);
    this.drainingNodes = Object.freeze(next);
    if (op === 'drain' && force)
      this.forcedNodes = Object.freeze([...this.forcedNodes, node].sort((a, b) => a - b));
    if (op === 'undrain')
      this.forcedNodes = Object.freeze(this.forcedNodes.filter((n) => n !== node));
    return { outcome: 'applied', version: this.version };
  }

  private take(change: RangeMapChange): MetaResult {
    switch (change.outcome) {
      case 'refused':
        return this.refuse(change.code, change.message);
      case 'known':
        return { outcome: 'known', version: this.version, message: change.message };
      case 'applied':
        if (change.map.size > this.limits.maxRanges)
          return this.refuse(
            'TOO_MANY_RANGES',
            `The map holds ${this.current?.size ?? 0} ranges, its limit: cannot split further`,
          );
        this.current = change.map;
        return { outcome: 'applied', version: this.version };
    }
  }

  private refuse(code: MetaRefusalCode, message: string): MetaResult {
    return { outcome: 'refused', version: this.version, code, message };
  }

  snapshot(): AsyncIterable<Uint8Array> {
    // The map is immutable and the counter a number: holding them is the capture.
    const map = this.current;
    const nextRange = this.nextRange;
    const draining = this.drainingNodes;
    const forced = this.forcedNodes;
    return chunkStream(() => snapshotChunks(map, nextRange, draining, forced));
  }

  async restore(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    const { map, nextRange, draining, forced } = await decodeMetaSnapshot(chunks, this.limits);
    this.current = map;
    this.nextRange = nextRange;
    this.drainingNodes = Object.freeze(draining);
    this.forcedNodes = Object.freeze(forced);
  }
}

// ---------------------------------------------------------------------------------------------
// Commands on the log.

type DescriptorFields = {
  id: number;
  start: Uint8Array;
  end: Uint8Array | null;
  generation: number;
  replicas: number[];
};

function descriptorFields(d: RangeDescriptor): DescriptorFields {
  const { id, start, end, generation } = d;
  return { id, start, end, generation, replicas: [...d.replicas] };
}

export function encodeMetaCommand(c: MetaCommand): Uint8Array {
  switch (c.op) {
    case 'bootstrap':
      return packr.pack({ op: c.op, replicas: [...c.replicas] });
    case 'allocate':
      return packr.pack({ op: c.op });
    case 'recordSplit':
      return packr.pack({
        op: c.op,
        left: descriptorFields(c.left),
        right: descriptorFields(c.right),
      });
    case 'recordReplicas':
      return packr.pack({ op: c.op, range: descriptorFields(c.range) });
    case 'drain':
      // `force` only when set: a plain drain is the same bytes as before forced drains existed.
      return packr.pack(
        c.force === true ? { op: c.op, node: c.node, force: true } : { op: c.op, node: c.node },
      );
    case 'undrain':
      return packr.pack({ op: c.op, node: c.node });
  }
}

function bad(message: string): never {
  throw new FlotillaError('BAD_REQUEST', message);
}

type Fields = Record<string, unknown>;

function fields(
  v: unknown,
  what: string,
  allowed: readonly string[],
  optional: readonly string[] = [],
): Fields {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array)
    bad(`${what} is not a map`);
  for (const k of Object.keys(v))
    if (!allowed.includes(k) && !optional.includes(k)) bad(`${what} has an unknown field "${k}"`);
  for (const k of allowed) if (!(k in v)) bad(`${what} lacks the field "${k}"`);
  return v as Fields;
}

function preview(v: unknown): string {
  const s = typeof v === 'string' ? JSON.stringify(v) : String(v);
  return s.length > 40 ? `${s.slice(0, 40)}...` : s;
}

function int(v: unknown, field: string, min: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min)
    bad(`"${field}" must be an integer of at least ${min}, got ${preview(v)}`);
  return v;
}

function key(v: unknown, field: string, l: MetaLimits): Uint8Array {
  if (!(v instanceof Uint8Array)) bad(`"${field}" must be bytes, got ${preview(v)}`);
  if (v.length > l.maxKeyBytes)
    bad(`"${field}" is ${v.length} bytes; the limit is ${l.maxKeyBytes}`);
  // A copy: msgpack's bytes are a view of the whole entry, which would stay alive with it.
  return new Uint8Array(v);
}

/** Node ids, ascending and unique, 1 to maxReplicas of them. */
function replicas(v: unknown, field: string, l: MetaLimits): number[] {
  if (!Array.isArray(v) || v.length < 1 || v.length > l.maxReplicas)
    bad(`"${field}" must be a list of 1 to ${l.maxReplicas} node ids, got ${preview(v)}`);
  const out = v.map((n: unknown, i) => int(n, `${field}[${i}]`, 1));
  for (let i = 1; i < out.length; i++)
    if ((out[i] as number) <= (out[i - 1] as number))
      bad(`"${field}" must be ascending without repeats, got [${out.join(', ')}]`);
  return out;
}

const maxNodeId = 2 ** 31;

/** A node id as members have them: an integer in [1, 2^31]. */
function nodeId(v: unknown, field: string): number {
  const n = int(v, field, 1);
  if (n > maxNodeId) bad(`"${field}" must be a node id of at most ${maxNodeId}, got ${n}`);
  return n;
}

function descriptor(v: unknown, field: string, l: MetaLimits): RangeDescriptor {
  const o = fields(v, `"${field}"`, ['id', 'start', 'end', 'generation', 'replicas']);
  return {
    id: int(o['id'], `${field}.id`, 0),
    start: key(o['start'], `${field}.start`, l),
    end: o['end'] === null ? null : key(o['end'], `${field}.end`, l),
    generation: int(o['generation'], `${field}.generation`, 0),
    replicas: replicas(o['replicas'], `${field}.replicas`, l),
  };
}

/** Decodes and checks one command; throws a FlotillaError (BAD_REQUEST) naming the problem. */
export function decodeMetaCommand(
  data: Uint8Array,
  l: MetaLimits = defaultMetaLimits,
): MetaCommand {
  let raw: unknown;
  try {
    raw = packr.unpack(data);
  } catch (err) {
    bad(`not msgpack (${(err as Error).message})`);
  }
  const op = (raw as Fields | null)?.['op'];
  switch (op) {
    case 'bootstrap': {
      const o = fields(raw, op, ['op', 'replicas']);
      return { op, replicas: replicas(o['replicas'], 'replicas', l) };
    }
    case 'allocate':
      fields(raw, op, ['op']);
      return { op };
    case 'recordSplit': {
      const o = fields(raw, op, ['op', 'left', 'right']);
      return {
        op,
        left: descriptor(o['left'], 'left', l),
        right: descriptor(o['right'], 'right', l),
      };
    }
    case 'recordReplicas': {
      const o = fields(raw, op, ['op', 'range']);
      return { op, range: descriptor(o['range'], 'range', l) };
    }
    case 'drain': {
      const o = fields(raw, op, ['op', 'node'], ['force']);
      const node = nodeId(o['node'], 'node');
      if (!('force' in o)) return { op, node };
      if (o['force'] !== true) bad(`"force" must be true when present, got ${preview(o['force'])}`);
      return { op, node, force: true };
    }
    case 'undrain': {
      const o = fields(raw, op, ['op', 'node']);
      return { op, node: nodeId(o['node'], 'node') };
    }
    default:
      return bad(`unknown meta command ${preview(op)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Snapshots: a header, then the descriptors as tuples in key order, PER_CHUNK to a chunk.

type DescriptorTuple = [
  id: number,
  start: Uint8Array,
  end: Uint8Array | null,
  generation: number,
  replicas: number[],
];

interface MetaSnapshotHeader {
  readonly v: number;
  /** 0 when there is no map (then no chunk follows). */
  readonly version: number;
  readonly nextRange: number;
  readonly ranges: number;
  /** The nodes being drained, ascending; from format 2 (absent in format 1: none). */
  readonly draining?: readonly number[];
  /** The drains forced, ascending, a subset of `draining`; from format 3 (before: none). */
  readonly forced?: readonly number[];
}

function* snapshotChunks(
  map: RangeMap | null,
  nextRange: RangeId,
  draining: readonly number[],
  forced: readonly number[],
): Generator<Uint8Array> {
  const list = map?.ranges() ?? [];
  yield packr.pack({
    v: forced.length === 0 ? META_SNAPSHOT_FORMAT_UNFORCED : META_SNAPSHOT_FORMAT,
    version: map?.version ?? 0,
    nextRange,
    ranges: list.length,
    draining: [...draining],
    ...(forced.length === 0 ? {} : { forced: [...forced] }),
  } satisfies MetaSnapshotHeader);
  for (let i = 0; i < list.length; i += PER_CHUNK)
    yield packr.pack(
      list
        .slice(i, i + PER_CHUNK)
        .map((d): DescriptorTuple => [d.id, d.start, d.end, d.generation, [...d.replicas]]),
    );
}

function malformed(what: string): never {
  throw new Error(`Meta snapshot is malformed: ${what}`);
}

async function decodeMetaSnapshot(
  source: AsyncIterable<Uint8Array>,
  l: MetaLimits,
): Promise<{ map: RangeMap | null; nextRange: RangeId; draining: number[]; forced: number[] }> {
  const it = source[Symbol.asyncIterator]();
  const next = async (what: string): Promise<unknown> => {
    const r = await it.next();
    if (r.done === true) malformed(`it ends before ${what}`);
    return packr.unpack(r.value);
  };
  const h = (await next('its header')) as Partial<MetaSnapshotHeader> | null;
  if (h === null || typeof h !== 'object') malformed('the header is not a map');
  if (
    typeof h.v !== 'number' ||
    !Number.isSafeInteger(h.v) ||
    h.v < OLDEST_META_SNAPSHOT_FORMAT ||
    h.v > META_SNAPSHOT_FORMAT
  )
    throw new Error(`Unsupported meta snapshot version ${String(h.v)}`);
  const draining = h.v >= 2 ? snapshotDraining(h.draining, 'draining', l) : [];
  const forced = h.v >= 3 ? snapshotDraining(h.forced, 'forced', l) : [];
  for (const n of forced)
    if (!draining.includes(n)) malformed(`forced node ${n} is not among the draining`);
  for (const k of ['version', 'nextRange', 'ranges'] as const)
    if (!Number.isSafeInteger(h[k]) || (h[k] as number) < 0) malformed(`bad ${k}`);
  const { version, nextRange, ranges } = h as MetaSnapshotHeader;
  if (nextRange < FIRST_ALLOCATED_RANGE) malformed(`next range id ${nextRange} is reserved`);
  if ((version === 0) !== (ranges === 0)) malformed(`version ${version} with ${ranges} ranges`);
  const list: RangeDescriptor[] = [];
  for (let c = 0; list.length < ranges; c++) {
    const part = await next(`descriptor chunk ${c + 1}`);
    if (!Array.isArray(part) || part.length === 0) malformed(`chunk ${c + 1} is not a list`);
    for (const t of part as unknown[]) {
      if (!Array.isArray(t) || t.length !== 5) malformed('a descriptor has the wrong shape');
      const [id, start, end, generation, reps] = t as unknown[];
      try {
        list.push(descriptor({ id, start, end, generation, replicas: reps }, 'range', l));
      } catch (err) {
        malformed((err as Error).message);
      }
    }
  }
  if (list.length !== ranges) malformed(`it holds ${list.length} ranges, not ${ranges}`);
  if ((await it.next()).done !== true) malformed('chunks past its end');
  if (version === 0) return { map: null, nextRange, draining, forced };
  let map: RangeMap;
  try {
    map = RangeMap.fromDescriptors(version, list);
  } catch (err) {
    malformed((err as Error).message);
  }
  const highest = list.reduce((m, d) => Math.max(m, d.id), 0);
  if (list.length > 1 && highest >= nextRange)
    malformed(`range ${highest} is in the map but the next id is ${nextRange}`);
  return { map, nextRange, draining, forced };
}

/** A header's draining (or forced) nodes: ids ascending and unique, at most `maxDraining`. */
function snapshotDraining(v: unknown, what: string, l: MetaLimits): number[] {
  if (!Array.isArray(v) || v.length > l.maxDraining)
    malformed(`${what} must be a list of at most ${l.maxDraining} node ids`);
  const out: number[] = [];
  for (const [i, n] of (v as unknown[]).entries()) {
    try {
      out.push(nodeId(n, `${what}[${i}]`));
    } catch (err) {
      malformed((err as Error).message);
    }
    if (i > 0 && (out[i] as number) <= (out[i - 1] as number))
      malformed(`${what} nodes [${out.join(', ')}] are not ascending and unique`);
  }
  return out;
}
