// The contract every RaftStorage backend must meet (WAL, SQLite, memory): one suite, run by
// each backend's test file with a factory that can open the same "disk" again (a restart).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeConfChange } from '../../src/raft/confchange.js';
import type { Entry } from '../../src/raft/types.js';
import type { RaftStorage } from '../../src/storage/types.js';
import { ents, plain, rejectsCode } from './helpers.js';

export interface Backend {
  /** Opens the store on the backend's disk (the same disk on every call of one instance). */
  open(): Promise<RaftStorage>;
  /** Removes the disk. */
  cleanup(): Promise<void>;
}

async function withReopen(
  make: () => Promise<Backend>,
  body: (b: Backend) => Promise<void>,
): Promise<void> {
  const b = await make();
  try {
    await body(b);
  } finally {
    await b.cleanup();
  }
}

async function reopen(b: Backend, s: RaftStorage): Promise<RaftStorage> {
  await s.close();
  return b.open();
}

type Case = readonly [name: string, body: (b: Backend) => Promise<void>];

const CASES: readonly Case[] = [
  [
    'keeps an entry whose data is a view into a larger buffer as its own bytes',
    async (b) => {
      await using s = await b.open();
      // As an encoder hands out its output: views into one large shared buffer.
      const shared = new Uint8Array(1 << 20);
      const view = (at: number, bytes: number[]): Uint8Array => {
        shared.set(bytes, at);
        return shared.subarray(at, at + bytes.length);
      };
      const one: Entry = { term: 1, index: 1, type: 'normal', data: view(10, [1, 2, 3]) };
      const two: Entry = { term: 1, index: 2, type: 'normal', data: view(500_000, [4, 5]) };
      await s.persist([one, two], { term: 1, vote: 1, commit: 0 });
      shared.fill(9); // the encoder writes its next output over the same buffer
      const kept = s.log.entries(1, 3);
      assert.deepEqual(
        kept.map((e) => [...e.data]),
        [
          [1, 2, 3],
          [4, 5],
        ],
      );
      for (const e of kept)
        assert.ok(
          e.data.buffer.byteLength <= 5,
          `entry ${e.index} keeps a buffer of ${e.data.buffer.byteLength} bytes for ${e.data.byteLength}`,
        );
    },
  ],
  [
    'starts empty',
    async (b) => {
      await using s = await b.open();
      assert.deepEqual(s.initialState(), {
        hardState: { term: 0, vote: 0, commit: 0 },
        snapshot: null,
        entries: [],
        applied: 0,
      });
      assert.equal(s.log.firstIndex(), 1);
      assert.equal(s.log.lastIndex(), 0);
      assert.equal(s.log.term(0), 0);
      assert.equal(s.log.term(1), undefined);
      assert.equal(await s.loadSnapshot(), null);
    },
  ],
  [
    'appends, reads ranges and terms, and keeps them across a reopen',
    async (b) => {
      let s = await b.open();
      await s.persist(ents(1, 5, 1), { term: 1, vote: 1, commit: 0 });
      await s.log.append(ents(6, 10, 2));
      assert.deepEqual(plain(s.log.entries(3, 7)), plain([...ents(3, 5, 1), ...ents(6, 6, 2)]));
      assert.deepEqual(s.log.entries(4, 4), []);
      assert.equal(s.log.term(5), 1);
      assert.equal(s.log.term(6), 2);
      await rejectsCode(() => s.log.entries(0, 3), 'STORAGE_INVALID_ARGUMENT');
      await rejectsCode(() => s.log.entries(5, 12), 'STORAGE_INVALID_ARGUMENT');
      s = await reopen(b, s);
      assert.equal(s.log.lastIndex(), 10);
      assert.deepEqual(
        plain(s.initialState().entries),
        plain([...ents(1, 5, 1), ...ents(6, 10, 2)]),
      );
      assert.deepEqual(s.initialState().hardState, { term: 1, vote: 1, commit: 0 });
      await s.close();
    },
  ],
  [
    'keeps noop entries and empty payloads intact',
    async (b) => {
      let s = await b.open();
      await s.persist(
        [{ index: 1, term: 1, type: 'noop', data: new Uint8Array(0) }, ...ents(2, 2, 1, 300)],
        null,
      );
      s = await reopen(b, s);
      const got = s.log.entries(1, 3);
      assert.equal(got[0]?.type, 'noop');
      assert.equal(got[0]?.data.length, 0);
      assert.deepEqual(plain(got.slice(1)), plain(ents(2, 2, 1, 300)));
      await s.close();
    },
  ],
  [
    'replaces a conflicting suffix and persists the replacement',
    async (b) => {
      let s = await b.open();
      await s.persist(ents(1, 10, 1), null);
      await s.persist(ents(6, 7, 2), null);
      assert.equal(s.log.lastIndex(), 7);
      assert.equal(s.log.term(6), 2);
      s = await reopen(b, s);
      assert.deepEqual(
        plain(s.initialState().entries),
        plain([...ents(1, 5, 1), ...ents(6, 7, 2)]),
      );
      await s.close();
    },
  ],
  [
    'refuses gaps, compacted indices and decreasing terms with typed errors',
    async (b) => {
      await using s = await b.open();
      await s.persist(ents(1, 3, 2), null);
      const gap = await rejectsCode(
        () => s.persist(ents(5, 6, 2), null),
        'STORAGE_INVALID_ARGUMENT',
      );
      assert.match(gap.message, /index 5/);
      await rejectsCode(
        () => s.persist([...ents(4, 4, 2), ...ents(6, 6, 2)], null),
        'STORAGE_INVALID_ARGUMENT',
      );
      await rejectsCode(() => s.persist(ents(4, 4, 1), null), 'STORAGE_INVALID_ARGUMENT');
      assert.equal(s.log.lastIndex(), 3, 'a refused append changes nothing');
    },
  ],
  [
    'round-trips hard state and refuses a second vote in one term',
    async (b) => {
      let s = await b.open();
      await s.stable.save({ term: 3, vote: 2, commit: 0 });
      await s.persist([], { term: 3, vote: 2, commit: 0 });
      await rejectsCode(
        () => s.persist([], { term: 3, vote: 1, commit: 0 }),
        'STORAGE_INVALID_ARGUMENT',
      );
      await rejectsCode(
        () => s.persist([], { term: 2, vote: 0, commit: 0 }),
        'STORAGE_INVALID_ARGUMENT',
      );
      await s.persist(ents(1, 2, 3), { term: 4, vote: 0, commit: 2 });
      s = await reopen(b, s);
      assert.deepEqual(s.stable.load(), { term: 4, vote: 0, commit: 2 });
      await s.close();
    },
  ],
  [
    'compacts and reopens with the log starting after the compaction point',
    async (b) => {
      let s = await b.open();
      await s.persist(ents(1, 20, 1), null);
      await s.log.compact(12);
      assert.equal(s.log.firstIndex(), 13);
      assert.equal(s.log.term(12), 1);
      await rejectsCode(() => s.log.entries(12, 14), 'STORAGE_INVALID_ARGUMENT');
      await rejectsCode(() => s.log.compact(25), 'STORAGE_INVALID_ARGUMENT');
      s = await reopen(b, s);
      assert.equal(s.log.firstIndex(), 13);
      assert.equal(s.log.lastIndex(), 20);
      assert.deepEqual(plain(s.log.entries(13, 21)), plain(ents(13, 20, 1)));
      await s.close();
    },
  ],
  [
    'round-trips snapshots, compacts behind them and ignores older ones',
    async (b) => {
      let s = await b.open();
      await s.persist(ents(1, 30, 2), { term: 2, vote: 1, commit: 30 });
      const data = new Uint8Array(5000).map((_, k) => k % 251);
      await s.saveSnapshot({ index: 20, term: 2, voters: [1, 2, 3] }, data);
      await s.snapshots.save({ index: 10, term: 2, voters: [1] }, new Uint8Array(3));
      assert.equal(s.log.firstIndex(), 21);
      s = await reopen(b, s);
      const init = s.initialState();
      assert.deepEqual(init.snapshot, { index: 20, term: 2, voters: [1, 2, 3] });
      assert.equal(init.applied, 20);
      assert.deepEqual(plain(init.entries), plain(ents(21, 30, 2)));
      const snap = await s.snapshots.latest();
      assert.deepEqual([...(snap?.data ?? [])], [...data]);
      await s.close();
    },
  ],
  [
    'keeps conf-change entries and the whole configuration of a snapshot across a restart',
    async (b) => {
      let s = await b.open();
      const change: Entry = {
        index: 3,
        term: 2,
        type: 'conf-change',
        data: encodeConfChange({
          changes: [
            { kind: 'add-voter', node: 4 },
            { kind: 'remove', node: 3 },
          ],
        }),
      };
      await s.persist([...ents(1, 2, 2), change, ...ents(4, 6, 2)], {
        term: 2,
        vote: 1,
        commit: 6,
      });
      const joint = {
        index: 4,
        term: 2,
        voters: [1, 2, 4],
        learners: [5],
        outgoing: [1, 2, 3],
        learnersNext: [3],
        autoLeave: true,
      };
      await s.saveSnapshot(joint, new Uint8Array([9, 9]));
      s = await reopen(b, s);
      assert.deepEqual(s.initialState().snapshot, joint);
      assert.deepEqual(plain(s.initialState().entries), plain(ents(5, 6, 2)));
      // A simple configuration without learners reads back without the optional fields.
      await s.persist(ents(7, 9, 2), null);
      await s.saveSnapshot({ index: 8, term: 2, voters: [1, 2, 4] }, new Uint8Array([1]));
      s = await reopen(b, s);
      assert.deepEqual(s.initialState().snapshot, { index: 8, term: 2, voters: [1, 2, 4] });
      await s.close();
      s = await b.open();
      await s.persist([{ ...change, index: 10 }], null);
      s = await reopen(b, s);
      assert.deepEqual(
        plain(s.initialState().entries),
        plain([...ents(9, 9, 2), { ...change, index: 10 }]),
      );
      await s.close();
    },
  ],
  [
    'discards the whole log for a snapshot it does not match, then appends after it',
    async (b) => {
      let s = await b.open();
      await s.persist(ents(1, 15, 1), null);
      await s.saveSnapshot({ index: 12, term: 3, voters: [1] }, new Uint8Array([1, 2, 3]));
      assert.equal(s.log.firstIndex(), 13);
      assert.equal(s.log.lastIndex(), 12);
      assert.equal(s.log.term(12), 3);
      await rejectsCode(() => s.persist(ents(12, 12, 3), null), 'STORAGE_INVALID_ARGUMENT');
      await s.persist(ents(13, 14, 3), null);
      s = await reopen(b, s);
      assert.deepEqual(plain(s.initialState().entries), plain(ents(13, 14, 3)));
      assert.equal(s.log.term(12), 3);
      await s.close();
    },
  ],
  [
    'group-commits concurrent calls and keeps their order',
    async (b) => {
      let s = await b.open();
      const calls: Promise<void>[] = [];
      for (let i = 1; i <= 200; i++)
        calls.push(s.persist(ents(i, i, 1), i % 50 === 0 ? { term: 1, vote: 0, commit: i } : null));
      await Promise.all(calls);
      s = await reopen(b, s);
      assert.equal(s.log.lastIndex(), 200);
      assert.deepEqual(plain(s.initialState().entries), plain(ents(1, 200, 1)));
      assert.equal(s.stable.load().commit, 200);
      await s.close();
    },
  ],
  [
    'refuses a second open while open, and any use after close',
    async (b) => {
      const s = await b.open();
      await rejectsCode(() => b.open(), 'STORAGE_LOCKED');
      await s.close();
      await s.close();
      await rejectsCode(() => s.persist(ents(1, 1, 1), null), 'STORAGE_CLOSED');
      await rejectsCode(
        () => s.saveSnapshot({ index: 1, term: 1, voters: [] }, new Uint8Array(1)),
        'STORAGE_CLOSED',
      );
      const again = await b.open();
      await again.close();
    },
  ],
  [
    'enforces its limits',
    async (b) => {
      await using s = await b.open();
      await rejectsCode(() => s.persist(ents(1, 1, 1, 64 * 1024 * 1024), null), 'STORAGE_LIMIT');
      await rejectsCode(
        () => s.persist([{ index: 1, term: 0, type: 'normal', data: new Uint8Array(1) }], null),
        'STORAGE_INVALID_ARGUMENT',
      );
      await rejectsCode(
        () => s.saveSnapshot({ index: 0, term: 1, voters: [] }, new Uint8Array(1)),
        'STORAGE_INVALID_ARGUMENT',
      );
    },
  ],
];

export function runContract(name: string, make: () => Promise<Backend>): void {
  void describe(`storage contract: ${name}`, () => {
    for (const [title, body] of CASES) void it(title, () => withReopen(make, body));
  });
}
