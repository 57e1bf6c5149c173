// Where a queued job's time goes: the queue benchmark's load (bench/eval/queue-bench.ts: one
// producer thread adding, one consumer thread running a Worker, a window of 4 jobs per worker)
// against a 3-member cluster whose queue group is traced (src/host/trace.ts), each member in a
// process of its own. Every write of the queue group's leader is one round; the tool times the
// steps of each round from the first entry proposed in it to the answers written, the follower
// whose acknowledgement came first standing for the followers, and the client's part between an
// answer and the next request. It prints the median and p90 of each step.
//
//   node dist/bench/trace/queue-trace.js [--workers 1] [--seconds 8] [--warmup-seconds 4]
//                                        [--in-process] [--dir <path>]
//
// A round's entries may have to wait for the write in flight before theirs starts: that wait
// is "first proposal -> leader write start" at the leader and "append received -> write start"
// at the follower, and the share of rounds that waited is printed.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QUEUE_GROUP } from '../../src/server/node.js';
import { benchArgs, benchCount } from '../args.js';
import { queuePoint, type QueueTarget } from '../eval/queue-bench.js';
import type { Progress } from '../eval/scenarios.js';
import { printSteps, quantile, Recorder, startMembers, waitForLeader } from './members.js';
import { queueRounds } from './queue-rounds.js';

async function main(): Promise<void> {
  const { values } = benchArgs({
    options: {
      workers: { type: 'string', default: '1' },
      seconds: { type: 'string', default: '8' },
      'warmup-seconds': { type: 'string', default: '4' },
      'in-process': { type: 'boolean', default: false },
      dir: { type: 'string' },
    },
  });
  const workers = benchCount('workers', values.workers, 256);
  const seconds = benchCount('seconds', values.seconds, 600);
  const warmup = benchCount('warmup-seconds', values['warmup-seconds'], 600);
  const processes = !values['in-process'];
  const dir = mkdtempSync(join(values.dir ?? tmpdir(), 'flotilla-queue-trace-'));
  const rec = new Recorder();
  const members = await startMembers(dir, rec, { processes, traceGroup: QUEUE_GROUP });
  const where = processes ? 'one process per member' : 'all in one process';
  try {
    const leader = await waitForLeader(members, QUEUE_GROUP);
    const url = (id: number) => leader.members.find((m) => m.id === id)?.client ?? '';
    const ids = members
      .map((m) => m.id)
      .sort((a, b) => (a === leader.id ? -1 : b === leader.id ? 1 : a - b));
    const target: QueueTarget = {
      system: 'flotilla',
      endpoints: ids.map(url),
      redisPort: 0,
      // In one process the members' CPU is this process's, the load generator's threads with it.
      serverPids: processes ? members.map((m) => m.pid) : [process.pid],
    };
    const progress: Progress = {
      tick: () => undefined,
      done: (label, summary) => console.log(`${label}: ${summary}`),
    };
    // A warm-up point first, untraced: the rounds of a fresh cluster are not the steady ones.
    for (const traced of [false, true]) {
      await Promise.all(members.map((m) => m.record(traced)));
      await queuePoint(
        target,
        workers,
        4,
        64,
        traced
          ? { warmupMs: 0, durationMs: seconds * 1000 }
          : { warmupMs: 1_000, durationMs: warmup * 1000 },
        progress,
        traced ? 'traced' : 'warm-up (not traced)',
      );
    }
    await Promise.all(members.map((m) => m.record(false)));
    for (const m of members) for (const p of await m.points()) rec.add(p);
    const r = queueRounds(rec.all, leader.id);
    console.log(
      `${workers} worker(s), queue group leader ${leader.id}, ${where}: ${r.rounds} rounds ` +
        `(${(r.rounds / Math.max(r.seconds, 1e-9)).toFixed(0)} leader writes/s); ` +
        `${r.waited} (${((100 * r.waited) / Math.max(r.rounds, 1)).toFixed(0)} %) began while the leader's previous write was in flight`,
    );
    console.log(
      `the leader's own write ended after the first acknowledgement in ${r.leaderLast} ` +
        `(${((100 * r.leaderLast) / Math.max(r.rounds, 1)).toFixed(0)} %) of the rounds`,
    );
    const sooner = r.followersSooner;
    console.log(
      `both followers' acknowledgements came before the leader's write ended in ${sooner.length} ` +
        `(${((100 * sooner.length) / Math.max(r.rounds, 1)).toFixed(0)} %) of the rounds, ` +
        `by p50 ${sooner.length > 0 ? quantile(sooner, 0.5).toFixed(3) : '-'} ms ` +
        `(p90 ${sooner.length > 0 ? quantile(sooner, 0.9).toFixed(3) : '-'} ms) among them`,
    );
    const piped = r.pipelinedSooner;
    const gained = piped.filter((x) => x > 0);
    const mean = piped.reduce((a, b) => a + b, 0) / Math.max(piped.length, 1);
    console.log(
      `a leader write started with the round's appends, beside the one in flight, would have ` +
        `had the commit ready sooner in ${gained.length} ` +
        `(${((100 * gained.length) / Math.max(r.rounds, 1)).toFixed(0)} %) of the rounds, ` +
        `by p50 ${gained.length > 0 ? quantile(gained, 0.5).toFixed(3) : '-'} ms ` +
        `(p90 ${gained.length > 0 ? quantile(gained, 0.9).toFixed(3) : '-'} ms) among them, ` +
        `${mean.toFixed(3)} ms a round on average`,
    );
    printSteps(r.steps);
    const round = r.steps.get('round: first proposal -> answers written') ?? [];
    const client = r.steps.get('answers written -> next request read (client)') ?? [];
    console.log(
      `round p50 ${quantile(round, 0.5).toFixed(3)} ms, client p50 ${quantile(client, 0.5).toFixed(3)} ms`,
    );
  } finally {
    await Promise.all(members.map((m) => m.close()));
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
