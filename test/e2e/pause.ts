// The paused-leader scenario, shared by the test (pause.test.ts, which asserts bounds) and the
// script that prints the figures (pause-cli.ts): clients read and write through the two
// followers of a 3-node cluster of real processes, the leader is frozen with SIGSTOP, and we
// measure how soon operations through the followers complete again. Raw requests sent to the
// followers in the first 100 ms of the pause (when the followers still take the frozen node
// for the leader) show how long a request can be held.

import { FlotillaClient } from '../../src/client/index.js';
import type { TestCluster } from './harness.js';

export interface PauseTrialOptions {
  /** How long the leader stays frozen. */
  readonly pauseMs: number;
  /** Clients per follower, each alternating writes and linearizable reads. */
  readonly clientsPerFollower: number;
  /** The clients' per-attempt timeout: longer than the node's own waits (5 s), like the report. */
  readonly clientTimeoutMs: number;
  readonly clientDeadlineMs: number;
  /** How long a raw probe may wait before the scenario gives up on it. */
  readonly probeTimeoutMs: number;
}

export const defaultPauseTrial: PauseTrialOptions = {
  pauseMs: 5_000,
  clientsPerFollower: 3,
  clientTimeoutMs: 10_000,
  clientDeadlineMs: 20_000,
  probeTimeoutMs: 20_000,
};

export interface ProbeResult {
  readonly kind: 'write' | 'read';
  readonly node: number;
  readonly sentMs: number;
  /** Milliseconds from sending to the answer; null if none came within probeTimeoutMs. */
  readonly answeredAfterMs: number | null;
  readonly status: number;
  readonly code: string;
}

export interface PauseTrialResult {
  readonly paused: number;
  /** From SIGSTOP until a follower first names another leader (status polled every 10 ms). */
  readonly electedMs: number | null;
  /** From SIGSTOP until the first write, and the first read, through a follower succeeded. */
  readonly firstWriteMs: number | null;
  readonly firstReadMs: number | null;
  /** The longest any client operation took, and its deadline. */
  readonly longestOpMs: number;
  readonly opsOk: number;
  readonly opsFailed: number;
  readonly probes: readonly ProbeResult[];
}

interface Clock {
  t0: number;
  now(): number;
}

export async function pauseTrial(
  cluster: TestCluster,
  o: PauseTrialOptions = defaultPauseTrial,
): Promise<PauseTrialResult> {
  const paused = await cluster.waitForLeader();
  const followers = cluster.running().filter((id) => id !== paused);
  const clients = followers.flatMap((_id, f) =>
    Array.from(
      { length: o.clientsPerFollower },
      () =>
        new FlotillaClient({
          // Only followers: the requests are served through them, never sent to the frozen node.
          endpoints: cluster.endpoints(f === 0 ? followers : [...followers].reverse()),
          // Range routing would send each call straight to range 0's leader, the frozen node,
          // at the address it advertises, and the call would wait out its timeout there
          // (CLIENT.md, "Range routing"): this trial measures what the followers do.
          rangeRouting: false,
          timeoutMs: o.clientTimeoutMs,
          deadlineMs: o.clientDeadlineMs,
          maxAttempts: 20,
        }),
    ),
  );
  const clock: Clock = { t0: 0, now: () => performance.now() - clock.t0 };
  let firstWriteMs: number | null = null;
  let firstReadMs: number | null = null;
  let longestOpMs = 0;
  let opsOk = 0;
  let opsFailed = 0;
  let pausedAt = Number.POSITIVE_INFINITY;
  let stop = false;
  const loops = clients.map(async (c, k) => {
    for (let i = 0; !stop && i < 1_000_000; i++) {
      const write = i % 2 === 0;
      const started = clock.now();
      try {
        if (write) await c.put(`pause/${k}/${i}`, `v${i}`);
        else await c.get(`pause/${k}/${i - 1}`);
        opsOk++;
        const done = clock.now();
        if (done > pausedAt && started >= pausedAt) {
          if (write) firstWriteMs ??= done - pausedAt;
          else firstReadMs ??= done - pausedAt;
        }
      } catch {
        opsFailed++;
      }
      longestOpMs = Math.max(longestOpMs, clock.now() - started);
    }
  });
  try {
    clock.t0 = performance.now();
    // Let every client complete a few operations before the pause.
    await waitFor(() => opsOk >= clients.length * 4, 10_000, 'clients warming up');
    pausedAt = clock.now();
    cluster.pause(paused);
    const elected = watchElection(cluster, followers, paused, clock, o.pauseMs);
    const probes = await sendProbes(cluster, followers, clock, o.probeTimeoutMs, pausedAt);
    const electedMs = await elected;
    await waitFor(() => clock.now() - pausedAt >= o.pauseMs, o.pauseMs + 1_000, 'the pause');
    cluster.resume(paused);
    stop = true;
    await Promise.all(loops);
    return {
      paused,
      electedMs: electedMs === null ? null : electedMs - pausedAt,
      firstWriteMs,
      firstReadMs,
      longestOpMs,
      opsOk,
      opsFailed,
      probes: await Promise.all(probes),
    };
  } finally {
    cluster.resume(paused);
    stop = true;
    await Promise.all(loops);
    await Promise.all(clients.map((c) => c.close()));
  }
}

/** Polls the followers until one names a leader other than `old`; the time, or null. */
async function watchElection(
  cluster: TestCluster,
  followers: readonly number[],
  old: number,
  clock: Clock,
  withinMs: number,
): Promise<number | null> {
  const until = clock.now() + withinMs;
  while (clock.now() < until) {
    const sts = await Promise.all(followers.map((id) => cluster.status(id)));
    if (sts.some((s) => s !== null && s.leader !== 0 && s.leader !== old)) return clock.now();
    await new Promise((r) => setTimeout(r, 10));
  }
  return null;
}

/**
 * Raw requests (no client, no retries, no session) to each follower every 25 ms during the
 * first 100 ms of the pause; resolves once they were all sent, with the answers to come.
 */
async function sendProbes(
  cluster: TestCluster,
  followers: readonly number[],
  clock: Clock,
  timeoutMs: number,
  pausedAt: number,
): Promise<Promise<ProbeResult>[]> {
  const answers: Promise<ProbeResult>[] = [];
  for (let round = 0; round < 4; round++) {
    for (const node of followers) {
      for (const kind of ['write', 'read'] as const) {
        answers.push(probe(cluster.member(node).client, node, kind, clock, timeoutMs, pausedAt));
      }
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return answers;
}

async function probe(
  url: string,
  node: number,
  kind: 'write' | 'read',
  clock: Clock,
  timeoutMs: number,
  pausedAt: number,
): Promise<ProbeResult> {
  const sent = clock.now();
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  const path = kind === 'write' ? '/v1/kv/put' : '/v1/kv/range';
  const body = kind === 'write' ? { key: `probe/${sent}`, value: 'p' } : { key: 'probe' };
  try {
    const res = await fetch(url + path, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: ac.signal,
    });
    const json = (await res.json()) as { error?: { code: string } };
    const answeredAfterMs = clock.now() - sent;
    const code = json.error?.code ?? 'OK';
    return { kind, node, sentMs: sent - pausedAt, answeredAfterMs, status: res.status, code };
  } catch {
    return { kind, node, sentMs: sent - pausedAt, answeredAfterMs: null, status: 0, code: '-' };
  } finally {
    clearTimeout(timer);
  }
}

async function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
