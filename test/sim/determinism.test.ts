// A seed is a complete description of a run: replaying it gives the same trace, event for
// event, so a failure found once can be replayed and debugged.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runSeed } from '../../src/sim/index.js';

void test('replaying a seed produces the identical event trace', async () => {
  for (const seed of [7, 4242, 90001]) {
    const a = await runSeed({ seed, keepTrace: true });
    const b = await runSeed({ seed, keepTrace: true });
    assert.ok(a.trace !== null && b.trace !== null);
    assert.ok(a.trace.length > 500, `seed ${seed} produced only ${a.trace.length} trace lines`);
    assert.deepEqual(b.trace, a.trace);
    assert.equal(b.traceHash, a.traceHash);
    assert.deepEqual(b.stats, a.stats);
  }
});

void test('different seeds produce different runs', async () => {
  const hashes = new Set<number>();
  for (const seed of [1, 2, 3, 4, 5]) hashes.add((await runSeed({ seed })).traceHash);
  assert.equal(hashes.size, 5);
});

void test('overriding the cluster size keeps the other draws of the seed', async () => {
  const drawn = (await runSeed({ seed: 11 })).profile;
  for (const nodes of [3, 5, 7] as const) {
    const p = (await runSeed({ seed: 11, nodes })).profile;
    assert.equal(p.nodes, nodes);
    assert.deepEqual({ ...p, nodes: drawn.nodes }, drawn);
  }
});

void test('verbose logging does not change the run', async () => {
  const lines: string[] = [];
  const quiet = await runSeed({ seed: 99 });
  const loud = await runSeed({ seed: 99, log: (l) => lines.push(l) });
  assert.equal(loud.traceHash, quiet.traceHash);
  assert.ok(lines.some((l) => l.includes('become-leader')));
});

void test('a range seed replays identically, and asking for ranges leaves the plain seed alone', async () => {
  const a = await runSeed({ seed: 4242, ranges: true, keepTrace: true });
  const b = await runSeed({ seed: 4242, ranges: true, keepTrace: true });
  assert.ok(a.trace !== null && b.trace !== null);
  assert.deepEqual(b.trace, a.trace);
  assert.deepEqual(b.stats, a.stats);
  assert.ok(a.profile.ranges > 0);
  assert.ok(
    a.trace.some((l) => / deliver g\d+ /.test(l)),
    'no message of a range split off range 0',
  );
  // The range fields come from a source of their own: the rest of the profile is the seed's.
  const plain = await runSeed({ seed: 4242 });
  assert.equal(plain.profile.ranges, 0);
  const { ranges: _r, splitRatio: _s, keys: _k, ...rest } = a.profile;
  const { ranges: _pr, splitRatio: _ps, keys: _pk, ...plainRest } = plain.profile;
  assert.deepEqual(rest, plainRest);
});

void test('a move seed replays identically', async () => {
  const a = await runSeed({ seed: 4242, ranges: true, moves: true, keepTrace: true });
  const b = await runSeed({ seed: 4242, ranges: true, moves: true, keepTrace: true });
  assert.ok(a.trace !== null && b.trace !== null);
  assert.deepEqual(b.trace, a.trace);
  assert.deepEqual(b.stats, a.stats);
  assert.ok(a.profile.moveEveryMs > 0 && a.stats.moveSteps > 0, JSON.stringify(a.stats));
  assert.ok(
    a.trace.some((l) => l.includes('move of range')),
    'no move began',
  );
});

void test('a meta seed replays identically', async () => {
  const a = await runSeed({ seed: 4242, ranges: true, meta: true, keepTrace: true });
  const b = await runSeed({ seed: 4242, ranges: true, meta: true, keepTrace: true });
  assert.ok(a.trace !== null && b.trace !== null);
  assert.deepEqual(b.trace, a.trace);
  assert.deepEqual(b.stats, a.stats);
  assert.ok(a.stats.splitsRecorded > 0, JSON.stringify(a.stats));
});
