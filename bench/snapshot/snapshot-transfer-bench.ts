// Snapshot transfer benchmark on real processes: a 200 MB key-value state sent in chunks to a
// follower behind the compacted log, with the sending leader killed (SIGKILL) in the middle.
// Five nodes on 127.0.0.1: four hold the log, node 5 starts empty once the others compacted
// (it recovers as a node that lost its data, so it does not vote and three voters remain
// after the kill). Prints the snapshot's size, how long the transfer took in all and before
// the kill, MB/s, how much the follower held at the kill, and what the new leader sent:
// the rest, plus the bytes resent (chunks the follower already held, resends to a slow
// follower). Writes its figures as JSON too.
//
// Run: npm run build && node dist/bench/snapshot/snapshot-transfer-bench.js [--mb 200]
//      [--kill-at 0.4] [--chunk-bytes 1048576] [--every 100] [--json out.json]
// Bounded: every wait has a deadline, and the cluster's processes are killed by PID at the end.

import { writeFileSync } from 'node:fs';
import type { NodeStatus, SnapshotTransferStatus } from '../../src/api/types.js';
import { TestCluster, sleep } from '../../test/e2e/harness.js';
import { benchArgs } from '../args.js';

const { values } = benchArgs({
  options: {
    mb: { type: 'string', default: '200' },
    'kill-at': { type: 'string', default: '0.4' },
    'chunk-bytes': { type: 'string', default: String(1024 * 1024) },
    every: { type: 'string', default: '100' },
    json: { type: 'string' },
  },
});

function positive(name: 'mb' | 'kill-at' | 'chunk-bytes' | 'every'): number {
  const v = Number(values[name]);
  if (values[name] === '' || !Number.isFinite(v) || v <= 0) {
    process.stderr.write(`--${name} must be a positive number, got "${values[name]}"\n`);
    process.exit(2);
  }
  return v;
}

const totalMb = positive('mb');
const killAt = positive('kill-at');
const chunkBytes = positive('chunk-bytes');
const every = positive('every');
const jsonOut = values.json;
const valueBytes = 1_000_000;
const writes = Math.ceil((totalMb * 1_000_000) / valueBytes);
const LAGGER = 5;
const UP = [1, 2, 3, 4];

function sendTo(s: NodeStatus | null, peer: number): SnapshotTransferStatus | undefined {
  return s?.snapshotTransfers.find(
    (t) => t.group === 0 && t.direction === 'send' && t.peer === peer,
  );
}

function receiving(s: NodeStatus | null): SnapshotTransferStatus | undefined {
  return s?.snapshotTransfers.find((t) => t.group === 0 && t.direction === 'receive');
}

async function bytesSent(c: TestCluster, id: number): Promise<number> {
  const text = await (await fetch(`${c.member(id).client}/metrics`)).text();
  const m = /flotilla_snapshot_events\{[^}]*group="0"[^}]*kind="bytes_sent"[^}]*\} (\d+)/.exec(
    text,
  );
  return m === null ? 0 : Number(m[1]);
}

async function waitUntil<T>(
  what: string,
  ms: number,
  probe: () => Promise<T | undefined>,
  everyMs = 50,
): Promise<T> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const v = await probe();
    if (v !== undefined) return v;
    await sleep(everyMs);
  }
  throw new Error(`${what}: not within ${ms} ms`);
}

/** The cluster of this run, for the signal handlers. */
let running: TestCluster | null = null;

// Ctrl-C or SIGTERM: end the five node processes and remove their data directory; without
// this they ran on after the bench was gone.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    process.stderr.write(`snapshot-transfer-bench: ${signal}, stopping the cluster\n`);
    const exit = (): never => process.exit(signal === 'SIGINT' ? 130 : 143);
    setTimeout(exit, 10_000).unref();
    void (running === null ? Promise.resolve() : running.stop()).finally(exit);
  });
}

async function main(): Promise<void> {
  // Snapshots at every 100th entry (--every): the writes end past a multiple, so all four hold
  // the same snapshot (same index, same bytes, same id) when node 5 starts.
  const cluster = await TestCluster.create({
    nodes: 5,
    extraArgs: [
      '--snapshot-every-entries',
      String(every),
      '--snapshot-chunk-bytes',
      String(chunkBytes),
      '--max-inflight-requests',
      '64',
    ],
  });
  running = cluster;
  try {
    for (const id of UP) cluster.startNode(id);
    await cluster.waitForLeader(30_000, UP);
    const client = cluster.client(UP);
    const value = 'v'.repeat(valueBytes);
    const w0 = Date.now();
    try {
      for (let i = 0; i < writes; i += 4)
        await Promise.all(
          Array.from({ length: Math.min(4, writes - i) }, (_, j) =>
            client.put(`k${i + j}`, `${i + j}:${value}`),
          ),
        );
    } finally {
      await client.close();
    }
    const writeMs = Date.now() - w0;
    console.log(
      `wrote ${writes} values of ${valueBytes} bytes in ${(writeMs / 1000).toFixed(1)} s`,
    );
    const snapIndex = Math.floor((await cluster.maxCommit()) / every) * every;
    await waitUntil('every node compacted behind its snapshot', 300_000, async () => {
      const sts = await Promise.all(UP.map((id) => cluster.status(id)));
      return sts.every((s) => (s?.firstIndex ?? 0) > snapIndex - every) ? true : undefined;
    });

    // Leadership may have moved under the writes: the leader now is the one that will send.
    const leader = await cluster.waitForLeader(30_000, UP);
    const t0 = Date.now();
    cluster.startNode(LAGGER);
    const first = await waitUntil(
      'a transfer to node 5',
      120_000,
      async () => sendTo(await cluster.status(leader), LAGGER),
      10,
    );
    const tFirst = Date.now();
    const atKill = await waitUntil(
      `node 5 holding ${killAt * 100}% of the snapshot`,
      600_000,
      async () => {
        const t = sendTo(await cluster.status(leader), LAGGER);
        return t !== undefined && t.bytesDone >= t.totalBytes * killAt ? t : undefined;
      },
      10,
    );
    const oldSent = await bytesSent(cluster, leader);
    await cluster.kill(leader);
    const tKill = Date.now();
    const held = receiving(await cluster.status(LAGGER))?.bytesDone ?? 0;
    const rest = UP.filter((id) => id !== leader);
    const next = await cluster.waitForLeader(30_000, rest);
    const tLeader = Date.now();
    const target = (await cluster.status(next))?.commit ?? 0;
    await waitUntil('node 5 installed the snapshot and caught up', 600_000, async () => {
      const s = await cluster.status(LAGGER);
      return s !== null && s.applied >= target && receiving(s) === undefined ? true : undefined;
    });
    const tDone = Date.now();
    const newSent = await bytesSent(cluster, next);
    const total = first.totalBytes;
    const figures = {
      snapshotBytes: total,
      chunkBytes,
      writeSeconds: writeMs / 1000,
      transferSeconds: (tDone - tFirst) / 1000,
      startToInstalledSeconds: (tDone - t0) / 1000,
      beforeKillSeconds: (tKill - tFirst) / 1000,
      electionSeconds: (tLeader - tKill) / 1000,
      afterNewLeaderSeconds: (tDone - tLeader) / 1000,
      mbPerSecOverall: total / 1e6 / ((tDone - tFirst) / 1000),
      mbPerSecBeforeKill: atKill.bytesDone / 1e6 / ((tKill - tFirst) / 1000),
      mbPerSecAfterNewLeader: newSent / 1e6 / Math.max(0.001, (tDone - tLeader) / 1000),
      heldAtKillBytes: held,
      oldLeaderSentBytes: oldSent,
      newLeaderSentBytes: newSent,
      resentAfterKillBytes: Math.max(0, newSent - (total - held)),
      fromZeroWouldSendBytes: total,
    };
    const mb = (n: number) => (n / 1e6).toFixed(1);
    console.log(
      `snapshot ${mb(total)} MB in chunks of ${chunkBytes} bytes; leader ${leader} killed at ` +
        `${mb(held)} MB held (${((100 * held) / total).toFixed(0)}%), new leader ${next} in ` +
        `${figures.electionSeconds.toFixed(2)} s`,
    );
    console.log(
      `transfer ${figures.transferSeconds.toFixed(1)} s overall, ${figures.mbPerSecOverall.toFixed(1)} MB/s ` +
        `(${figures.mbPerSecBeforeKill.toFixed(1)} MB/s before the kill, ${figures.mbPerSecAfterNewLeader.toFixed(1)} after the new leader)`,
    );
    console.log(
      `new leader sent ${mb(newSent)} MB for the ${mb(total - held)} MB missing: ` +
        `${mb(figures.resentAfterKillBytes)} MB resent after the kill (from byte 0 it would be ${mb(total)} MB)`,
    );
    console.log(JSON.stringify(figures));
    if (jsonOut !== undefined) writeFileSync(jsonOut, JSON.stringify(figures, null, 2) + '\n');
  } catch (err) {
    console.error(cluster.dumpLogs());
    throw err;
  } finally {
    await cluster.stop();
  }
}

await main();
