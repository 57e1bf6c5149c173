// One simulated server: the production host and RaftRuntime driving the production key-value
// state machine inside the exactly-once session layer, reached through the production
// key-value service, on a virtual clock, a simulated network and a simulated disk. Everything asynchronous in it completes from an event in the simulator's
// queue (a timer, a disk write, a delivery), so a seed replays exactly. A crash abandons the
// host without closing it: its timers and disk completions are dropped, its promises never
// settle, and a new host and runtime start from what the disk kept.

import { APPLY_LIMITS } from '../base/limits.js';
import {
  createRng,
  RaftNode,
  type Entry,
  type Message,
  type RaftConfig,
  type Ready,
  type Recovery,
  type Rng,
} from '../raft/index.js';
import {
  isRefusal,
  type Clock,
  type GroupId,
  type HostTransport,
  type StateMachine,
} from '../host/contracts.js';
import { Host, NODE_BEAT_GROUP } from '../host/host.js';
import { RaftRuntime } from '../host/runtime.js';
import type { RuntimeEvent, RuntimeOptions } from '../host/runtime-options.js';
import { MemoryPartialSnapshots } from '../host/snapshot-transfer.js';
import { SessionMachine } from '../host/sessions.js';
import { KvStateMachine } from '../kv/machine.js';
import { KvService } from '../server/kv-service.js';
import { AutoCompactor } from '../server/compactor.js';
import { pino } from 'pino';
import { RangeGroups, type RangeGroup } from '../server/range-groups.js';
import { RangeRetirer } from '../server/range-retirer.js';
import { prepareRefusal } from '../server/range-replicas.js';
import { FlotillaError } from '../base/errors.js';
import type { RangeDirs } from '../server/range-dirs.js';
import type { RangeMachine } from '../ranges/range-machine.js';
import type { RangeDescriptor } from '../ranges/types.js';
import { FIRST_ALLOCATED_RANGE, FIRST_RANGE, META_GROUP, type RangeId } from '../ranges/types.js';
import { MetaStateMachine } from '../ranges/meta-machine.js';
import type { RangeMap } from '../ranges/range-map.js';
import { MetaService } from '../server/meta-service.js';
import { MapRepair } from '../server/range-map-repair.js';
import { NodeRecovery, nodeRecoveryParts } from '../server/node-recovery.js';
import type { MapRecordOptions } from '../server/range-admin.js';
import { SimMetaForwarder } from './sim-meta.js';
import type { LogView } from './checker.js';
import { SimError } from './errors.js';
import {
  decodeCompaction,
  decodeWrite,
  isReplicasEntry,
  isSplitEntry,
  SIM_KV_LIMITS,
  SIM_SESSION_LIMITS,
  type ClientWrite,
} from './ops.js';
import type { DiskIo, NodeDisk } from './sim-storage.js';
import { WalNodeDisk } from './wal-disk.js';

/** Revisions the simulated leaders keep behind the current one when they compact. */
const SIM_KEEP_REVISIONS = 16;

/** What a node needs from the simulation around it. */
/** Each call names the Raft group it concerns (0 unless the node runs ranges). */
export interface NodeHost {
  readonly nowMs: number;
  /** Schedules `node`'s callback `id` after `delayMs` of virtual time. */
  scheduleCallback(node: SimNode, kind: 'timer' | 'disk', delayMs: number, id: number): void;
  /** Virtual latency of the next disk write. */
  diskLatencyMs(): number;
  /** Sends a message; `attachment` carries the bytes of a `snapshot` message. */
  send(from: number, m: Message, attachment: Uint8Array | null, group: GroupId): void;
  onRuntimeEvent(node: SimNode, event: RuntimeEvent, group: GroupId): void;
  onReady(node: SimNode, raft: RaftNode, rd: Ready, group: GroupId): void;
  /** Committed entries the runtime took to apply during a write (RaftNode.takeCommitted). */
  onTaken(node: SimNode, entries: readonly Entry[], group: GroupId): void;
  /** A write is about to store `entry`; `afterPersist` follows once the write landed. */
  onPersist(node: SimNode, entry: Entry, group: GroupId): void;
  afterPersist(node: SimNode, group: GroupId): void;
  /** An entry was applied; `op` is the write it carries and whether it took effect. */
  onApply(
    node: SimNode,
    entry: Entry,
    op: ClientWrite | null,
    effective: boolean,
    group: GroupId,
  ): void;
  onSnapshot(node: SimNode, index: number, image: Uint8Array, group: GroupId): void;
  /** Node `to`'s meta service when node `from` can reach it now (meta only). */
  metaOf(from: number, to: number): MetaService | null;
  /** `node`'s meta machine applied a batch (or restored a snapshot) and now holds `map`. */
  onMetaApplied(node: SimNode, map: RangeMap | null): void;
  /** Reports a failure of the harness or of the code under test found off the event path. */
  fail(what: string, err: unknown): void;
}

/** Builds a core for group `group` (range 0, a range, or the meta group) of a node. */
export type NodeFactory = (config: RaftConfig, group: GroupId) => RaftNode;
export type RuntimeFactory = (options: RuntimeOptions) => Promise<RaftRuntime>;

/** The key-value store's group: the only one the simulated nodes run. */
export const SIM_GROUP: GroupId = 0;

export interface SimNodeOptions {
  readonly id: number;
  readonly voters: readonly number[];
  readonly runtime: Omit<
    RuntimeOptions,
    | 'id'
    | 'group'
    | 'voters'
    | 'storage'
    | 'send'
    | 'stateMachine'
    | 'clock'
    | 'rng'
    | 'onEvent'
    | 'storeRecovery'
    | 'createNode'
  >;
  readonly createNode: NodeFactory;
  readonly startRuntime: RuntimeFactory;
  readonly disk: NodeDisk;
  readonly seed: number;
  /** Virtual milliseconds per millisecond of this node's clock (clock drift). */
  readonly clockScale: number;
  readonly host: NodeHost;
  /**
   * Runs the key-value store as ranges (src/server/range-groups.ts): range 0 and every range
   * split off it are Raft groups on the node's one host, each with its WAL in its own
   * directory of the node's disk (which must then be the WAL disk).
   */
  readonly ranges?: boolean;
  readonly plantRange?: RangePlant;
  /** Sees the node's key-value machine (without ranges) before its group starts. */
  readonly plantKv?: KvPlant;
  /**
   * Ranges' replicas move (mover.ts): the node gives up the ranges it is no longer a replica
   * of, with the product's RangeRetirer, and starts at boot the ranges it was added to.
   */
  readonly moves?: boolean;
  /** Replaces how the node gives a range up; tests plant one that keeps the range serving. */
  readonly plantRetire?: RetirePlant;
  /** Planted: every range taken up starts recovering, whatever the node's record proves. */
  readonly plantTakeUpRecovering?: boolean;
  /**
   * Planted: a node that lost its data starts its ranges as full members (the product's
   * `unsafeSkipRangeRecovery`, given to its NodeRecovery); meta only.
   */
  readonly plantWipedRangesVote?: boolean;
  /**
   * Runs the meta group (the range map) beside the ranges, with the product's bootstrap and
   * map repair (sim-meta.ts); needs ranges.
   */
  readonly meta?: boolean;
  /** Sees each meta machine before its group starts; tests plant map bugs with it. */
  readonly plantMeta?: MetaPlant;
}

/** Sees a node's meta machine before its group starts. */
export type MetaPlant = (machine: MetaStateMachine) => void;

/** A node's meta group: the runtime, its machine, the product's service and the way to its leader. */
export interface SimMetaParts {
  readonly runtime: RaftRuntime;
  readonly machine: MetaStateMachine;
  readonly service: MetaService;
  readonly forwarder: SimMetaForwarder;
}

/** Gives range `id` up on a node, in place of RangeGroups.retire. */
export type RetirePlant = (id: RangeId, groups: RangeGroups, dirs: RangeDirs) => Promise<void>;

/** How often a simulated node's retirer looks at its ranges (the product's: 500 ms). */
const SIM_RETIRE_CHECK_MS = 200;
/** How long a range the node is in no configuration of may idle before it is given up. */
const SIM_ABANDON_AFTER_MS = 3_000;
/**
 * How long the map names this node in a range that never ran here before it takes it up (the
 * product's: two request timeouts, 10 s at the defaults; shorter here, so that seeds meet it).
 */
const SIM_TAKE_UP_AFTER_MS = 1_000;
/** How often a recovering node looks at its groups (the product's: 200 ms). */
const SIM_RECOVERY_CHECK_MS = 200;
/** How often the meta group's leader looks for a missing map (the product's: 500 ms). */
const SIM_META_CHECK_MS = 200;
/** How often each range's leader compares its range with the map (the product's: 2 s). */
const SIM_MAP_REPAIR_MS = 500;
/** The bound on one record in the map, and on a client's split record (the product's: the request timeout). */
export const SIM_META_RECORD_MS = 1_000;
/** A logger that writes nothing (the simulator's trace is its log). */
const silent = pino({ enabled: false });

/** Sees a node's key-value machine (without ranges) before its group starts. */
export type KvPlant = (kv: KvStateMachine, node: number) => void;

/** Sees each range's machine, and the session layer around it, before its group starts. */
export type RangePlant = (range: RangeMachine, sessions: SessionMachine) => void;

export class SimNode implements LogView {
  readonly id: number;
  readonly disk: NodeDisk;
  /** Incarnation: bumped by every crash so events of a dead incarnation are ignored. */
  gen = 0;
  /** Whether a runtime is running (started and not crashed). */
  up = false;
  /** Whether this incarnation is starting (recovering its storage, opening its runtime). */
  starting = false;
  private rt: RaftRuntime | null = null;
  private core: RaftNode | null = null;
  private sm: KvStateMachine | null = null;
  private svc: KvService | null = null;
  private handler: ((m: Message, attachment: Uint8Array | null, group: GroupId) => void) | null =
    null;
  /** Timer and disk completions of the current incarnation, by id. */
  private readonly callbacks = new Map<number, () => void>();
  private nextCallbackId = 1;
  private readonly seeds: Rng;
  readonly clock: Clock;
  /** The partial snapshot being received: part of the data directory, it survives a crash. */
  private partials = new MemoryPartialSnapshots();
  /** With ranges: each range group's partial snapshot, its core, and the node's ranges. */
  private rangePartials = new Map<GroupId, MemoryPartialSnapshots>();
  private readonly cores = new Map<GroupId, RaftNode>();
  private groups: RangeGroups | null = null;
  /** With moves: ranges being changed or given up here, one thing at a time per range. */
  readonly busy = new Set<RangeId>();
  /** Every incarnation's map repair, for the run's counts (repairCounts). */
  private readonly repairs: MapRepair[] = [];
  private rangeRetirer: RangeRetirer | null = null;
  private readonly services = new Map<GroupId, KvService>();
  private metaParts: SimMetaParts | null = null;

  constructor(private readonly opts: SimNodeOptions) {
    this.id = opts.id;
    this.disk = opts.disk;
    this.seeds = createRng(opts.seed);
    const host = opts.host;
    this.clock = {
      nowMs: () => host.nowMs / opts.clockScale,
      setTimeout: (fn, ms) => this.later('timer', Math.max(0, ms) * opts.clockScale, fn),
      clearTimeout: (handle) => {
        if (typeof handle === 'number') this.callbacks.delete(handle);
      },
    };
  }

  get runtime(): RaftRuntime {
    if (this.rt === null) throw new SimError('HARNESS', `node ${this.id} is down`);
    return this.rt;
  }

  /** The runtime's core, read (never stepped) by the checkers. */
  get raft(): RaftNode {
    if (this.core === null) throw new SimError('HARNESS', `node ${this.id} is down`);
    return this.core;
  }

  get kv(): KvStateMachine {
    if (this.sm === null) throw new SimError('HARNESS', `node ${this.id} is down`);
    return this.sm;
  }

  /** The write and read path the HTTP routes use (src/server/kv-service.ts). */
  get service(): KvService {
    if (this.svc === null) throw new SimError('HARNESS', `node ${this.id} is down`);
    return this.svc;
  }

  /**
   * Boots (or reboots) the production runtime over whatever the disk holds, as node.ts does:
   * the recovery flag comes from the identity file, and the runtime writes it back.
   */
  async start(): Promise<void> {
    const gen = this.gen;
    this.starting = true;
    try {
      await (this.opts.ranges === true ? this.bootRanges(gen) : this.boot(gen));
    } finally {
      if (gen === this.gen) this.starting = false;
    }
  }

  private async boot(gen: number): Promise<void> {
    // As every node decodes committed commands (the clients' limits are the service's).
    const kv = new KvStateMachine(APPLY_LIMITS);
    this.opts.plantKv?.(kv, this.id);
    const recovery = this.disk.recovery;
    let core: RaftNode | null = null;
    // The disk first, as node.ts opens storage first: the WAL's recovery runs here.
    // A wiped data directory lost its partial snapshot too.
    if (this.disk.isBlank()) this.partials = new MemoryPartialSnapshots();
    const storage = await this.disk.open(this.diskIo(SIM_GROUP));
    if (gen !== this.gen) return; // lost power while recovering
    const nodeHost = this.newHost();
    const { tickMs: _tickMs, ...groupOptions } = this.opts.runtime;
    const rt = await nodeHost.addGroup(
      SIM_GROUP,
      {
        ...groupOptions,
        raft: { ...this.opts.runtime.raft, ...(recovery === null ? {} : { recovery }) },
        voters: this.opts.voters,
        storage,
        partialSnapshots: this.partials,
        stateMachine: this.observe(new SessionMachine(kv, SIM_SESSION_LIMITS), kv, SIM_GROUP),
        rng: createRng(this.seeds.int(0x100000000)),
        storeRecovery: (r) => {
          this.disk.recovery = r;
        },
        createNode: (config) => (core = this.createCore(config, SIM_GROUP)),
      },
      { start: this.opts.startRuntime },
    );
    if (gen !== this.gen) return; // lost power while starting: this host is abandoned
    this.rt = rt;
    this.core = core;
    this.sm = kv;
    this.svc = this.compacting(rt, kv);
    this.up = true;
  }

  /**
   * The key-value group's service, with the leader's automatic compaction as node.ts runs it,
   * keeping few revisions so that compaction happens in every seed: replicas must agree on the
   * history it leaves (the snapshot images at one index are compared, history included).
   */
  private compacting(rt: RaftRuntime, kv: KvStateMachine): KvService {
    const svc = new KvService(rt, kv, SIM_KV_LIMITS, this.clock);
    new AutoCompactor({
      clock: this.clock,
      keepRevisions: SIM_KEEP_REVISIONS,
      keepMs: 0,
      checkEveryMs: 200,
      isLeader: () => rt.isLeader(),
      revision: () => kv.revision(),
      compacted: () => kv.compacted(),
      compact: async (revision) => {
        await svc.compact(revision);
      },
      // A compaction lost to a leader change or a crash is proposed again by the next leader.
      onError: () => undefined,
    }).start();
    return svc;
  }

  private diskIo(group: GroupId): DiskIo {
    const host = this.opts.host;
    return {
      later: (done) => this.later('disk', host.diskLatencyMs(), done),
      onEntry: (e) => host.onPersist(this, e, group),
      afterWrite: () => host.afterPersist(this, group),
      onSnapshot: (meta, data) => host.onSnapshot(this, meta.index, data, group),
    };
  }

  /**
   * Boots the node's ranges as a node that runs them would: range 0 on the cluster's voters,
   * then (from its state) every range split off it that this node replicates, each group with
   * its own WAL directory, recovery flag, partial snapshot and compaction.
   */
  private async bootRanges(gen: number): Promise<void> {
    const host = this.opts.host;
    const disk = this.disk;
    if (!(disk instanceof WalNodeDisk))
      throw new SimError('HARNESS', 'a node that runs ranges needs the WAL disk');
    if (disk.isBlank()) this.rangePartials = new Map();
    const nodeHost = this.newHost();
    const { tickMs: _tickMs, raft, ...settings } = this.opts.runtime;
    const moves = this.opts.moves === true;
    // As node.ts: the record read from the data directory before any group starts, and
    // brought in line with the directories a crash left (settle). The simulated disk never
    // loses one range's directory alone, so none is found lost (node.ts then recovers).
    const dirs = disk.openRangeDirs();
    // The first start: nothing stored, not even the identity file's flag.
    const firstStart = disk.recovery === null && disk.isBlank();
    dirs.settle();
    // With the meta group, the product's recovery of lost data (node-recovery.ts): every
    // group started while the node recovers starts recovering, and once the meta group caught
    // up the node starts the ranges its map gives it and learns from which range id its record
    // is whole again.
    const nodeRecovery = this.opts.meta === true ? this.nodeRecovery(disk) : null;
    const recoveryOf = (id: GroupId): Recovery | null =>
      nodeRecovery?.recoveryFor(id) === 'recovering'
        ? 'recovering'
        : (disk.groupRecovery(id) ?? (disk.lostGroups.has(id) ? 'recovering' : null));
    const groups = new RangeGroups({
      ...(moves
        ? {
            // A range directory deleted loses the partial snapshot kept in it too.
            dirs: {
              isRetired: (id) => dirs.isRetired(id),
              retire: (id) => dirs.retire(id),
              prepare: (id, generation) => dirs.prepare(id, generation),
              preparedAt: (id) => dirs.preparedAt(id),
              hold: (id) => dirs.hold(id),
              remove: (id) => {
                this.rangePartials.delete(id);
                disk.removeRange(dirs, id);
              },
            },
          }
        : {}),
      host: {
        id: this.id,
        removeGroup: (id) => nodeHost.removeGroup(id),
        addGroup: async (id, g) => {
          const sessions = g.stateMachine as SessionMachine;
          const range = sessions.inner as RangeMachine;
          this.opts.plantRange?.(range, sessions);
          let partials = this.rangePartials.get(id);
          if (partials === undefined) {
            partials = new MemoryPartialSnapshots();
            this.rangePartials.set(id, partials);
          }
          const recovery = recoveryOf(id);
          const rt = await nodeHost.addGroup(
            id,
            {
              ...g,
              // What RangeGroups sets of the core (a prepared copy starts recovering) over
              // the seed's; a recovery the disk stored over both, as node.ts's does.
              raft: { ...raft, ...g.raft, ...(recovery === null ? {} : { recovery }) },
              partialSnapshots: partials,
              stateMachine: this.observe(g.stateMachine, range.kv, id),
              rng: createRng(this.seeds.int(0x100000000)),
              storeRecovery: (r) => {
                disk.storeGroupRecovery(id, r);
                nodeRecovery?.groupStored(id, r);
              },
              createNode: (config) => {
                const core = this.createCore(config, id);
                if (gen === this.gen) this.cores.set(id, core);
                return core;
              },
            },
            { start: this.opts.startRuntime },
          );
          if (gen === this.gen) this.services.set(id, this.compacting(rt, range.kv));
          return rt;
        },
      },
      openStorage: (id) => disk.openGroup(id, this.diskIo(id)),
      settings,
      sessionLimits: SIM_SESSION_LIMITS,
      onError: (range, err) => {
        if (gen === this.gen) host.fail(`range ${range} on node ${this.id}`, err);
      },
    });
    this.groups = groups;
    const first = await groups.start(FIRST_RANGE, this.opts.voters);
    if (gen !== this.gen) return; // lost power while starting: this host is abandoned
    // As node-open.ts, once range 0's storage made the data directory (node.ts makes it
    // first), before any range may be taken up: no range is known never to have run here once
    // the data was lost, and every one is in a new data directory.
    if (nodeRecovery?.recovering ?? disk.recovery === 'recovering') dirs.setCompleteFrom(null);
    else if (firstStart) dirs.setCompleteFrom(FIRST_ALLOCATED_RANGE);
    if (nodeRecovery !== null) {
      // As node.ts: the meta group starts after range 0, before the ranges split off it.
      const meta = await this.bootMeta(gen, nodeHost, first.runtime, recoveryOf, nodeRecovery);
      if (gen !== this.gen || meta === null) return;
      this.metaParts = meta;
      const repair = this.mapRepair(meta, groups);
      this.repairs.push(repair);
      repair.start();
    }
    if (moves) {
      // As node.ts: the ranges splits started first, then those this node was added to.
      await groups.settled();
      if (gen !== this.gen) return;
      await groups.startHeld(dirs.held());
      if (gen !== this.gen) return;
      this.rangeRetirer = this.retirer(groups, dirs, nodeRecovery);
      this.rangeRetirer.start();
    }
    const meta = this.metaParts;
    // As node-groups.ts (startRecovery), with no queue group.
    if (nodeRecovery !== null && meta !== null)
      nodeRecovery.start(
        nodeRecoveryParts({
          ranges: groups,
          others: [{ id: META_GROUP, runtime: meta.runtime }],
          metaGroup: META_GROUP,
          metaMachine: meta.machine,
          dirs,
        }),
      );
    this.rt = first.runtime;
    this.core = this.cores.get(FIRST_RANGE) ?? null;
    this.sm = first.range.kv;
    this.svc = this.services.get(FIRST_RANGE) ?? null;
    this.up = true;
  }

  /**
   * Starts the meta group as node.ts does (group META_GROUP on every member, with the cluster's
   * voters, in its own WAL directory of the node's disk) and the product's MetaService, whose
   * leader bootstraps the map with range 0's voters.
   */
  private async bootMeta(
    gen: number,
    nodeHost: Host,
    first: RaftRuntime,
    recoveryOf: (id: GroupId) => Recovery | null,
    nodeRecovery: NodeRecovery,
  ): Promise<SimMetaParts | null> {
    const disk = this.disk as WalNodeDisk;
    const machine = new MetaStateMachine({ maxKeyBytes: APPLY_LIMITS.maxKeyBytes });
    this.opts.plantMeta?.(machine);
    const storage = await disk.openGroup(META_GROUP, this.diskIo(META_GROUP));
    if (gen !== this.gen) return null;
    let partials = this.rangePartials.get(META_GROUP);
    if (partials === undefined) {
      partials = new MemoryPartialSnapshots();
      this.rangePartials.set(META_GROUP, partials);
    }
    const recovery = recoveryOf(META_GROUP);
    const { tickMs: _tickMs, raft, ...settings } = this.opts.runtime;
    const runtime = await nodeHost.addGroup(
      META_GROUP,
      {
        ...settings,
        raft: { ...raft, ...(recovery === null ? {} : { recovery }) },
        voters: this.opts.voters,
        storage,
        partialSnapshots: partials,
        stateMachine: this.observeMeta(new SessionMachine(machine, SIM_SESSION_LIMITS), machine),
        rng: createRng(this.seeds.int(0x100000000)),
        storeRecovery: (r) => {
          disk.storeGroupRecovery(META_GROUP, r);
          nodeRecovery.groupStored(META_GROUP, r);
        },
        createNode: (config) => {
          const core = this.createCore(config, META_GROUP);
          if (gen === this.gen) this.cores.set(META_GROUP, core);
          return core;
        },
      },
      { start: this.opts.startRuntime },
    );
    if (gen !== this.gen) return null;
    const service = new MetaService({
      runtime,
      machine,
      clock: this.clock,
      firstRangeReplicas: () => first.status().voters,
      checkEveryMs: SIM_META_CHECK_MS,
      log: silent,
      gate: null,
    });
    service.start();
    const forwarder = new SimMetaForwarder(this.id, runtime, this.opts.host);
    return { runtime, machine, service, forwarder };
  }

  /** The product's map repair over this incarnation's ranges (its timers die with it). */
  private mapRepair(meta: SimMetaParts, groups: RangeGroups): MapRepair {
    return new MapRepair({
      selfId: this.id,
      lanes: {
        all: () =>
          groups.ranges().flatMap((id) => {
            const group = groups.group(id);
            return group === undefined ? [] : [{ id, group }];
          }),
      },
      meta: meta.service,
      metaForwarder: meta.forwarder,
      nodeAuthorization: undefined,
      busy: this.busy,
      clock: this.clock,
      checkEveryMs: SIM_MAP_REPAIR_MS,
      leaderCheckMs: 100,
      recordTimeoutMs: SIM_META_RECORD_MS,
      // As the product's (node-ranges.ts): two request timeouts.
      strayLearnerGraceMs: 2 * SIM_META_RECORD_MS,
      log: silent,
    });
  }

  /** This node's meta group, when it runs one and is up. */
  get meta(): SimMetaParts | null {
    return this.up ? this.metaParts : null;
  }

  /** What allocating an id and recording a split on this node need (range-admin.ts). */
  metaRecorder(): MapRecordOptions | null {
    const m = this.meta;
    if (m === null) return null;
    return {
      meta: m.service,
      metaForwarder: m.forwarder,
      clock: this.clock,
      recordTimeoutMs: SIM_META_RECORD_MS,
    };
  }

  /** A signal that aborts after `ms` of this node's clock (dropped with its incarnation). */
  signalAfter(ms: number): AbortSignal {
    const c = new AbortController();
    this.clock.setTimeout(
      () => c.abort(new DOMException(`No answer within ${ms} ms`, 'TimeoutError')),
      ms,
    );
    return c.signal;
  }

  /** Every group's runtime here (range 0, the ranges and the meta group), by group, when up. */
  runtimes(): [GroupId, RaftRuntime][] {
    const out: [GroupId, RaftRuntime][] = [];
    for (const g of this.groupIds()) {
      const rt = this.runtimeOf(g);
      if (rt !== undefined) out.push([g, rt]);
    }
    const meta = this.meta;
    if (meta !== null) out.push([META_GROUP, meta.runtime]);
    return out;
  }

  /** Group `group`'s runtime here (range 0, a range, or the meta group), when it runs. */
  runtimeOf(group: GroupId): RaftRuntime | undefined {
    if (!this.up) return undefined;
    if (group === META_GROUP && this.metaParts !== null) return this.metaParts.runtime;
    return group === SIM_GROUP ? (this.rt ?? undefined) : this.groups?.group(group)?.runtime;
  }

  /**
   * The node's recovery as node-groups.ts makes it: from the flag its identity file holds,
   * or `recovering` on a start after its data was lost (the harness's start-up rule sets
   * group 0's flag then), written back at once as node-open.ts does.
   */
  private nodeRecovery(disk: WalNodeDisk): NodeRecovery {
    const initial: Recovery =
      disk.nodeRecovery === 'recovering' || disk.recovery === 'recovering' ? 'recovering' : 'none';
    disk.nodeRecovery = initial;
    return new NodeRecovery({
      selfId: this.id,
      initial,
      store: (r) => {
        disk.nodeRecovery = r;
      },
      clock: this.clock,
      checkEveryMs: SIM_RECOVERY_CHECK_MS,
      log: silent,
      ...(this.opts.plantWipedRangesVote === true ? { unsafeSkipRangeRecovery: true } : {}),
    });
  }

  /** The product's retirer over this incarnation's ranges (its timers die with it). */
  private retirer(
    groups: RangeGroups,
    dirs: RangeDirs,
    recovery: NodeRecovery | null,
  ): RangeRetirer {
    const plant = this.opts.plantRetire;
    return new RangeRetirer({
      selfId: this.id,
      groups: {
        ranges: () => groups.ranges(),
        group: (id) => groups.group(id),
        retire: (id) => (plant === undefined ? groups.retire(id) : plant(id, groups, dirs)),
        pending: () => groups.pending(),
        isRetired: (id) => groups.isRetired(id),
      },
      dirs,
      // The simulated node serves a range through its group's service, dropped with the group.
      lanes: { forget: () => undefined },
      // The third rule (a map newer than the range's log) needs the meta group: without it, it rests.
      mapped: (id) => this.metaParts?.machine.map()?.get(id),
      // As range-replica-node.ts: nothing judged on a copy, nor taken up from a map, that a
      // recovering node has not caught up.
      ...(recovery === null
        ? {}
        : {
            recovering: (id: RangeId, runtime: RaftRuntime) =>
              recovery.groupRecovering({ id, runtime }),
            mapCurrent: () => recovery.mapCurrent(),
          }),
      busy: this.busy,
      // As the product's (range-replica-node.ts): a range the map names this node in that never
      // ran here (it missed the split and then left the parent) is prepared as a new replica.
      ...(this.opts.moves === true && this.opts.meta === true
        ? {
            takeUp: {
              map: () => this.metaParts?.machine.map()?.ranges() ?? [],
              afterMs: SIM_TAKE_UP_AFTER_MS,
              run: (d: RangeDescriptor) =>
                this.prepareRange(
                  d.id,
                  d,
                  d.replicas.filter((r) => r !== this.id),
                  this.opts.plantTakeUpRecovering !== true && dirs.neverRan(d.id),
                ),
            },
          }
        : {}),
      clock: this.clock,
      checkEveryMs: SIM_RETIRE_CHECK_MS,
      abandonAfterMs: SIM_ABANDON_AFTER_MS,
      log: silent,
    });
  }

  /** Whether this node gave range `id` up (recorded on its disk; moves only). */
  retired(id: RangeId): boolean {
    return this.disk instanceof WalNodeDisk && this.disk.rangeDirs.isRetired(id);
  }

  /** Prepares range `id` here as a new replica (the prepare route's work); moves only. */
  async prepareRange(
    id: RangeId,
    descriptor: RangeDescriptor,
    voters: readonly number[],
    neverRan = false,
  ): Promise<void> {
    const groups = this.groups;
    if (!this.up || groups === null || this.opts.moves !== true)
      throw new SimError('HARNESS', `node ${this.id} cannot prepare range ${id}`);
    // As RangeReplicas.prepare: one thing at a time per range, and the same refusals.
    if (this.busy.has(id))
      throw new FlotillaError(
        'RANGE_CHANGE_IN_PROGRESS',
        `Cannot prepare range ${id} on node ${this.id}: it is being changed or given up`,
      );
    const held = groups.group(id);
    const refused =
      held === undefined
        ? null
        : prepareRefusal(this.id, held.range.descriptor(), held.runtime.status(), descriptor);
    if (refused !== null) throw refused;
    this.busy.add(id);
    try {
      await groups.prepare(id, descriptor, voters, neverRan);
      this.rangeRetirer?.prepared(id);
    } finally {
      this.busy.delete(id);
    }
  }

  /**
   * What this node's map repairs did, every incarnation's summed: stray learners removed,
   * ranges whose voters they recorded, and of those the ones a learner's removal had marked.
   */
  repairCounts(): { straysRemoved: number; votersRecorded: number; marksRecorded: number } {
    const sum = (f: (r: MapRepair) => number): number => this.repairs.reduce((n, r) => n + f(r), 0);
    return {
      straysRemoved: sum((r) => r.straysRemoved),
      votersRecorded: sum((r) => r.votersRecorded),
      marksRecorded: sum((r) => r.marksRecorded),
    };
  }

  /** Range `id`'s group, when this node runs it. */
  rangeGroup(id: GroupId): RangeGroup | undefined {
    return this.up ? this.groups?.group(id) : undefined;
  }

  /** Range `id`'s key-value service, when this node runs it. */
  rangeService(id: GroupId): KvService | undefined {
    return this.up && this.groups?.group(id) !== undefined ? this.services.get(id) : undefined;
  }

  /** The ranges this node runs (range 0 alone without ranges), ascending. */
  groupIds(): GroupId[] {
    if (!this.up) return [];
    return this.groups === null ? [SIM_GROUP] : this.groups.ranges();
  }

  /** Group `group`'s core, read (never stepped) by the checkers. */
  coreOf(group: GroupId): RaftNode | undefined {
    if (!this.up) return undefined;
    return group === SIM_GROUP ? (this.core ?? undefined) : this.cores.get(group);
  }

  /** Group `group`'s log, as the checkers compare logs. */
  logOf(group: GroupId): LogView | null {
    const core = this.coreOf(group);
    if (core === undefined) return null;
    return {
      id: this.id,
      firstIndex: core.status().firstIndex,
      lastIndex: core.status().lastIndex,
      termAt: (i) => core.entry(i)?.term,
      entryAt: (i) => core.entry(i),
    };
  }

  /** One host per incarnation, as one per process: its ticker runs on this node's clock. */
  private newHost(): Host {
    return new Host({
      id: this.id,
      transport: this.transport(),
      clock: this.clock,
      ...(this.opts.runtime.tickMs === undefined ? {} : { tickMs: this.opts.runtime.tickMs }),
      onEvent: (group, e) => this.opts.host.onRuntimeEvent(this, e, group),
    });
  }

  /** Power loss: memory, timers, writes in progress and requests being served are gone. */
  crash(): void {
    this.gen++;
    this.up = false;
    this.starting = false;
    this.rt = null;
    this.core = null;
    this.sm = null;
    this.svc = null;
    this.handler = null;
    this.groups = null;
    this.rangeRetirer = null;
    this.metaParts = null;
    this.busy.clear();
    this.cores.clear();
    this.services.clear();
    this.callbacks.clear();
    this.disk.crash();
  }

  /** Runs callback `id` of incarnation `gen`; false when it is stale or was cancelled. */
  fire(gen: number, id: number): boolean {
    if (gen !== this.gen) return false;
    const fn = this.callbacks.get(id);
    if (fn === undefined) return false;
    this.callbacks.delete(id);
    fn();
    return true;
  }

  /** Whether callback `id` of incarnation `gen` would still run. */
  pending(gen: number, id: number): boolean {
    return gen === this.gen && this.callbacks.has(id);
  }

  deliver(m: Message, attachment: Uint8Array | null, group: GroupId = SIM_GROUP): void {
    this.handler?.(m, attachment, group);
  }

  // LogView (read by the checkers).
  get firstIndex(): number {
    return this.core?.status().firstIndex ?? 1;
  }
  get lastIndex(): number {
    return this.core?.status().lastIndex ?? 0;
  }
  termAt(index: number): number | undefined {
    return this.core?.entry(index)?.term;
  }
  entryAt(index: number): Entry | undefined {
    return this.core?.entry(index);
  }

  private later(kind: 'timer' | 'disk', delayMs: number, fn: () => void): number {
    const id = this.nextCallbackId++;
    this.callbacks.set(id, fn);
    this.opts.host.scheduleCallback(this, kind, delayMs, id);
    return id;
  }

  private transport(): HostTransport {
    const gen = this.gen;
    return {
      send: (m, attachment, group = SIM_GROUP) => {
        if (group !== SIM_GROUP && group !== NODE_BEAT_GROUP && this.opts.ranges !== true)
          throw new SimError('HARNESS', `node ${this.id} sent a message for group ${group}`);
        if (gen === this.gen) this.opts.host.send(this.id, m, attachment ?? null, group);
      },
      onMessage: (handler) => {
        if (gen === this.gen) this.handler = handler;
      },
      close: () => Promise.resolve(),
    };
  }

  /**
   * The state machine, observed: each applied command is reported with whether it took effect.
   * The batch goes to the session layer whole, as in production. A write that took effect made
   * a new revision above every one seen before; a retry answered from its session repeats an
   * older one; a refusal made none.
   */
  private observe(sm: StateMachine, kv: KvStateMachine, group: GroupId): StateMachine {
    return {
      apply: (commands) => {
        let seen = kv.revision();
        const results = sm.apply(commands);
        commands.forEach((c, i) => {
          const r = results[i];
          const revision = isRefusal(r) ? 0 : (r as { revision: number }).revision;
          const effective = revision > seen;
          if (effective) seen = revision;
          // A compaction changes no revision and is no client's write: the snapshot images
          // compared at each index check that replicas agree on what it left.
          // A split is no client's write either: the range map and the seeds' images check it.
          // Nor is a record of a range's replicas after a move, nor the mark a learner's
          // removal leaves before it (the range checks read them).
          if (
            decodeCompaction(c.payload) !== null ||
            isSplitEntry(c.payload) ||
            isReplicasEntry(c.payload)
          )
            return;
          const entry: Entry = { index: c.index, term: c.term, type: 'normal', data: c.payload };
          this.opts.host.onApply(this, entry, decodeWrite(c.payload), effective, group);
        });
        return results;
      },
      snapshot: () => sm.snapshot(),
      restore: (chunks) => sm.restore(chunks),
      onLeaderChange: (leader, term) => sm.onLeaderChange?.(leader, term),
    };
  }

  /** The meta machine, observed: after each batch and each restore, its map is checked. */
  private observeMeta(sm: StateMachine, machine: MetaStateMachine): StateMachine {
    return {
      apply: (commands) => {
        const results = sm.apply(commands);
        this.opts.host.onMetaApplied(this, machine.map());
        return results;
      },
      snapshot: () => sm.snapshot(),
      restore: async (chunks) => {
        await sm.restore(chunks);
        this.opts.host.onMetaApplied(this, machine.map());
      },
      onLeaderChange: (leader, term) => sm.onLeaderChange?.(leader, term),
    };
  }

  /**
   * Builds the core and taps its Ready: the checkers see each Ready's new entries and commit
   * index as the runtime takes it, the point where the old in-simulator Ready loop saw them,
   * and the committed entries the runtime takes to apply while a write is in flight.
   */
  private createCore(config: RaftConfig, group: GroupId): RaftNode {
    const core = this.opts.createNode(config, group);
    const ready = core.ready.bind(core);
    core.ready = (): Ready => {
      const rd = ready();
      this.opts.host.onReady(this, core, rd, group);
      return rd;
    };
    const takeCommitted = core.takeCommitted.bind(core);
    core.takeCommitted = (): Entry[] => {
      const entries = takeCommitted();
      if (entries.length > 0) this.opts.host.onTaken(this, entries, group);
      return entries;
    };
    return core;
  }
}

export const defaultNodeFactory: NodeFactory = (config) => new RaftNode(config);
export const defaultRuntimeFactory: RuntimeFactory = (options) => RaftRuntime.start(options);
