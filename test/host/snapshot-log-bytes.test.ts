// The in-memory log is bounded in bytes as well as entries. With snapshotEveryEntries 10,000 the
// byte rule is checked every 10 indexes; with snapshotLogBytes 10,000 and entries of 1,000
// bytes after the leader's empty entry at 1, the log holds 9,000 bytes at 10 and 19,000 at 20:
// snapshots at 20, 30, 40, ..., long before the count multiple 10,000. The entries kept behind
// a snapshot for slow followers are bounded by snapshotCatchupBytes as well as by count. Two
// runtimes whose logs are cut into different Readies snapshot at the same indexes.

import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import {
  chunkStream,
  systemClock,
  type Command,
  type StateMachine,
} from '../../src/host/contracts.js';
import { Host } from '../../src/host/host.js';
import type { RaftRuntime, RuntimeEvent, RuntimeOptions } from '../../src/host/runtime.js';
import { createMemoryDisk, createMemoryStorage, type MemoryDisk } from '../../src/storage/index.js';
import { MemoryNetwork } from '../../src/transport/index.js';
import { until } from '../support/until.js';

/** Counts what it applied; its snapshot is 100 bytes, so the ratio rule never holds one back. */
class Counter implements StateMachine {
  count = 0;
  apply(commands: readonly Command[]): unknown[] {
    return commands.map(() => ++this.count);
  }
  snapshot(): AsyncIterable<Uint8Array> {
    const data = new Uint8Array(100);
    new DataView(data.buffer).setUint32(0, this.count);
    return chunkStream(() => [data][Symbol.iterator]());
  }
  async restore(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    for await (const c of chunks) this.count = new DataView(c.buffer, c.byteOffset).getUint32(0);
  }
}

type Policy = Pick<
  RuntimeOptions,
  'snapshotLogBytes' | 'snapshotCatchupEntries' | 'snapshotCatchupBytes' | 'snapshotLogRatio'
>;

interface Member {
  readonly host: Host;
  readonly rt: RaftRuntime;
  readonly saved: number[];
  readonly storageFirstIndex: () => number;
}

const hosts: Host[] = [];
afterEach(async () => {
  for (const h of hosts.splice(0)) await h.close(0);
});

async function start(policy: Policy, disk: MemoryDisk = createMemoryDisk()): Promise<Member> {
  const saved: number[] = [];
  const host = new Host({
    id: 1,
    transport: new MemoryNetwork().connect(1),
    clock: systemClock,
    tickMs: 5,
    onEvent: (_g, e: RuntimeEvent) => {
      if (e.kind === 'snapshot-saved') saved.push(e.index);
    },
  });
  hosts.push(host);
  const storage = createMemoryStorage({ quiet: true, disk });
  const rt = await host.addGroup(0, {
    voters: [1],
    storage,
    stateMachine: new Counter(),
    electionTicks: 10,
    heartbeatTicks: 2,
    snapshotEveryEntries: 10_000,
    ...policy,
  });
  await until('the single node did not become leader', () => rt.isLeader(), 5_000);
  return { host, rt, saved, storageFirstIndex: () => storage.log.firstIndex() };
}

/**
 * Proposes the entries of `sizes` (index 2 on) `batch` at a time, all of a batch at once so
 * that they share Readies; after each batch waits (bounded) for every snapshot `expected` has
 * in the indexes it applied, so that its size is known by the next check, as it is in a
 * running node whose snapshots are small.
 */
async function fill(
  m: Member,
  sizes: readonly number[],
  o: { batch: number; expected: readonly number[] },
): Promise<void> {
  for (let i = 0; i < sizes.length; i += o.batch) {
    const before = m.rt.appliedIndex();
    await Promise.all(sizes.slice(i, i + o.batch).map((n) => m.rt.propose(new Uint8Array(n))));
    const after = m.rt.appliedIndex();
    const due = o.expected.filter((x) => x > before && x <= after);
    await until(
      () => `snapshots ${JSON.stringify(due)} not all saved; saved: ${JSON.stringify(m.saved)}`,
      () => due.every((x) => m.saved.includes(x)),
      5_000,
    );
  }
}

/**
 * The indexes the policy picks for entries of `sizes` from index 2 (ratio 0 or a state too
 * small to matter): every `step` indexes, once `logBytes` were applied since the last one.
 */
function schedule(sizes: readonly number[], step: number, logBytes: number): number[] {
  const out: number[] = [];
  let since = 0;
  sizes.forEach((n, i) => {
    const index = i + 2;
    since += n;
    if (index % step === 0 && since >= logBytes) {
      out.push(index);
      since = 0;
    }
  });
  return out;
}

void test('large entries snapshot and compact the log long before the count multiple', async () => {
  const m = await start({ snapshotLogBytes: 10_000, snapshotCatchupEntries: 2 });
  const sizes = Array.from({ length: 59 }, () => 1_000);
  const expected = [20, 30, 40, 50, 60];
  assert.deepEqual(schedule(sizes, 10, 10_000), expected);
  await fill(m, sizes, { batch: 1, expected });
  assert.deepEqual(m.saved, expected);
  // Two entries kept behind the snapshot at 60 in the core, none in storage.
  assert.equal(m.rt.status().firstIndex, 59);
  assert.equal(m.storageFirstIndex(), 61);
});

void test('the catch-up tail behind a snapshot is bounded in bytes', async () => {
  const m = await start({
    snapshotLogBytes: 10_000,
    snapshotCatchupEntries: 100,
    snapshotCatchupBytes: 2_500,
  });
  const sizes = Array.from({ length: 29 }, () => 1_000);
  await fill(m, sizes, { batch: 1, expected: [20, 30] });
  assert.deepEqual(m.saved, [20, 30]);
  // 100 entries may stay behind the snapshot at 30, but only 2,500 bytes: two of 1,000 bytes.
  assert.equal(m.rt.status().firstIndex, 29);
  assert.equal(m.rt.status().lastIndex, 30);
});

void test('the catch-up tail keeps no entry larger than its byte bound', async () => {
  const m = await start({
    snapshotLogBytes: 10_000,
    snapshotCatchupEntries: 100,
    snapshotCatchupBytes: 999,
  });
  await fill(
    m,
    Array.from({ length: 19 }, () => 1_000),
    { batch: 1, expected: [20] },
  );
  assert.equal(m.rt.status().firstIndex, 21, 'the log is empty after the snapshot at 20');
});

void test('runtimes fed the same entries in different Ready cuts snapshot at the same indexes', async () => {
  // Sizes from 300 to 2,299 bytes in a fixed pseudo-random order.
  const sizes = Array.from({ length: 400 }, (_, i) => 300 + ((i * 7_919) % 2_000));
  const expected = schedule(sizes, 10, 10_000);
  assert.ok(expected.length > 20 && expected.some((x) => x % 10_000 !== 0));
  const policy = { snapshotLogBytes: 10_000, snapshotCatchupEntries: 5 };
  const one = await start(policy);
  await fill(one, sizes, { batch: 1, expected });
  const nine = await start(policy);
  // Applied slices [first, last] of the runtime fed nine at a time: some must cross a check
  // step (a multiple of 10) before their end, or the two runtimes' cuts would not differ there.
  const slices: [number, number][] = [];
  nine.rt.onApplied((b) => slices.push([b.appliedIndex - b.commands.length + 1, b.appliedIndex]));
  await fill(nine, sizes, { batch: 9, expected });
  const crossing = slices.filter(([a, b]) => Math.floor((b - 1) / 10) > Math.floor((a - 1) / 10));
  assert.ok(crossing.length >= 3, `slices crossing a step: ${JSON.stringify(crossing)}`);
  assert.deepEqual(one.saved, expected);
  assert.deepEqual(nine.saved, expected);
});

void test('a restart between byte-triggered snapshots counts the replayed log', async () => {
  const disk = createMemoryDisk();
  const policy = { snapshotLogBytes: 10_000, snapshotCatchupEntries: 2 };
  const first = await start(policy, disk);
  // Up to index 38: snapshots at 20 and 30, and 8,000 bytes applied since.
  await fill(
    first,
    Array.from({ length: 37 }, () => 1_000),
    { batch: 1, expected: [20, 30] },
  );
  assert.deepEqual(first.saved, [20, 30]);
  await first.host.close(0);
  hosts.splice(hosts.indexOf(first.host), 1);
  const again = await start(policy, disk);
  // The replay to 38, then the new term's empty entry.
  await until(
    () => `applied ${again.rt.appliedIndex()}, not 39`,
    () => again.rt.appliedIndex() === 39,
    5_000,
  );
  // The replay counts the 8,000 bytes after 30 again, so one more entry of 2,000 bytes makes a
  // snapshot at 40 (counting only what came after the restart, the first would be at 50).
  await fill(
    again,
    Array.from({ length: 11 }, () => 2_000),
    { batch: 1, expected: [40, 50] },
  );
  assert.deepEqual(again.saved, [40, 50]);
});
