// Simulated clients, going through the calls the product's backend makes (node.ts,
// `backend()`): a write is encoded with the client's session and the node's clock, proposed
// to the runtime, and its result mapped as the API maps it; a read waits for the runtime's
// linearizableRead and then reads the node's state machine. Each client runs one operation
// at a time and retries a write with the same session sequence number until it is answered
// (Raft thesis §6.3), so an answer lost to a timeout, a leadership change or a crash is
// retried, and the session must make the retry apply once.

import type { Rng } from '../raft/index.js';
import { FlotillaError } from '../base/errors.js';
import type { ClientChecker, SafetyChecker } from './checker.js';
import type { ClientHistory, OpHandle } from './history.js';
import { readValue, writeTxn, type ClientWrite, type WriteSession } from './ops.js';
import type { Profile } from './profile.js';
import type { SimNode } from './sim-node.js';
import type { SimEvent } from './types.js';

export interface WorkloadHost {
  readonly nowMs: number;
  readonly checker: SafetyChecker;
  readonly clients: ClientChecker;
  readonly history: ClientHistory;
  schedule(delayMs: number, event: SimEvent): void;
  upNodes(): SimNode[];
  count(what: 'writesDone' | 'readsOk' | 'readsFailed' | 'retries'): void;
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
  op: PendingWrite | PendingRead | null;
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
      });
    }
  }

  /** How long one attempt waits for its answer (three election timeouts). */
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
        parts.push(`c${c.id} write #${c.op.write.s} (${c.op.attempts} attempts)`);
      else if (c.op?.kind === 'read') parts.push(`c${c.id} read ${c.op.key}`);
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
        c.target = 1 + this.rng.int(this.p.nodes);
        this.wake(c, this.p.tickMs);
      }
    }
  }

  private issue(c: Client): void {
    const key = `k${this.rng.int(this.p.keys)}`;
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
    const askedCommit = this.host.checker.maxCommitted;
    const recorded = this.host.history.invokeRead(c.id, key, this.host.nowMs);
    c.op = { kind: 'read', key, askedCommit, recorded };
    const token = ++c.token;
    c.servedBy = node.id;
    const kv = node.kv;
    // Drawn only when lease reads are on, so that other seeds draw what they always did.
    const lease = this.p.leaseReadRatio > 0 && this.rng.float() < this.p.leaseReadRatio;
    node.service.readBarrier({ timeoutMs: this.timeoutMs(), lease }).then(
      () => {
        if (c.token !== token) return;
        this.guard(() => {
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
