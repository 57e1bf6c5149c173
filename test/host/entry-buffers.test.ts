// A large entry must not pin a buffer several times its size. msgpackr packs into a working
// buffer at least four times the largest message so far and returns a view of it; the
// in-memory log keeps every entry until compaction, so 1,000 writes of 256 KiB kept as such
// views held 2.6 GB on a leader (BENCHMARKS.md, "Memory: large values"). An envelope from
// OWN_BUFFER_FROM_BYTES up gets a buffer of its own; the log then holds what it was given.

import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { Packr } from 'msgpackr';
import { Host } from '../../src/host/host.js';
import { OWN_BUFFER_FROM_BYTES, decodeEnvelope, encodeEnvelope } from '../../src/host/envelope.js';
import {
  chunkStream,
  systemClock,
  type Command,
  type StateMachine,
} from '../../src/host/contracts.js';
import { createMemoryStorage } from '../../src/storage/index.js';
import { MemoryNetwork } from '../../src/transport/index.js';
import { until } from '../support/until.js';

/** Bytes an entry's data keeps alive beyond its own: its whole backing buffer. */
function pinned(data: Uint8Array): number {
  return data.buffer.byteLength;
}

const LARGE = 256 * 1024;

void test('msgpackr alone returns views of a buffer several times a large message (what the check below catches)', () => {
  const packr = new Packr({ useRecords: false, moreTypes: false, variableMapSize: true });
  const out = packr.pack([1, 1, 'c', 1, 1, new Uint8Array(LARGE)]);
  assert.ok(pinned(out) >= 2 * out.byteLength, `${pinned(out)} for ${out.byteLength} bytes`);
});

void test('an envelope from OWN_BUFFER_FROM_BYTES up holds a buffer of its own, and decodes the same', () => {
  for (const size of [OWN_BUFFER_FROM_BYTES, LARGE, 1024 * 1024]) {
    for (let i = 0; i < 6; i++) {
      const payload = new Uint8Array(size).fill(i + 1);
      const data = encodeEnvelope({ client: 'c', seq: i + 1, timeMs: 7, payload });
      assert.equal(pinned(data), data.byteLength, `a ${size}-byte payload's entry`);
      const back = decodeEnvelope(data);
      assert.equal(back.seq, i + 1);
      assert.deepEqual(Buffer.from(back.payload), Buffer.from(payload));
    }
  }
});

class Counter implements StateMachine {
  count = 0;
  apply(commands: readonly Command[]): unknown[] {
    return commands.map(() => ++this.count);
  }
  snapshot(): AsyncIterable<Uint8Array> {
    return chunkStream(() => [new Uint8Array(4)][Symbol.iterator]());
  }
  async restore(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    for await (const c of chunks) void c;
  }
}

const hosts: Host[] = [];
afterEach(async () => {
  for (const h of hosts.splice(0)) await h.close(0);
});

void test('the log of a leader keeps large proposals without their working buffer', async () => {
  const host = new Host({
    id: 1,
    transport: new MemoryNetwork().connect(1),
    clock: systemClock,
    tickMs: 5,
  });
  hosts.push(host);
  const storage = createMemoryStorage({ quiet: true });
  const rt = await host.addGroup(0, {
    voters: [1],
    storage,
    stateMachine: new Counter(),
    electionTicks: 10,
    heartbeatTicks: 2,
  });
  await until('the single node leads', () => rt.isLeader(), 5_000);
  for (let i = 0; i < 8; i++)
    await rt.propose(
      encodeEnvelope({ client: 'c', seq: i + 1, timeMs: 1, payload: new Uint8Array(LARGE) }),
    );
  const log = storage.log;
  const large = log
    .entries(log.firstIndex(), log.lastIndex() + 1)
    .filter((e) => e.data.byteLength >= LARGE);
  assert.equal(large.length, 8);
  const total = large.reduce((n, e) => n + pinned(e.data), 0);
  const own = large.reduce((n, e) => n + e.data.byteLength, 0);
  assert.ok(total <= 1.01 * own, `8 entries of ${own} bytes in all held ${total} bytes of buffers`);
});
