// A short fuzz run of each protocol a node speaks, deterministic by seed (the inputs; what a
// node answers may depend on timing): every refusal carries a code, nothing crashes or hangs,
// the heap after the run is within a bound, and the node still serves. The long runs and
// their figures are in docs/TESTING.md ("Fuzzing"); `npm run fuzz` runs them.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FuzzRng } from './gen.js';
import { generateHttp } from './http-target.js';
import { generatePeer } from './peer-target.js';
import { formatReport, runFuzz, type FuzzReport } from './run.js';
import { defaultConcurrency, startTarget, type Protocol } from './targets.js';
import { generateWire } from './wire-target.js';

/** Heap the short run may leave behind (store history, queue jobs, leases it created). */
const heapGrowthMaxBytes = 64 * 1024 * 1024;

async function fuzz(protocol: Protocol, seed: number, inputs: number): Promise<FuzzReport> {
  const target = await startTarget(protocol);
  try {
    return await runFuzz(target, {
      seed,
      inputs,
      timeMs: 60_000,
      concurrency: defaultConcurrency(protocol),
      inputTimeoutMs: 15_000,
    });
  } finally {
    await target.close();
  }
}

function check(r: FuzzReport, inputs: number): void {
  const text = formatReport(r);
  assert.equal(r.failures.length, 0, text);
  assert.equal(r.stillServes, null, text);
  assert.equal(r.inputs, inputs, `every input was sent within the time bound\n${text}`);
  assert.ok(r.heapAfterBytes - r.heapBeforeBytes < heapGrowthMaxBytes, text);
  // The generator reaches past the first check: some inputs are served, many refused.
  const refusals = Object.keys(r.outcomes).filter((c) => c !== 'ok' && c !== 'closed');
  assert.ok((r.outcomes['ok'] ?? r.outcomes['accepted'] ?? 0) > 0, `nothing was served\n${text}`);
  assert.ok(refusals.length >= 5, `only ${refusals.length} kinds of refusal\n${text}`);
}

void test('input i is the same bytes whenever it is generated from the same seed', () => {
  const shape = { clusterId: 'c', target: 1, absentIds: [4, 5], peerIds: [2, 3, 4, 5] };
  const generators = [generateHttp, generateWire, (rng: FuzzRng) => generatePeer(shape, rng)];
  for (const generate of generators) {
    const first = Array.from({ length: 200 }, (_, i) => generate(new FuzzRng(5, i)).bytes);
    const again = Array.from({ length: 200 }, (_, i) => generate(new FuzzRng(5, i)).bytes);
    const other = Array.from({ length: 200 }, (_, i) => generate(new FuzzRng(6, i)).bytes);
    assert.deepEqual(again, first);
    assert.ok(new Set(first.map((b) => b.toString('hex'))).size > 150, 'inputs differ');
    assert.notDeepEqual(other, first, 'another seed, other inputs');
  }
});

void test('HTTP API: 3,000 generated requests', async () => {
  check(await fuzz('http', 11, 3_000), 3_000);
});

void test('binary client protocol: 3,000 generated connections', async () => {
  check(await fuzz('wire', 12, 3_000), 3_000);
});

void test('peer protocol: 3,000 generated connections, then a commit', async () => {
  check(await fuzz('peer', 13, 3_000), 3_000);
});
