// Property test: any sequence of append (extending or replacing a suffix), compact, snapshot
// (matching the log or replacing it), hard state change and reopen leaves the store holding the
// same log as a simple array model. Run against the WAL with tiny segments (so rotation, deep
// replacement and segment deletion all happen) and against the memory store.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { RaftStorage } from '../../src/storage/types.js';
import { createMemoryDisk, createMemoryStorage } from '../../src/storage/memory.js';
import { openWalStorage } from '../../src/storage/wal.js';
import { entry, plain, tempDir } from './helpers.js';

type Cmd =
  | { readonly kind: 'append'; readonly at: number; readonly count: number; readonly bump: number }
  | { readonly kind: 'compact'; readonly at: number }
  | { readonly kind: 'snapshot'; readonly at: number; readonly matching: boolean }
  | { readonly kind: 'vote'; readonly bump: number }
  | { readonly kind: 'reopen' };

/** The model: entries after `base`, as (index, term) pairs; payloads derive from them. */
class Model {
  base = { index: 0, term: 0 };
  snapshotIndex = 0;
  terms: number[] = [];
  hs = { term: 0, vote: 0, commit: 0 };

  last(): number {
    return this.base.index + this.terms.length;
  }

  termAt(i: number): number | undefined {
    return i === this.base.index ? this.base.term : this.terms[i - this.base.index - 1];
  }

  /** Picks a position in [lo, hi] from a fraction in [0, 1). */
  static pick(lo: number, hi: number, at: number): number {
    return lo + Math.floor(at * (hi - lo + 1));
  }
}

const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('append' as const),
      at: fc.double({ min: 0, max: 0.999, noNaN: true }),
      count: fc.integer({ min: 1, max: 40 }),
      bump: fc.integer({ min: 0, max: 2 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('compact' as const),
      at: fc.double({ min: 0, max: 0.999, noNaN: true }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('snapshot' as const),
      at: fc.double({ min: 0, max: 1.2, noNaN: true }),
      matching: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('vote' as const),
      bump: fc.integer({ min: 0, max: 1 }),
    }),
  },
  { weight: 2, arbitrary: fc.constant({ kind: 'reopen' as const }) },
);

async function step(s: RaftStorage, m: Model, c: Cmd): Promise<void> {
  if (c.kind === 'append') {
    const from = Model.pick(m.base.index + 1, m.last() + 1, c.at);
    const term = Math.max(1, m.termAt(from - 1) ?? 1) + c.bump;
    const es = Array.from({ length: c.count }, (_, k) => entry(from + k, term, 100));
    await s.persist(es, null);
    m.terms.length = from - m.base.index - 1;
    for (const e of es) m.terms.push(e.term);
  } else if (c.kind === 'compact') {
    const to = Model.pick(m.base.index, m.last(), c.at);
    await s.log.compact(to);
    if (to > m.base.index) {
      const term = m.termAt(to) ?? -1;
      m.terms = m.terms.slice(to - m.base.index);
      m.base = { index: to, term };
    }
  } else if (c.kind === 'snapshot') {
    await snapshotStep(s, m, c.at, c.matching);
  } else if (c.kind === 'vote') {
    m.hs = { term: m.hs.term + c.bump, vote: c.bump === 1 ? 1 : m.hs.vote, commit: m.hs.commit };
    await s.persist([], m.hs);
  }
}

async function snapshotStep(
  s: RaftStorage,
  m: Model,
  at: number,
  matching: boolean,
): Promise<void> {
  const index = Math.max(1, Math.floor(m.base.index + 1 + at * (m.last() - m.base.index)));
  const own = m.termAt(index);
  const term = matching && own !== undefined ? own : (own ?? m.termAt(m.last()) ?? 1) + 1;
  await s.saveSnapshot({ index, term, voters: [1] }, new Uint8Array([index & 0xff]));
  if (index <= m.snapshotIndex) return;
  m.snapshotIndex = index;
  if (index <= m.base.index) return;
  if (m.termAt(index) === term) m.terms = m.terms.slice(index - m.base.index);
  else m.terms = [];
  m.base = { index, term };
}

function check(s: RaftStorage, m: Model, where: string): void {
  assert.equal(s.log.firstIndex(), m.base.index + 1, `${where}: firstIndex`);
  assert.equal(s.log.lastIndex(), m.last(), `${where}: lastIndex`);
  assert.equal(s.log.term(m.base.index), m.base.term, `${where}: term at the base`);
  const expected = m.terms.map((t, k) => entry(m.base.index + 1 + k, t, 100));
  assert.deepEqual(
    plain(s.log.entries(m.base.index + 1, m.last() + 1)),
    plain(expected),
    `${where}: entries`,
  );
  assert.deepEqual(s.stable.load(), m.hs, `${where}: hard state`);
}

async function runModel(open: () => Promise<RaftStorage>, cmds: readonly Cmd[]): Promise<void> {
  const m = new Model();
  let s = await open();
  try {
    for (const [k, c] of cmds.entries()) {
      if (c.kind === 'reopen') {
        await s.close();
        s = await open();
      } else await step(s, m, c);
      check(s, m, `after command ${k} ${JSON.stringify(c)}`);
    }
    await s.close();
    s = await open();
    check(s, m, 'after the final reopen');
  } finally {
    await s.close();
  }
}

void describe('storage matches a simple model', () => {
  void it('WAL with 4 KiB segments', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(cmdArb, { minLength: 1, maxLength: 25 }), async (cmds) => {
        const { dir, cleanup } = await tempDir('flotilla-model-');
        try {
          await runModel(() => openWalStorage(dir, { segmentBytes: 4096 }), cmds);
        } finally {
          await cleanup();
        }
      }),
      { numRuns: 40, seed: Number(process.env['FLOTILLA_PROPERTY_SEED'] ?? 20261122) },
    );
  });

  void it('memory store', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(cmdArb, { minLength: 1, maxLength: 40 }), async (cmds) => {
        const disk = createMemoryDisk();
        await runModel(() => Promise.resolve(createMemoryStorage({ disk, quiet: true })), cmds);
      }),
      { numRuns: 100 },
    );
  });

  void it('catches a store that loses its last entry on reopen (planted bug)', async () => {
    const lossy = fc.asyncProperty(
      fc.array(cmdArb, { minLength: 1, maxLength: 40 }),
      async (cmds) => {
        const disk = createMemoryDisk();
        await runModel(() => {
          disk.entries.pop();
          return Promise.resolve(createMemoryStorage({ disk, quiet: true }));
        }, cmds);
      },
    );
    await assert.rejects(fc.assert(lossy, { numRuns: 100 }), /Property failed/);
  });
});
