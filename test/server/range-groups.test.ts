// Splits on three hosts (src/server/range-groups.ts): range 0 splits while a writer writes, and
// every replica creates the right-hand group from its own state; both halves then serve and
// hold exactly the acknowledged writes of their keys, each applied once (a put's version counts
// its applications, so a retry applied twice shows). A host restarted after the split recovers
// both groups; a host cut off during the split is caught up by the left's snapshot, starts the
// right-hand group empty, is caught up by its leader's, and then serves it.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, test } from 'node:test';
import { FlotillaError } from '../../src/base/errors.js';
import { systemClock } from '../../src/host/contracts.js';
import { encodeEnvelope } from '../../src/host/envelope.js';
import { Host } from '../../src/host/host.js';
import type { KvCommand } from '../../src/kv/machine.js';
import { RangeMachine, type RangeCommand } from '../../src/ranges/range-machine.js';
import type { RangeDescriptor } from '../../src/ranges/types.js';
import { RangeGroups, type RangeGroup } from '../../src/server/range-groups.js';
import {
  createMemoryDisk,
  createMemoryStorage,
  openWalStorage,
  type MemoryDisk,
} from '../../src/storage/index.js';
import { MemoryNetwork } from '../../src/transport/index.js';

const b = (s: string): Uint8Array => new TextEncoder().encode(s);
const str = (u: Uint8Array): string => new TextDecoder().decode(u);
const VOTERS = [1, 2, 3];
const RIGHT = 3;
const SPLIT_KEY = 'k20';
const KEYS = Array.from({ length: 40 }, (_, i) => `k${String(i).padStart(2, '0')}`);

interface Node {
  readonly id: number;
  host: Host;
  ranges: RangeGroups;
  /** What this node "persisted", per range: survives a restart of the node. */
  readonly disks: Map<number, MemoryDisk>;
}

const live: Host[] = [];
afterEach(async () => {
  for (const h of live.splice(0)) await h.close(0);
});

function boot(
  net: MemoryNetwork,
  id: number,
  disks: Map<number, MemoryDisk>,
  snapshotEveryEntries = 16,
): Node {
  const host = new Host({ id, transport: net.connect(id), clock: systemClock, tickMs: 5 });
  live.push(host);
  const ranges = new RangeGroups({
    host,
    openStorage: (range) => {
      let disk = disks.get(range);
      if (disk === undefined) disks.set(range, (disk = createMemoryDisk()));
      return Promise.resolve(createMemoryStorage({ quiet: true, disk }));
    },
    settings: {
      electionTicks: 15,
      heartbeatTicks: 3,
      snapshotEveryEntries,
      snapshotLogRatio: 0,
      snapshotCatchupEntries: 4,
    },
    onError: (range, err) => assert.fail(`node ${id} range ${range}: ${err.message}`),
  });
  return { id, host, ranges, disks };
}

async function cluster(snapshotEveryEntries = 16): Promise<{ net: MemoryNetwork; nodes: Node[] }> {
  const net = new MemoryNetwork();
  const nodes = VOTERS.map((id) => boot(net, id, new Map(), snapshotEveryEntries));
  await Promise.all(nodes.map((n) => n.ranges.start(0, VOTERS)));
  return { net, nodes };
}

/** Waits (bounded) until `pred` holds, failing with `what` and what was last seen. */
async function until(what: string, pred: () => boolean, seen: () => unknown, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline)
      assert.fail(`${what}: not within ${ms} ms; saw ${JSON.stringify(seen())}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function leaderOf(nodes: readonly Node[], range: number): RangeGroup | undefined {
  return nodes.map((n) => n.ranges.group(range)).find((g) => g?.runtime.isLeader() === true);
}

async function waitLeader(nodes: readonly Node[], range: number): Promise<RangeGroup> {
  await until(
    `a leader for range ${range}`,
    () => leaderOf(nodes, range) !== undefined,
    () => nodes.map((n) => n.ranges.group(range)?.runtime.status().role ?? 'absent'),
  );
  return leaderOf(nodes, range) as RangeGroup;
}

let now = 0;
function propose(g: RangeGroup, cmd: RangeCommand, client = '', seq = 0): Promise<unknown> {
  // Leader time for the session layer: rising, as a leader's clock is.
  now = Math.max(now + 1, Date.now());
  const payload = RangeMachine.encode(cmd);
  return g.runtime.propose(encodeEnvelope({ client, seq, timeMs: now, payload }));
}

const put = (key: string, value: string): KvCommand => ({
  compare: [],
  success: [{ kind: 'put', key: b(key), value: b(value), prevKv: false }],
  failure: [],
});

/** The range holding `key`, as the running groups know it (the router's map, for the test). */
function routeOf(nodes: readonly Node[], key: string): number {
  let best: RangeDescriptor | null = null;
  for (const n of nodes)
    for (const id of n.ranges.ranges()) {
      const d = n.ranges.group(id)?.range.descriptor() as RangeDescriptor;
      const k = b(key);
      const inside =
        Buffer.compare(k, d.start) >= 0 && (d.end === null || Buffer.compare(k, d.end) < 0);
      if (inside && (best === null || d.generation > best.generation)) best = d;
    }
  return best?.id ?? 0;
}

/**
 * One writer: puts to keys in turn through the leader of the range it routes to, one session,
 * retrying a failed write with the same sequence number (after a refresh of the route on
 * WRONG_RANGE) until it is acknowledged. Counts the acknowledged puts of each key.
 */
class Writer {
  readonly acked = new Map<string, { count: number; last: string }>();
  private seq = 0;
  wrongRange = 0;
  constructor(private readonly nodes: () => readonly Node[]) {}

  async write(key: string, value: string): Promise<void> {
    const seq = ++this.seq;
    for (let attempt = 0; ; attempt++) {
      if (attempt > 200) assert.fail(`write ${key}=${value} never acknowledged`);
      const nodes = this.nodes();
      const leader = leaderOf(nodes, routeOf(nodes, key));
      if (leader === undefined) {
        await new Promise((r) => setTimeout(r, 10));
        continue;
      }
      let r: { kind?: string; error?: { code: string }; revision?: number };
      try {
        r = (await propose(leader, put(key, value), 'writer', seq)) as typeof r;
      } catch (err) {
        if (!(err instanceof FlotillaError)) throw err;
        await new Promise((r) => setTimeout(r, 10));
        continue;
      }
      if (r.error?.code === 'WRONG_RANGE') {
        this.wrongRange++;
        await new Promise((r) => setTimeout(r, 5));
        continue;
      }
      assert.equal(r.error, undefined, `write ${key}: ${JSON.stringify(r)}`);
      const a = this.acked.get(key) ?? { count: 0, last: '' };
      this.acked.set(key, { count: a.count + 1, last: value });
      return;
    }
  }
}

/**
 * What every host's halves must hold: each acknowledged key in exactly the half whose bounds
 * hold it, at its last acknowledged value, with a version equal to its acknowledged puts; and
 * nothing else. Empty when they do.
 */
function holdingProblems(nodes: readonly Node[], w: Writer): string[] {
  const problems: string[] = [];
  for (const n of nodes)
    for (const id of [0, RIGHT]) {
      const g = n.ranges.group(id);
      if (g === undefined) {
        problems.push(`node ${n.id} does not run range ${id}`);
        continue;
      }
      const kvs = g.range.kv.range({
        range: { key: new Uint8Array([0]), rangeEnd: new Uint8Array([0]) },
        limit: 0,
        countOnly: false,
      }).kvs;
      const d = g.range.descriptor();
      const want = [...w.acked]
        .filter(([k]) => (id === 0 ? k < SPLIT_KEY : k >= SPLIT_KEY))
        .sort(([a], [c]) => (a < c ? -1 : 1))
        .map(([k, a]) => `${k}=${a.last}/v${a.count}`);
      const got = kvs.map((kv) => `${str(kv.key)}=${str(kv.value)}/v${kv.version}`);
      if (got.join(' ') !== want.join(' '))
        problems.push(
          `node ${n.id} range ${id} [${str(d.start)}, ${d.end === null ? 'end' : str(d.end)}) holds ${got.join(' ')} where ${want.join(' ')}`,
        );
    }
  return problems;
}

/**
 * Waits until every node applied range `id`'s leader's whole log (its own term's first entry
 * included: after a restart, what the previous term committed may be applied only then).
 */
async function converged(nodes: readonly Node[], id: number): Promise<void> {
  const leader = await waitLeader(nodes, id);
  const target = leader.runtime.status().lastIndex;
  await until(
    `every node applied range ${id} through ${target}`,
    () => nodes.every((n) => (n.ranges.group(id)?.runtime.appliedIndex() ?? 0) >= target),
    () => nodes.map((n) => n.ranges.group(id)?.runtime.appliedIndex() ?? 'absent'),
  );
}

async function splitWhileWriting(nodes: () => readonly Node[], w: Writer): Promise<void> {
  let i = 0;
  const writes = async (n: number): Promise<void> => {
    for (const end = i + n; i < end; i++)
      await w.write(KEYS[(i * 7) % KEYS.length] as string, `v${i}`);
  };
  await writes(30);
  // The split is proposed while the writer goes on writing.
  const during = writes(30);
  const leader = await waitLeader(nodes(), 0);
  const r = (await propose(leader, {
    split: { key: b(SPLIT_KEY), id: RIGHT, generation: 0, replicas: VOTERS },
  })) as { kind: string };
  assert.equal(r.kind, 'split');
  await during;
  await writes(40);
}

void test('range 0 splits while a writer writes: both halves serve exactly the acknowledged writes', async () => {
  const { nodes } = await cluster();
  const w = new Writer(() => nodes);
  // A write of a right-hand key through its own session before the split, retried after it.
  const early = await propose(await waitLeader(nodes, 0), put('k99', 'early'), 'retrier', 1);
  w.acked.set('k99', { count: 1, last: 'early' });
  await splitWhileWriting(() => nodes, w);
  for (const n of nodes) await n.ranges.settled();
  await converged(nodes, 0);
  await converged(nodes, RIGHT);
  assert.deepEqual(holdingProblems(nodes, w), []);
  // The retry reaches the right-hand range: answered from the session table it took along.
  const retried = await propose(await waitLeader(nodes, RIGHT), put('k99', 'early'), 'retrier', 1);
  assert.deepEqual(retried, early);
  // A write of a right-hand key that still reaches range 0 is refused with its descriptor.
  const stale = (await propose(await waitLeader(nodes, 0), put('k30', 'stale'))) as {
    error?: { code: string; range: RangeDescriptor };
  };
  assert.equal(stale.error?.code, 'WRONG_RANGE');
  assert.equal(stale.error?.range.generation, 1);
  assert.equal(str(stale.error?.range.end ?? new Uint8Array()), SPLIT_KEY);
  await converged(nodes, RIGHT);
  assert.deepEqual(holdingProblems(nodes, w), []);
  // Both halves keep serving: one more write to each, through its own group.
  await w.write('k01', 'last-left');
  await w.write('k39', 'last-right');
  await converged(nodes, 0);
  await converged(nodes, RIGHT);
  assert.deepEqual(holdingProblems(nodes, w), []);
  // Planted: a writer's record that claims one acknowledged put more than happened is caught.
  const a = w.acked.get('k39') as { count: number; last: string };
  w.acked.set('k39', { ...a, count: a.count + 1 });
  assert.ok(holdingProblems(nodes, w).some((p) => p.includes('k39=last-right/v')));
});

for (const [how, every] of [
  ['its left snapshot past the split', 16],
  ['the split replayed from its log (no snapshot)', 100_000],
] as const)
  void test(`a host restarted after the split recovers both groups: ${how}`, async () => {
    const { net, nodes } = await cluster(every);
    const w = new Writer(() => nodes);
    await splitWhileWriting(() => nodes, w);
    for (const n of nodes) await n.ranges.settled();
    await converged(nodes, RIGHT);
    const victim = nodes[2] as Node;
    const splitIndex = victim.disks.get(RIGHT)?.snapshot?.meta.index ?? 0;
    assert.ok(splitIndex > 0, 'the right-hand range was seeded');
    // Enough writes to the left for its snapshots (every 16 entries) to pass the split.
    for (let i = 0; i < 24; i++) await w.write(KEYS[i % 20] as string, `left-${i}`);
    const leftSnapshot = (): number => victim.disks.get(0)?.snapshot?.meta.index ?? 0;
    if (every === 16)
      await until(
        'a snapshot of the left past the split',
        () => leftSnapshot() > splitIndex,
        leftSnapshot,
      );
    else assert.equal(leftSnapshot(), 0);
    await victim.host.close(0);
    live.splice(live.indexOf(victim.host), 1);
    for (let i = 0; i < 10; i++) await w.write(KEYS[i * 3] as string, `while-down-${i}`);
    const back = boot(net, victim.id, victim.disks, every);
    nodes[2] = back;
    await back.ranges.start(0, VOTERS);
    await until(
      'the restarted host runs the right-hand range again',
      () => back.ranges.group(RIGHT) !== undefined,
      () => back.ranges.ranges(),
    );
    await back.ranges.settled();
    await converged(nodes, 0);
    await converged(nodes, RIGHT);
    assert.deepEqual(holdingProblems(nodes, w), []);
  });

void test('a host cut off during the split is caught up by snapshot and then serves the right half', async () => {
  const { net, nodes } = await cluster();
  const w = new Writer(() => nodes);
  await waitLeader(nodes, 0);
  const victim = nodes.find((n) => !n.ranges.group(0)?.runtime.isLeader()) as Node;
  for (let i = 0; i < 5; i++) await w.write(KEYS[i] as string, `before-${i}`);
  await converged(nodes, 0);
  net.isolate(victim.id);
  const others = nodes.filter((n) => n !== victim);
  await splitWhileWriting(() => others, w);
  // Well past the split: the others' snapshots of range 0 are taken after it, and their logs
  // compacted past it, so the victim can only be caught up by a snapshot.
  for (let i = 0; i < 40; i++) await w.write(KEYS[i] as string, `after-${i}`);
  const left = (await waitLeader(others, 0)).runtime;
  await until(
    'range 0 compacted its log past the split',
    () => left.status().firstIndex > 20,
    () => left.status().firstIndex,
  );
  assert.equal(victim.ranges.group(RIGHT), undefined);
  net.heal();
  await until(
    'the victim found the right-hand range in the left snapshot and started it',
    () => victim.ranges.group(RIGHT) !== undefined,
    () => victim.ranges.ranges(),
  );
  await converged(nodes, 0);
  await converged(nodes, RIGHT);
  assert.deepEqual(holdingProblems(nodes, w), []);
  // It serves the right half: it takes the lead of the right-hand range and writes through it.
  const mine = victim.ranges.group(RIGHT) as RangeGroup;
  const leader = await waitLeader(nodes, RIGHT);
  if (leader !== mine) leader.runtime.transferLeadership(victim.id);
  await until(
    'the victim leads the right-hand range',
    () => mine.runtime.isLeader(),
    () => mine.runtime.status().role,
  );
  await w.write('k33', 'through-the-victim');
  await converged(nodes, RIGHT);
  assert.deepEqual(holdingProblems(nodes, w), []);
});

void test('on disk: the seed is a WAL snapshot the right-hand group restarts from, with both storages', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'flotilla-split-'));
  try {
    const net = new MemoryNetwork();
    const open = (): Node => {
      const host = new Host({ id: 1, transport: net.connect(1), clock: systemClock, tickMs: 5 });
      live.push(host);
      const ranges = new RangeGroups({
        host,
        openStorage: (range) =>
          openWalStorage(join(dir, `range-${range}`), { snapshotsCoverCompaction: true }),
        settings: { electionTicks: 15, heartbeatTicks: 3 },
        onError: (range, err) => assert.fail(`range ${range}: ${err.message}`),
      });
      return { id: 1, host, ranges, disks: new Map() };
    };
    const first = open();
    await first.ranges.start(0, [1]);
    const w = new Writer(() => [first]);
    for (let i = 0; i < 10; i++) await w.write(KEYS[i * 4] as string, `v${i}`);
    const r = (await propose(await waitLeader([first], 0), {
      split: { key: b(SPLIT_KEY), id: RIGHT, generation: 0, replicas: [1] },
    })) as { kind: string };
    assert.equal(r.kind, 'split');
    await first.ranges.settled();
    for (let i = 0; i < 10; i++) await w.write(KEYS[i * 4 + 1] as string, `after${i}`);
    assert.deepEqual(holdingProblems([first], w), []);
    await first.host.close(0);
    live.splice(live.indexOf(first.host), 1);

    const again = open();
    await again.ranges.start(0, [1]);
    await until(
      'both ranges run again',
      () => again.ranges.group(RIGHT) !== undefined,
      () => again.ranges.ranges(),
    );
    await again.ranges.settled();
    await waitLeader([again], RIGHT);
    await converged([again], 0);
    await converged([again], RIGHT);
    assert.deepEqual(holdingProblems([again], w), []);
  } finally {
    for (const h of live.splice(0)) await h.close(0);
    await rm(dir, { recursive: true, force: true });
  }
});
