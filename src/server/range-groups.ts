// The ranges a node runs, each its own Raft group on the node's host, and the groups a split
// creates (docs/DESIGN.md, "Splitting a range"). When a range's split applies on a replica, the
// right-hand range's initial state (the seed, src/ranges/range-machine.ts) is written to the new
// group's storage as its snapshot, at the split entry's index and term with the split's replicas
// as voters, and the group is started on the host. Every replica does the same from its own
// state, so the new group starts on each with the same snapshot and nothing crosses the network.
//
// Ordering: the seed is durable before the left range saves any snapshot at or past the split
// index (the range's snapshot waits for it), so a crash never leaves a node whose left range
// starts past the split without the right range's seed. A node that missed the split (a
// snapshot of the left taken after it caught it up) finds the child in the left's restored
// state and starts it on empty storage with the split's replicas as its initial voters: it
// votes, but does not campaign while its log is empty (RaftConfig.waitsForState, as every
// range but the first), so only a replica holding the seed can lead, and that leader sends it
// a snapshot.
//
// A range this node is no longer a replica of is retired: recorded as given up (range-dirs.ts),
// its group stopped and its directory deleted; a retired range is never started again, from a
// parent's children or a split replayed, unless the node is asked to prepare it as a new
// replica. Deciding when a range is out is range-retirer.ts's; routing by range and telling the
// meta group of a split are the node's (range-lanes.ts, range-admin.ts).

import { APPLY_LIMITS } from '../base/limits.js';
import type { GroupStorage } from '../host/contracts.js';
import type { GroupOptions, Host } from '../host/host.js';
import type { RaftRuntime } from '../host/runtime.js';
import { SessionMachine, type SessionLimits } from '../host/sessions.js';
import { collectSnapshot } from '../host/snapshot-stream.js';
import { RangeMachine, WHOLE_KEY_SPACE, type SplitApplied } from '../ranges/range-machine.js';
import { FIRST_RANGE, type RangeDescriptor, type RangeId } from '../ranges/types.js';
import type { RangeDirs } from './range-dirs.js';

/** A range group's settings: everything but its storage, state machine and voters. */
export type RangeGroupSettings = Omit<GroupOptions, 'storage' | 'stateMachine' | 'voters'>;

export interface RangeGroupsOptions {
  /** The node's host (what of it this uses: a simulator wraps its group options). */
  readonly host: Pick<Host, 'id' | 'addGroup'> & Partial<Pick<Host, 'removeGroup'>>;
  /**
   * The ranges given up and their directories. Absent (the simulator): no range is ever
   * retired or prepared here.
   */
  readonly dirs?: Pick<RangeDirs, 'isRetired' | 'retire' | 'prepare' | 'remove' | 'preparedAt'> &
    // The product's records a range's directory held once its storage opened (range-dirs.ts).
    Partial<Pick<RangeDirs, 'hold'>>;
  /** Opens range `id`'s storage on this node (empty when the node holds none); once per range. */
  readonly openStorage: (id: RangeId) => Promise<GroupStorage>;
  /**
   * The settings of every range group, the ones splits create included; a function gives each
   * range its own (a node keeps each group's partial snapshots in the group's directory).
   */
  readonly settings: RangeGroupSettings | ((id: RangeId) => RangeGroupSettings);
  readonly sessionLimits?: SessionLimits;
  /** Told when a range could not be seeded or started (the node logs it). */
  readonly onError?: (range: RangeId, err: Error) => void;
}

/** One range this node runs: its machine, behind the session layer the group applies to. */
export interface RangeGroup {
  readonly range: RangeMachine;
  readonly sessions: SessionMachine;
  readonly runtime: RaftRuntime;
}

/** A held directory that holds no snapshot: deleted, not started (startHeld). */
class HeldEmpty extends Error {
  constructor(id: RangeId) {
    super(`Range ${id}'s directory held no snapshot: deleted, not started`);
  }
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class RangeGroups {
  /** Every range started or being started here, by id: at most one start each. */
  private readonly starting = new Map<RangeId, Promise<RangeGroup>>();
  private readonly running = new Map<RangeId, RangeGroup>();
  /** Starts not yet settled (running or failed), by id: a recovering node waits for them. */
  private readonly unsettled = new Map<RangeId, Promise<RangeGroup>>();
  /** Ranges whose held directory startHeld is looking at (its claim in `starting`). */
  private readonly heldClaims = new Set<RangeId>();
  /**
   * Ranges being prepared as a new replica right now (between stopping what was held and
   * starting the empty copy), each with the start that follows: a split applied meanwhile
   * starts nothing, and a start asked meanwhile (a parent's snapshot naming the range, the map
   * read by a recovering node, another prepare) joins it rather than opening the storage the
   * prepare is about to drop.
   */
  private readonly preparingNow = new Map<RangeId, Promise<RangeGroup>>();

  constructor(private readonly o: RangeGroupsOptions) {}

  /**
   * Starts range `id` on its storage, with `voters` as its voters when the storage holds no
   * snapshot (range 0: the cluster's; a range split off another: the split's replicas, its
   * storage holding the seed, or empty until its leader sends a snapshot), then every range
   * split off it that this node replicates. Answers the range's group once it runs.
   */
  start(id: RangeId, voters: readonly number[], descriptor?: RangeDescriptor): Promise<RangeGroup> {
    return this.startAs(id, voters, descriptor, false);
  }

  private startAs(
    id: RangeId,
    voters: readonly number[],
    descriptor: RangeDescriptor | undefined,
    neverRan: boolean,
  ): Promise<RangeGroup> {
    const held = this.starting.get(id) ?? this.preparingNow.get(id);
    if (held !== undefined) return held;
    const p = this.o
      .openStorage(id)
      .then((storage) => this.run(id, storage, voters, descriptor, neverRan));
    this.track(id, p);
    return p;
  }

  /** The range's group, once it runs here. */
  group(id: RangeId): RangeGroup | undefined {
    return this.running.get(id);
  }

  /** Ids of the ranges running here, ascending. */
  ranges(): RangeId[] {
    return [...this.running.keys()].sort((a, b) => a - b);
  }

  /** Ids of the ranges being started here, not yet running (nor failed). */
  pending(): RangeId[] {
    return [...this.unsettled.keys()].sort((a, b) => a - b);
  }

  /** Whether this node gave range `id` up (it is never started again unless prepared). */
  isRetired(id: RangeId): boolean {
    return this.o.dirs?.isRetired(id) ?? false;
  }

  /**
   * Gives range `id` up on this node: records it retired (durably, first: a crash half-way must
   * not bring it back), stops its group and deletes its directory. The caller has decided this
   * node is in no configuration of the range (range-retirer.ts).
   */
  async retire(id: RangeId): Promise<void> {
    const dirs = this.need(id, 'retire');
    dirs.retire(id);
    await this.stop(id);
    dirs.remove(id);
  }

  /**
   * Starts range `id` here as a new replica, on empty storage, with `voters` (the range's
   * voters now, not this node) as its initial configuration: its log is empty, so it campaigns
   * for nothing, and the range's leader, once it added this node, sends it a snapshot. What
   * this node held of the range is dropped first (the caller checked it is no replica).
   *
   * The copy starts recovering (DESIGN.md, "A node that lost its data"), and restarts so while
   * the range is only prepared: this node may have been a voter of the range before and voted
   * in a term its empty storage no longer remembers, so it neither votes nor counts toward a
   * quorum until it holds the leader's log up to a commit the leader reached after it started.
   * Not with `neverRan`, which the caller gives only for a range this node's record proves never
   * ran here (RangeDirs.neverRan): that copy acknowledged nothing and voted in no term, so it
   * votes at once, as a voter added to a new range does. A restart before it is added still
   * starts it recovering: by then it may have voted, and an empty copy is deleted at boot.
   */
  async prepare(
    id: RangeId,
    descriptor: RangeDescriptor,
    voters: readonly number[],
    neverRan = false,
  ): Promise<RangeGroup> {
    const dirs = this.need(id, 'prepare');
    if (voters.includes(this.o.host.id) || voters.length === 0)
      throw new Error(
        `Cannot prepare range ${id}: its initial voters [${voters.join(', ')}] must be others`,
      );
    const inFlight = this.preparingNow.get(id);
    if (inFlight !== undefined) return inFlight;
    const started = (async (): Promise<RangeGroup> => {
      try {
        await this.stop(id);
        dirs.remove(id);
        dirs.prepare(id, descriptor.generation);
      } finally {
        this.preparingNow.delete(id);
      }
      return this.startAs(id, voters, descriptor, neverRan);
    })();
    started.catch(() => undefined); // answered to the caller below; joined starts see it too
    this.preparingNow.set(id, started);
    return started;
  }

  /**
   * Starts the ranges whose directories this node holds (`ids`) and that nothing started yet:
   * ranges it was added to as a new replica, which no split it applied names with it. Each
   * starts from the snapshot its storage holds (the voters given are then unused). A directory
   * holding no snapshot (prepared, never sent one) or of a retired range is deleted instead.
   * Call once the ranges splits started have settled.
   */
  async startHeld(ids: readonly RangeId[]): Promise<void> {
    const dirs = this.o.dirs;
    if (dirs === undefined) return;
    for (const id of ids) {
      if (this.starting.has(id) || id === FIRST_RANGE) continue;
      if (this.isRetired(id)) {
        dirs.remove(id);
        continue;
      }
      // Claimed before its storage opens: a split replayed from a parent's log, or a parent's
      // snapshot naming it, while the storage opens must not open it a second time.
      const opened = this.o.openStorage(id).then(async (storage) => {
        const snapshot = storage.initialState().snapshot;
        if (snapshot !== null) return this.run(id, storage, snapshot.voters, undefined, false);
        await storage.close();
        if (this.starting.get(id) === claim) this.starting.delete(id);
        dirs.remove(id);
        return null;
      });
      const claim = opened.then((g) => g ?? Promise.reject(new HeldEmpty(id)));
      claim.catch((err: unknown) => {
        // An empty directory deleted: the children it kept from starting start now (on the
        // next turn, after a split replayed meanwhile seeded it, which seed() prefers).
        if (err instanceof HeldEmpty)
          void nextTurn().then(() => {
            for (const g of this.running.values()) this.startChildren(g.range);
          });
      });
      this.heldClaims.add(id);
      claim.then(
        () => this.heldClaims.delete(id),
        () => this.heldClaims.delete(id),
      );
      this.starting.set(id, claim);
      this.unsettled.set(id, claim);
      const settle = (): void => {
        if (this.unsettled.get(id) === claim) this.unsettled.delete(id);
      };
      claim.then(settle, settle);
      opened.catch((err: unknown) =>
        this.o.onError?.(id, err instanceof Error ? err : new Error(String(err))),
      );
    }
    await this.settled();
  }

  private need(id: RangeId, what: string): NonNullable<RangeGroupsOptions['dirs']> {
    const dirs = this.o.dirs;
    if (dirs === undefined || this.o.host.removeGroup === undefined)
      throw new Error(`Cannot ${what} range ${id}: this node's ranges have no directories`);
    if (id === FIRST_RANGE) throw new Error(`Range ${id} runs on every member: never ${what}d`);
    return dirs;
  }

  /** Stops range `id`'s group (once a start in progress finished) and closes its storage. */
  private async stop(id: RangeId): Promise<void> {
    const starting = this.starting.get(id);
    this.starting.delete(id);
    if (starting !== undefined) await starting.catch(() => undefined);
    if (this.starting.has(id))
      throw new Error(`Cannot stop range ${id}: it was started again while stopping`);
    this.running.delete(id);
    await this.o.host.removeGroup?.(id);
  }

  /** Resolves once every range started so far (seeded ones included) runs, or failed. */
  async settled(): Promise<void> {
    for (;;) {
      const all = [...this.starting.values()];
      await Promise.allSettled(all);
      if (this.starting.size === all.length) return;
    }
  }

  private track(id: RangeId, p: Promise<RangeGroup>): void {
    this.starting.set(id, p);
    this.unsettled.set(id, p);
    const settle = (): void => {
      if (this.unsettled.get(id) === p) this.unsettled.delete(id);
    };
    p.then(settle, settle);
    p.catch((err: unknown) =>
      this.o.onError?.(id, err instanceof Error ? err : new Error(String(err))),
    );
  }

  private async run(
    id: RangeId,
    storage: GroupStorage,
    voters: readonly number[],
    descriptor: RangeDescriptor | undefined,
    neverRan: boolean,
  ): Promise<RangeGroup> {
    // Its storage opened: the directory holds this node's files, recorded before the group
    // votes in anything (a start that then finds the directory blank recovers the node).
    try {
      this.o.dirs?.hold?.(id);
    } catch (err) {
      await storage.close();
      throw err;
    }
    const range = new RangeMachine({
      // Committed commands decode alike on every replica, whatever each node's configuration.
      limits: APPLY_LIMITS,
      descriptor: descriptor ?? (id === FIRST_RANGE ? WHOLE_KEY_SPACE : { ...WHOLE_KEY_SPACE, id }),
    });
    const sessions = new SessionMachine(range, this.o.sessionLimits);
    range.onSplit((s) => this.seed(s));
    // A snapshot (stored, or installed from the leader) may name children split off after
    // this node's own last state: start those it replicates.
    range.onRestored(() => this.startChildren(range));
    let runtime: RaftRuntime;
    try {
      const settings = this.o.settings;
      const given = typeof settings === 'function' ? settings(id) : settings;
      runtime = await this.o.host.addGroup(id, {
        ...given,
        raft: {
          ...given.raft,
          // Every range but the first begins with its split's seed: a copy holding nothing of
          // it (it missed the split, or is a new replica) must not campaign until a leader's
          // snapshot reaches it. Two copies of three that both missed the split elected one
          // another with empty logs beside the one holding the seed (simulator seed 60946).
          waitsForState: id !== FIRST_RANGE,
          // A prepared copy recovers (prepare), but for one that never ran here.
          ...(this.o.dirs?.preparedAt(id) === undefined || neverRan
            ? {}
            : { recovery: 'recovering' as const }),
        },
        storage,
        stateMachine: sessions,
        voters,
      });
    } catch (err) {
      await storage.close();
      throw err;
    }
    const group = { range, sessions, runtime };
    this.running.set(id, group);
    this.startChildren(range);
    return group;
  }

  /**
   * Starts the children `range` names with this node among the split's replicas. Not one
   * prepared here as a new replica since (as `seed`): the prepare is newer than the split, and
   * the copy it left holds a leader's snapshot (startHeld starts it) or nothing; started from
   * the split, an empty copy would take the split's replicas as its voters, believe it votes,
   * and never be given up while the range moves on without it (range-retirer.ts).
   */
  private startChildren(range: RangeMachine): void {
    for (const child of range.children())
      if (
        child.replicas.includes(this.o.host.id) &&
        !this.starting.has(child.id) &&
        !this.preparingNow.has(child.id) &&
        !this.isRetired(child.id) &&
        this.o.dirs?.preparedAt(child.id) === undefined
      )
        void this.start(child.id, child.replicas, child);
  }

  /**
   * A split applied here: writes the seed as the new group's snapshot and starts the group.
   * Answers once the seed is durable (the left range's snapshots wait for that). A node that
   * holds the range already (it restarted, and replays the split from its log) starts it on
   * what it holds. A range prepared here as a new replica since is left alone: what it holds
   * (a leader's snapshot, or only the term and vote it gave) is newer than the split, and the
   * seed's voters and empty vote would replace it; startHeld starts it, recovering.
   */
  private seed(s: SplitApplied): Promise<void> {
    const id = s.right.id;
    // A directory of this range being looked at (startHeld) may be a seed a crash cut short,
    // with no snapshot in it, and is then deleted: the split replayed meanwhile waits for that
    // verdict and seeds the range if so. Discarded at once, it left the range never started
    // here (simulator seed 70336 with ranges, moves, meta and quiescing).
    const looked = this.heldClaims.has(id) ? this.starting.get(id) : undefined;
    if (looked !== undefined && s.right.replicas.includes(this.o.host.id))
      return looked.then(
        () => s.discard(),
        (err: unknown) => {
          if (err instanceof HeldEmpty) return this.seed(s);
          s.discard();
          return undefined;
        },
      );
    if (
      !s.right.replicas.includes(this.o.host.id) ||
      this.starting.has(id) ||
      this.preparingNow.has(id) ||
      this.isRetired(id) ||
      this.o.dirs?.preparedAt(id) !== undefined
    ) {
      s.discard();
      return Promise.resolve();
    }
    const durable = this.o.openStorage(id).then(async (storage) => {
      try {
        const held = await storage.loadSnapshot();
        if (held === null || held.meta.index < s.index) {
          const data = await collectSnapshot(s.seed, nextTurn);
          await storage.saveSnapshot(
            { index: s.index, term: s.term, voters: [...s.right.replicas] },
            data,
          );
          // The group's term starts at the split entry's: its log never goes back in term. A
          // copy that ran before holds a term and vote of its own, which are kept when not
          // older: a node that lost its data starts a range from the map, recovering, and
          // may stop before a leader's snapshot reached it; replaying the parent's split
          // then finds the range's directory holding the term of that leader's messages
          // (simulator seed 139 of `--ranges --moves --meta --wipe-every 300`).
          const prior = storage.initialState().hardState;
          const kept = prior.term >= s.term;
          await storage.persist([], {
            term: kept ? prior.term : s.term,
            vote: kept ? prior.vote : 0,
            commit: s.index,
          });
        }
      } catch (err) {
        await storage.close();
        throw err;
      }
      return storage;
    });
    this.track(
      id,
      durable.then((storage) => this.run(id, storage, s.right.replicas, s.right, false)),
    );
    return durable.then(() => undefined);
  }
}
