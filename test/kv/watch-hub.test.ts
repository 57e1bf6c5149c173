// The watch hub against the store's own history: whatever mix of writes, deletes, range
// deletes, snapshots installed and watches started (from the past, now or the future, on a
// key, a range or everything), every watcher receives exactly the changes a never-compacted
// replica lists for its range from its start: each revision once, in order, with prevKv.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { chunkStream, type Command } from '../../src/host/contracts.js';
import type { Op, Range } from '../../src/kv/kv-store.js';
import { KvStateMachine } from '../../src/kv/machine.js';
import { WatchHub, type WatchEvent } from '../../src/kv/watch-hub.js';

const b = (s: string): Uint8Array => new TextEncoder().encode(s);
const s = (u: Uint8Array): string => new TextDecoder().decode(u);
const keyOf = (i: number): string => `k${i}`;
const limits = { maxKeyBytes: 64, maxValueBytes: 64 };

type Step =
  | { kind: 'put' | 'del'; key: number; value: number }
  | { kind: 'delRange'; key: number; end: number }
  | { kind: 'watch'; key: number; end: number; shape: 'key' | 'range' | 'all'; back: number }
  | { kind: 'snapshot' };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constantFrom<'put' | 'del'>('put', 'put', 'del'),
      key: fc.integer({ min: 0, max: 5 }),
      value: fc.nat(99),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant<'delRange'>('delRange'),
      key: fc.integer({ min: 0, max: 5 }),
      end: fc.integer({ min: 0, max: 6 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant<'watch'>('watch'),
      key: fc.integer({ min: 0, max: 5 }),
      end: fc.integer({ min: 0, max: 6 }),
      shape: fc.constantFrom<'key' | 'range' | 'all'>('key', 'range', 'all'),
      back: fc.integer({ min: -2, max: 8 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant<'snapshot'>('snapshot') }) },
);

const render = (revision: number, e: WatchEvent): string =>
  `${revision}:${e.type}:${s(e.kv.key)}=${s(e.kv.value)}:prev=${e.prevKv === undefined ? '-' : s(e.prevKv.value)}`;

void test('every watcher gets exactly its range’s changes from its start, across snapshots', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(stepArb, { minLength: 1, maxLength: 60 }), async (steps) => {
      const machine = new KvStateMachine(limits);
      const hub = new WatchHub(machine);
      const replica = new KvStateMachine(limits); // never compacted, never restored
      let index = 0;
      const apply = (payload: Uint8Array) => {
        index++;
        const cmd: Command = { index, term: 1, timeMs: 0, payload };
        machine.apply([cmd]);
        replica.apply([cmd]);
      };
      interface W {
        range: Range;
        start: number;
        got: string[];
        resume: number | null;
      }
      const watchers: W[] = [];
      const open = (w: W, from: number) => {
        const handle = hub.watch(
          { range: w.range, startRevision: from, prevKv: true },
          {
            events: (revision, events) => {
              for (const e of events) w.got.push(render(revision, e));
            },
            ended: (_code, _message, resumeRevision) => {
              w.resume = resumeRevision;
            },
          },
        );
        if (w.start === 0) w.start = handle.startRevision;
      };
      for (const st of steps) {
        if (st.kind === 'put')
          apply(
            KvStateMachine.encode({
              compare: [],
              success: [
                { kind: 'put', key: b(keyOf(st.key)), value: b(String(st.value)), prevKv: false },
              ],
              failure: [],
            }),
          );
        else if (st.kind === 'del' || st.kind === 'delRange') {
          const op: Op = {
            kind: 'delete',
            range:
              st.kind === 'delRange'
                ? {
                    key: b(keyOf(Math.min(st.key, st.end))),
                    rangeEnd: b(keyOf(Math.max(st.key, st.end))),
                  }
                : { key: b(keyOf(st.key)), rangeEnd: null },
            prevKv: false,
          };
          apply(KvStateMachine.encode({ compare: [], success: [op], failure: [] }));
        } else if (st.kind === 'watch') {
          const range: Range =
            st.shape === 'key'
              ? { key: b(keyOf(st.key)), rangeEnd: null }
              : st.shape === 'range'
                ? {
                    key: b(keyOf(Math.min(st.key, st.end))),
                    rangeEnd: b(keyOf(Math.max(st.key, st.end))),
                  }
                : { key: b(''), rangeEnd: new Uint8Array([0]) };
          const start = st.back < 0 ? 0 : Math.max(1, machine.revision() - st.back);
          const w: W = { range, start, got: [], resume: null };
          watchers.push(w);
          open(w, start);
        } else {
          // Installed on the same machine, as a node installs a snapshot: the hub ends every
          // watch with where to resume, and each resumes there.
          const chunks: Uint8Array[] = [];
          for await (const c of machine.snapshot()) chunks.push(c);
          await machine.restore(chunkStream(() => chunks[Symbol.iterator]()));
          for (const w of watchers) {
            assert.notEqual(w.resume, null, 'every watch was ended by the install');
            const from = w.resume as number;
            assert.equal(from, Math.max(w.start, machine.revision() + 1));
            w.resume = null;
            open(w, from);
          }
        }
      }
      for (const w of watchers) {
        const want = replica.changesSince(w.range, w.start).flatMap((c) =>
          c.changes.map((ch) =>
            ch.kind === 'put'
              ? render(c.revision, {
                  type: 'put',
                  kv: ch.kv,
                  ...(ch.prev ? { prevKv: ch.prev } : {}),
                })
              : render(c.revision, {
                  type: 'delete',
                  kv: {
                    key: ch.key,
                    value: new Uint8Array(0),
                    createRevision: 0,
                    modRevision: ch.modRevision,
                    version: 0,
                  },
                  ...(ch.prev ? { prevKv: ch.prev } : {}),
                }),
          ),
        );
        assert.deepEqual(w.got, want, `watch from ${w.start}`);
      }
    }),
    { numRuns: 300 },
  );
});

void test('a snapshot installed under a hub ends its watches with where to resume', async () => {
  const m = new KvStateMachine(limits);
  const hub = new WatchHub(m);
  const put = (k: string, v: string, index: number) =>
    m.apply([
      {
        index,
        term: 1,
        timeMs: 0,
        payload: KvStateMachine.encode({
          compare: [],
          success: [{ kind: 'put', key: b(k), value: b(v), prevKv: false }],
          failure: [],
        }),
      },
    ]);
  const seen: string[] = [];
  let ended: [string, number] | null = null;
  hub.watch(
    { range: { key: b('a'), rangeEnd: null }, startRevision: 0, prevKv: false },
    {
      events: (revision, events) => seen.push(...events.map((e) => render(revision, e))),
      ended: (code, _m, resume) => (ended = [code, resume]),
    },
  );
  put('a', '1', 1);
  const chunks: Uint8Array[] = [];
  for await (const c of m.snapshot()) chunks.push(c);
  await m.restore(chunkStream(() => chunks[Symbol.iterator]()));
  assert.deepEqual(seen, ['2:put:a=1:prev=-']);
  assert.deepEqual(ended, ['WATCH_RESET', 3]);
  assert.equal(hub.size(), 0);
  put('a', '2', 2);
  assert.equal(seen.length, 1, 'an ended watch hears nothing more');
});

void test('a split ends the watches that reach the keys it moved, and only those', () => {
  const m = new KvStateMachine(limits);
  const hub = new WatchHub(m);
  let index = 0;
  const put = (k: string) =>
    m.apply([
      {
        index: ++index,
        term: 1,
        timeMs: 0,
        payload: KvStateMachine.encode({
          compare: [],
          success: [{ kind: 'put', key: b(k), value: b('v'), prevKv: false }],
          failure: [],
        }),
      },
    ]);
  for (const k of ['a', 'n', 'z']) put(k);
  const toEnd = new Uint8Array([0]);
  const specs: [name: string, range: Range][] = [
    ['key a', { key: b('a'), rangeEnd: null }],
    ['[a, c)', { key: b('a'), rangeEnd: b('c') }],
    ['[a, m)', { key: b('a'), rangeEnd: b('m') }],
    ['key m', { key: b('m'), rangeEnd: null }],
    ['key n', { key: b('n'), rangeEnd: null }],
    ['[b, p)', { key: b('b'), rangeEnd: b('p') }],
    ['a to the end', { key: b('a'), rangeEnd: toEnd }],
  ];
  const ended = new Map<string, [string, number]>();
  const heard = new Map<string, number>();
  for (const [name, range] of specs)
    hub.watch(
      { range, startRevision: 0, prevKv: false },
      {
        events: (_revision, events) => heard.set(name, (heard.get(name) ?? 0) + events.length),
        ended: (code, _message, resume) => ended.set(name, [code, resume]),
      },
    );
  const revision = m.revision();
  void m.splitOff(b('m'));
  // The revision after the last one published: the new range continues from the split's.
  const resume = revision + 1;
  assert.deepEqual([...ended].sort(), [
    ['[b, p)', ['WATCH_RESET', resume]],
    ['a to the end', ['WATCH_RESET', resume]],
    ['key m', ['WATCH_RESET', resume]],
    ['key n', ['WATCH_RESET', resume]],
  ]);
  assert.equal(hub.size(), 3);
  put('a');
  assert.deepEqual(
    [...heard].sort(),
    [
      ['[a, c)', 1],
      ['[a, m)', 1],
      ['key a', 1],
    ],
    'the watches below the split key go on',
  );
});
