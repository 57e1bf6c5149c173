// The shape of a message stepped into the core, checked at the public boundary (RaftNode.step).
// Messages reach the core from the caller's transport, which may decode them from anything: a
// term that arrives as the string "5" was taken as the node's term, and "5" + 1 is "51". A
// malformed message is a bug in the caller's decoding, so it throws (AssertionError) naming
// the field, before the core changes anything.

import { assert } from './errors.js';
import type { Message, MessageType } from './types.js';

/** The numeric fields each message type carries besides from, to and term. */
const numericFields: Readonly<Record<MessageType, readonly string[]>> = {
  vote: ['lastLogIndex', 'lastLogTerm'],
  'pre-vote': ['lastLogIndex', 'lastLogTerm'],
  'vote-resp': [],
  'pre-vote-resp': [],
  append: ['prevIndex', 'prevTerm', 'commit'],
  'append-resp': ['index', 'hintIndex', 'hintTerm'],
  heartbeat: ['commit', 'seq'],
  'heartbeat-resp': ['seq'],
  'timeout-now': [],
  'read-index': ['requestId'],
  'read-index-resp': ['requestId', 'index'],
  snapshot: ['offset', 'length', 'totalBytes'],
  'snapshot-resp': ['received'],
};

/**
 * The boolean fields each message type carries: required ones (an answer's verdict, where a
 * string "false" is truthy and counted a grant, a success or a confirmed read) and the optional.
 */
const booleanFields: Readonly<
  Partial<
    Record<
      MessageType,
      { readonly required: readonly string[]; readonly optional: readonly string[] }
    >
  >
> = {
  vote: { required: [], optional: ['transfer'] },
  'pre-vote': { required: [], optional: ['transfer'] },
  'vote-resp': { required: ['granted'], optional: [] },
  'pre-vote-resp': { required: ['granted'], optional: [] },
  'append-resp': { required: ['success'], optional: ['lost', 'catchingUp'] },
  heartbeat: { required: [], optional: ['quiesce'] },
  'heartbeat-resp': { required: [], optional: ['catchingUp'] },
  'read-index': { required: [], optional: ['lease'] },
  'read-index-resp': { required: ['ok'], optional: [] },
};

function isCount(v: unknown): boolean {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function shown(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  return typeof v === 'number' || typeof v === 'boolean' || v === undefined || v === null
    ? `${String(v)} (${typeof v})`
    : `a ${typeof v}`;
}

const baseFields = ['from', 'to', 'term'] as const;

function checkCount(o: Record<string, unknown>, type: string, k: string): void {
  if (!isCount(o[k]))
    assert(false, `Cannot step ${type}: ${k} must be an integer >= 0, got ${shown(o[k])}`);
}

export function checkMessage(m: unknown): asserts m is Message {
  // The messages are built only on failure: this runs for every message.
  if (typeof m !== 'object' || m === null) assert(false, `Cannot step ${String(m)}: not a message`);
  const o = m as Record<string, unknown>;
  const type = o['type'];
  if (typeof type !== 'string' || !Object.prototype.hasOwnProperty.call(numericFields, type))
    assert(false, `Cannot step a message of type ${shown(type)}`);
  for (const k of baseFields) checkCount(o, type, k);
  for (const k of numericFields[type as MessageType]) checkCount(o, type, k);
  const flags = booleanFields[type as MessageType];
  if (flags !== undefined) {
    for (const k of flags.required)
      if (typeof o[k] !== 'boolean')
        assert(false, `Cannot step ${type}: ${k} must be a boolean, got ${shown(o[k])}`);
    for (const k of flags.optional)
      if (o[k] !== undefined && typeof o[k] !== 'boolean')
        assert(false, `Cannot step ${type}: ${k} must be a boolean, got ${shown(o[k])}`);
  }
  // A message from no one, or from this node to itself, is no peer's: a follower took itself
  // for its leader and forwarded proposals to itself.
  if (o['from'] === 0 || o['from'] === o['to'])
    assert(
      false,
      `Cannot step ${type} from ${String(o['from'])} to ${String(o['to'])}: not a peer's`,
    );
  if (type === 'snapshot') checkSnapshotMeta(o['snapshot'], 'Cannot step snapshot: its metadata');
  if ((type === 'snapshot' || type === 'snapshot-resp') && typeof o['id'] !== 'string')
    assert(false, `Cannot step ${type}: id must be a string, got ${shown(o['id'])}`);
  if (type === 'snapshot' && o['id'] === '')
    assert(false, 'Cannot step snapshot: id must not be empty');
  if (type !== 'append') return;
  const entries = o['entries'];
  assert(Array.isArray(entries), `Cannot step append: entries must be an array`);
  for (const e of entries as unknown[]) {
    const x = (typeof e === 'object' && e !== null ? e : {}) as Record<string, unknown>;
    assert(
      isCount(x['index']) && isCount(x['term']) && x['data'] instanceof Uint8Array,
      `Cannot step append: an entry needs an integer index and term and Uint8Array data`,
    );
    if (x['type'] !== 'normal' && x['type'] !== 'noop' && x['type'] !== 'conf-change')
      assert(false, `Cannot step append: entry type ${shown(x['type'])}`);
  }
}

const idLists = ['voters', 'learners', 'outgoing', 'learnersNext'] as const;

/**
 * A snapshot's metadata as the core reads it (SnapshotMeta): an index and a term, voters as a
 * list of node ids, the other lists absent or lists of ids, autoLeave absent or a boolean.
 * `what` begins the message (the caller's bug it names).
 */
export function checkSnapshotMeta(meta: unknown, what: string): void {
  if (typeof meta !== 'object' || meta === null)
    assert(false, `${what} must be an object, got ${shown(meta)}`);
  const o = meta as Record<string, unknown>;
  for (const k of ['index', 'term'])
    if (!isCount(o[k])) assert(false, `${what}: ${k} must be an integer >= 0, got ${shown(o[k])}`);
  for (const k of idLists) {
    const v = o[k];
    if (v === undefined && k !== 'voters') continue;
    if (!Array.isArray(v) || !v.every((id) => isCount(id) && id !== 0))
      assert(false, `${what}: ${k} must be a list of node ids, got ${shown(v)}`);
  }
  if (o['autoLeave'] !== undefined && typeof o['autoLeave'] !== 'boolean')
    assert(false, `${what}: autoLeave must be a boolean, got ${shown(o['autoLeave'])}`);
}
