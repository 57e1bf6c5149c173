// The ranges' directories in a node's data directory (docs/DESIGN.md, "Ranges in a node"):
// which ranges the node holds a directory of (so that a range it received as a new replica,
// which no split of its own names, starts again after a restart), and which ranges it gave up.
//
// A node that is no longer a replica of a range stops the range's group and deletes its
// directory; a restart must not bring the range back. But the range may still be named as a
// child, with this node among its replicas, in the state of the range it split off, and a
// restart may replay that split from the parent's log: either would start it again. So giving
// a range up is first recorded here, durably, in `retired-ranges.json` (written to a temporary
// file, synced, renamed), and a retired range is never started again unless this node is asked
// to prepare it as a new replica, which takes it off the list first.
//
// The same file records which ranges' directories hold this node's storage ("held"): a range's
// directory lost alone (moved aside, emptied) while range 0 and the other groups kept theirs
// would otherwise start again on empty storage as a voter, with a log and a vote it no longer
// remembers. A range recorded held whose directory holds no storage file makes the node
// recover every group, as a node that lost its data does (node-open.ts).

import {
  closeSync,
  fsyncSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { FIRST_ALLOCATED_RANGE, type RangeId } from '../ranges/types.js';
import { groupDir, storageKindOf } from './data-dir.js';

/**
 * The file-system calls the record makes, all synchronous (they are few, small and rare: a
 * range retired, prepared, first held or removed). node:fs by default; the simulator runs the
 * record on its simulated disk (src/sim/sim-fs.ts), where a crash keeps only what was synced.
 */
export interface DirsFs {
  /** The file's text; null when it does not exist. */
  readText(path: string): string | null;
  /** Creates or replaces `path` with `text`, then fsyncs the file. */
  writeSynced(path: string, text: string): void;
  /** Atomic: afterwards `to` names the file `from` named. */
  rename(from: string, to: string): void;
  /** fsync of a directory: its creations, renames and removals become durable. */
  syncDir(dir: string): void;
  /** Names in `dir`; throws when it cannot be read (absent, not a directory). */
  readdir(dir: string): string[];
  /** Deletes `dir` and everything under it; nothing when it does not exist. Not synced. */
  removeTree(dir: string): void;
}

export const nodeDirsFs: DirsFs = {
  readText(path) {
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  },
  writeSynced(path, text) {
    writeFileSync(path, text);
    syncPath(path);
  },
  rename: (from, to) => renameSync(from, to),
  syncDir: (dir) => syncPath(dir),
  readdir: (dir) => readdirSync(dir),
  removeTree: (dir) => rmSync(dir, { recursive: true, force: true }),
};

function syncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export const RETIRED_RANGES_FILE = 'retired-ranges.json';

/**
 * Most retired ranges remembered. Range ids are never reused, so an id retired long ago can
 * only come back through a split replayed from a log older than the node's last snapshot of
 * its parent, which a node at this count has long compacted: the oldest are forgotten first.
 */
export const MAX_RETIRED_RANGES = 100_000;

export class RangeDirs {
  /** In the order retired (a Set keeps it): the oldest is forgotten first past the cap. */
  private readonly retired: Set<RangeId>;
  /**
   * Ranges prepared here as a new replica, with the range's generation when they were, that
   * have not yet applied a configuration naming this node at that generation or a later one:
   * until they do, what they applied (a leader's snapshot, which may be older than the
   * range's last change) says nothing about whether they were removed (range-retirer.ts).
   */
  private readonly preparing: Map<RangeId, number>;
  /** Ranges whose directory held this node's storage: recorded once opened, dropped on removal. */
  private readonly holding: Set<RangeId>;
  /**
   * The lowest range id from which this record is whole: a range at or above it that this node
   * holds no directory of, never gave up and is not preparing never ran here, so the node never
   * acknowledged an entry of it or voted in it (`neverRan`). null when that is not known: the
   * node lost data (it may have run any range allocated before), or the record was written by
   * a release that did not keep this.
   */
  private completeFrom: RangeId | null;

  constructor(
    private readonly dataDir: string,
    private readonly fs: DirsFs = nodeDirsFs,
    /** Most retired ranges remembered (a test lowers it). */
    private readonly maxRetired = MAX_RETIRED_RANGES,
  ) {
    const held = readRetired(fs, join(dataDir, RETIRED_RANGES_FILE));
    this.retired = new Set(held.retired);
    this.preparing = new Map(held.preparing);
    this.holding = new Set(held.held);
    this.completeFrom = held.completeFrom;
  }

  /** Whether this node gave range `id` up (and was not asked to hold it again since). */
  isRetired(id: RangeId): boolean {
    return this.retired.has(id);
  }

  /** Records, durably, that this node gave range `id` up. */
  retire(id: RangeId): void {
    if (this.isRetired(id)) return;
    this.preparing.delete(id);
    this.retired.add(id);
    if (this.retired.size > this.maxRetired) {
      const forgotten = this.retired.values().next().value as RangeId;
      this.retired.delete(forgotten);
      // A range forgotten here ran here: the record is whole only above it.
      if (this.completeFrom !== null && forgotten >= this.completeFrom)
        this.completeFrom = forgotten + 1;
    }
    this.write();
  }

  /**
   * Records, durably, the lowest range id from which this record is whole (null: unknown). A
   * node sets it to the first allocated range when its data directory is new, clears it when it
   * starts recovering lost data, and sets it to the meta group's next range id once that group
   * caught up (node-recovery.ts): every range allocated before the data was lost is below it.
   */
  setCompleteFrom(id: RangeId | null): void {
    if (this.completeFrom === id) return;
    this.completeFrom = id;
    this.write();
  }

  /**
   * Whether range `id` never ran on this node, as far as the record proves: it is at or above
   * the id the record is whole from, and the node holds no directory of it, never gave it up
   * and is not preparing it. Such a copy acknowledged nothing and voted in no term, so it may
   * vote at once when taken up (range-retirer.ts). False whenever that is not known.
   */
  neverRan(id: RangeId): boolean {
    return (
      this.completeFrom !== null &&
      id >= this.completeFrom &&
      !this.retired.has(id) &&
      !this.preparing.has(id) &&
      !this.holding.has(id) &&
      !this.held().includes(id)
    );
  }

  /**
   * Takes range `id` off the retired list and marks it being prepared, durably: it is to be
   * held again, as a new replica.
   */
  prepare(id: RangeId, generation: number): void {
    this.retired.delete(id);
    this.preparing.set(id, generation);
    this.write();
  }

  /**
   * The generation range `id` was prepared here at, while it has not yet applied a
   * configuration naming this node at that generation or later; undefined otherwise.
   */
  preparedAt(id: RangeId): number | undefined {
    return this.preparing.get(id);
  }

  /** Range `id` applied a configuration naming this node since: it is no longer only prepared. */
  added(id: RangeId): void {
    if (this.preparing.delete(id)) this.write();
  }

  /**
   * Records, durably, that range `id`'s directory holds this node's storage (its storage
   * opened there). Written once per range: a range already recorded writes nothing.
   */
  hold(id: RangeId): void {
    if (this.holding.has(id) || id < FIRST_ALLOCATED_RANGE) return;
    this.holding.add(id);
    this.write();
  }

  /**
   * Ranges recorded held whose directory holds no storage file now: part of this node's data
   * was lost. Not a retired range (its directory is deleted on purpose) nor one being prepared
   * as a new replica (its directory is emptied on purpose, and it starts recovering anyway).
   * Read before any range's storage opens, which writes a first file.
   */
  lost(): RangeId[] {
    return [...this.holding]
      .filter(
        (id) => !this.retired.has(id) && !this.preparing.has(id) && this.storageIn(id) === null,
      )
      .sort((a, b) => a - b);
  }

  /**
   * Records held exactly the ranges whose directories hold storage now (retired ones aside):
   * lost ones are forgotten, a directory that was never recorded (a data directory from a
   * release without the record, or a crash between a range's opening and its record) is
   * recorded. Call once the node's recovery for the ranges `lost` named is durable: the record
   * no longer names them, and a range the node no longer replicates must not be found lost
   * at every start.
   */
  settle(): void {
    const present = new Set(
      this.held().filter((id) => !this.retired.has(id) && this.storageIn(id) !== null),
    );
    if (present.size === this.holding.size && [...present].every((id) => this.holding.has(id)))
      return;
    this.holding.clear();
    for (const id of [...present].sort((a, b) => a - b)) this.holding.add(id);
    this.write();
  }

  /** Ids of the allocated ranges (id >= 3) whose directories are in the data directory. */
  held(): RangeId[] {
    let names: string[];
    try {
      names = this.fs.readdir(this.dataDir);
    } catch {
      return [];
    }
    return names
      .map((n) => /^group-(\d+)$/.exec(n)?.[1])
      .filter((x): x is string => x !== undefined)
      .map(Number)
      .filter((id) => Number.isSafeInteger(id) && id >= FIRST_ALLOCATED_RANGE)
      .sort((a, b) => a - b);
  }

  /**
   * Deletes range `id`'s directory (its group must be stopped and its storage closed). It is
   * no longer recorded held first: a crash half-way leaves a directory the next start
   * records again (settle) or deletes, never a record of a directory gone.
   */
  remove(id: RangeId): void {
    if (id < FIRST_ALLOCATED_RANGE)
      throw new Error(`Range ${id} is not an allocated range: its directory is never deleted`);
    if (this.holding.delete(id)) this.write();
    this.fs.removeTree(groupDir(this.dataDir, id));
  }

  /** Which storage's files range `id`'s directory holds (null when none, or no directory). */
  private storageIn(id: RangeId): ReturnType<typeof storageKindOf> {
    let names: string[];
    try {
      names = this.fs.readdir(groupDir(this.dataDir, id));
    } catch {
      return null;
    }
    return storageKindOf(names);
  }

  private write(): void {
    const file = join(this.dataDir, RETIRED_RANGES_FILE);
    const tmp = `${file}.tmp`;
    this.fs.writeSynced(
      tmp,
      JSON.stringify({
        retired: [...this.retired],
        preparing: [...this.preparing],
        held: [...this.holding],
        ...(this.completeFrom === null ? {} : { completeFrom: this.completeFrom }),
      }) + '\n',
    );
    this.fs.rename(tmp, file);
    this.fs.syncDir(this.dataDir);
  }
}

interface Recorded {
  readonly retired: RangeId[];
  readonly preparing: [RangeId, number][];
  /** Absent in files written before the record existed: nothing recorded held. */
  readonly held: RangeId[];
  /** Absent: not known (RangeDirs.completeFrom). */
  readonly completeFrom: RangeId | null;
}

function readRetired(fs: DirsFs, file: string): Recorded {
  let text: string | null;
  try {
    text = fs.readText(file);
  } catch (err) {
    throw new Error(`Cannot read ${file}: ${(err as Error).message}`);
  }
  if (text === null) return { retired: [], preparing: [], held: [], completeFrom: null };
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file} is not valid JSON: ${(err as Error).message}`);
  }
  const o = (v ?? {}) as Record<string, unknown>;
  const isId = (id: unknown): boolean =>
    Number.isSafeInteger(id) && (id as number) >= FIRST_ALLOCATED_RANGE;
  const retired = o['retired'] ?? [];
  if (!Array.isArray(retired) || !retired.every(isId))
    throw new Error(`${file}: "retired" must be a list of range ids of at least 3`);
  const preparing = o['preparing'] ?? [];
  if (
    !Array.isArray(preparing) ||
    !preparing.every(
      (p) =>
        Array.isArray(p) &&
        p.length === 2 &&
        isId(p[0]) &&
        Number.isSafeInteger(p[1]) &&
        (p[1] as number) >= 0,
    )
  )
    throw new Error(`${file}: "preparing" must be a list of [range id, generation] pairs`);
  const held = o['held'] ?? [];
  if (!Array.isArray(held) || !held.every(isId))
    throw new Error(`${file}: "held" must be a list of range ids of at least 3`);
  const completeFrom = o['completeFrom'] ?? null;
  if (completeFrom !== null && !isId(completeFrom))
    throw new Error(`${file}: "completeFrom" must be a range id of at least 3`);
  return {
    retired: retired as RangeId[],
    preparing: preparing as [RangeId, number][],
    held: held as RangeId[],
    completeFrom: completeFrom as RangeId | null,
  };
}
