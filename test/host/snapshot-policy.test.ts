// When the runtime snapshots: at multiples of snapshotEveryEntries, and there only once the log
// applied since the last snapshot holds snapshotLogRatio of that snapshot's bytes. A state whose
// snapshot is 10,000 bytes (a few more with the stream's framing), fed entries of 100 bytes,
// every 10 entries and a ratio of 0.5: snapshots at 10 (the first), then once 51 entries (just
// over 5,000 bytes) were applied since, at the next multiple of 10: 70, 130, 190. A restart in
// the middle keeps the schedule, because the replay counts the log since the snapshot again.
// A snapshot is encoded in at most snapshotEncodeShare of the time it takes.

import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import {
  chunkStream,
  systemClock,
  type Command,
  type StateMachine,
} from '../../src/host/contracts.js';
import { Host } from '../../src/host/host.js';
import type { RaftRuntime } from '../../src/host/runtime.js';
import type { RuntimeEvent } from '../../src/host/runtime-options.js';
import { createMemoryDisk, createMemoryStorage, type MemoryDisk } from '../../src/storage/index.js';
import { MemoryNetwork } from '../../src/transport/index.js';
import { until } from '../support/until.js';

const SNAPSHOT_BYTES = 10_000;
const ENTRY_BYTES = 100;

/** Counts what it applied; its snapshot is always SNAPSHOT_BYTES long. */
class Fixed implements StateMachine {
  count = 0;
  apply(commands: readonly Command[]): unknown[] {
    return commands.map(() => ++this.count);
  }
  snapshot(): AsyncIterable<Uint8Array> {
    const data = new Uint8Array(SNAPSHOT_BYTES);
    new DataView(data.buffer).setUint32(0, this.count);
    return chunkStream(() => [data][Symbol.iterator]());
  }
  async restore(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    for await (const c of chunks) this.count = new DataView(c.buffer, c.byteOffset).getUint32(0);
  }
}

const hosts: Host[] = [];
afterEach(async () => {
  for (const h of hosts.splice(0)) await h.close(0);
});

async function start(
  disk: MemoryDisk,
  ratio: number | undefined,
): Promise<{ rt: RaftRuntime; saved: number[]; host: Host }> {
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
  const rt = await host.addGroup(0, {
    voters: [1],
    storage: createMemoryStorage({ quiet: true, disk }),
    stateMachine: new Fixed(),
    electionTicks: 10,
    heartbeatTicks: 2,
    snapshotEveryEntries: 10,
    snapshotCatchupEntries: 2,
    ...(ratio === undefined ? {} : { snapshotLogRatio: ratio }),
  });
  const deadline = Date.now() + 5_000;
  while (!rt.isLeader()) {
    if (Date.now() > deadline) assert.fail('the single node did not become leader');
    await new Promise((r) => setTimeout(r, 5));
  }
  return { rt, saved, host };
}

/**
 * Proposes entries of ENTRY_BYTES until the applied index reaches `to`; at each multiple of 10
 * where `expected` has a snapshot, waits (bounded) for it to be saved before going on, so that
 * its size is known at the next multiple, as it is in a running node.
 */
async function fill(
  m: { rt: RaftRuntime; saved: number[] },
  to: number,
  expected: readonly number[],
): Promise<void> {
  while (m.rt.appliedIndex() < to) {
    await m.rt.propose(new Uint8Array(ENTRY_BYTES));
    const at = m.rt.appliedIndex();
    if (!expected.includes(at)) continue;
    const deadline = Date.now() + 5_000;
    while (!m.saved.includes(at)) {
      if (Date.now() > deadline)
        assert.fail(`no snapshot saved at ${at}; saved: ${JSON.stringify(m.saved)}`);
      await new Promise((r) => setTimeout(r, 2));
    }
  }
}

void test('a snapshot waits for the log to outgrow half the last one (default ratio)', async () => {
  const m = await start(createMemoryDisk(), undefined);
  const expected = [10, 70, 130, 190];
  await fill(m, 200, expected);
  assert.deepEqual(m.saved, expected);
});

void test('ratio 0: a snapshot at every multiple of snapshotEveryEntries', async () => {
  const m = await start(createMemoryDisk(), 0);
  const expected = Array.from({ length: 10 }, (_, i) => (i + 1) * 10);
  await fill(m, 100, expected);
  assert.deepEqual(m.saved, expected);
});

void test('a restart between snapshots keeps the schedule', async () => {
  const disk = createMemoryDisk();
  const expected = [10, 70, 130, 190];
  const first = await start(disk, 0.5);
  await fill(first, 85, expected);
  assert.deepEqual(first.saved, [10, 70]);
  await first.host.close(0);
  hosts.splice(hosts.indexOf(first.host), 1);
  const again = await start(disk, 0.5);
  await fill(again, 200, expected);
  assert.deepEqual(again.saved, [130, 190], 'the same indexes as without the restart');
});

/** Its snapshot is CHUNKS chunks, each taking SPIN_MS of the clock to make; records when. */
const CHUNKS = 20;
const SPIN_MS = 5;
class Slow extends Fixed {
  pulls: number[] = [];
  override snapshot(): AsyncIterable<Uint8Array> {
    const pulls = this.pulls;
    return chunkStream(function* () {
      for (let k = 0; k < CHUNKS; k++) {
        const at = Date.now();
        pulls.push(at);
        while (Date.now() - at < SPIN_MS);
        yield new Uint8Array(4);
      }
    });
  }
}

/** A single-node group over a Slow machine: leader, with 10 entries applied (a snapshot due). */
async function slowLeader(
  host: Host,
  snapshotEncodeShare: number,
): Promise<{ rt: RaftRuntime; sm: Slow }> {
  const sm = new Slow();
  const rt = await host.addGroup(0, { ...slowGroup(sm), snapshotEncodeShare });
  await until('the single node to become leader', () => rt.isLeader(), 10_000);
  while (rt.appliedIndex() < 10) await rt.propose(new Uint8Array(ENTRY_BYTES));
  return { rt, sm };
}

function slowGroup(sm: Slow): Parameters<Host['addGroup']>[1] {
  return {
    voters: [1],
    storage: createMemoryStorage({ quiet: true, disk: createMemoryDisk() }),
    stateMachine: sm,
    electionTicks: 10,
    heartbeatTicks: 2,
    snapshotEveryEntries: 10,
  };
}

function singleHost(): Host {
  return new Host({
    id: 1,
    transport: new MemoryNetwork().connect(1),
    clock: systemClock,
    tickMs: 5,
  });
}

void test('a snapshot is encoded in at most snapshotEncodeShare of the time it takes', async () => {
  const host = singleHost();
  hosts.push(host);
  for (const share of [0, -0.5, 1.5, Number.NaN])
    await assert.rejects(
      () => host.addGroup(1, { ...slowGroup(new Slow()), snapshotEncodeShare: share }),
      (err: Error) =>
        err instanceof RangeError && /snapshotEncodeShare must be in/.test(err.message),
      `share ${share}`,
    );
  const { sm } = await slowLeader(host, 0.25);
  await until(
    () => `${sm.pulls.length} of ${CHUNKS} chunks made`,
    () => sm.pulls.length >= CHUNKS,
    10_000,
  );
  // Before the last chunk is made, the 19 before it took at least 95 ms of encoding: at a
  // quarter of the time, at least 380 ms since the first (less a millisecond's rounding each).
  const spread = (sm.pulls[CHUNKS - 1] as number) - (sm.pulls[0] as number);
  assert.ok(spread >= 4 * (CHUNKS - 1) * SPIN_MS - CHUNKS, `made over ${spread} ms`);
});

void test('a node closing mid-snapshot finishes it unpaced rather than waiting out the pace', async () => {
  const host = singleHost();
  // Paced, the 20 chunks would take at least 19 × 5 ms / 1 % = 9.5 s.
  const { sm } = await slowLeader(host, 0.01);
  await until(
    () => `${sm.pulls.length} chunks made`,
    () => sm.pulls.length >= 2,
    10_000,
  );
  await host.close(0);
  assert.equal(sm.pulls.length, CHUNKS, 'the snapshot was finished before the close returned');
  const spread = (sm.pulls[CHUNKS - 1] as number) - (sm.pulls[0] as number);
  assert.ok(spread < 5_000, `made over ${spread} ms`);
});
