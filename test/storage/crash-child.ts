// Child process for crash.test.ts: appends to a WAL as fast as it can, with several persists in
// flight (group commit), hard state updates and periodic snapshots, and prints one line per
// acknowledged (durable) call: `ack <lastIndex> <term>`. The parent kills it with SIGKILL.
// Without arguments (as when the test runner picks this file up) it does nothing.

import { openWalStorage } from '../../src/storage/wal.js';
import { entry } from './helpers.js';

const SNAPSHOT_EVERY = 400;
const INFLIGHT_MAX = 4;
const ACK_EARLY = process.env['FLOTILLA_CRASH_PLANT'] === 'ack-early';

async function main(dir: string, term: number): Promise<void> {
  const s = await openWalStorage(dir, { segmentBytes: 64 * 1024 });
  let next = s.log.lastIndex() + 1;
  let inflight = 0;
  process.stdout.write(`ready ${next - 1}\n`);
  for (;;) {
    if (inflight >= INFLIGHT_MAX) {
      await new Promise((r) => setImmediate(r));
      continue;
    }
    const n = 1 + (next % 7) * 3;
    const batch = Array.from({ length: n }, (_, k) =>
      entry(next + k, term, 16 + ((next + k) % 200)),
    );
    next += n;
    const last = next - 1;
    inflight++;
    const hs = { term, vote: 1, commit: Math.max(0, last - 50) };
    // Planted bug for the checker's own test: acknowledge before the write is even issued.
    if (ACK_EARLY) process.stdout.write(`ack ${last} ${term}\n`);
    s.persist(batch, hs).then(
      () => {
        inflight--;
        if (!ACK_EARLY) process.stdout.write(`ack ${last} ${term}\n`);
      },
      (err: unknown) => {
        process.stderr.write(`persist failed: ${String(err)}\n`);
        process.exit(2);
      },
    );
    if (last % SNAPSHOT_EVERY < n && last > SNAPSHOT_EVERY) await snapshot(s, last - 200, term);
  }
}

async function snapshot(
  s: Awaited<ReturnType<typeof openWalStorage>>,
  index: number,
  term: number,
): Promise<void> {
  const t = s.log.term(index);
  if (t === undefined) return;
  await s.saveSnapshot(
    { index, term: t, voters: [1] },
    new TextEncoder().encode(`snapshot ${index} ${term}`),
  );
}

const [dir, termArg] = process.argv.slice(2);
if (dir !== undefined && termArg !== undefined) {
  main(dir, Number(termArg)).catch((err: unknown) => {
    process.stderr.write(`crash child failed: ${String(err)}\n`);
    process.exit(3);
  });
}
