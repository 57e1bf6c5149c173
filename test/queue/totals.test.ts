// A queue's totals (jobs added, claimed, completed, failed, dead, leases expired): each moves
// exactly when its transition happens, and they travel in snapshots, so a replica restored from
// one reports what the replica that took it did.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chunkStream } from '../../src/host/contracts.js';
import { QueueStateMachine, type QueueTotals } from '../../src/queue/index.js';
import { Harness, bytes } from './harness.js';

function totals(h: Harness, queue: string): QueueTotals {
  const s = h.m.stats(queue);
  assert.ok(s !== null, `queue ${queue} exists`);
  return s.totals;
}

void test('each total moves with its transition and with nothing else', () => {
  const h = new Harness();
  h.tick(1_000);
  h.add('q', { id: 'a' });
  h.add('q', { id: 'b', maxAttempts: 1 });
  h.add('q', { id: 'c', maxAttempts: 2, backoff: { kind: 'fixed', delayMs: 0, maxDelayMs: 0 } });
  assert.deepEqual(totals(h, 'q'), {
    added: 3,
    claimed: 0,
    completed: 0,
    failed: 0,
    dead: 0,
    leaseExpired: 0,
  });
  const a = h.claimOne('q');
  h.ok({ op: 'complete', queue: 'q', id: a.job.id, token: a.token });
  const b = h.claimOne('q');
  h.ok({ op: 'fail', queue: 'q', id: b.job.id, token: b.token, error: 'boom' });
  // c: its lease expires (a failed run, back to waiting), then it is claimed and expires again.
  h.claimOne('q', { leaseMs: 100 });
  h.tick(1_200);
  h.claimOne('q', { leaseMs: 100 });
  h.tick(1_400);
  assert.equal(h.state('q', 'c'), 'dead');
  // A stale report, a duplicate add and a refused cancel change no total.
  h.refused({ op: 'complete', queue: 'q', id: 'a', token: a.token }, 'STALE_TOKEN');
  h.add('q', { id: 'a' });
  h.refused({ op: 'cancel', queue: 'q', id: 'a' }, 'INVALID_STATE');
  assert.deepEqual(totals(h, 'q'), {
    added: 3,
    claimed: 4,
    completed: 1,
    failed: 3,
    dead: 2,
    leaseExpired: 2,
  });
  // A repeatable job's runs count as adds (one per tick here: missed runs are skipped).
  h.ok({ op: 'repeat', queue: 'r', repeatId: 'beat', everyMs: 100, name: 'n', payload: bytes('') });
  h.tick(1_550);
  h.tick(1_650);
  assert.equal(totals(h, 'r').added, 2, JSON.stringify(h.m.repeatablesOf('r')));
});

void test('totals travel in a snapshot, as of when it was taken', async () => {
  const h = new Harness();
  h.add('q');
  const c = h.claimOne('q');
  h.ok({ op: 'complete', queue: 'q', id: c.job.id, token: c.token });
  const before = totals(h, 'q');
  const atSnapshot = JSON.stringify(h.m.dump());
  const stream = h.m.snapshot();
  // Commands applied while the snapshot is read move the totals; the snapshot must not see it.
  h.add('q');
  h.claimOne('q');
  assert.notDeepEqual(totals(h, 'q'), before);
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  const restored = new QueueStateMachine();
  await restored.restore(chunkStream(() => chunks[Symbol.iterator]()));
  assert.deepEqual(restored.stats('q')?.totals, before);
  assert.equal(JSON.stringify(restored.dump()), atSnapshot);
});
