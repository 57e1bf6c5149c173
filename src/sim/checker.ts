// The simulator's safety checkers (Raft paper Figure 3 and §5.4, thesis §6.4). Each check is
// incremental: it runs when the state it inspects changes (an election, a Ready's entries, a
// commit, an apply, a crash), which is after every event that could break it, and costs what
// changed rather than the whole log. A periodic full comparison of the logs backs them up.

import type { Entry } from '../raft/index.js';

export type ViolationKind =
  | 'election-safety'
  | 'log-matching'
  | 'leader-completeness'
  | 'state-machine-safety'
  | 'committed-lost'
  | 'stale-read'
  /** A leader's lease held while another node had been elected in a later term (§6.4). */
  | 'lease-overlap'
  | 'exactly-once'
  | 'early-ack'
  | 'linearizability'
  /** A node's configuration is not one its committed log holds (membership.ts). */
  | 'configuration'
  /** The ranges' newest descriptors overlap or leave a gap (range-checks.ts). */
  | 'range-map'
  /** A range's voters fell below its replicas, or rose past one more, during a move. */
  | 'range-replicas'
  /** A node runs a range it gave up (range-checks.ts). */
  | 'retired-serving'
  /** A map a node's meta machine applied overlaps, leaves a gap or takes a generation back. */
  | 'meta-map'
  /** Once settled, the meta map does not agree with the ranges' own descriptors (sim-meta.ts). */
  | 'meta-agreement'
  /**
   * Once settled, a node runs a range split off range 0 that the map does not name it in, or
   * a node the map names does not run it (range-checks.ts, placementProblem).
   */
  | 'placement'
  | 'liveness'
  | 'core-failure';

export interface Violation {
  readonly kind: ViolationKind;
  readonly message: string;
  readonly timeMs: number;
}

const decoder = new TextDecoder();
const textCache = new WeakMap<Uint8Array, string>();

/** The identity of an entry's content, for comparisons across nodes. */
export function entryKey(e: Entry): string {
  if (e.type === 'noop') return `${e.term}|noop`;
  let text = textCache.get(e.data);
  if (text === undefined) {
    text = decoder.decode(e.data);
    textCache.set(e.data, text);
  }
  return `${e.term}|${text}`;
}

/** A read-only view of one node's log, for the checks that compare logs. */
export interface LogView {
  readonly id: number;
  readonly firstIndex: number;
  readonly lastIndex: number;
  termAt(index: number): number | undefined;
  entryAt(index: number): Entry | undefined;
}

/** A read-only view of one node's disk, for the durability check. */
export interface DiskView {
  readonly id: number;
  holds(index: number, term: number): boolean;
}

export class SafetyChecker {
  /** Virtual time stamped on violations; the simulation keeps it current. */
  nowMs = 0;

  /**
   * One checker watches one Raft group. With several groups, each has its own checker, all
   * reporting into one list, each message prefixed with its `label` (the group).
   */
  constructor(
    readonly violations: Violation[] = [],
    private readonly label = '',
  ) {}

  private readonly leaders = new Map<number, number>();
  private highestLeaderTerm = 0;
  /** Lease overlaps already reported, as node/term: one report each. */
  private readonly leaseReported = new Set<string>();
  /** `${index}:${term}` -> the entry's content and the term of the entry before it. */
  private readonly seen = new Map<string, { key: string; prevTerm: number | undefined }>();
  /** Entries known committed, by index (index 0 unused). */
  private readonly committed: (string | undefined)[] = [];
  private readonly committedTerms: (number | undefined)[] = [];
  private maxCommittedIndex = 0;
  private readonly applied: (string | undefined)[] = [];
  private readonly snapshots = new Map<number, string>();

  get maxCommitted(): number {
    return this.maxCommittedIndex;
  }

  report(kind: ViolationKind, message: string): void {
    this.violations.push({ kind, message: this.label + message, timeMs: this.nowMs });
  }

  /** Election safety (Figure 3): at most one leader per term. */
  onLeader(node: number, term: number): void {
    const other = this.leaders.get(term);
    if (other !== undefined && other !== node) {
      this.report('election-safety', `nodes ${other} and ${node} both lead term ${term}`);
    }
    this.leaders.set(term, node);
    if (term > this.highestLeaderTerm) this.highestLeaderTerm = term;
  }

  /**
   * Lease safety (thesis §6.4): while a leader's lease holds it answers reads alone, so no
   * other node may have been elected in a later term by then. Checked against the lease as
   * the node's own clock says it stands, so a lease counted too long shows even when no read
   * happened to fall into the overlap.
   */
  checkLease(node: number, term: number, holdsNow: boolean): void {
    if (!holdsNow || term >= this.highestLeaderTerm) return;
    const key = `${node}/${term}`;
    if (this.leaseReported.has(key)) return;
    this.leaseReported.add(key);
    this.report(
      'lease-overlap',
      `node ${node}'s lease from term ${term} still holds, but node ${String(this.leaders.get(this.highestLeaderTerm))} was elected in term ${this.highestLeaderTerm}`,
    );
  }

  /**
   * Log matching (Figure 3), checked as entries enter any log: an (index, term) pair names one
   * entry content and one predecessor term, everywhere. By induction on the index this gives
   * "same index and term implies identical logs up to there".
   */
  onLogEntries(node: number, entries: readonly Entry[], prevTerm: number | undefined): void {
    let prev = prevTerm;
    for (const e of entries) {
      const id = `${e.index}:${e.term}`;
      const key = entryKey(e);
      const known = this.seen.get(id);
      if (known === undefined) {
        this.seen.set(id, { key, prevTerm: prev });
      } else if (known.key !== key) {
        this.report('log-matching', `node ${node} has ${id} = ${key}, elsewhere ${known.key}`);
      } else if (prev !== undefined && known.prevTerm !== undefined && known.prevTerm !== prev) {
        this.report(
          'log-matching',
          `node ${node} has ${id} after term ${prev}, elsewhere after term ${known.prevTerm}`,
        );
      }
      prev = e.term;
    }
  }

  /** A node reported commit index `commit`; `lookup` reads its log. */
  onCommit(node: number, commit: number, lookup: (index: number) => Entry | undefined): void {
    for (let i = this.maxCommittedIndex + 1; i <= commit; i++) {
      const e = lookup(i);
      if (e !== undefined) this.markCommitted(node, e);
    }
    if (commit > this.maxCommittedIndex) this.maxCommittedIndex = commit;
  }

  private markCommitted(node: number, e: Entry): void {
    const key = entryKey(e);
    const known = this.committed[e.index];
    if (known === undefined) {
      this.committed[e.index] = key;
      this.committedTerms[e.index] = e.term;
    } else if (known !== key) {
      this.report(
        'committed-lost',
        `node ${node} committed ${key} at ${e.index}, but ${known} was committed there`,
      );
    }
  }

  /**
   * A node's disk is about to store `e`. Replacing a committed entry can be legitimate (a
   * Ready taken before a truncation is still written, then replaced by the next one), so this
   * returns whether the caller must recheck that index's durability after the write.
   */
  overwritesCommitted(e: Entry): boolean {
    const known = this.committed[e.index];
    return known !== undefined && known !== entryKey(e);
  }

  /** State machine safety (Figure 3): every node applies the same entry at an index. */
  onApply(node: number, e: Entry): boolean {
    const key = entryKey(e);
    const known = this.applied[e.index];
    if (known !== undefined && known !== key) {
      this.report(
        'state-machine-safety',
        `node ${node} applied ${key} at ${e.index}, another node applied ${known}`,
      );
    }
    if (e.index > this.maxCommittedIndex) this.maxCommittedIndex = e.index;
    this.markCommitted(node, e);
    this.applied[e.index] = key;
    return known === undefined;
  }

  /** Two snapshots at the same index must be the same state machine image. */
  onSnapshot(node: number, index: number, image: string): void {
    const known = this.snapshots.get(index);
    if (known === undefined) this.snapshots.set(index, image);
    else if (known !== image) {
      this.report('state-machine-safety', `node ${node} has a different state at ${index}`);
    }
  }

  /** Leader completeness (§5.4.1): a new leader holds every entry committed before its term. */
  checkLeaderCompleteness(log: LogView, term: number): void {
    for (let i = Math.max(1, log.firstIndex); i <= this.maxCommittedIndex; i++) {
      const want = this.committedTerms[i];
      if (want === undefined) continue;
      const have = log.termAt(i);
      if (have !== want) {
        this.report(
          'leader-completeness',
          `leader ${log.id} of term ${term} has term ${have ?? 'none'} at committed index ${i} (committed term ${want})`,
        );
        return;
      }
    }
  }

  /**
   * Committed entries are never lost: each is durable on a majority at all times, so any
   * majority that elects the next leader includes a node that still has it after restarting.
   */
  checkDurable(
    disks: readonly DiskView[],
    indexes?: readonly number[],
    /** Whether the disks that hold entry `i` suffice; by default a majority of all of them. */
    enough?: (i: number, holds: (id: number) => boolean) => boolean,
  ): void {
    const need = Math.floor(disks.length / 2) + 1;
    const count = indexes?.length ?? this.maxCommittedIndex;
    for (let k = 0; k < count; k++) {
      const i = indexes === undefined ? k + 1 : (indexes[k] as number);
      const term = this.committedTerms[i];
      if (term === undefined) continue;
      let held = 0;
      for (const d of disks) if (d.holds(i, term)) held++;
      const lost =
        enough === undefined
          ? held < need
          : !enough(i, (id) => disks.find((d) => d.id === id)?.holds(i, term) ?? false);
      if (lost) {
        this.report(
          'committed-lost',
          `committed entry ${i} (term ${term}) is durable on only ${held} of ${disks.length} disks${enough === undefined ? '' : ', no quorum of the configuration that committed it'}`,
        );
        return;
      }
    }
  }

  /** Full log matching over every pair of logs: the periodic backstop of onLogEntries. */
  checkLogsPairwise(logs: readonly LogView[]): void {
    for (let a = 0; a < logs.length; a++) {
      for (let b = a + 1; b < logs.length; b++) {
        const x = logs[a] as LogView;
        const y = logs[b] as LogView;
        if (!this.pairMatches(x, y)) return;
      }
    }
  }

  private pairMatches(x: LogView, y: LogView): boolean {
    const lo = Math.max(x.firstIndex, y.firstIndex);
    let agreed = false;
    for (let i = Math.min(x.lastIndex, y.lastIndex); i >= lo; i--) {
      const ex = x.entryAt(i);
      const ey = y.entryAt(i);
      if (ex === undefined || ey === undefined) continue;
      if (!agreed && ex.term !== ey.term) continue;
      agreed = true;
      if (entryKey(ex) !== entryKey(ey)) {
        this.report(
          'log-matching',
          `nodes ${x.id} and ${y.id} agree on a later index but differ at ${i}: ${entryKey(ex)} vs ${entryKey(ey)}`,
        );
        return false;
      }
    }
    return true;
  }
}

/** A completed ReadIndex read, as the client checker needs it. */
export interface ReadRecord {
  readonly node: number;
  readonly key: string;
  readonly value: string | undefined;
  /** The highest commit index observed anywhere when the read was asked. */
  readonly askedCommit: number;
}

/** A client write as the client checker identifies it: its value is unique to it. */
export interface WriteRecord {
  readonly c: number;
  readonly s: number;
  readonly k: string;
  readonly v: string;
}

/**
 * What clients were told, against what the replicated state machine did. Writes are
 * identified by their unique values and placed by the index at which they took effect.
 *
 * - Linearizable reads (thesis §6.4): a read may not return a value older than a write that
 *   committed before the read was asked.
 * - Exactly once (thesis §6.3): a write retried after its answer was lost takes effect once.
 * - Acknowledged means committed (§5.3): a client told its write succeeded must find it
 *   already applied, hence committed; an acknowledgement given earlier can be lost with the
 *   leader that gave it.
 */
export class ClientChecker {
  private readonly effectiveAt = new Map<string, number>();
  /** The group of each write's effect (ranges: a key's writes move with it across splits). */
  private readonly effectiveIn = new Map<string, number>();
  private readonly writesByKey = new Map<string, number[]>();
  private readonly completed: ReadRecord[] = [];

  constructor(private readonly safety: SafetyChecker) {}

  /** A write took effect at `index` on some node (each node that applies the index says so). */
  onWrite(w: WriteRecord, index: number, group = 0): void {
    const earlier = this.effectiveAt.get(w.v);
    const earlierGroup = this.effectiveIn.get(w.v) ?? 0;
    if (earlier === index && earlierGroup === group) return;
    if (earlier !== undefined) {
      const where = (g: number, i: number): string => (g === 0 ? `${i}` : `${i} of range ${g}`);
      this.safety.report(
        'exactly-once',
        `client ${w.c} write #${w.s} (${w.k}=${w.v}) took effect at ${where(earlierGroup, earlier)} and again at ${where(group, index)}`,
      );
      return;
    }
    this.effectiveAt.set(w.v, index);
    if (group !== 0) this.effectiveIn.set(w.v, group);
    let list = this.writesByKey.get(w.k);
    if (list === undefined) {
      list = [];
      this.writesByKey.set(w.k, list);
    }
    list.push(index);
  }

  /** The client was told `w` succeeded. */
  onAck(c: number, w: WriteRecord): void {
    if (!this.effectiveAt.has(w.v)) {
      this.safety.report(
        'early-ack',
        `client ${c} was told write #${w.s} (${w.k}=${w.v}) succeeded, but no node has applied it`,
      );
    }
  }

  onRead(read: ReadRecord): void {
    // Reads that pass now are kept: a write at or below askedCommit may take effect later.
    if (this.check(read)) this.completed.push(read);
  }

  /** Rechecks every read once all writes are known. */
  finish(): void {
    for (const r of this.completed) if (!this.check(r)) return;
  }

  private check(r: ReadRecord): boolean {
    const got = r.value === undefined ? 0 : this.effectiveAt.get(r.value);
    if (got === undefined) {
      this.safety.report(
        'stale-read',
        `node ${r.node} read ${r.key}=${r.value} that no write made`,
      );
      return false;
    }
    for (const w of this.writesByKey.get(r.key) ?? []) {
      if (w > got && w <= r.askedCommit) {
        this.safety.report(
          'stale-read',
          `node ${r.node} read ${r.key}=${r.value ?? '(unset)'} (written at ${got}) though the write at ${w} committed before the read was asked (commit ${r.askedCommit})`,
        );
        return false;
      }
    }
    return true;
  }
}
