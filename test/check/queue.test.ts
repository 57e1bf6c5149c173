// The job-queue checker passes a clean history, with every kind of outcome a faulty cluster
// gives (refused and unknown adds, a lost claim answer, a stale worker refused, a job failed
// to death, a job still pending), and catches one planted anomaly per rule.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  checkQueue,
  type QueueFinalJob,
  type QueueFinalState,
  type QueueOp,
} from '../../src/check/index.js';

const READ_AT = 100_000;
const options = { leaseSlackMs: 3_000 };

/**
 * Jobs a..f in queue q: a completed once; b claimed by a worker that stalled (its complete
 * refused), then reclaimed and completed; c failed twice to death; d added with an unknown
 * outcome and applied, then completed after a claim whose answer was lost; e still waiting;
 * f refused outright and never applied; g active under a live lease.
 */
function clean(): { ops: QueueOp[]; final: QueueFinalState } {
  const add = (id: string, status: 'ok' | 'fail' | 'unknown' = 'ok'): QueueOp => ({
    kind: 'add',
    queue: 'q',
    id,
    status,
  });
  const claim = (request: number, id: string, token: number): QueueOp => ({
    kind: 'claim',
    request,
    worker: `w${request % 2}`,
    queue: 'q',
    status: 'ok',
    jobs: [{ id, token }],
  });
  const report = (
    kind: 'complete' | 'fail' | 'heartbeat',
    id: string,
    token: number,
    extra: Partial<QueueOp> = {},
  ): QueueOp => ({ kind, worker: 'w0', queue: 'q', id, token, status: 'ok', ...extra }) as QueueOp;
  const ops: QueueOp[] = [
    add('a'),
    add('b'),
    add('c'),
    add('d', 'unknown'),
    add('e'),
    add('f', 'fail'),
    add('g'),
    claim(1, 'a', 10),
    report('heartbeat', 'a', 10),
    report('complete', 'a', 10),
    claim(2, 'b', 11),
    claim(3, 'b', 20),
    report('complete', 'b', 11, {
      status: 'fail',
      code: 'STALE_TOKEN',
      movedOn: { state: 'active', token: 20 },
    }),
    report('complete', 'b', 20),
    claim(4, 'c', 12),
    report('fail', 'c', 12),
    claim(5, 'c', 15),
    report('fail', 'c', 15),
    { kind: 'claim', request: 6, worker: 'w0', queue: 'q', status: 'unknown', jobs: [] },
    claim(7, 'd', 30),
    report('complete', 'd', 30, { status: 'unknown' }),
    claim(8, 'g', 40),
  ];
  const job = (id: string, state: QueueFinalJob['state'], token: number, attempts: number) => ({
    queue: 'q',
    id,
    state,
    token,
    attempts,
    leaseExpiresMs: state === 'active' ? READ_AT + 500 : 0,
  });
  const final: QueueFinalState = {
    readAtMs: READ_AT,
    jobs: [
      job('a', 'completed', 10, 1),
      job('b', 'completed', 20, 2),
      job('c', 'dead', 15, 2),
      job('d', 'completed', 30, 2),
      job('e', 'waiting', 0, 0),
      job('g', 'active', 40, 1),
    ],
  };
  return { ops, final };
}

void test('a clean history with refusals, unknowns, a refused stale worker and pending jobs is valid', () => {
  const { ops, final } = clean();
  const r = checkQueue(ops, final, options);
  assert.deepEqual(r.anomalies, []);
  assert.deepEqual(
    [r.valid, r.acknowledged, r.completed, r.dead, r.pending, r.staleProbes, r.staleRefused],
    [true, 5, 3, 1, 2, 1, 1],
  );
});

type Plant = (h: { ops: QueueOp[]; final: QueueFinalState }) => void;

function finalJob(h: { final: QueueFinalState }, id: string): QueueFinalJob {
  const j = h.final.jobs.find((x) => x.id === id);
  assert.ok(j !== undefined, `no job ${id} in the clean final state`);
  return j;
}

function replaceJob(h: { final: QueueFinalState }, id: string, over: Partial<QueueFinalJob>) {
  const jobs = h.final.jobs.map((j) => (j.id === id ? { ...j, ...over } : j));
  h.final = { ...h.final, jobs };
}

const plants: [string, Plant, RegExp][] = [
  [
    'an acknowledged add lost',
    (h) => replaceJob(h, 'e', { id: 'zz' }),
    /^lost: job q\/e was added/,
  ],
  [
    'a job that was never added',
    (h) => {
      h.final = { ...h.final, jobs: [...h.final.jobs, { ...finalJob(h, 'e'), id: 'x' }] };
    },
    /^phantom: job q\/x/,
  ],
  [
    'a job whose only add was refused',
    (h) => {
      h.final = { ...h.final, jobs: [...h.final.jobs, { ...finalJob(h, 'e'), id: 'f' }] };
    },
    /^phantom: job q\/f/,
  ],
  [
    'a job listed in two states',
    (h) => {
      h.final = { ...h.final, jobs: [...h.final.jobs, { ...finalJob(h, 'e'), state: 'delayed' }] };
    },
    /^listed-twice: job q\/e is listed as waiting and delayed/,
  ],
  [
    'one claim token handed to two claim requests',
    (h) => {
      h.ops.push({
        kind: 'claim',
        request: 9,
        worker: 'w1',
        queue: 'q',
        status: 'ok',
        jobs: [{ id: 'g', token: 40 }],
      });
    },
    /^double-claim: job q\/g: token 40 returned to claim requests 8 and 9/,
  ],
  [
    'two acknowledged completes under different tokens',
    (h) => {
      h.ops.push({ kind: 'complete', worker: 'w1', queue: 'q', id: 'a', token: 9, status: 'ok' });
    },
    /^double-complete: job q\/a completed under tokens 10, 9/,
  ],
  [
    'a stale complete accepted after another claim',
    (h) => {
      const i = h.ops.findIndex((o) => o.kind === 'complete' && o.id === 'b' && o.token === 11);
      h.ops[i] = { ...(h.ops[i] as QueueOp & { kind: 'complete' }), status: 'ok' };
      h.ops.splice(
        h.ops.findIndex((o) => o.kind === 'complete' && o.id === 'b' && o.token === 20),
        1,
      );
      replaceJob(h, 'b', { token: 20 });
    },
    /claimed-after-complete: job q\/b completed under token 11 yet claimed under token 20/,
  ],
  [
    'a stale report accepted after a read showed the job had moved on',
    (h) => {
      h.ops.push({
        kind: 'fail',
        worker: 'w1',
        queue: 'q',
        id: 'g',
        token: 39,
        status: 'ok',
        movedOn: { state: 'active', token: 40 },
      });
    },
    /^stale-report: w1's fail of job q\/g under token 39 was accepted/,
  ],
  [
    'an acknowledged completion undone',
    (h) => replaceJob(h, 'a', { state: 'waiting' }),
    /^completion-lost: job q\/a completed under token 10, finally waiting/,
  ],
  [
    'a completion no worker sent',
    (h) => replaceJob(h, 'e', { state: 'completed', token: 0 }),
    /^phantom-complete: job q\/e is completed under token 0/,
  ],
  [
    'an acknowledged claim lost (token gone back)',
    (h) => replaceJob(h, 'g', { state: 'waiting', token: 0, attempts: 0 }),
    /^lost-claim: job q\/g was claimed under token 40, finally token 0/,
  ],
  [
    'fewer attempts than acknowledged claims',
    (h) => replaceJob(h, 'c', { attempts: 1 }),
    /^lost-claim: job q\/c was claimed 2 times, finally 1 attempts/,
  ],
  [
    'an active job whose lease ended long before the final read',
    (h) => replaceJob(h, 'g', { leaseExpiresMs: READ_AT - 3_001 }),
    /^stuck: job q\/g is active under token 40, its lease ended 3001 ms before/,
  ],
  ['a cancelled job', (h) => replaceJob(h, 'e', { state: 'cancelled' }), /^cancelled: job q\/e/],
];

for (const [name, plant, message] of plants) {
  void test(`planted: ${name} is caught`, () => {
    const h = clean();
    plant(h);
    const r = checkQueue(h.ops, h.final, options);
    assert.equal(r.valid, false, name);
    assert.ok(
      r.anomalies.some((a) => message.test(a)),
      `${name}: expected ${String(message)}, got ${JSON.stringify(r.anomalies)}`,
    );
  });
}

void test('a lease just inside the slack is not stuck', () => {
  const h = clean();
  replaceJob(h, 'g', { leaseExpiresMs: READ_AT - 3_000 });
  assert.deepEqual(checkQueue(h.ops, h.final, options).anomalies, []);
});
