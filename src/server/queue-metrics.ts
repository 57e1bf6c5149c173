// The job queue's metrics, read from the queue group's applied state at each scrape. The jobs
// per state and the totals are replicated state (QueueStats.totals), not counts this process
// kept: every node reports the same numbers once it has applied the same log, whatever it
// restarted from or whether it installed a snapshot; a follower's may trail the leader's by the
// entries it has yet to apply, which `flotilla_queue_applied_index` tells. The claim waiters
// are this node's own: the long-polling claims it holds open.

import { Counter, Gauge, type Registry } from 'prom-client';
import { jobStates, type QueueStateMachine, type QueueTotals } from '../queue/index.js';

export interface QueueMetricsSource {
  readonly queue: QueueStateMachine;
  /** The queue group's applied index on this node: the point of the log the numbers describe. */
  appliedIndex(): number;
  /** Claims waiting on this node for a job (`waitMs`). */
  claimWaiters(): number;
}

const totalMetrics: readonly [keyof QueueTotals, string, string][] = [
  ['added', 'flotilla_queue_added_total', 'Jobs added, by callers and by repeatable jobs'],
  ['claimed', 'flotilla_queue_claimed_total', 'Jobs claimed (each claim of a job once)'],
  ['completed', 'flotilla_queue_completed_total', 'Jobs completed'],
  ['failed', 'flotilla_queue_failed_total', 'Failed runs, reported or by an expired lease'],
  ['dead', 'flotilla_queue_dead_total', 'Jobs that went dead'],
  ['leaseExpired', 'flotilla_queue_lease_expired_total', 'Claims whose lease expired'],
];

export function bindQueueMetrics(registry: Registry, src: QueueMetricsSource): void {
  const r = [registry];
  const each = (
    fn: (queue: string, stats: NonNullable<ReturnType<QueueStateMachine['stats']>>) => void,
  ) => {
    for (const name of src.queue.queueNames()) {
      const s = src.queue.stats(name);
      if (s !== null) fn(name, s);
    }
  };
  new Gauge({
    name: 'flotilla_queue_jobs',
    help: 'Jobs per queue and state, as this node applied the queue group',
    labelNames: ['queue', 'state'],
    registers: r,
    collect() {
      // Reset first: a queue has no delete, but a gauge must not outlive what it counts.
      this.reset();
      each((queue, s) => {
        for (const state of jobStates) this.set({ queue, state }, s.counts[state]);
      });
    },
  });
  for (const [key, name, help] of totalMetrics)
    new Counter({
      name,
      help: `${help}, per queue, since the queue was created (replicated state)`,
      labelNames: ['queue'],
      registers: r,
      collect() {
        this.reset();
        each((queue, s) => this.inc({ queue }, s.totals[key]));
      },
    });
  new Gauge({
    name: 'flotilla_queue_applied_index',
    help: "The queue group's applied index on this node: the queue metrics are as of it",
    registers: r,
    collect() {
      this.set(src.appliedIndex());
    },
  });
  new Gauge({
    name: 'flotilla_queue_claim_waiters',
    help: 'Claims this node holds open waiting for a job (waitMs)',
    registers: r,
    collect() {
      this.set(src.claimWaiters());
    },
  });
}
