// Leader failover, after the Raft paper §9.3 (Figure 16): crash the leader (kill -9), then
// measure the time until a write succeeds through a surviving member, i.e. until a new leader
// has been elected and has committed an entry. Probes go to the survivors round-robin, a new
// one every `probeEveryMs`, each with its own deadline, so a probe stuck on a member without a
// leader (etcd holds such a request until its own timeout) never delays detection. The crash
// falls at a random point within a heartbeat interval, as in the paper.

import { setMaxListeners } from 'node:events';
import { Pool } from 'undici';
import type { BenchCluster } from './clusters.js';
import { EvalError } from './errors.js';
import { sleep } from './procs.js';
import { b64, putOp, randomValueB64 } from './protocol.js';

export interface FailoverOptions {
  readonly trials: number;
  readonly heartbeatMs: number;
  readonly probeEveryMs?: number;
  readonly trialTimeoutMs?: number;
  readonly onTrial?: (trial: number, ms: number | null) => void;
}

export interface FailoverResult {
  /** Milliseconds from kill to the first successful write, one per completed trial. */
  readonly timesMs: number[];
  /** Milliseconds from kill until a survivor first reports itself leader (polled every 5 ms). */
  readonly electedMs: number[];
  readonly failedTrials: number;
}

const maxTrials = 10_000;

export async function runFailover(c: BenchCluster, o: FailoverOptions): Promise<FailoverResult> {
  if (!Number.isInteger(o.trials) || o.trials < 1 || o.trials > maxTrials)
    throw new EvalError('EVAL_BAD_OPTION', `trials must be 1..${maxTrials}, got ${o.trials}`);
  const timesMs: number[] = [];
  const electedMs: number[] = [];
  let failedTrials = 0;
  for (let t = 0; t < o.trials; t++) {
    const leader = await c.waitForLeader(30_000);
    // Let the restarted member catch up and every election timer be reset by heartbeats.
    await sleep(300 + Math.random() * o.heartbeatMs);
    const { ms, elected } = await oneTrial(c, leader, t, o);
    if (ms === null) failedTrials++;
    else timesMs.push(ms);
    if (elected !== null) electedMs.push(elected);
    o.onTrial?.(t, ms);
    c.startMember(leader);
  }
  await c.waitForLeader(30_000);
  return { timesMs, electedMs, failedTrials };
}

async function oneTrial(
  c: BenchCluster,
  leader: number,
  trial: number,
  o: FailoverOptions,
): Promise<{ ms: number | null; elected: number | null }> {
  const survivors = c.ids.filter((id) => id !== leader);
  const pools = survivors.map((id) => new Pool(c.clientUrl(id), { connections: 64 }));
  const value = randomValueB64(64, trial);
  const controller = new AbortController();
  setMaxListeners(0, controller.signal);
  const every = o.probeEveryMs ?? 2;
  const timeoutMs = o.trialTimeoutMs ?? 10_000;
  await c.killMember(leader);
  const killedAt = performance.now();
  let n = 0;
  let elected: number | null = null;
  void watchElection(c, survivors, controller.signal).then((at) => {
    if (at !== null) elected = at - killedAt;
  });
  try {
    const ms = await new Promise<number | null>((resolve) => {
      const giveUp = setTimeout(() => resolve(null), timeoutMs);
      const timer = setInterval(() => {
        const i = n++;
        const pool = pools[i % pools.length] as Pool;
        const op = putOp(c.system, b64(`failover/${trial}/${i}`), value);
        pool
          .request({
            path: op.path,
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: op.body,
            signal: controller.signal,
            headersTimeout: 2_000,
          })
          .then(async (res) => {
            await res.body.text();
            if (res.statusCode === 200) {
              clearTimeout(giveUp);
              resolve(performance.now() - killedAt);
            }
          })
          .catch(() => undefined);
      }, every);
      controller.signal.addEventListener('abort', () => clearInterval(timer));
    });
    // The election poll may still be on its way back; give it one poll period.
    if (elected === null) await sleep(10);
    return { ms, elected };
  } finally {
    controller.abort();
    await Promise.all(pools.map((p) => p.destroy()));
  }
}

/** Polls the survivors every 5 ms; the time (performance.now) one first reports leading. */
async function watchElection(
  c: BenchCluster,
  survivors: readonly number[],
  signal: AbortSignal,
): Promise<number | null> {
  while (!signal.aborted) {
    const views = await Promise.all(survivors.map((id) => c.view(id)));
    if (views.some((v) => v?.leads === true)) return performance.now();
    await sleep(5);
  }
  return null;
}

/** Percentile by nearest rank of an ascending-sorted array. */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((q / 100) * sorted.length) - 1));
  return sorted[i] as number;
}

export function summarize(timesMs: readonly number[]): Record<string, number> {
  const s = [...timesMs].sort((a, b) => a - b);
  const r = (x: number): number => Math.round(x * 10) / 10;
  return {
    n: s.length,
    min: r(s[0] ?? NaN),
    p50: r(percentile(s, 50)),
    p90: r(percentile(s, 90)),
    p99: r(percentile(s, 99)),
    max: r(s[s.length - 1] ?? NaN),
    mean: r(s.reduce((a, b) => a + b, 0) / Math.max(1, s.length)),
  };
}
