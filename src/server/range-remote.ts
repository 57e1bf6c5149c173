// Serving keys of ranges this node does not run (docs/DESIGN.md, "Ranges in a node"). A request
// whose keys lie in such a range goes to a node that runs it, through a Forwarder as a write to
// a local range's leader does; what the forwarder follows is a RemoteLeaderView, this node's
// guess at the range's leader:
//
//   - learned from answers: a write's answer names the member that proposed it (the header's
//     memberId: the leader then), a NOT_LEADER refusal names the leader its sender knows;
//   - forgotten when the node it names refuses, says it knows no leader, or refuses the
//     connection;
//   - otherwise the range's replicas are tried in turn (pausing a little after a full round,
//     as an election is then under way);
//   - kept for at most `maxKept` ranges (1,024 by default), the least recently routed to
//     dropped first: a node in a cluster of many ranges holds no state for each of them.
//
// Where a range is and what it holds come from rangesMet (range-table.ts): the ranges' own
// logs where this node runs them, the meta map elsewhere. The map may lag: a node that does not
// run the range a request reaches answers WRONG_RANGE (it never forwards a forwarded request
// again), as does a range whose bounds changed. The sender then refreshes what it knows (its
// meta replica catches up with the meta group's leader; its ranges with theirs) and routes once
// more; a second refusal goes back to the client, definite.
//
// A read of a range not run here is forwarded as a read (to the leader this node knows, else any
// replica): the replica serving it answers from its own state through ReadIndex (linearizable)
// or at once (serializable), never this node from anything of its own.

import { FlotillaError } from '../base/errors.js';
import type { Clock } from '../host/contracts.js';
import type { KeyValue, Range } from '../kv/kv-store.js';
import type { ReadConsistency, ReadResult } from '../api/requests.js';
import { rangePath, writePaths } from '../api/requests.js';
import { errorFromWire } from '../api/wire-codec.js';
import type { RangeDescriptor, RangeId } from '../ranges/types.js';
import type { Member } from './config.js';
import { Forwarder, type ForwardAnswer, type LeaderView, type SendFn } from './forward.js';
import { oneRange, rangesMet, type RangeKnowledge } from './range-table.js';
import type { RangeLanes } from './range-lanes.js';
import type { MetaStateMachine } from '../ranges/meta-machine.js';
import type { RaftRuntime } from '../host/runtime.js';

/** How long a guess waits after a full round of the replicas refused, at most. */
const guessPauseMaxMs = 200;
/** Hops one forwarded request makes among a range's replicas before it gives up. */
const remoteMaxHops = 8;

/**
 * This node's view of the leader of a range it does not run, for a Forwarder. Changes it learns
 * come from answers to other requests, not from the range's elections: they say nothing of the
 * node holding a request in flight, so `onLeaderChange` never fires (a hop ends with its answer
 * or the request's deadline).
 */
export class RemoteLeaderView implements LeaderView {
  private leader = 0;
  private replicas: readonly number[];
  /** Guesses made since a leader was last learned (the rotation's position). */
  private guesses = 0;

  constructor(
    private readonly selfId: number,
    replicas: readonly number[],
    private readonly clock: Clock,
  ) {
    this.replicas = replicas;
  }

  /** The range's replicas as this node last learned them. */
  setReplicas(replicas: readonly number[]): void {
    this.replicas = replicas;
    if (this.leader !== 0 && !replicas.includes(this.leader)) this.leader = 0;
  }

  leaderId(): number {
    return this.leader;
  }

  /** `id` leads the range, an answer said. */
  learn(id: number): void {
    if (id === this.selfId || !this.replicas.includes(id)) return;
    this.leader = id;
    this.guesses = 0;
  }

  /** `id` refused or could not be reached: it is not the leader to send to. */
  forget(id: number): void {
    if (this.leader === id) this.leader = 0;
  }

  /** The leader known, else the next replica (not `other`) in turn. */
  async waitForLeader(o: {
    readonly other?: number;
    readonly signal?: AbortSignal;
  }): Promise<number> {
    const other = o.other ?? 0;
    if (this.leader !== 0 && this.leader !== other) return this.leader;
    const order = this.replicas.filter((r) => r !== this.selfId);
    const choices = order.length > 1 ? order.filter((r) => r !== other) : order;
    if (choices.length === 0)
      throw new FlotillaError('NO_LEADER', 'The range has no replica to ask but this node', false);
    const round = Math.floor(this.guesses / order.length);
    const pick = choices[this.guesses % choices.length] as number;
    this.guesses++;
    if (round > 0) await this.pause(Math.min(guessPauseMaxMs, 25 * 2 ** (round - 1)), o.signal);
    return this.leader !== 0 && this.leader !== other ? this.leader : pick;
  }

  onLeaderChange(): () => void {
    return () => undefined;
  }

  private pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted === true) {
        reject(signal.reason as Error);
        return;
      }
      const onAbort = (): void => {
        this.clock.clearTimeout(timer);
        reject(signal?.reason as Error);
      };
      const timer = this.clock.setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

export interface RemoteRangesOptions {
  readonly selfId: number;
  /** The address book (a live list: members added later are found). */
  readonly members: readonly Member[];
  readonly send: SendFn;
  readonly clock: Clock;
  /** Budget of one forwarded request, every hop included. */
  readonly timeoutMs: number;
  /** Requests forwarded to one range at once. */
  readonly maxInFlight: number;
  /** How long one more waits for a slot before it is refused OVERLOADED (Forwarder). */
  readonly slotWaitMs?: number;
  /** What this node knows of the ranges now. */
  readonly knowledge: () => RangeKnowledge;
  /** Whether range `id` runs here. */
  readonly isRunning: (id: RangeId) => boolean;
  /**
   * Brings that knowledge up to date after a refusal: the meta replica catches up with the meta
   * group's leader, range `id` (run here) with its own, the ranges being started settle.
   */
  readonly refresh: (id: RangeId | null, signal: AbortSignal) => Promise<void>;
  /**
   * Ranges not run here whose leader guess and forwarder are kept, at most (default 1,024); the
   * least recently routed to is dropped first.
   */
  readonly maxKept?: number;
}

/** The default of `maxKept`: a cluster of more ranges than this routes through a few at once. */
export const remoteKeptMax = 1_024;

/** Where a request goes: a range running here, or one run elsewhere. */
export type RangeTarget =
  | { readonly local: true; readonly id: RangeId }
  | { readonly local: false; readonly descriptor: RangeDescriptor };

export class RemoteRanges {
  /**
   * Invariant: at most `maxKept` entries, in the order they were last routed to (a Map keeps
   * insertion order; a hit is moved to the end), so the first is the one to drop. A dropped
   * range's requests in flight finish with the forwarder they hold; the next request made anew
   * starts from the replicas, as one after a restart does.
   */
  private readonly remote = new Map<
    RangeId,
    { readonly view: RemoteLeaderView; readonly forwarder: Forwarder }
  >();
  private readonly maxKept: number;

  constructor(private readonly o: RemoteRangesOptions) {
    this.maxKept = o.maxKept ?? remoteKeptMax;
    if (!Number.isSafeInteger(this.maxKept) || this.maxKept < 1)
      throw new RangeError(`maxKept must be an integer >= 1, got ${this.maxKept}`);
  }

  /** How many ranges not run here have a leader guess and forwarder kept (for tests). */
  kept(): number {
    return this.remote.size;
  }

  /** The range the spans lie in (CROSS_RANGE; WRONG_RANGE when none is known to hold them). */
  route(spans: readonly Range[], what: string): RangeTarget {
    return this.targetOf(oneRange(rangesMet(this.o.knowledge(), spans), spans, what));
  }

  /** What this node knows of the ranges now. */
  knowledge(): RangeKnowledge {
    return this.o.knowledge();
  }

  /** Where range `d` (as rangesMet found it) is served: here, or elsewhere. */
  targetOf(d: RangeDescriptor): RangeTarget {
    if (this.o.isRunning(d.id)) return { local: true, id: d.id };
    this.of(d).view.setReplicas(d.replicas);
    return { local: false, descriptor: d };
  }

  /** The leader this node knows of a range it does not run (0: none). */
  leader(id: RangeId): number {
    return this.remote.get(id)?.view.leaderId() ?? 0;
  }

  /**
   * Sends a write's body to the leader of the range not run here that holds its keys; answers
   * null when the range runs here after all (the caller serves it). A stale route is refreshed
   * and tried once more.
   */
  async forwardWrite(
    spans: readonly Range[],
    body: { readonly path: string; readonly rawBody: string },
    signal: AbortSignal,
    authorization?: string,
    /** What the write is called in a CROSS_RANGE refusal. */
    what = 'transaction',
  ): Promise<ForwardAnswer | null> {
    for (let attempt = 0; ; attempt++) {
      const target = this.route(spans, what);
      if (target.local) return null;
      const answer = await this.forwardTo(target.descriptor, body, signal, authorization);
      if (attempt > 0 || !isStale(answer)) return answer;
      await this.o.refresh(null, signal);
    }
  }

  /**
   * A read of range `d` (not run here) on a replica of it: the replica serves it as a read
   * reaching it first would be served. Throws the replica's refusal (WRONG_RANGE when `d` is
   * stale: the caller refreshes and routes again).
   */
  async read(
    d: RangeDescriptor,
    op: {
      readonly range: Range;
      readonly limit: number;
      readonly countOnly: boolean;
      readonly revision: number;
      readonly multiRange?: boolean;
    },
    consistency: ReadConsistency,
    signal: AbortSignal,
    authorization?: string,
  ): Promise<ReadResult> {
    const body = {
      ...(op.multiRange === true ? { multiRange: true } : {}),
      key: b64(op.range.key),
      ...(op.range.rangeEnd === null ? {} : { rangeEnd: b64(op.range.rangeEnd) }),
      ...(op.limit === 0 ? {} : { limit: op.limit }),
      ...(op.countOnly ? { countOnly: true } : {}),
      ...(op.revision === 0 ? {} : { revision: op.revision }),
      consistency,
      encoding: 'base64',
    };
    const answer = await this.forwardTo(
      d,
      { path: rangePath, rawBody: JSON.stringify(body) },
      signal,
      authorization,
    );
    if (answer.status !== 200)
      throw errorFromWire((answer.json as { error?: unknown } | null)?.error, true);
    return readResultOf(answer.json, d);
  }

  /** Brings what this node knows of the ranges up to date (see the options' `refresh`). */
  refresh(id: RangeId | null, signal: AbortSignal): Promise<void> {
    return this.o.refresh(id, signal);
  }

  /** Sends to the range's leader as this node knows it, following refusals (forward.ts). */
  async forwardTo(
    d: RangeDescriptor,
    body: { readonly path: string; readonly rawBody: string },
    signal: AbortSignal,
    authorization: string | undefined,
  ): Promise<ForwardAnswer> {
    const answer = await this.of(d).forwarder.forward(
      body.path,
      body.rawBody,
      signal,
      authorization,
    );
    if (answer !== null) return answer;
    throw new FlotillaError(
      'NO_LEADER',
      `No replica of range ${d.id} (nodes ${d.replicas.join(', ')}) could be reached to serve ` +
        'the request; nothing was done',
      false,
    );
  }

  /**
   * The view and forwarder of a range not run here, made on first use; the least recently used
   * is dropped when more than `maxKept` would be kept.
   */
  private of(d: RangeDescriptor): { view: RemoteLeaderView; forwarder: Forwarder } {
    const held = this.remote.get(d.id);
    if (held !== undefined) {
      this.remote.delete(d.id);
      this.remote.set(d.id, held);
      return held;
    }
    const view = new RemoteLeaderView(this.o.selfId, d.replicas, this.o.clock);
    const forwarder = new Forwarder({
      selfId: this.o.selfId,
      members: this.o.members,
      leaders: view,
      send: (url, path, rawBody, signal, authorization) =>
        this.sendLearning(view, { url, path, rawBody }, signal, authorization),
      timeoutMs: this.o.timeoutMs,
      maxHops: remoteMaxHops,
      maxInFlight: this.o.maxInFlight,
      ...(this.o.slotWaitMs === undefined ? {} : { slotWaitMs: this.o.slotWaitMs }),
    });
    const made = { view, forwarder };
    this.remote.set(d.id, made);
    for (const oldest of this.remote.keys()) {
      if (this.remote.size <= this.maxKept) break;
      this.remote.delete(oldest);
    }
    return made;
  }

  /** One hop, and what its answer tells of the range's leader. */
  private async sendLearning(
    view: RemoteLeaderView,
    hop: { readonly url: string; readonly path: string; readonly rawBody: string },
    signal: AbortSignal,
    authorization: string | undefined,
  ): Promise<ForwardAnswer> {
    const to = this.o.members.find((m) => m.client === hop.url)?.id ?? 0;
    let answer: ForwardAnswer;
    try {
      answer = await this.o.send(hop.url, hop.path, hop.rawBody, signal, authorization);
    } catch (err) {
      view.forget(to);
      throw err;
    }
    const e = errorOf(answer);
    if (answer.status === 200 && writeAnswerPaths.has(hop.path)) {
      const memberId = (answer.json as { header?: { memberId?: unknown } } | null)?.header
        ?.memberId;
      if (typeof memberId === 'number') view.learn(memberId);
    } else if (e !== null && (e.code === 'NOT_LEADER' || e.code === 'NO_LEADER')) {
      view.forget(to);
      if (typeof e.leader === 'number' && e.leader !== 0) view.learn(e.leader);
    } else if (e !== null && e.code === 'WRONG_RANGE') view.forget(to);
    return answer;
  }
}

/** What a node knows of the ranges: its running ranges, their children, its meta replica's map. */
export function knowledgeOf(lanes: RangeLanes, meta: MetaStateMachine): RangeKnowledge {
  const all = lanes.all();
  return {
    running: all.map((l) => l.group.range.descriptor()),
    children: all.flatMap((l) => l.group.range.children()),
    map: meta.map(),
  };
}

/**
 * Catches up after a refusal that says the route was stale: range `id` (run here) with its
 * leader and the ranges being started (lanes.catchUp), then the meta replica with the meta
 * group's leader (a ReadIndex barrier: it applies what the leader had committed).
 */
export async function refreshRanges(
  lanes: RangeLanes,
  meta: RaftRuntime,
  id: RangeId | null,
  signal: AbortSignal,
): Promise<void> {
  await lanes.catchUp(id, { signal });
  try {
    await meta.linearizableRead({ signal });
  } catch {
    // The meta group has no leader now: route by the map this node holds; the route says why
    // if that fails.
  }
}

/** Paths whose answer comes from the range's leader (it proposed the write). */
const writeAnswerPaths = new Set(Object.values(writePaths));

/** A refusal that says the route was stale: refresh what this node knows and route again. */
export function isStale(answer: ForwardAnswer): boolean {
  const code = errorOf(answer)?.code;
  return code === 'WRONG_RANGE' || code === 'NOT_LEADER' || code === 'CROSS_RANGE';
}

function errorOf(a: ForwardAnswer): { code?: unknown; leader?: unknown } | null {
  if (a.status === 200) return null;
  return (a.json as { error?: { code?: unknown; leader?: unknown } } | null)?.error ?? null;
}

function b64(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');
}

/** A replica's answer to a forwarded read (base64), checked, as the backend's result. */
function readResultOf(json: unknown, d: RangeDescriptor): ReadResult {
  const bad = (why: string): FlotillaError =>
    new FlotillaError('BAD_RESPONSE', `A replica of range ${d.id} answered a read badly: ${why}`);
  const o = json as {
    header?: { revision?: unknown; memberId?: unknown; raftTerm?: unknown };
    kvs?: unknown;
    count?: unknown;
    more?: unknown;
  } | null;
  const h = o?.header;
  if (!isCount(h?.revision) || !isCount(h.memberId) || !isCount(h.raftTerm)) throw bad('no header');
  if (!Array.isArray(o?.kvs) || !isCount(o.count) || typeof o.more !== 'boolean')
    throw bad('no kvs, count or more');
  const kvs = o.kvs.map((x: unknown, i) => keyValueOf(x, `kvs[${i}]`, bad));
  const ranges = (o as { ranges?: unknown }).ranges;
  if (ranges !== undefined && !Array.isArray(ranges)) throw bad('ranges is not a list');
  return {
    header: { revision: h.revision, memberId: h.memberId, raftTerm: h.raftTerm },
    result: { kind: 'range', kvs, count: o.count, more: o.more },
    ...(ranges === undefined
      ? {}
      : {
          ranges: ranges.map((x: unknown, i) => {
            const r = x as { id?: unknown; revision?: unknown } | null;
            if (!isCount(r?.id) || !isCount(r.revision)) throw bad(`ranges[${i}] is malformed`);
            return { id: r.id, revision: r.revision };
          }),
        }),
  };
}

/** A key-value record as a node renders it in base64, checked; `bad` makes the error. */
export function keyValueOf(x: unknown, where: string, bad: (why: string) => Error): KeyValue {
  const kv = x as Record<string, unknown> | null;
  const key = kv?.['key'];
  const value = kv?.['value'];
  const lease = kv?.['lease'];
  if (typeof key !== 'string' || typeof value !== 'string') throw bad(`${where} has no key`);
  const [createRevision, modRevision, version] = [
    kv?.['createRevision'],
    kv?.['modRevision'],
    kv?.['version'],
  ];
  if (!isCount(createRevision) || !isCount(modRevision) || !isCount(version))
    throw bad(`${where} has no revisions`);
  if (lease !== undefined && !isCount(lease)) throw bad(`${where} has a bad lease`);
  return {
    key: new Uint8Array(Buffer.from(key, 'base64')),
    value: new Uint8Array(Buffer.from(value, 'base64')),
    createRevision,
    modRevision,
    version,
    ...(lease === undefined ? {} : { lease }),
  };
}

export function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}
