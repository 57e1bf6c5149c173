// The checker for the job-queue workload of the fault-injection suite.
//
// Input: every queue operation the producers and workers made, each with its outcome ('ok':
// answered; 'fail': refused before it could apply; 'unknown': may have applied at any later
// time), and the final state read from the cluster after the faults healed: every job of
// every queue the workload used, listed state by state, with the wall-clock time the read
// began. The leader stamps each queue command with its wall clock and the harness runs on the
// same machine, so that time and a job's lease end are on one clock.
//
// The workload never deletes, cancels or retries a job by hand and keeps each queue below its
// retention counts (1,000 completed, 1,000 dead by default), so no job leaves the final state
// except through a bug. On that footing a history is valid when:
//
//   lost               every acknowledged add has its job in the final state;
//   phantom            every job in the final state had an add that was acknowledged or may
//                      have applied (an id only ever refused, or never sent, must not appear);
//   listed-twice       no job is listed twice (in two states, or twice in one);
//   double-claim       no claim token of a job was handed to two different claim requests;
//   lost-claim         a job's final token is at least the highest acknowledged claim token of
//                      it, and its attempts at least the number of acknowledged claims of it
//                      (attempts only grow: the workload never retries or releases a job);
//   double-complete    no job has acknowledged completes under two different tokens;
//   claimed-after-complete  no acknowledged claim of a job has a higher token than an
//                      acknowledged complete of it: completion is final, so such a claim means
//                      the complete was accepted from a token that was no longer live;
//   stale-report       no report (complete, fail, heartbeat) is acknowledged when, before it
//                      was sent, a linearizable read had shown the job no longer active under
//                      its token (a token never becomes live again once its claim ended);
//   completion-lost    a job with an acknowledged complete under token t is completed, under t;
//   phantom-complete   a completed job's token is one a complete was sent with (answered or
//                      unknown): only the workers complete jobs;
//   cancelled          no job is cancelled (nothing in the workload cancels one);
//   stuck              no job is active with a lease that ended more than `leaseSlackMs`
//                      before the final read: once the faults heal, the leader's ticks must
//                      expire it.
//
// Every other job is finished (completed or dead) or pending: waiting, delayed, failed (its
// backoff running) or active under a live lease. Pending jobs are not a safety violation: a
// run whose workers stopped early leaves some. They are counted so the harness can demand
// none after it let the workers drain the queues (a liveness check, not this checker's).

export type QueueOpStatus = 'ok' | 'fail' | 'unknown';

export type QueueJobState =
  'waiting' | 'delayed' | 'active' | 'completed' | 'failed' | 'dead' | 'cancelled';

export interface QueueAddOp {
  readonly kind: 'add';
  readonly queue: string;
  readonly id: string;
  readonly status: QueueOpStatus;
}

export interface QueueClaimOp {
  readonly kind: 'claim';
  /** Unique per claim request (its retries inside the client included). */
  readonly request: number;
  readonly worker: string;
  readonly queue: string;
  readonly status: QueueOpStatus;
  /** The jobs an acknowledged claim returned; empty otherwise. */
  readonly jobs: readonly { readonly id: string; readonly token: number }[];
}

export interface QueueReportOp {
  readonly kind: 'complete' | 'fail' | 'heartbeat';
  readonly worker: string;
  readonly queue: string;
  readonly id: string;
  readonly token: number;
  readonly status: QueueOpStatus;
  /** The error code of a refusal (STALE_TOKEN...), when there was one. */
  readonly code?: string;
  /**
   * Set when a linearizable read, before the report was sent, showed the job no longer
   * active under `token`: what it was then. The report must be refused.
   */
  readonly movedOn?: { readonly state: QueueJobState; readonly token: number };
}

export type QueueOp = QueueAddOp | QueueClaimOp | QueueReportOp;

export interface QueueFinalJob {
  readonly queue: string;
  readonly id: string;
  readonly state: QueueJobState;
  readonly token: number;
  readonly attempts: number;
  readonly leaseExpiresMs: number;
}

export interface QueueFinalState {
  /** Wall-clock time (ms since the epoch) when the final read began. */
  readonly readAtMs: number;
  readonly jobs: readonly QueueFinalJob[];
}

export interface QueueCheckOptions {
  /** How long past its end an active lease may go unexpired (tick interval and commit). */
  readonly leaseSlackMs: number;
  readonly maxAnomalies?: number;
}

export interface QueueCheckReport {
  readonly valid: boolean;
  /** Adds acknowledged, and jobs finished or pending in the final state. */
  readonly acknowledged: number;
  readonly completed: number;
  readonly dead: number;
  readonly pending: number;
  /** Reports sent after the job had moved on (stale probes) and how many were refused. */
  readonly staleProbes: number;
  readonly staleRefused: number;
  /** Each anomaly starts with its rule's name. */
  readonly anomalies: readonly string[];
}

const key = (queue: string, id: string): string => `${queue}/${id}`;

interface PerJob {
  addAcked: boolean;
  addMaybe: boolean;
  /** Acknowledged claim tokens, and the claim request that returned each. */
  readonly claims: Map<number, number>;
  /** Claim requests that returned the job under a token seen already from another. */
  readonly doubleClaims: string[];
  readonly completesAcked: Set<number>;
  readonly completesSent: Set<number>;
}

function collect(ops: readonly QueueOp[]): Map<string, PerJob> {
  const jobs = new Map<string, PerJob>();
  const of = (queue: string, id: string): PerJob => {
    const k = key(queue, id);
    let j = jobs.get(k);
    if (j === undefined) {
      j = {
        addAcked: false,
        addMaybe: false,
        claims: new Map(),
        doubleClaims: [],
        completesAcked: new Set(),
        completesSent: new Set(),
      };
      jobs.set(k, j);
    }
    return j;
  };
  for (const op of ops) {
    if (op.kind === 'add') {
      const j = of(op.queue, op.id);
      if (op.status === 'ok') j.addAcked = true;
      if (op.status !== 'fail') j.addMaybe = true;
    } else if (op.kind === 'claim') {
      if (op.status !== 'ok') continue;
      for (const c of op.jobs) {
        const j = of(op.queue, c.id);
        const first = j.claims.get(c.token);
        if (first !== undefined && first !== op.request)
          j.doubleClaims.push(
            `token ${c.token} returned to claim requests ${first} and ${op.request} (${op.worker})`,
          );
        else j.claims.set(c.token, op.request);
      }
    } else if (op.kind === 'complete') {
      const j = of(op.queue, op.id);
      if (op.status === 'ok') j.completesAcked.add(op.token);
      if (op.status !== 'fail') j.completesSent.add(op.token);
    }
  }
  return jobs;
}

/** Judges a queue workload's history against the final state (see the rules above). */
export function checkQueue(
  ops: readonly QueueOp[],
  final: QueueFinalState,
  o: QueueCheckOptions,
): QueueCheckReport {
  const max = o.maxAnomalies ?? 50;
  const anomalies: string[] = [];
  const note = (rule: string, what: string): void => {
    if (anomalies.length < max) anomalies.push(`${rule}: ${what}`);
  };
  const history = collect(ops);
  const finalByKey = new Map<string, QueueFinalJob>();
  for (const j of final.jobs) {
    const k = key(j.queue, j.id);
    const seen = finalByKey.get(k);
    if (seen !== undefined)
      note('listed-twice', `job ${k} is listed as ${seen.state} and ${j.state}`);
    else finalByKey.set(k, j);
  }

  let acknowledged = 0;
  for (const [k, h] of history) {
    if (h.addAcked) acknowledged++;
    const f = finalByKey.get(k);
    if (h.addAcked && f === undefined)
      note('lost', `job ${k} was added (acknowledged) and is gone`);
    for (const d of h.doubleClaims) note('double-claim', `job ${k}: ${d}`);
    if (h.completesAcked.size > 1)
      note(
        'double-complete',
        `job ${k} completed under tokens ${[...h.completesAcked].join(', ')}`,
      );
    const tokens = [...h.claims.keys()];
    const highestClaim = tokens.length === 0 ? 0 : Math.max(...tokens);
    for (const t of h.completesAcked) {
      if (highestClaim > t)
        note(
          'claimed-after-complete',
          `job ${k} completed under token ${t} yet claimed under token ${highestClaim}`,
        );
      if (f !== undefined && (f.state !== 'completed' || f.token !== t))
        note(
          'completion-lost',
          `job ${k} completed under token ${t}, finally ${f.state} under token ${f.token}`,
        );
    }
    if (f === undefined) continue;
    if (f.token < highestClaim)
      note(
        'lost-claim',
        `job ${k} was claimed under token ${highestClaim}, finally token ${f.token}`,
      );
    if (f.attempts < h.claims.size)
      note(
        'lost-claim',
        `job ${k} was claimed ${h.claims.size} times, finally ${f.attempts} attempts`,
      );
  }

  let completed = 0;
  let dead = 0;
  let pending = 0;
  for (const [k, f] of finalByKey) {
    const h = history.get(k);
    if (h === undefined || !h.addMaybe) {
      note('phantom', `job ${k} (${f.state}) was never added, or only refused`);
      continue;
    }
    if (f.state === 'completed') {
      completed++;
      if (!h.completesSent.has(f.token))
        note('phantom-complete', `job ${k} is completed under token ${f.token}, never sent`);
    } else if (f.state === 'dead') dead++;
    else if (f.state === 'active' && f.leaseExpiresMs + o.leaseSlackMs < final.readAtMs)
      note(
        'stuck',
        `job ${k} is active under token ${f.token}, its lease ended ${final.readAtMs - f.leaseExpiresMs} ms before the final read`,
      );
    else if (f.state === 'cancelled')
      note('cancelled', `job ${k} is cancelled, and nothing in the workload cancels a job`);
    else pending++;
  }

  let staleProbes = 0;
  let staleRefused = 0;
  for (const op of ops) {
    if (op.kind === 'add' || op.kind === 'claim' || op.movedOn === undefined) continue;
    staleProbes++;
    if (op.status === 'fail') staleRefused++;
    if (op.status === 'ok')
      note(
        'stale-report',
        `${op.worker}'s ${op.kind} of job ${key(op.queue, op.id)} under token ${op.token} was accepted ` +
          `after a read showed it ${op.movedOn.state} under token ${op.movedOn.token}`,
      );
  }

  return {
    valid: anomalies.length === 0,
    acknowledged,
    completed,
    dead,
    pending,
    staleProbes,
    staleRefused,
    anomalies,
  };
}
