// How long a delayed job and a retry after a backoff really wait, on a real 3-member cluster
// (WAL, fsync on) with nothing else running: the queue's clock moves only with the commands it
// applies, so on an idle queue the leader's ticker must propose one when each is due.
//
//   node dist/bench/queue/delays.js [--rounds 10] [--delays 100,250,500,1500]
//
// For each delay D, `--rounds` times: a claim waits (long poll) on the queue; a job is added
// with `delayMs` D, timed from the add's answer to the claim's answer with the job; the job is
// then failed with a fixed backoff of D (it allows two attempts), timed from the fail's answer
// to the next claim's answer with it. Both are reported as the wait beyond D (p50 and max): the
// add's and the fail's own commit already count towards D, so a wait can be a little under it.
//
// Bounded: one cluster, stopped by PID at the end, data in a temp directory removed after.

import { FlotillaClient } from '../../src/client/index.js';
import { benchArgs } from '../args.js';
import { onQueueCluster, pct } from './common.js';

const { values } = benchArgs({
  options: {
    rounds: { type: 'string', default: '10' },
    delays: { type: 'string', default: '100,250,500,1500' },
  },
});

const rounds = Number(values.rounds);
if (!Number.isSafeInteger(rounds) || rounds < 1 || rounds > 1_000) {
  process.stderr.write(`--rounds must be an integer 1..1000, got ${values.rounds}\n`);
  process.exit(2);
}
const delays = values.delays.split(',').map(Number);
if (delays.some((d) => !Number.isSafeInteger(d) || d < 1 || d > 10_000)) {
  process.stderr.write(
    `--delays must be integers 1..10000 ms, comma-separated, got ${values.delays}\n`,
  );
  process.exit(2);
}

await onQueueCluster('delays', async (c, leaderId) => {
  const client = new FlotillaClient({ endpoints: [c.clientUrl(leaderId)] });
  await client.status();
  const q = client.queue('delays');
  /** The next job a claim brings, and when it answered. */
  const claimNext = async (): Promise<{ id: string; token: number; at: number }> => {
    const r = await q.claim({ max: 1, waitMs: 10_000 });
    const got = r.jobs[0];
    if (got === undefined) throw new Error('a claim waited 10 s and got no job');
    return { id: got.job.id, token: got.token, at: performance.now() };
  };
  process.stdout.write(`${rounds} rounds per delay; ms waited beyond the delay asked for:\n`);
  for (const d of delays) {
    const delayed: number[] = [];
    const backoff: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const claimed = claimNext();
      await q.add(
        'delayed',
        { i },
        { delayMs: d, maxAttempts: 2, backoff: { kind: 'fixed', delayMs: d } },
      );
      const added = performance.now();
      const first = await claimed;
      delayed.push(first.at - added - d);
      const again = claimNext();
      await q.fail(first.id, first.token, 'on purpose');
      const failed = performance.now();
      const second = await again;
      if (second.id !== first.id)
        throw new Error(`the retry claimed ${second.id}, not ${first.id}`);
      backoff.push(second.at - failed - d);
      await q.complete(second.id, second.token);
    }
    delayed.sort((a, b) => a - b);
    backoff.sort((a, b) => a - b);
    process.stdout.write(
      `delay ${d}: delayMs p50 ${pct(delayed, 50)} max ${pct(delayed, 100)}; ` +
        `backoff p50 ${pct(backoff, 50)} max ${pct(backoff, 100)}\n`,
    );
  }
  await client.close();
});
