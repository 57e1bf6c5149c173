// The clusters under test, started as real processes on 127.0.0.1 with data under one temp
// directory (same disk for both systems, fsync on for both: Flotilla's WAL syncs every batch
// and etcd syncs its WAL unless --unsafe-no-fsync, which we never pass).
//
// Both systems sit behind one interface so every scenario drives them the same way.

import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { cliEntry, initialClusterSpec, type LocalMember } from '../../src/cli/cluster.js';
import { EvalError } from './errors.js';
import { freePorts, sleep, type ProcessGroup } from './procs.js';

export type SystemName = 'flotilla' | 'etcd';

export interface ClusterOptions {
  readonly size: number;
  readonly dir: string;
  readonly procs: ProcessGroup;
  /** Extra environment for every member (e.g. NODE_OPTIONS=--cpu-prof for profiling). */
  readonly env?: NodeJS.ProcessEnv;
  /** Extra node flags before the entry point (e.g. --cpu-prof; NODE_OPTIONS refuses it). */
  readonly nodeArgs?: readonly string[];
  /** Flotilla members' log level (default warn); info logs elections, for failover runs. */
  readonly logLevel?: string;
}

/** What a scenario needs from a cluster, whichever system runs it. */
export interface BenchCluster {
  readonly system: SystemName;
  readonly size: number;
  readonly ids: readonly number[];
  clientUrl(id: number): string;
  /** The member's binary client protocol port; null when the system has none. */
  binaryPort(id: number): number | null;
  start(): Promise<void>;
  startMember(id: number): void;
  /** kill -9 one member (no flush, no hand-off). */
  killMember(id: number): Promise<void>;
  /** Deletes a stopped member's data directory's contents (it starts empty next time). */
  wipeMember(id: number): void;
  /** The member's process id while it runs. */
  pid(id: number): number | null;
  running(): number[];
  /** One member's view: whom it follows (0: nobody), whether it leads, its term; null if down. */
  view(id: number): Promise<MemberView | null>;
  /** Waits until every running member names the same running leader; returns its id. */
  waitForLeader(timeoutMs?: number): Promise<number>;
  /** Every member's peer (Raft) listening port, for counting bytes on the wire. */
  peerPorts(): number[];
  /** Prometheus text of one member's /metrics. */
  metricsText(id: number): Promise<string>;
  stop(): Promise<void>;
}

export interface MemberView {
  readonly leader: number;
  readonly leads: boolean;
  readonly term: number;
}

interface Member {
  readonly id: number;
  readonly peerPort: number;
  readonly clientPort: number;
  /** Flotilla's binary client protocol port (allocated for both systems, used by Flotilla). */
  readonly binaryPort: number;
  readonly dataDir: string;
}

abstract class ProcessCluster implements BenchCluster {
  abstract readonly system: SystemName;
  readonly ids: readonly number[];
  protected members: Member[] = [];
  protected readonly pids = new Map<number, number>();

  constructor(protected readonly o: ClusterOptions) {
    if (!Number.isInteger(o.size) || o.size < 1 || o.size > 9)
      throw new EvalError('EVAL_BAD_OPTION', `cluster size must be 1..9, got ${o.size}`);
    this.ids = Array.from({ length: o.size }, (_, i) => i + 1);
  }

  get size(): number {
    return this.o.size;
  }

  protected member(id: number): Member {
    const m = this.members.find((x) => x.id === id);
    if (m === undefined) throw new EvalError('EVAL_BAD_OPTION', `no member ${id}`);
    return m;
  }

  clientUrl(id: number): string {
    return `http://127.0.0.1:${this.member(id).clientPort}`;
  }

  binaryPort(_id: number): number | null {
    return null;
  }

  async start(): Promise<void> {
    const ports = await freePorts(this.o.size * 3);
    this.members = this.ids.map((id, i) => ({
      id,
      peerPort: ports[3 * i] as number,
      clientPort: ports[3 * i + 1] as number,
      binaryPort: ports[3 * i + 2] as number,
      dataDir: join(this.o.dir, `${this.system}-${this.o.size}-m${id}`),
    }));
    for (const m of this.members) mkdirSync(m.dataDir, { recursive: true });
    for (const id of this.ids) this.startMember(id);
    await this.waitForLeader(30_000);
  }

  protected abstract spawnArgs(m: Member): { command: string; args: string[] };

  startMember(id: number): void {
    const m = this.member(id);
    const { command, args } = this.spawnArgs(m);
    const pid = this.o.procs.spawn({
      name: `${this.system} member ${id}`,
      command,
      args,
      logPath: `${m.dataDir}.log`,
      env: { ...process.env, ...this.o.env },
    });
    this.pids.set(id, pid);
  }

  async killMember(id: number): Promise<void> {
    const pid = this.pids.get(id);
    if (pid === undefined) return;
    this.pids.delete(id);
    await this.o.procs.kill(pid, 'SIGKILL');
  }

  wipeMember(id: number): void {
    if (this.pids.has(id)) throw new EvalError('EVAL_BAD_OPTION', `member ${id} is running`);
    const dir = this.member(id).dataDir;
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
  }

  pid(id: number): number | null {
    return this.pids.get(id) ?? null;
  }

  peerPorts(): number[] {
    return this.members.map((m) => m.peerPort);
  }

  running(): number[] {
    return this.ids.filter((id) => {
      const pid = this.pids.get(id);
      return pid !== undefined && this.o.procs.isRunning(pid);
    });
  }

  abstract view(id: number): Promise<MemberView | null>;

  async waitForLeader(timeoutMs = 15_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const among = this.running();
      const views = await Promise.all(among.map((id) => this.view(id)));
      const leaders = new Set(views.map((v) => v?.leader ?? 0));
      const leader = [...leaders][0] ?? 0;
      const ok =
        leaders.size === 1 &&
        among.includes(leader) &&
        views.every((v) => v !== null) &&
        views[among.indexOf(leader)]?.leads === true;
      if (ok) return leader;
      await sleep(20);
    }
    throw new EvalError(
      'EVAL_NO_LEADER',
      `${this.system} (${this.size} members): no agreed leader within ${timeoutMs} ms; logs under ${this.o.dir}`,
    );
  }

  async metricsText(id: number): Promise<string> {
    const res = await fetch(`${this.clientUrl(id)}/metrics`, {
      signal: AbortSignal.timeout(5_000),
    });
    return res.text();
  }

  async stop(): Promise<void> {
    await Promise.all(
      [...this.pids.values()].map((pid) => this.o.procs.kill(pid, 'SIGTERM', 10_000)),
    );
    this.pids.clear();
  }
}

export interface FlotillaTiming {
  readonly tickMs: number;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
}

/** Flotilla's defaults: 10 ms ticks, election 15 ticks (randomised 150–300 ms), heartbeat 50 ms. */
export const flotillaDefaultTiming: FlotillaTiming = {
  tickMs: 10,
  electionTicks: 15,
  heartbeatTicks: 5,
};

export class FlotillaCluster extends ProcessCluster {
  readonly system = 'flotilla';

  constructor(
    o: ClusterOptions,
    private readonly timing: FlotillaTiming = flotillaDefaultTiming,
  ) {
    super(o);
  }

  private localMembers(): LocalMember[] {
    return this.members.map((m) => ({
      id: m.id,
      peer: `127.0.0.1:${m.peerPort}`,
      client: `http://127.0.0.1:${m.clientPort}`,
      dataDir: m.dataDir,
    }));
  }

  protected spawnArgs(m: Member): { command: string; args: string[] } {
    const t = this.timing;
    return {
      command: process.execPath,
      args: [
        ...(this.o.nodeArgs ?? []),
        cliEntry(),
        'start',
        ...['--id', String(m.id), '--data-dir', m.dataDir],
        ...['--initial-cluster', initialClusterSpec(this.localMembers())],
        ...['--cluster-id', 'bench', '--storage', 'wal', '--log-level', this.o.logLevel ?? 'warn'],
        ...['--tick-ms', String(t.tickMs), '--election-ticks', String(t.electionTicks)],
        ...['--heartbeat-ticks', String(t.heartbeatTicks)],
        ...['--client-protocol-port', String(m.binaryPort)],
      ],
    };
  }

  override binaryPort(id: number): number | null {
    return this.member(id).binaryPort;
  }

  async view(id: number): Promise<MemberView | null> {
    try {
      const res = await fetch(`${this.clientUrl(id)}/v1/status`, {
        signal: AbortSignal.timeout(1_000),
      });
      if (!res.ok) return null;
      const s = (await res.json()) as { leader: number; role: string; term: number };
      return { leader: s.leader, leads: s.role === 'leader', term: s.term };
    } catch {
      return null;
    }
  }
}

export interface EtcdTiming {
  readonly heartbeatMs: number;
  readonly electionMs: number;
}

/**
 * etcd randomises its election timeout in [election, 2 × election) like Flotilla, so 150 ms
 * gives the paper's 150–300 ms; etcd refuses a heartbeat above election/5, and 10 ms matches
 * Flotilla's tick.
 */
export const etcdDefaultTiming: EtcdTiming = { heartbeatMs: 10, electionMs: 150 };

export class EtcdCluster extends ProcessCluster {
  readonly system = 'etcd';
  /** etcd member ids (uint64 as decimal strings) learnt from each member's own status. */
  private readonly memberIds = new Map<string, number>();

  constructor(
    o: ClusterOptions,
    private readonly timing: EtcdTiming = etcdDefaultTiming,
  ) {
    super(o);
  }

  protected spawnArgs(m: Member): { command: string; args: string[] } {
    const peer = (x: Member): string => `http://127.0.0.1:${x.peerPort}`;
    const client = `http://127.0.0.1:${m.clientPort}`;
    return {
      command: 'etcd',
      args: [
        ...['--name', `m${m.id}`, '--data-dir', m.dataDir],
        ...['--listen-client-urls', client, '--advertise-client-urls', client],
        ...['--listen-peer-urls', peer(m), '--initial-advertise-peer-urls', peer(m)],
        '--initial-cluster',
        this.members.map((x) => `m${x.id}=${peer(x)}`).join(','),
        ...['--initial-cluster-state', 'new', '--initial-cluster-token', 'bench'],
        ...['--heartbeat-interval', String(this.timing.heartbeatMs)],
        ...['--election-timeout', String(this.timing.electionMs)],
        ...['--quota-backend-bytes', String(8 * 1024 ** 3)],
        ...['--logger', 'zap', '--log-level', this.o.logLevel ?? 'warn'],
      ],
    };
  }

  async view(id: number): Promise<MemberView | null> {
    try {
      const res = await fetch(`${this.clientUrl(id)}/v3/maintenance/status`, {
        method: 'POST',
        body: '{}',
        signal: AbortSignal.timeout(1_000),
      });
      if (!res.ok) return null;
      const s = (await res.json()) as {
        header?: { member_id?: string };
        leader?: string;
        raftTerm?: string;
      };
      const self = s.header?.member_id;
      if (self === undefined) return null;
      this.memberIds.set(self, id);
      const leader = s.leader === undefined ? 0 : (this.memberIds.get(s.leader) ?? -1);
      return { leader, leads: s.leader === self, term: Number(s.raftTerm ?? 0) };
    } catch {
      return null;
    }
  }
}

export function makeCluster(system: SystemName, o: ClusterOptions): BenchCluster {
  return system === 'flotilla' ? new FlotillaCluster(o) : new EtcdCluster(o);
}
