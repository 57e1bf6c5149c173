// The bounded part of the fault-injection suite that runs with every `npm test`: a few seeded
// runs against real 3-node clusters with every nemesis (one of them wiping data directories),
// which must come out linearizable, with every watcher given every revision once and in order,
// no two lock holders' writes interleaved, and every queued job kept, completed at most once
// and never by a worker whose lease had passed to another, one run in which members are added,
// removed and replaced beside the faults, one in which the register keys lie in many ranges
// that split further under the faults, and one run per planted bug (one of them over many
// ranges), which must not. The long campaign (50 runs of 60 s) is run with
// `npm run chaos` and recorded in docs/TESTING.md.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { defaultChaosOptions, formatReport, runChaos, type ChaosOptions } from './run.js';

function options(over: Partial<ChaosOptions> & { seed: number }): ChaosOptions {
  return { ...defaultChaosOptions, log: () => undefined, ...over };
}

void describe('fault injection against a real cluster', { concurrency: false }, () => {
  // One seed here (a second, 102, took 35 s of CI's 40 minutes for the same nemeses and checks);
  // `npm run chaos` runs as many more as asked.
  for (const seed of [101]) {
    void it(
      `seed ${seed}: kills, pauses and partitions leave the history linearizable`,
      {
        timeout: 240_000,
      },
      async () => {
        const r = await runChaos(options({ seed, timeSec: 20 }));
        const summary = formatReport(r);
        assert.equal(r.verdict, 'ok', summary);
        // A run that did nothing would also be "ok": make sure this one did work and faults.
        assert.ok(r.faults.length >= 2, `faults injected:\n${summary}`);
        assert.ok((r.register?.counts.ok ?? 0) > 200, `register operations:\n${summary}`);
        assert.ok((r.set?.report.acknowledged ?? 0) > 50, `set adds:\n${summary}`);
        assert.equal(r.watch?.valid, true, `watchers:\n${summary}`);
        assert.ok((r.watch?.delivered ?? 0) > 100, `watch deliveries:\n${summary}`);
        assert.equal(r.lock?.valid, true, `lock:\n${summary}`);
        assert.ok((r.lock?.entered ?? 0) > 3, `critical sections:\n${summary}`);
        assert.equal(r.queue?.valid, true, `queue:\n${summary}`);
        assert.ok((r.queue?.completed ?? 0) > 50, `queue jobs completed:\n${summary}`);
        assert.ok((r.queue?.dead ?? 0) > 0, `queue dead letters:\n${summary}`);
        // The staller's reports after its lease passed on: at least one made and refused.
        assert.ok((r.queue?.staleRefused ?? 0) > 0, `stale reports refused:\n${summary}`);
      },
    );
  }

  void it(
    'catches reads served locally without ReadIndex (planted bug)',
    { timeout: 240_000 },
    async () => {
      const r = await runChaos(
        options({
          seed: 201,
          timeSec: 15,
          unsafeMode: 'local-reads',
          nemeses: ['partition', 'pause'],
          workloads: ['register'],
        }),
      );
      assert.equal(r.verdict, 'anomaly', formatReport(r));
      assert.equal(r.register?.result.verdict, 'violation');
    },
  );

  void it(
    'seed 103: wiped data directories recover without losing or reordering anything',
    { timeout: 240_000 },
    async () => {
      const r = await runChaos(options({ seed: 103, timeSec: 20, nemeses: ['wipe', 'kill'] }));
      const summary = formatReport(r);
      assert.equal(r.verdict, 'ok', summary);
      const wipes = r.faults.filter((f) => f.detail.startsWith('wipe'));
      assert.ok(wipes.length >= 1, `a data directory was wiped:\n${summary}`);
      assert.ok((r.register?.counts.ok ?? 0) > 200, `register operations:\n${summary}`);
      assert.ok((r.set?.report.acknowledged ?? 0) > 50, `set adds:\n${summary}`);
    },
  );

  // Seed 301's membership nemesis adds, replaces (adds, then removes a bootstrap member) and
  // adds again while nodes are killed and cut off. The run also checks, once healed, that the
  // cluster's voters are exactly the members left running (run.ts, membership agree).
  void it(
    'seed 301: members added, removed and replaced during faults leave the history linearizable',
    { timeout: 240_000 },
    async () => {
      const r = await runChaos(
        options({ seed: 301, timeSec: 20, nemeses: ['kill', 'pause', 'partition', 'membership'] }),
      );
      const summary = formatReport(r);
      assert.equal(r.verdict, 'ok', summary);
      // A nemesis that silently did nothing would also leave an "ok" run.
      const added = r.membership?.flatMap((c) => c.added) ?? [];
      const removed = r.membership?.flatMap((c) => c.removed) ?? [];
      assert.ok(added.length >= 1, `a member was added:\n${summary}`);
      assert.ok(removed.length >= 1, `a member was removed:\n${summary}`);
      assert.equal(r.register?.result.verdict, 'ok', summary);
      assert.ok((r.register?.counts.ok ?? 0) > 200, `register operations:\n${summary}`);
      assert.ok((r.set?.report.acknowledged ?? 0) > 50, `set adds:\n${summary}`);
      assert.equal(r.watch?.valid, true, `watchers:\n${summary}`);
      assert.equal(r.queue?.valid, true, `queue:\n${summary}`);
    },
  );

  // The staller's reports come after another worker claimed its job: with fencing off they
  // are taken under the new claim. No faults are needed for that, only the staller.
  void it(
    "catches a stale worker's report taken under another's claim (planted bug)",
    { timeout: 240_000 },
    async () => {
      const r = await runChaos(
        options({
          seed: 202,
          timeSec: 8,
          unsafeMode: 'stale-tokens',
          nemeses: [],
          workloads: ['queue'],
        }),
      );
      const summary = formatReport(r);
      assert.equal(r.verdict, 'anomaly', summary);
      assert.equal(r.queue?.valid, false, summary);
      assert.ok(
        r.queue.anomalies.some((a) => a.startsWith('stale-report:')),
        `the stale report was not caught:\n${summary}`,
      );
    },
  );

  // The register keys over 4 ranges from the start, and the split nemesis splitting more while
  // nodes are killed and cut off. Beyond the checkers: once healed, every node shows the same
  // map, covering the key space once, holding every acknowledged split, each range run by
  // every node with the same keys (ranges.ts). The lock workload does not run on a split store
  // (leases are refused) and the watchers follow the set's keys, which stay in one range.
  void it(
    'seed 111: register keys over many ranges, split during kills and partitions, stay linearizable',
    { timeout: 240_000 },
    async () => {
      const r = await runChaos(
        options({
          seed: 111,
          timeSec: 12,
          ranges: 4,
          registerKeys: 12,
          nemeses: ['kill', 'partition', 'split'],
          workloads: ['register', 'set', 'watch'],
        }),
      );
      const summary = formatReport(r);
      assert.equal(r.verdict, 'ok', summary);
      const nemesisSplits = r.ranges?.splits.filter((s) => s.phase === 'nemesis') ?? [];
      assert.ok(
        nemesisSplits.some((s) => s.outcome === 'split'),
        `a split during the faults:\n${summary}`,
      );
      assert.ok((r.ranges?.finalRanges ?? 0) >= 5, `the final map:\n${summary}`);
      assert.ok(r.faults.length >= 2, `faults injected:\n${summary}`);
      // Low bars: a loaded machine runs few operations, and these only show work was done.
      assert.ok((r.register?.counts.ok ?? 0) > 50, `register operations:\n${summary}`);
      assert.ok((r.set?.report.acknowledged ?? 0) > 5, `set adds:\n${summary}`);
      assert.equal(r.watch?.valid, true, `watchers:\n${summary}`);
      assert.ok((r.watch?.delivered ?? 0) > 5, `watch deliveries:\n${summary}`);
    },
  );

  // The same planted bug over 8 ranges (and splits during the run): each range's reads skip
  // ReadIndex, and a node cut off by a partition answers stale reads of every range it runs
  // (pauses alone were not enough: one run of this seed with them came out clean).
  void it(
    'catches reads served locally without ReadIndex over many ranges (planted bug)',
    { timeout: 240_000 },
    async () => {
      const r = await runChaos(
        options({
          seed: 212,
          timeSec: 15,
          ranges: 8,
          registerKeys: 16,
          unsafeMode: 'local-reads',
          nemeses: ['partition', 'split'],
          workloads: ['register'],
        }),
      );
      const summary = formatReport(r);
      assert.equal(r.verdict, 'anomaly', summary);
      assert.equal(r.register?.result.verdict, 'violation', summary);
      assert.ok((r.ranges?.finalRanges ?? 0) >= 8, `the final map:\n${summary}`);
    },
  );

  // Seed 201's schedule kills the leader, then every node, then the leader, early in the run: acknowledged adds
  // that had not committed are then certainly lost (a run that only killed followers could
  // lose nothing).
  void it(
    'catches writes acknowledged before they commit (planted bug)',
    { timeout: 240_000 },
    async () => {
      const r = await runChaos(
        options({
          seed: 201,
          timeSec: 15,
          unsafeMode: 'early-ack',
          nemeses: ['kill'],
          workloads: ['register', 'set', 'watch', 'lock'],
        }),
      );
      assert.equal(r.verdict, 'anomaly', formatReport(r));
      // Acknowledging before commit shows as lost adds when a kill lands between the answer
      // and the commit, or as a non-linearizable register history (a write acknowledged and
      // then overwritten by an older one); which comes first depends on timing. Either is the
      // checkers catching the bug; an anomaly from elsewhere (a crash, a hang) is not.
      const lostAdds = r.set?.report.valid === false;
      const registerViolation = r.register?.result.verdict === 'violation';
      assert.ok(
        lostAdds || registerViolation,
        'neither checker caught the planted bug:\n' + formatReport(r),
      );
    },
  );
});
