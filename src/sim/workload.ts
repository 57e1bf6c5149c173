// Simulated clients, going through the calls the product's backend makes (kv-backend.ts,
// `kvBackend()`): a write is encoded with the client's session and the node's clock, proposed
// to the runtime, and its result mapped as the API maps it; a read waits for the runtime's
// linearizableRead and then reads the node's state machine. Each client runs one operation
// at a time and retries a write with the same session sequence number until it is answered
// (Raft thesis §6.3), so an answer lost to a timeout, a leadership change or a crash is
// retried, and the session must make the retry apply once.

import type { Rng } from '../raft/index.js';
import { FlotillaError } from '../base/errors.js';
import { toFlotillaError } from '../api/errors.js';
import { encodeEnvelope } from '../host/envelope.js';
import { answerOf, type KvService } from '../server/kv-service.js';
import { RangeMachine } from '../ranges/range-machine.js';
import { splitRefusal } from '../server/range-replicas.js';
import { allocateRangeId, recordSplitInMap } from '../server/range-admin.js';
import type { RangeDescriptor } from '../ranges/types.js';
import type { ClientChecker, SafetyChecker } from './checker.js';
import type { ClientHistory, OpHandle } from './history.js';
import { clientId, readValue, writeTxn, type ClientWrite, type WriteSession } from './ops.js';
import type { Profile } from './profile.js';
import { holdsKey, nodeDescriptors, RouteCache, splitsInside } from './routing.js';
import { SIM_META_RECORD_MS, type SimNode } from './sim-node.js';
import type { SimEvent } from './types.js';

/** What clients need from the simulation when the nodes run ranges. */
export interface RangeHost {
  /** The cluster's voters (range 0's replicas). */
  readonly voters: readonly number[];
  /**
   * The replicas a split of range `d` names for the new range, proposed on a node whose
   * applied voters of the range are `voters`: those voters, as the product's split names
   * (range-admin.ts), but for a split of range 0 with moves, three of them (as a split asked
   * over the API may name), so that a move has somewhere to go.
   */
  splitReplicas(d: RangeDescriptor, voters: readonly number[]): readonly number[];
  /**
   * A new range id, as the meta group allocates it; null once the seed's ranges are used up.
   * With the meta group, only whether a split may begin: its id comes from the meta group.
   */
  allocate(): number | null;
  /**
   * The nodes run the meta group: a split takes its id from it and is recorded in its map
   * (range-admin.ts), and clients refresh their routes from a node's copy of the map.
   */
  readonly meta: boolean;
  /** The highest index known committed in group `group` (a read's stale-read bound). */
  maxCommittedOf(group: number): number;
}

/** A range's applied result, read without trusting its shape (a refusal has none of it). */
interface LooseResult {
  readonly kind?: string;
  readonly left?: RangeDescriptor;
  readonly right?: RangeDescriptor;
  readonly error?: { readonly code?: string; readonly range?: RangeDescriptor };
}

/** What a workload counts in the run's statistics. */
export type Counted =
  | 'writesDone'
  | 'readsOk'
  | 'readsFailed'
  | 'retries'
  | 'splits'
  | 'splitsRefused'
  | 'wrongRange'
  | 'splitsRecorded';

export interface WorkloadHost {
  readonly nowMs: number;
  readonly checker: SafetyChecker;
  readonly clients: ClientChecker;
  readonly history: ClientHistory;
  /** Null unless the nodes run ranges. */
  readonly ranges: RangeHost | null;
  schedule(delayMs: number, event: SimEvent): void;
  upNodes(): SimNode[];
  count(what: Counted): void;
  /** Reports a failure found in a promise continuation (off the event's own stack). */
  fail(what: string, err: unknown): void;
}

interface PendingWrite {
  readonly kind: 'write';
  readonly write: ClientWrite;
  readonly recorded: OpHandle;
  attempts: number;
}

interface PendingRead {
  readonly kind: 'read';
  readonly key: string;
  readonly askedCommit: number;
  readonly recorded: OpHandle;
}

/** A split of the range holding `key` at `key` into new range `id`, retried like a write. */
interface PendingSplit {
  readonly kind: 'split';
  readonly key: string;
  /** The new range's id; null until the meta group allocated one (with the meta group). */
  id: number | null;
  /** The session sequence number; a definite refusal ends the split (it is not re-sent). */
  readonly seq: number;
  /** The generation the first attempt expected: a retry must be the same command. */
  generation: number | null;
  attempts: number;
  /** Times the range held the split back for a change of its replicas half-way. */
  refusals: number;
}

/**
 * A split held back this many times is given up, as a client gives up after its retries: a
 * move abandoned at its bound leaves a learner, and the range refuses splits until another
 * change of its replicas removes it (none starts in the liveness phase).
 */
const splitRefusalsMax = 20;

interface Client {
  readonly id: number;
  seq: number;
  /**
   * Bumped whenever the client's scheduled wake-up or the answer it waits for becomes stale.
   * Invariant: at most one wake-up or attempt with the current token is outstanding.
   */
  token: number;
  target: number;
  /** The node serving the current attempt (0: none), so a crash of it can be noticed. */
  servedBy: number;
  op: PendingWrite | PendingRead | PendingSplit | null;
  /** The range map as this client last learned it (with ranges). */
  readonly routes: RouteCache;
}

export class Workload {
  private readonly clients: Client[] = [];
  private stopped = false;

  constructor(
    private readonly p: Profile,
    private readonly rng: Rng,
    private readonly host: WorkloadHost,
    /** The session each write is sent with (the product's: the client's id and sequence). */
    private readonly session: WriteSession,
  ) {
    for (let id = 1; id <= p.clients; id++) {
      this.clients.push({
        id,
        seq: 0,
        token: 0,
        target: 1 + rng.int(p.nodes),
        servedBy: 0,
        op: null,
        routes: new RouteCache(),
      });
    }
  }

  /** How long one attempt waits for its answer (three election timeouts unless impatient). */
  private timeoutMs(): number {
    return this.p.tickMs * this.p.electionTicks * this.p.attemptTimeoutElections;
  }

  /** Generous bound on how long a retried write may take once the cluster is healthy. */
  retryBoundMs(): number {
    // Sixty election timeouts whatever the clients' patience: twenty of their default attempts.
    return 60 * this.p.tickMs * this.p.electionTicks;
  }

  start(): void {
    for (const c of this.clients) this.wake(c, this.rng.int(this.p.thinkMs + 1));
  }

  stopIssuing(): void {
    this.stopped = true;
  }

  pendingDescription(): string {
    const parts: string[] = [];
    for (const c of this.clients) {
      if (c.op?.kind === 'write')
        parts.push(`c${c.id} write #${c.op.write.s} (${c.op.attempts} attempts)`);
      else if (c.op?.kind === 'read') parts.push(`c${c.id} read ${c.op.key}`);
      else if (c.op?.kind === 'split')
        parts.push(`c${c.id} split at ${c.op.key} (${c.op.attempts} attempts)`);
    }
    return parts.join(', ');
  }

  private wake(c: Client, delayMs: number): void {
    c.token++;
    c.servedBy = 0;
    this.host.schedule(delayMs, { kind: 'client', client: c.id, token: c.token });
  }

  onClientEvent(id: number, token: number): void {
    const c = this.clients[id - 1];
    if (c === undefined || c.token !== token) return;
    if (c.op === null) {
      if (!this.stopped) this.issue(c);
    } else if (c.op.kind === 'write') {
      this.attemptWrite(c, c.op);
    } else if (c.op.kind === 'split') {
      this.attemptSplit(c, c.op);
    }
  }

  /**
   * A node lost power: the attempts it was serving get no answer, as a client sees its
   * connection reset. A write is retried (it may have applied: the session tells); a read
   * failed.
   */
  onNodeCrash(node: number): void {
    for (const c of this.clients) {
      if (c.servedBy !== node || c.op === null) continue;
      if (c.op.kind === 'read') this.finishRead(c, false);
      else {
        // A write or a split: retried elsewhere.
        c.target = 1 + this.rng.int(this.p.nodes);
        this.wake(c, this.p.tickMs);
      }
    }
  }

  private issue(c: Client): void {
    const key = `k${this.rng.int(this.p.keys)}`;
    // Drawn only with ranges, so that other seeds draw what they always did.
    if (this.host.ranges !== null && this.rng.float() < this.p.splitRatio) {
      const id = this.host.ranges.allocate();
      if (id !== null) {
        c.seq++;
        const split: PendingSplit = {
          kind: 'split',
          key,
          id: this.host.ranges.meta ? null : id,
          seq: c.seq,
          generation: null,
          attempts: 0,
          refusals: 0,
        };
        c.op = split;
        this.attemptSplit(c, split);
        return;
      }
    }
    if (this.rng.float() < this.p.readRatio) {
      this.issueRead(c, key);
      return;
    }
    c.seq++;
    const write: ClientWrite = { c: c.id, s: c.seq, k: key, v: `c${c.id}.${c.seq}` };
    const recorded = this.host.history.invokeWrite(c.id, key, write.v, this.host.nowMs);
    const pending: PendingWrite = { kind: 'write', write, recorded, attempts: 0 };
    c.op = pending;
    this.attemptWrite(c, pending);
  }

  private pickNode(c: Client): SimNode | null {
    const up = this.host.upNodes();
    if (up.length === 0) return null;
    return up.find((n) => n.id === c.target) ?? (up[this.rng.int(up.length)] as SimNode);
  }

  private attemptWrite(c: Client, w: PendingWrite): void {
    const node = this.pickNode(c);
    if (node === null) {
      this.wake(c, this.p.tickMs * 5);
      return;
    }
    if (this.host.ranges !== null) {
      this.attemptRangeWrite(c, w, node);
      return;
    }
    if (w.attempts > 0) this.host.count('retries');
    w.attempts++;
    const token = ++c.token;
    c.servedBy = node.id;
    const write = node.service.write(writeTxn(w.write), this.session(w.write), {
      timeoutMs: this.timeoutMs(),
    });
    write.then(
      () => {
        if (c.token !== token) return;
        this.guard(() => {
          this.host.clients.onAck(c.id, w.write);
          this.host.history.ok(w.recorded, this.host.nowMs);
          this.host.count('writesDone');
          this.opDone(c);
        });
      },
      (err: unknown) => {
        if (c.token !== token) return;
        this.guard(() => this.retryWrite(c, err));
      },
    );
  }

  /** Follows a leader hint at once; anything else is retried elsewhere after a pause. */
  private retryWrite(c: Client, err: unknown): void {
    if (!(err instanceof FlotillaError)) throw err;
    const hint = err.leader ?? 0;
    c.target = hint !== 0 ? hint : 1 + this.rng.int(this.p.nodes);
    this.wake(c, this.p.tickMs * (err.code === 'NOT_LEADER' ? 1 : 2));
  }

  private issueRead(c: Client, key: string): void {
    const up = this.host.upNodes();
    if (up.length === 0) {
      this.wake(c, this.p.tickMs * 5);
      return;
    }
    const node = up[this.rng.int(up.length)] as SimNode;
    const ranges = this.host.ranges;
    // With ranges: the range the client routes the key to, as the node runs it (if it does).
    const range = ranges === null ? null : this.route(c, key);
    const group = range === null ? undefined : node.rangeGroup(range.id);
    const service = range === null ? node.service : node.rangeService(range.id);
    const askedCommit =
      ranges === null ? this.host.checker.maxCommitted : ranges.maxCommittedOf(range?.id ?? 0);
    const recorded = this.host.history.invokeRead(c.id, key, this.host.nowMs);
    c.op = { kind: 'read', key, askedCommit, recorded };
    if (ranges !== null && (group === undefined || service === undefined)) {
      // Not served: this node does not run the range (yet), or no known range holds the key.
      this.finishRead(c, false);
      return;
    }
    const token = ++c.token;
    c.servedBy = node.id;
    const kv = group?.range.kv ?? node.kv;
    // Drawn only when lease reads are on, so that other seeds draw what they always did.
    const lease = this.p.leaseReadRatio > 0 && this.rng.float() < this.p.leaseReadRatio;
    (service ?? node.service).readBarrier({ timeoutMs: this.timeoutMs(), lease }).then(
      () => {
        if (c.token !== token) return;
        this.guard(() => {
          // Past the barrier the range's bounds are as new as the read: a key it no longer
          // holds (split off since the client routed it) is refused, as the API refuses it.
          if (group !== undefined && !holdsKey(group.range.descriptor(), key)) {
            c.routes.learn(group.range.descriptor());
            this.host.count('wrongRange');
            this.finishRead(c, false);
            return;
          }
          const value = readValue(kv, key);
          this.host.clients.onRead({ node: node.id, key, value, askedCommit });
          this.host.history.ok(recorded, this.host.nowMs, value ?? null);
          this.finishRead(c, true);
        });
      },
      (err: unknown) => {
        if (c.token !== token) return;
        this.guard(() => {
          if (!(err instanceof FlotillaError)) throw err;
          this.finishRead(c, false);
        });
      },
    );
  }

  /**
   * The range the client routes `key` to; when none it knows holds the key, it asks a node
   * for its view of the map first.
   */
  private route(c: Client, key: string): RangeDescriptor | null {
    const known = c.routes.route(key);
    if (known !== null) return known;
    const up = this.host.upNodes();
    if (up.length === 0) return null;
    this.refresh(c, up[this.rng.int(up.length)] as SimNode);
    return c.routes.route(key);
  }

  /**
   * Refreshes the client's map from `node`: from its copy of the meta map with the meta group
   * (as a client refreshes its range cache), else from the ranges it runs and their children.
   */
  private refresh(c: Client, node: SimNode): void {
    if (this.host.ranges?.meta === true) {
      for (const d of node.meta?.machine.map()?.ranges() ?? []) c.routes.learn(d);
      return;
    }
    for (const d of nodeDescriptors(node)) c.routes.learn(d);
  }

  /**
   * A write with ranges: proposed to the group of the range the client routes its key to,
   * the result read as the API reads it, except that WRONG_RANGE's descriptor is learned and
   * the write retried, with its session sequence number, at the range it names or its sibling.
   */
  private attemptRangeWrite(c: Client, w: PendingWrite, node: SimNode): void {
    // A retry refreshes the client's map from the node it reconnects to, as a client does
    // after a lost connection: it may now go straight to a range split off since its first
    // attempt, whose session table (the seed's) must recognise the write if it applied.
    if (w.attempts > 0) this.refresh(c, node);
    const range = this.route(c, w.write.k);
    const service = range === null ? undefined : node.rangeService(range.id);
    if (w.attempts > 0) this.host.count('retries');
    w.attempts++;
    if (service === undefined) {
      c.target = 1 + this.rng.int(this.p.nodes);
      this.wake(c, this.p.tickMs * 2);
      return;
    }
    const token = ++c.token;
    c.servedBy = node.id;
    const data = service.encode(writeTxn(w.write), this.session(w.write));
    service.runtime.propose(data, { timeoutMs: this.timeoutMs() }).then(
      (result) => {
        if (c.token !== token) return;
        this.guard(() => {
          if (this.wrongRange(c, result, node)) return;
          try {
            answerOf(result);
          } catch (err) {
            this.retryWrite(c, err);
            return;
          }
          this.host.clients.onAck(c.id, w.write);
          this.host.history.ok(w.recorded, this.host.nowMs);
          this.host.count('writesDone');
          this.opDone(c);
        });
      },
      (err: unknown) => {
        if (c.token !== token) return;
        this.guard(() => this.retryWrite(c, toFlotillaError(err)));
      },
    );
  }

  /**
   * A WRONG_RANGE result: learns the descriptor, refreshes the map from the node with the meta
   * group, and schedules the retry.
   */
  private wrongRange(c: Client, result: unknown, node: SimNode): boolean {
    const r = result as LooseResult | null;
    if (r === null || typeof r !== 'object' || r.kind !== 'error') return false;
    const e = r.error;
    if (e?.code !== 'WRONG_RANGE' || e.range === undefined) return false;
    c.routes.learn(e.range);
    if (this.host.ranges?.meta === true) this.refresh(c, node);
    this.host.count('wrongRange');
    this.wake(c, this.p.tickMs);
    return true;
  }

  /**
   * A split: proposed, in an envelope with the client's session (so that a retry after a
   * lost answer is recognised), to the range that holds the key as the client knows it. It
   * names the range's generation as first seen and the cluster's voters as the new range's
   * replicas; a refusal (another split came first, or the key is the range's start) ends it.
   */
  private attemptSplit(c: Client, s: PendingSplit): void {
    const node = this.pickNode(c);
    const range = node === null ? null : this.route(c, s.key);
    const service = range === null ? undefined : node?.rangeService(range.id);
    if (s.attempts > 0) this.host.count('retries');
    s.attempts++;
    if (node === null || range === null || service === undefined) {
      c.target = 1 + this.rng.int(this.p.nodes);
      this.wake(c, this.p.tickMs * 2);
      return;
    }
    if (s.id === null) {
      this.allocateId(c, s, node);
      return;
    }
    if (s.generation === null) {
      if (!splitsInside(range, s.key)) {
        this.opDone(c);
        return;
      }
      s.generation = range.generation;
    }
    const token = ++c.token;
    c.servedBy = node.id;
    // As the product's split: past a barrier the configuration and the descriptor read are the
    // range's last, and a change of its replicas half-way holds the split back (splitRefusal).
    service.readBarrier({ timeoutMs: this.timeoutMs() }).then(
      () => {
        if (c.token !== token) return;
        this.guard(() => {
          const group = node.rangeGroup(range.id);
          if (group === undefined) {
            this.wake(c, this.p.tickMs * 2);
            return;
          }
          // As range-admin.ts: refused while a change of the range's replicas (or another
          // split) runs on this node; the split holds the range until its proposal settles.
          const refusal = node.busy.has(range.id)
            ? 'a change of its replicas is running here'
            : splitRefusal(service.runtime.status().conf, group.range.descriptor());
          if (refusal !== null) {
            // Retried later, as the API's RANGE_CHANGE_IN_PROGRESS is.
            this.host.count('splitsRefused');
            if (++s.refusals >= splitRefusalsMax) this.opDone(c);
            else this.wake(c, this.p.tickMs * 5);
            return;
          }
          this.proposeSplit(c, s, { node, range, service, token });
        });
      },
      (err: unknown) => {
        if (c.token !== token) return;
        this.guard(() => this.retryWrite(c, toFlotillaError(err)));
      },
    );
  }

  /**
   * Takes the split's id from the meta group, through `node` as the product's split does
   * (range-admin.ts, on the meta group's leader); then the split goes on. A lost answer wastes
   * an id, which is harmless.
   */
  private allocateId(c: Client, s: PendingSplit, node: SimNode): void {
    const recorder = node.metaRecorder();
    if (recorder === null) throw new Error(`node ${node.id} runs no meta group`);
    const token = ++c.token;
    c.servedBy = node.id;
    const signal = node.signalAfter(this.timeoutMs());
    allocateRangeId(recorder, { signal, authorization: undefined }).then(
      (id) => {
        if (c.token !== token) return;
        this.guard(() => {
          s.id = id;
          this.attemptSplit(c, s);
        });
      },
      (err: unknown) => {
        if (c.token !== token) return;
        this.guard(() => this.retryWrite(c, toFlotillaError(err)));
      },
    );
  }

  /**
   * Records an applied split's halves in the meta map through `node`, as the product's split
   * request does once the split applied; the split is over either way (a record lost here is
   * the map repair's to make).
   */
  private recordSplit(
    c: Client,
    node: SimNode,
    left: RangeDescriptor,
    right: RangeDescriptor,
  ): void {
    const recorder = node.metaRecorder();
    if (recorder === null) {
      this.opDone(c);
      return;
    }
    const token = c.token;
    const signal = node.signalAfter(SIM_META_RECORD_MS);
    recordSplitInMap(recorder, left, right, { signal, authorization: undefined }).then(
      () => {
        if (c.token !== token) return;
        this.guard(() => {
          this.host.count('splitsRecorded');
          this.opDone(c);
        });
      },
      (err: unknown) => {
        if (c.token !== token) return;
        this.guard(() => {
          if (!(err instanceof FlotillaError)) throw err;
          this.opDone(c);
        });
      },
    );
  }

  /** The split proposed on `w.node`, past the barrier and the check of the range's replicas. */
  private proposeSplit(
    c: Client,
    s: PendingSplit,
    w: {
      readonly node: SimNode;
      readonly range: RangeDescriptor;
      readonly service: KvService;
      readonly token: number;
    },
  ): void {
    const ranges = this.host.ranges as RangeHost;
    const { node, range, service, token } = w;
    if (s.generation === null || s.id === null)
      throw new Error('a split is proposed with its generation drawn and its id allocated');
    const voters = [...service.runtime.status().voters].sort((a, b) => a - b);
    const data = encodeEnvelope({
      client: clientId(c.id),
      seq: s.seq,
      timeMs: node.clock.nowMs(),
      payload: RangeMachine.encode({
        split: {
          key: new TextEncoder().encode(s.key),
          id: s.id,
          generation: s.generation,
          replicas: ranges.splitReplicas(range, voters),
        },
      }),
    });
    node.busy.add(range.id);
    const gen = node.gen;
    const release = (): void => {
      if (node.gen === gen) node.busy.delete(range.id);
    };
    const proposed = service.runtime.propose(data, { timeoutMs: this.timeoutMs() });
    proposed.then(release, release);
    proposed.then(
      (result) => {
        if (c.token !== token) return;
        this.guard(() => {
          const r = result as LooseResult | null;
          if (r?.kind === 'split' && r.left !== undefined && r.right !== undefined) {
            c.routes.learn(r.left);
            c.routes.learn(r.right);
            this.host.count('splits');
            if (ranges.meta) {
              // As range-admin.ts: the map's left half carries the voters read before the split.
              this.recordSplit(c, node, { ...r.left, replicas: voters }, r.right);
              return;
            }
          } else if (r?.kind === 'error' && r.error?.range !== undefined) {
            c.routes.learn(r.error.range);
          }
          // Anything else applied is a definite refusal: the split is over either way.
          this.opDone(c);
        });
      },
      (err: unknown) => {
        if (c.token !== token) return;
        this.guard(() => this.retryWrite(c, toFlotillaError(err)));
      },
    );
  }

  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.host.fail('client', err);
    }
  }

  private finishRead(c: Client, ok: boolean): void {
    if (!ok && c.op?.kind === 'read') this.host.history.fail(c.op.recorded, this.host.nowMs);
    this.host.count(ok ? 'readsOk' : 'readsFailed');
    this.opDone(c);
  }

  private opDone(c: Client): void {
    c.op = null;
    if (this.stopped) {
      c.token++;
      c.servedBy = 0;
      return;
    }
    this.wake(c, this.rng.int(this.p.thinkMs + 1));
  }
}
