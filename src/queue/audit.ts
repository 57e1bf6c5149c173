// The queue machine's state as canonical data (to compare replicas) and its invariants
// checked the slow way, every job against every index. For tests and the simulator; nothing
// on the apply path calls them.

import { isFinished } from './jobs.js';
import { jobTuple, queueTuple, repeatableTuple } from './snapshot.js';
import type { QueueCore } from './state.js';
import type { JobState } from './types.js';

/** Every record, canonically ordered: two replicas' dumps are equal iff their states agree. */
export function dumpState(s: QueueCore): unknown {
  return {
    nowMs: s.nowMs,
    nextSeq: s.nextSeq,
    finishStamp: s.finishStamp,
    jobCount: s.jobCount,
    queues: [...s.queues.values()].map((q) => ({
      settings: queueTuple(q),
      jobs: q.order.filter((j) => !j.removed).map((j) => jobTuple(j, 0)),
      finishedOrder: [q.completed, q.dead, q.cancelled].map((m) => [...m.keys()]),
    })),
    repeatables: [...s.repeatables.values()].map(repeatableTuple),
    events: [s.events.kept(), s.events.state()],
    dedup: [...s.dedup.entries()].sort(),
  };
}

/** What is wrong; empty when every invariant holds. */
export function checkInvariants(s: QueueCore): string[] {
  const bad: string[] = [];
  let total = 0;
  for (const q of s.queues.values()) {
    const seen: Partial<Record<JobState, number>> = {};
    for (const j of q.jobs.values()) {
      total++;
      seen[j.state] = (seen[j.state] ?? 0) + 1;
      const where = `job "${j.id}" of "${q.name}" (${j.state})`;
      const inWaiting = q.waiting.has(j);
      const inTimers = s.timers.has(j);
      const inLeases = s.leases.has(j);
      const inFinished = [q.completed, q.dead, q.cancelled].filter((m) => m.get(j.id) === j).length;
      const places = Number(inWaiting) + Number(inTimers) + Number(inLeases) + inFinished;
      if (places !== 1) bad.push(`${where} is in ${places} indexes`);
      const timed = j.state === 'delayed' || j.state === 'failed';
      if (j.state === 'waiting' && !inWaiting) bad.push(`${where} is not in the waiting heap`);
      if (timed && !inTimers) bad.push(`${where} is not in the timer heap`);
      if (timed && j.runAtMs <= s.nowMs) bad.push(`${where} is overdue at ${s.nowMs}`);
      if (j.state === 'active' && !inLeases) bad.push(`${where} is not in the lease heap`);
      if (j.state === 'active' && j.leaseExpiresMs <= s.nowMs)
        bad.push(`${where} holds a lease that ended at ${j.leaseExpiresMs}`);
      if (isFinished(j.state) && q.finishedMap(j.state).get(j.id) !== j)
        bad.push(`${where} is not in its finished map`);
      if (j.removed || j.queue !== q) bad.push(`${where} is removed or filed under another queue`);
      if (j.attempts > j.maxAttempts)
        bad.push(`${where} ran ${j.attempts} times, more than ${j.maxAttempts}`);
    }
    for (const st of Object.keys(q.counts) as JobState[])
      if (q.counts[st] !== (seen[st] ?? 0))
        bad.push(`queue "${q.name}" counts ${q.counts[st]} ${st}, holds ${seen[st] ?? 0}`);
    if (q.order.filter((j) => !j.removed).length !== q.jobs.size)
      bad.push(`queue "${q.name}" order list disagrees with its jobs`);
  }
  if (total !== s.jobCount) bad.push(`jobCount is ${s.jobCount}, the queues hold ${total}`);
  let timed = 0;
  for (const q of s.queues.values()) timed += q.counts.delayed + q.counts.failed + q.counts.active;
  const heaps = s.timers.size + s.leases.size;
  if (heaps !== timed) bad.push(`timer and lease heaps hold ${heaps} jobs, the queues ${timed}`);
  for (const r of s.repeatables.values())
    if (r.nextMs <= s.nowMs) bad.push(`repeatable "${r.repeatId}" is overdue at ${s.nowMs}`);
  return bad;
}
