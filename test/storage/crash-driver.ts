// Drives the real WAL over a simulated disk through a command sequence: persists (appends,
// suffix replacements, new terms), snapshots of committed entries, leader snapshot installs,
// the release of parked disk operations one at a time in any order, and crashes at any of
// those points, including while a sync or the recovery itself is in flight. After every
// recovery the store is checked against the model (crash-model.ts).
//
// Every disk operation parks in a gate until a command releases it, so the order of events is
// a function of the commands and the seed alone. Between commands the driver lets a bounded
// number of microtask turns run (no timers): enough for the WAL to reach its next disk
// operation, and any point the driver stops at is a valid point to crash.

import fc from 'fast-check';
import { createRng } from '../../src/raft/index.js';
import { SimDisk } from '../../src/sim/sim-fs.js';
import type { SimDiskOptions, SimIo } from '../../src/sim/sim-fs.js';
import { StorageError } from '../../src/storage/errors.js';
import type { StorageFs } from '../../src/storage/fs.js';
import { openNodeJournal } from '../../src/storage/journal.js';
import type { NodeJournal } from '../../src/storage/journal.js';
import type { RaftStorage } from '../../src/storage/types.js';
import { openWalStorage } from '../../src/storage/wal.js';
import type { WalStorage } from '../../src/storage/wal.js';
import {
  LogState,
  entryAt,
  matchRecovered,
  readRecovered,
  snapshotData,
  stateOf,
} from './crash-model.js';

export type Cmd =
  | {
      readonly kind: 'persist';
      readonly count: number;
      /** Where in the uncommitted suffix to start replacing, as a fraction; null appends. */
      readonly replace: number | null;
      readonly bump: boolean;
    }
  | { readonly kind: 'commit' }
  | { readonly kind: 'snapshot'; readonly at: number }
  | { readonly kind: 'install'; readonly ahead: number }
  | { readonly kind: 'step'; readonly pick: number }
  | { readonly kind: 'run'; readonly ops: number }
  /** Crash; with `recover`, let recovery finish before the next command (else it may crash too). */
  | { readonly kind: 'crash'; readonly recover: boolean };

const fraction = fc.double({ min: 0, max: 0.999, noNaN: true });

export const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('persist' as const),
      count: fc.integer({ min: 0, max: 6 }),
      replace: fc.option(fraction, { freq: 4 }),
      bump: fc.boolean(),
    }),
  },
  { weight: 2, arbitrary: fc.constant({ kind: 'commit' as const }) },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('snapshot' as const), at: fraction }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('install' as const),
      ahead: fc.integer({ min: 0, max: 4 }),
    }),
  },
  {
    weight: 8,
    arbitrary: fc.record({ kind: fc.constant('step' as const), pick: fc.nat(7) }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('run' as const),
      ops: fc.integer({ min: 1, max: 12 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('crash' as const),
      // Mostly let recovery finish, so the scenario does work between crashes.
      recover: fc.integer({ min: 0, max: 3 }).map((n) => n > 0),
    }),
  },
);

/** A scenario: the disk's seed, the WAL's sync mode and the commands. */
export const scenarioArb = fc
  .record({
    seed: fc.nat(),
    syncMode: fc.constantFrom('dsync' as const, 'fdatasync' as const),
    disk: fc.record({
      sectorBytes: fc.constantFrom(1, 512, 4096),
      shortWriteProbability: fc.constantFrom(0, 0.2),
    }),
    cmds: fc.array(cmdArb, { minLength: 1, maxLength: 120, size: 'max' }),
  })
  .map((s) =>
    // Unsynced short writes can leave a hole before later bytes, a tail the WAL refuses
    // (docs/STORAGE.md, "Known limits"); under O_DSYNC each part is durable on its own.
    s.syncMode === 'dsync' ? s : { ...s, disk: { ...s.disk, shortWriteProbability: 0 } },
  );

export interface ScenarioConfig {
  readonly seed: number;
  readonly syncMode: 'dsync' | 'fdatasync';
  readonly disk?: Omit<SimDiskOptions, 'rng' | 'schedule'>;
  /** Wraps every mount's file system (the planted-bug test makes it lie). */
  readonly wrapFs?: (fs: StorageFs) => StorageFs;
  /**
   * Harsher disks (torn tails ending in zeros or garbage) can leave a tail the WAL's recovery
   * does not recognise as torn: it then refuses to start, naming the newest segment. With
   * this set such a refusal ends the scenario and is counted; any other failure still fails.
   */
  readonly refusalsAllowed?: boolean;
  /** Receives a line per command, disk operation, acknowledgement and recovery (debugging). */
  readonly trace?: (line: string) => void;
  /**
   * Writes through a node journal (src/storage/journal.ts) in the directory above the WAL's,
   * opened (and redone) before the WAL at every start; `journalBytes` small makes checkpoints.
   */
  readonly journal?: {
    readonly journalBytes: number;
    /** Replaces the journal the WAL is given (the planted-bug test acknowledges early). */
    readonly plant?: (journal: NodeJournal) => NodeJournal;
  };
}

export interface ScenarioStats {
  crashes: number;
  /** Crashes with a sync (or, under O_DSYNC, a write) issued and not completed. */
  crashesWithSyncPending: number;
  crashesWhileRecovering: number;
  tornWrites: number;
  tailCuts: number;
  segmentsRemoved: number;
  /** Recoveries that found unacknowledged writes on disk (and checked them intact). */
  unackedSurvived: number;
  acknowledged: number;
  /** Recoveries that refused the newest segment as corrupt (only with refusalsAllowed). */
  refusals: number;
  /** Journaled runs: writes the journal redid at a start. */
  journalWritesRedone: number;
  /** Starts that found two journal files (a crash inside a checkpoint). */
  journalMidCheckpoint: number;
}

export function emptyStats(): ScenarioStats {
  return {
    crashes: 0,
    crashesWithSyncPending: 0,
    crashesWhileRecovering: 0,
    tornWrites: 0,
    tailCuts: 0,
    segmentsRemoved: 0,
    unackedSurvived: 0,
    acknowledged: 0,
    refusals: 0,
    journalWritesRedone: 0,
    journalMidCheckpoint: 0,
  };
}

const ROOT = '/node';
const DIR = '/node/data';
const SETTLE_TURNS = 32;
const DRAIN_ROUNDS_MAX = 200_000;
const IDLE_ROUNDS_MAX = 50;

/** Lets queued promise reactions run: a bounded number of microtask turns, no timers. */
async function settle(): Promise<void> {
  for (let k = 0; k < SETTLE_TURNS; k++) await Promise.resolve();
}

interface Parked {
  readonly io: SimIo;
  readonly resolve: () => void;
}

function isSync(io: SimIo, mode: 'dsync' | 'fdatasync'): boolean {
  if (io.kind === 'datasync' || io.kind === 'fsync' || io.kind === 'syncdir') return true;
  return mode === 'dsync' && io.kind === 'write';
}

function errText(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

class Scenario {
  private parked: Parked[] = [];
  private readonly disk: SimDisk;
  /** Process lifetime: bumped by each crash. */
  private epoch = 0;
  /** Numbering of `states`: bumped when the model restarts from a recovered store. */
  private modelEpoch = 0;
  private store: RaftStorage | null = null;
  private journal: NodeJournal | null = null;
  private opening = false;
  private closing = false;
  private installing = false;
  private outstanding = 0;
  private failure: Error | null = null;
  private refused = false;
  /** states[k]: the state after operation k of this model epoch. */
  private states: LogState[] = [LogState.empty()];
  private acked = 0;
  /** Entries at or below this are never replaced (Raft's committed prefix). */
  private committed = 0;
  private snapshotTop = 0;
  private ackedSnapshot = 0;
  private readonly snapshots = new Set<string>();
  readonly stats: ScenarioStats = emptyStats();

  constructor(private readonly cfg: ScenarioConfig) {
    this.disk = new SimDisk({
      ...cfg.disk,
      rng: createRng(cfg.seed),
      schedule: (io) =>
        new Promise<void>((resolve) =>
          this.parked.push({
            io,
            resolve: () => {
              this.trace(`  io ${io.kind} ${io.path}${io.bytes > 0 ? ` ${io.bytes} B` : ''}`);
              resolve();
            },
          }),
        ),
    });
  }

  async start(): Promise<void> {
    this.open();
    await this.drain();
  }

  async run(c: Cmd): Promise<void> {
    this.throwIfFailed();
    if (this.refused) return;
    this.trace(`cmd ${JSON.stringify(c)}`);
    switch (c.kind) {
      case 'persist':
        this.persist(c.count, c.replace, c.bump);
        break;
      case 'commit':
        if (this.ready() && this.outstanding === 0) this.committed = this.current().last();
        break;
      case 'snapshot':
        this.snapshot(c.at);
        break;
      case 'install':
        this.install(c.ahead);
        break;
      case 'step':
        if (this.parked.length > 0)
          this.parked.splice(c.pick % this.parked.length, 1)[0]?.resolve();
        break;
      case 'run':
        for (let k = 0; k < c.ops && this.parked.length > 0; k++) {
          this.parked.shift()?.resolve();
          await settle();
        }
        break;
      case 'crash':
        this.crash();
        if (c.recover) await this.drain();
        break;
    }
    await settle();
    this.throwIfFailed();
  }

  /** Lets everything finish, crashes once more, recovers, checks, and closes. */
  async finish(): Promise<void> {
    this.stats.tornWrites = this.disk.stats.tornWrites;
    if (this.refused) return;
    await this.drain();
    this.crash();
    await this.drain();
    this.stats.tornWrites = this.disk.stats.tornWrites;
    if (this.refused) return;
    const s = this.store;
    if (s === null) throw new Error('the store did not reopen after the final crash');
    this.closing = true;
    s.close()
      .then(() => this.journal?.close())
      .then(
        () => (this.closing = false),
        (err: unknown) => this.fail('close', err),
      );
    await this.drain();
  }

  private current(): LogState {
    return this.states[this.states.length - 1] as LogState;
  }

  private ready(): boolean {
    return this.store !== null && !this.installing && !this.closing;
  }

  private persist(count: number, replace: number | null, bump: boolean): void {
    const s = this.store;
    if (s === null || !this.ready()) return;
    const cur = this.current();
    let hs = cur.hs;
    // A recovery can keep entries whose hard state record was torn off (crash-model.ts): the
    // node's term must then move past theirs, as the core's would on its first election.
    const logTerm = Math.max(cur.base.term, ...cur.terms);
    if (bump || hs.term === 0 || hs.term < logTerm)
      hs = { term: Math.max(hs.term, logTerm) + 1, vote: 1, commit: this.committed };
    else if (hs.commit < this.committed) hs = { ...hs, commit: this.committed };
    const hsChanged = hs !== cur.hs;
    const lo = Math.max(this.committed, cur.base.index) + 1;
    const hi = cur.last() + 1;
    const from = replace === null ? hi : lo + Math.floor(replace * (hi - lo + 1));
    const entries = Array.from({ length: count }, (_, k) => entryAt(from + k, hs.term));
    if (entries.length === 0 && !hsChanged) return;
    const written = hsChanged ? hs : null;
    this.trace(`  persist ${from}..${from + count - 1}@${hs.term} hs ${JSON.stringify(written)}`);
    this.track(s.persist(entries, written), cur.append(entries, written), 'persist');
  }

  private snapshot(at: number): void {
    const s = this.store;
    if (s === null || !this.ready()) return;
    const cur = this.current();
    const lo = Math.max(this.snapshotTop, cur.base.index) + 1;
    if (lo > this.committed) return;
    const index = lo + Math.floor(at * (this.committed - lo + 1));
    const term = cur.termAt(index) ?? -1;
    this.snapshotTop = index;
    this.snapshots.add(`${index}@${term}`);
    this.track(
      s.saveSnapshot({ index, term, voters: [1] }, snapshotData(index, term)),
      null,
      'snapshot',
      index,
    );
  }

  /** A follower installs its leader's snapshot past its log: Raft persists it before more entries. */
  private install(ahead: number): void {
    const s = this.store;
    if (s === null || !this.ready() || this.outstanding > 0) return;
    const cur = this.current();
    const term = cur.hs.term;
    if (term === 0) return;
    const index = cur.last() + 1 + ahead;
    this.snapshotTop = index;
    this.committed = index;
    this.snapshots.add(`${index}@${term}`);
    this.installing = true;
    this.track(
      s.saveSnapshot({ index, term, voters: [1] }, snapshotData(index, term)),
      cur.install({ index, term }),
      'install',
      index,
    );
  }

  /** Records an operation; a resolved promise acknowledges it and every one before it. */
  private track(done: Promise<void>, next: LogState | null, what: string, snapshotIndex = 0): void {
    if (next !== null) this.states.push(next);
    const op = this.states.length - 1;
    const epoch = this.epoch;
    const modelEpoch = this.modelEpoch;
    this.outstanding++;
    done.then(
      () => {
        this.trace(`  ack ${what} op ${op}${epoch === this.epoch ? '' : ' (from before a crash)'}`);
        this.stats.acknowledged++;
        if (modelEpoch === this.modelEpoch) this.acked = Math.max(this.acked, op);
        this.ackedSnapshot = Math.max(this.ackedSnapshot, snapshotIndex);
        if (epoch !== this.epoch) return;
        this.outstanding--;
        if (what === 'install') this.installing = false;
      },
      (err: unknown) => this.fail(`${what} (op ${op}) was refused`, err),
    );
  }

  private crash(): void {
    this.stats.crashes++;
    if (this.parked.some((p) => isSync(p.io, this.cfg.syncMode)))
      this.stats.crashesWithSyncPending++;
    if (this.opening) this.stats.crashesWhileRecovering++;
    this.disk.crash();
    this.epoch++;
    this.parked = [];
    this.store = null;
    this.journal = null;
    this.outstanding = 0;
    this.installing = false;
    this.closing = false;
    this.open();
  }

  private open(): void {
    const epoch = this.epoch;
    this.opening = true;
    const mount = this.disk.mount();
    const fs = this.cfg.wrapFs?.(mount) ?? mount;
    const j = this.cfg.journal;
    const journal =
      j === undefined
        ? Promise.resolve(undefined)
        : openNodeJournal(ROOT, { fs, syncMode: this.cfg.syncMode, journalBytes: j.journalBytes });
    journal
      .then((opened) => {
        if (opened !== undefined && epoch === this.epoch) {
          this.journal = opened;
          this.stats.journalWritesRedone += opened.recovery.writesRedone;
          if (opened.recovery.journalFiles >= 2) this.stats.journalMidCheckpoint++;
        }
        return openWalStorage(DIR, {
          fs,
          syncMode: this.cfg.syncMode,
          segmentBytes: 4096,
          snapshotsCoverCompaction: true,
          ...(opened === undefined ? {} : { journal: j?.plant?.(opened) ?? opened }),
        });
      })
      .then((s) => this.opened(s, epoch))
      .catch((err: unknown) => {
        if (!this.isTailRefusal(err)) return this.fail('recovery', err);
        this.trace(`  refused: ${errText(err)}`);
        this.stats.refusals++;
        this.refused = true;
        this.opening = false;
      });
  }

  private isTailRefusal(err: unknown): boolean {
    if (this.cfg.refusalsAllowed !== true) return false;
    if (!(err instanceof StorageError) || err.code !== 'STORAGE_CORRUPT') return false;
    const segments = this.disk.files().filter((f) => f.endsWith('.seg'));
    return err.file !== undefined && err.file === segments[segments.length - 1];
  }

  /** Checks a recovered store against the model, then continues the model from it. */
  private async opened(s: WalStorage, epoch: number): Promise<void> {
    for (const r of s.recovery.repairs) {
      if (r.kind === 'tail-cut') this.stats.tailCuts++;
      else this.stats.segmentsRemoved++;
    }
    const rec = readRecovered(s);
    this.trace(
      `  recovered ${stateOf(rec).describe()} snapshot ${rec.snapshot?.index ?? 'none'} repairs ${JSON.stringify(s.recovery.repairs)}`,
    );
    const match = matchRecovered(rec, this.states, this.acked, this.snapshots);
    if (typeof match === 'string') throw new Error(match);
    if (match > this.acked) this.stats.unackedSurvived++;
    if ((rec.snapshot?.index ?? 0) < this.ackedSnapshot)
      throw new Error(
        `acknowledged snapshot ${this.ackedSnapshot} lost: recovered ${rec.snapshot?.index ?? 'none'}`,
      );
    const snap = await s.loadSnapshot();
    if (epoch !== this.epoch) return;
    if (rec.snapshot !== null) {
      const want = snapshotData(rec.snapshot.index, rec.snapshot.term);
      if (snap === null || Buffer.compare(Buffer.from(snap.data), Buffer.from(want)) !== 0)
        throw new Error(`snapshot ${rec.snapshot.index} reads back with other data`);
    }
    this.modelEpoch++;
    this.states = [stateOf(rec)];
    this.acked = 0;
    // An install that did not survive took its committed index with it.
    this.committed = Math.min(this.committed, rec.last);
    this.snapshotTop = rec.snapshot?.index ?? 0;
    this.store = s;
    this.opening = false;
  }

  private trace(line: string): void {
    this.cfg.trace?.(line);
  }

  private fail(what: string, err: unknown): void {
    this.failure ??= new Error(`${what}: ${errText(err)}`, { cause: err });
  }

  private throwIfFailed(): void {
    if (this.failure !== null) throw this.failure;
  }

  private busy(): boolean {
    return this.opening || this.closing || this.outstanding > 0;
  }

  /** Releases parked operations, oldest first, until nothing is in flight. */
  private async drain(): Promise<void> {
    let idle = 0;
    for (let round = 0; round < DRAIN_ROUNDS_MAX; round++) {
      this.throwIfFailed();
      const next = this.parked.shift();
      if (next !== undefined) {
        idle = 0;
        next.resolve();
      } else if (!this.busy()) return;
      else if (++idle > IDLE_ROUNDS_MAX)
        throw new Error(
          `stuck: nothing parked for ${IDLE_ROUNDS_MAX} rounds while opening=${this.opening} closing=${this.closing} outstanding=${this.outstanding}`,
        );
      await settle();
    }
    throw new Error(`still busy after ${DRAIN_ROUNDS_MAX} rounds`);
  }
}

/** Runs one scenario; throws what the checker found. */
export async function runScenario(
  cfg: ScenarioConfig,
  cmds: readonly Cmd[],
): Promise<ScenarioStats> {
  const sc = new Scenario(cfg);
  await sc.start();
  for (const c of cmds) await sc.run(c);
  await sc.finish();
  return sc.stats;
}
