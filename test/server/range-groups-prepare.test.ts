// A range prepared here as a new replica (src/server/range-groups.ts, `prepare`), on one host:
// the copy starts recovering, and restarts so while it is only prepared (it may have voted in
// the range before, in a term its empty storage forgot), but for a copy the caller knows never
// ran here, which votes at once until a restart; a held range is opened once at
// restart even when something else starts it while its storage opens; neither a split
// replayed from the parent's log nor the parent's snapshot naming it starts a prepared copy;
// and a split replayed over a copy that ran before keeps that copy's newer term and vote.

import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { systemClock, type GroupStorage } from '../../src/host/contracts.js';
import { encodeEnvelope } from '../../src/host/envelope.js';
import { Host } from '../../src/host/host.js';
import { RangeMachine, type RangeCommand } from '../../src/ranges/range-machine.js';
import type { RangeDescriptor, RangeId } from '../../src/ranges/types.js';
import { RangeGroups, type RangeGroup } from '../../src/server/range-groups.js';
import { RangeDirs, type DirsFs } from '../../src/server/range-dirs.js';
import { SimDisk } from '../../src/sim/sim-fs.js';
import { createRng } from '../../src/raft/index.js';
import { createMemoryDisk, createMemoryStorage, type MemoryDisk } from '../../src/storage/index.js';
import { MemoryNetwork } from '../../src/transport/index.js';

const b = (s: string): Uint8Array => new TextEncoder().encode(s);
const ME = 4;
const RIGHT = 3;
const OTHERS = [1, 2, 3];

/** A data directory on a simulated disk, for the range record alone. */
function dataDir(): DirsFs {
  const disk = new SimDisk({ rng: createRng(1) });
  disk.mkdirp('/data');
  return disk.mount().dirsFs();
}

/** The product's range record (range-dirs.ts); deleting a range's directory drops its disk. */
class Dirs extends RangeDirs {
  constructor(private readonly disks: Map<RangeId, MemoryDisk>) {
    super('/data', dataDir());
  }

  override remove(id: RangeId): void {
    super.remove(id);
    this.disks.delete(id);
  }
}

interface Node {
  readonly host: Host;
  readonly groups: RangeGroups;
  readonly opens: Map<RangeId, number>;
}

const live: Host[] = [];
afterEach(async () => {
  for (const h of live.splice(0)) await h.close(0);
});

/**
 * Node 4 on its own; `disks` and `dirs` survive a restart. `gate` (when given) holds the
 * opening of a range's storage until it resolves.
 */
function boot(
  disks: Map<RangeId, MemoryDisk>,
  dirs: Dirs,
  gate?: (id: RangeId) => Promise<void>,
  snapshotEveryEntries?: number,
): Node {
  const host = new Host({
    id: ME,
    transport: new MemoryNetwork().connect(ME),
    clock: systemClock,
    tickMs: 5,
  });
  live.push(host);
  const opens = new Map<RangeId, number>();
  const groups = new RangeGroups({
    host,
    dirs,
    openStorage: async (id): Promise<GroupStorage> => {
      opens.set(id, (opens.get(id) ?? 0) + 1);
      await gate?.(id);
      let disk = disks.get(id);
      if (disk === undefined) disks.set(id, (disk = createMemoryDisk()));
      // A disk opened twice throws: the double open this checks for.
      return createMemoryStorage({ quiet: true, disk });
    },
    settings: {
      electionTicks: 10,
      heartbeatTicks: 2,
      snapshotLogRatio: 0,
      ...(snapshotEveryEntries === undefined ? {} : { snapshotEveryEntries }),
    },
    onError: (range, err) => assert.fail(`range ${range}: ${err.message}`),
  });
  return { host, groups, opens };
}

async function until(what: string, pred: () => boolean, seen: () => unknown, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline)
      assert.fail(`${what}: not within ${ms} ms; saw ${JSON.stringify(seen())}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const put = (key: string) => ({ kind: 'put', key: b(key), value: b('v'), prevKv: false }) as const;

let now = 0;
async function propose(g: RangeGroup, cmd: RangeCommand): Promise<unknown> {
  now = Math.max(now + 1, Date.now());
  const payload = RangeMachine.encode(cmd);
  return g.runtime.propose(encodeEnvelope({ client: '', seq: 0, timeMs: now, payload }));
}

/** Range 0 on node 4 alone splits off range 3 (node 4 its one replica); answers range 0. */
/** Stops the node and starts it again over the same disks: range 0, then the held ranges. */
async function restart(disks: Map<RangeId, MemoryDisk>, dirs: Dirs): Promise<Node> {
  await live.splice(0)[0]?.close(0);
  const node = boot(disks, dirs);
  await node.groups.start(0, [ME]);
  await node.groups.settled();
  await node.groups.startHeld([RIGHT]);
  return node;
}

/** Range 3's empty copy given `seed` as a leader's snapshot, written as one would be. */
function receive(disks: Map<RangeId, MemoryDisk>, seed: NonNullable<MemoryDisk['snapshot']>): void {
  const disk = disks.get(RIGHT) as MemoryDisk;
  assert.equal(disk.snapshot, null, 'prepared on empty storage');
  disk.snapshot = seed;
  disk.base = { index: seed.meta.index, term: seed.meta.term };
}

async function splitOff(node: Node): Promise<RangeGroup> {
  const range0 = await node.groups.start(0, [ME]);
  await until(
    'range 0 elects node 4',
    () => range0.runtime.isLeader(),
    () => range0.runtime.status().role,
  );
  const r = (await propose(range0, {
    split: { key: b('m'), id: RIGHT, generation: 0, replicas: [ME] },
  })) as { kind?: string };
  assert.equal(r.kind, 'split', JSON.stringify(r));
  await node.groups.settled();
  return range0;
}

const rightDescriptor = (g: RangeGroup): RangeDescriptor => {
  const child = g.range.children()[0];
  assert.ok(child !== undefined, 'range 0 names the range split off it');
  return child;
};

void test('a prepared copy starts recovering, and restarts recovering while only prepared', async () => {
  const disks = new Map<RangeId, MemoryDisk>();
  const dirs = new Dirs(disks);
  const node = boot(disks, dirs);
  const range0 = await splitOff(node);
  assert.equal(node.groups.group(RIGHT)?.runtime.status().recovery, 'none');
  const seed = disks.get(RIGHT)?.snapshot ?? null;
  assert.ok(seed !== null, 'the split wrote range 3 its seed');
  // Removed from range 3 and added back: prepared, on empty storage, the others its voters.
  const descriptor = rightDescriptor(range0);
  const prepared = await node.groups.prepare(RIGHT, descriptor, OTHERS);
  assert.equal(dirs.preparedAt(RIGHT), descriptor.generation);
  assert.equal(
    prepared.runtime.status().recovery,
    'recovering',
    'a re-added copy on empty storage must not vote before it caught up',
  );
  // The leader sent it a snapshot (here: the seed's), then the node restarted before the copy
  // applied a configuration naming it.
  receive(disks, seed);
  const again = await restart(disks, dirs);
  assert.equal(again.groups.group(RIGHT)?.runtime.status().recovery, 'recovering');
  // Once it applied a configuration naming this node, it restarts a full member.
  dirs.added(RIGHT);
  const third = await restart(disks, dirs);
  assert.equal(third.groups.group(RIGHT)?.runtime.status().recovery, 'none');
});

void test('a copy the caller knows never ran here votes at once, and restarts recovering while only prepared', async () => {
  const disks = new Map<RangeId, MemoryDisk>();
  const dirs = new Dirs(disks);
  const node = boot(disks, dirs);
  const range0 = await splitOff(node);
  const seed = disks.get(RIGHT)?.snapshot ?? null;
  assert.ok(seed !== null, 'the split wrote range 3 its seed');
  const descriptor = rightDescriptor(range0);
  const prepared = await node.groups.prepare(RIGHT, descriptor, OTHERS, true);
  assert.equal(dirs.preparedAt(RIGHT), descriptor.generation, 'marked prepared all the same');
  assert.equal(
    prepared.runtime.status().recovery,
    'none',
    'a copy that never ran the range acknowledged nothing and voted in no term',
  );
  // Restarted with the leader's snapshot, before it applied a configuration naming it: it may
  // have voted since, and the mark is all the restart knows of it.
  receive(disks, seed);
  const again = await restart(disks, dirs);
  assert.equal(again.groups.group(RIGHT)?.runtime.status().recovery, 'recovering');
});

void test('a held range is opened once at restart, though a split or a parent starts it meanwhile', async () => {
  const disks = new Map<RangeId, MemoryDisk>();
  const dirs = new Dirs(disks);
  await splitOff(boot(disks, dirs));
  assert.ok(disks.get(RIGHT)?.snapshot, 'the split wrote range 3 its seed');
  await live.splice(0)[0]?.close(0);
  // Restart: range 3's storage is slow to open; while it opens, range 3 is started again (as a
  // split replayed from range 0's log, or range 0's snapshot naming it, would).
  let release = (): void => undefined;
  const held = new Promise<void>((r) => (release = r));
  const node = boot(disks, dirs, (id) => (id === RIGHT ? held : Promise.resolve()));
  const fromDirs = node.groups.startHeld([RIGHT]);
  const fromParent = node.groups.start(RIGHT, [ME]);
  release();
  await fromDirs;
  const g = await fromParent;
  assert.equal(node.opens.get(RIGHT), 1, 'range 3 storage opened once');
  assert.equal(node.groups.group(RIGHT), g);
});

void test('a split replayed from the parent log leaves a prepared copy alone', async () => {
  const disks = new Map<RangeId, MemoryDisk>();
  const dirs = new Dirs(disks);
  // Range 3 is prepared here (re-added after it was removed): it holds no snapshot yet, but
  // the term and vote it gave the range's elections since.
  const copy = createMemoryDisk();
  copy.hardState = { term: 7, vote: 2, commit: 0 };
  disks.set(RIGHT, copy);
  dirs.prepare(RIGHT, 1);
  // Range 0's log holds the split that made range 3 (here: applied now, as a replay would).
  const node = boot(disks, dirs);
  await splitOff(node);
  const after = disks.get(RIGHT);
  assert.equal(after, copy);
  assert.deepEqual(
    { snapshot: after?.snapshot ?? null, hardState: after?.hardState },
    { snapshot: null, hardState: { term: 7, vote: 2, commit: 0 } },
    'the split seed replaced the prepared copy (its vote forgotten, its term lowered)',
  );
  assert.equal(node.groups.group(RIGHT), undefined);
});

void test('a split replayed over a copy that ran before seeds it, keeping its newer term and vote', async () => {
  const disks = new Map<RangeId, MemoryDisk>();
  const dirs = new Dirs(disks);
  // Range 3 was started here from the map by a node recovering lost data (not prepared): it
  // refused a vote in term 7 and stopped before the leader's snapshot reached it. The seed's
  // term (the split entry's) is lower; written as it was, it would go back in term.
  const copy = createMemoryDisk();
  copy.hardState = { term: 7, vote: 2, commit: 0 };
  disks.set(RIGHT, copy);
  dirs.hold(RIGHT);
  const node = boot(disks, dirs);
  await splitOff(node);
  const after = disks.get(RIGHT);
  assert.ok(after?.snapshot, 'the split wrote range 3 its seed');
  assert.ok(after.snapshot.meta.term < 7, `the split entry's term: ${after.snapshot.meta.term}`);
  // Range 3 runs from there (node 4 its one voter, it campaigns on in a later term).
  assert.ok(node.groups.group(RIGHT), 'range 3 runs');
  assert.ok(after.hardState.term >= 7, `term went back: ${JSON.stringify(after.hardState)}`);
});

void test('a start asked while a range is being prepared joins the prepare, opening nothing twice', async () => {
  const disks = new Map<RangeId, MemoryDisk>();
  const dirs = new Dirs(disks);
  const node = boot(disks, dirs);
  const range0 = await splitOff(node);
  assert.equal(node.opens.get(RIGHT), 1);
  // While the prepare stops the copy held, something starts range 3 (a recovering node's map
  // read, range 0's snapshot naming it), and the move's retry prepares it again.
  const prepared = node.groups.prepare(RIGHT, rightDescriptor(range0), OTHERS);
  const started = node.groups.start(RIGHT, [ME]);
  const again = node.groups.prepare(RIGHT, rightDescriptor(range0), OTHERS);
  const [g, s, a] = await Promise.all([prepared, started, again]);
  assert.equal(s, g, 'the start answers the prepared copy');
  assert.equal(a, g, 'the second prepare answers the same copy');
  assert.equal(node.opens.get(RIGHT), 2, 'opened by the split, then once by the prepare');
  assert.equal(node.groups.group(RIGHT), g);
  assert.equal(g.runtime.status().recovery, 'recovering');
});

void test('a prepared copy lost at a restart is not started again from the parent', async () => {
  const disks = new Map<RangeId, MemoryDisk>();
  const dirs = new Dirs(disks);
  // Range 0 snapshots at every entry: its snapshot, not its log, names range 3 at a restart.
  const node = boot(disks, dirs, undefined, 1);
  const range0 = await splitOff(node);
  const splitIndex = range0.runtime.appliedIndex();
  const snapshotAt = (): number => disks.get(0)?.snapshot?.meta.index ?? 0;
  // A snapshot is taken once the last one is saved: a few writes bring one past the split.
  for (let i = 0; i < 20 && snapshotAt() < splitIndex; i++) {
    await propose(range0, { compare: [], success: [put(`a${i}`)], failure: [] });
    await until('range 0 saved its last snapshot', () => snapshotAt() > 0, snapshotAt, 2_000);
  }
  await until(
    'range 0 saved a snapshot past the split',
    () => snapshotAt() >= splitIndex,
    () => ({
      snapshotAt: snapshotAt(),
      splitIndex,
    }),
  );
  // Removed from range 3, then prepared again (the leader's move lost the answer, so it never
  // added this node): an empty copy, the others its voters.
  const prepared = await node.groups.prepare(RIGHT, rightDescriptor(range0), OTHERS);
  assert.deepEqual(prepared.runtime.status().conf.voters, OTHERS);
  // The node restarts. Range 0's state names range 3 with this node among the split's
  // replicas, but that is older than the prepare: started from it, the empty copy would take
  // the split's replicas as its voters and believe it votes, and, prepared, be judged out by
  // no rule (range-retirer.ts) while the range moved on without it.
  await live.splice(0)[0]?.close(0);
  const again = boot(disks, dirs, undefined, 1);
  await again.groups.start(0, [ME]);
  await again.groups.settled();
  await again.groups.startHeld([RIGHT]);
  const g = again.groups.group(RIGHT);
  assert.equal(
    g,
    undefined,
    `range 3 runs again with voters [${g?.runtime.status().conf.voters.join(', ')}]`,
  );
  assert.equal(dirs.preparedAt(RIGHT), rightDescriptor(range0).generation, 'still prepared');
  assert.equal(disks.has(RIGHT), false, 'the empty copy held no snapshot: its directory is gone');
});
