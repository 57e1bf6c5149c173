// Simulated clients. Each runs one operation at a time (so a session's sequence numbers
// dedupe retries, Raft thesis §6.3): a write retried until it commits, or a ReadIndex read
// asked of any node, which the read checker judges against the writes committed before it.

import type { Rng } from '../raft/index.js';
import type { ReadChecker, SafetyChecker } from './checker.js';
import { encodeOp, type KvOp } from './kv.js';
import type { Profile } from './profile.js';
import type { SimNode } from './sim-node.js';
import type { SimEvent } from './simulation.js';

export interface WorkloadHost {
  readonly nowMs: number;
  readonly checker: SafetyChecker;
  readonly reads: ReadChecker;
  schedule(delayMs: number, event: SimEvent): void;
  node(id: number): SimNode;
  upNodes(): SimNode[];
  count(what: 'writesDone' | 'readsOk' | 'readsFailed'): void;
}

interface PendingWrite {
  readonly kind: 'write';
  readonly seq: number;
  readonly data: Uint8Array;
  attempts: number;
}

interface PendingRead {
  readonly kind: 'read';
  readonly requestId: number;
  readonly node: number;
  readonly key: string;
  readonly askedCommit: number;
}

interface Client {
  readonly id: number;
  seq: number;
  /** Bumped whenever the client's scheduled wake-up becomes stale. */
  token: number;
  target: number;
  op: PendingWrite | PendingRead | null;
}

export class Workload {
  private readonly clients: Client[] = [];
  private readonly readOwner = new Map<number, number>();
  private nextRequestId = 0;
  private stopped = false;

  constructor(
    private readonly p: Profile,
    private readonly rng: Rng,
    private readonly host: WorkloadHost,
  ) {
    for (let id = 1; id <= p.clients; id++) {
      this.clients.push({ id, seq: 0, token: 0, target: 1 + rng.int(p.nodes), op: null });
    }
  }

  private timeoutMs(): number {
    return this.p.tickMs * this.p.electionTicks * 3;
  }

  /** Generous bound on how long a retried write may take once the cluster is healthy. */
  retryBoundMs(): number {
    return 20 * this.timeoutMs();
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
        parts.push(`c${c.id} write #${c.op.seq} (${c.op.attempts} attempts)`);
      else if (c.op?.kind === 'read') parts.push(`c${c.id} read ${c.op.requestId}`);
    }
    return parts.join(', ');
  }

  private wake(c: Client, delayMs: number): void {
    c.token++;
    this.host.schedule(delayMs, { kind: 'client', client: c.id, token: c.token });
  }

  onClientEvent(id: number, token: number): void {
    const c = this.clients[id - 1];
    if (c === undefined || c.token !== token) return;
    if (c.op === null) {
      if (!this.stopped) this.issue(c);
    } else if (c.op.kind === 'write') {
      this.attemptWrite(c, c.op);
    } else {
      // The read got no answer in time: give up on it (a failed read is never checked).
      this.host.node(c.op.node).forgetRead(c.op.requestId);
      this.finishRead(c, false);
    }
  }

  private issue(c: Client): void {
    const key = `k${this.rng.int(this.p.keys)}`;
    if (this.rng.float() < this.p.readRatio) {
      this.issueRead(c, key);
      return;
    }
    c.seq++;
    const op: KvOp = { c: c.id, s: c.seq, k: key, v: `c${c.id}.${c.seq}` };
    const write: PendingWrite = { kind: 'write', seq: c.seq, data: encodeOp(op), attempts: 0 };
    c.op = write;
    this.attemptWrite(c, write);
  }

  private attemptWrite(c: Client, w: PendingWrite): void {
    const up = this.host.upNodes();
    if (up.length === 0) {
      this.wake(c, this.p.tickMs * 5);
      return;
    }
    let target = up.find((n) => n.id === c.target);
    target ??= up[this.rng.int(up.length)] as SimNode;
    w.attempts++;
    const r = target.raft.propose(w.data);
    target.pump();
    if (r.ok) {
      this.wake(c, this.timeoutMs());
      return;
    }
    // Follow the leader hint (NOT_LEADER); otherwise try someone else after a pause.
    c.target = r.error.leader !== 0 ? r.error.leader : 1 + this.rng.int(this.p.nodes);
    this.wake(c, this.p.tickMs * (r.error.code === 'NOT_LEADER' ? 1 : 2));
  }

  private issueRead(c: Client, key: string): void {
    const up = this.host.upNodes();
    if (up.length === 0) {
      this.wake(c, this.p.tickMs * 5);
      return;
    }
    const node = up[this.rng.int(up.length)] as SimNode;
    const requestId = ++this.nextRequestId;
    const askedCommit = this.host.checker.maxCommitted;
    c.op = { kind: 'read', requestId, node: node.id, key, askedCommit };
    this.readOwner.set(requestId, c.id);
    if (!node.read(requestId, key)) {
      this.finishRead(c, false);
      return;
    }
    this.wake(c, this.timeoutMs());
  }

  onApplied(op: KvOp): void {
    const c = this.clients[op.c - 1];
    if (c?.op?.kind !== 'write' || c.op.seq !== op.s) return;
    this.host.count('writesDone');
    this.opDone(c);
  }

  onReadDone(node: number, requestId: number, ok: boolean, value: string | undefined): void {
    const c = this.clients[(this.readOwner.get(requestId) ?? 0) - 1];
    if (c?.op?.kind !== 'read' || c.op.requestId !== requestId) return;
    if (ok) {
      this.host.reads.onRead({ node, key: c.op.key, value, askedCommit: c.op.askedCommit });
    }
    this.finishRead(c, ok);
  }

  /** The node serving the read crashed. */
  onReadLost(requestId: number): void {
    const c = this.clients[(this.readOwner.get(requestId) ?? 0) - 1];
    if (c?.op?.kind === 'read' && c.op.requestId === requestId) this.finishRead(c, false);
  }

  private finishRead(c: Client, ok: boolean): void {
    if (c.op?.kind === 'read') this.readOwner.delete(c.op.requestId);
    this.host.count(ok ? 'readsOk' : 'readsFailed');
    this.opDone(c);
  }

  private opDone(c: Client): void {
    c.op = null;
    if (this.stopped) {
      c.token++;
      return;
    }
    this.wake(c, this.rng.int(this.p.thinkMs + 1));
  }
}
