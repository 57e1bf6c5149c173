// How a freshly started cluster comes up to speed: 64 closed-loop writers (or readers) from the
// first second on, and for every window of the run the throughput and the members' CPU per
// operation, split by thread for Flotilla: the event loop ("main"), V8's platform workers
// ("v8", where it compiles optimised code and marks and sweeps the heap in the background; the
// four threads it starts first), and the rest ("other": libuv's thread pool, the WAL's writes).
// For etcd the split means nothing (Go threads); its total is the figure.
//
//   node dist/bench/eval/warmup-ramp.js [--system flotilla|etcd] [--seconds 44] [--window 4]
//                                       [--load writes|reads]
//
// With --load reads the cluster is first given 20 s of writes (not shown) and 1,000 keys, and
// the windows show the read path coming up to speed on its own.

import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { benchArgs } from '../args.js';
import { makeCluster, type SystemName } from './clusters.js';
import { runClosedLoop } from './loadgen.js';
import { ProcessGroup } from './procs.js';
import { b64, getOp } from './protocol.js';
import { preloadKeys, readKey, writer } from './scenarios.js';

interface ThreadCpu {
  readonly main: number;
  readonly v8: number;
  readonly other: number;
}

/** CPU ticks (user + system) of `pid`'s threads: its main thread, V8's first four, the rest. */
function threadCpu(pid: number): ThreadCpu {
  let main = 0;
  let v8 = 0;
  let other = 0;
  const tids = readdirSync(`/proc/${pid}/task`)
    .map(Number)
    .sort((a, b) => a - b);
  tids.forEach((tid, i) => {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    } catch {
      return; // the thread ended between the listing and the read
    }
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(f[11]) + Number(f[12]);
    if (tid === pid) main += ticks;
    else if (i <= 4) v8 += ticks;
    else other += ticks;
  });
  return { main, v8, other };
}

const { values } = benchArgs({
  options: {
    system: { type: 'string', default: 'flotilla' },
    seconds: { type: 'string', default: '44' },
    window: { type: 'string', default: '4' },
    load: { type: 'string', default: 'writes' },
  },
});
const system = values.system as SystemName;
if (system !== 'flotilla' && system !== 'etcd')
  throw new RangeError(`--system must be flotilla or etcd, got ${values.system}`);
const load = values.load;
if (load !== 'writes' && load !== 'reads')
  throw new RangeError(`--load must be writes or reads, got ${load}`);
const seconds = Number(values.seconds);
const windowS = Number(values.window);
for (const [name, v, max] of [
  ['seconds', seconds, 600],
  ['window', windowS, 60],
] as const)
  if (!Number.isInteger(v) || v < 1 || v > max)
    throw new RangeError(`--${name} must be an integer 1..${max}, got ${v}`);

const clients = 64;
const put = writer(system, 256, 'ramp');
const read = (client: number, n: number) => getOp(system, b64(readKey(client, n)), 'linearizable');

const dir = mkdtempSync(join(tmpdir(), 'flotilla-ramp-'));
const procs = new ProcessGroup();
const c = makeCluster(system, { size: 3, dir, procs });
try {
  await c.start();
  const leader = await c.waitForLeader();
  if (load === 'reads') {
    process.stdout.write(`${system}: 20 s of ${clients} writers first (not shown)\n`);
    await runClosedLoop({
      urls: [c.clientUrl(leader)],
      clients,
      warmupMs: 0,
      durationMs: 20_000,
      next: put,
    });
    await preloadKeys(c, 1000);
  }
  const pids = c.ids.map((id) => c.pid(id)).filter((p): p is number => p !== null);
  let last = pids.map(threadCpu);
  let lastOps = 0;
  let lastMs = 0;
  process.stdout.write(
    `${system}, fresh 3-member cluster, ${clients} closed-loop ${load === 'writes' ? 'writers' : 'linearizable readers'} at the leader; ` +
      `members' CPU per operation in µs (${system === 'flotilla' ? 'event loop / V8 workers / other threads' : 'all threads'})\n`,
  );
  await runClosedLoop({
    urls: [c.clientUrl(leader)],
    clients,
    warmupMs: 0,
    durationMs: seconds * 1000,
    next: load === 'writes' ? put : read,
    onTick: (elapsedMs, _total, ops) => {
      if (elapsedMs - lastMs < windowS * 1000) return;
      const now = pids.map(threadCpu);
      const done = ops - lastOps;
      // /proc counts 100 ticks a second: 10,000 µs each.
      const per = (k: keyof ThreadCpu): number =>
        (now.reduce((a, x, i) => a + x[k] - (last[i] as ThreadCpu)[k], 0) * 10_000) /
        Math.max(done, 1);
      const rate = Math.round(done / ((elapsedMs - lastMs) / 1000));
      const total = per('main') + per('v8') + per('other');
      const split =
        system === 'flotilla'
          ? ` (${per('main').toFixed(0)} / ${per('v8').toFixed(0)} / ${per('other').toFixed(0)})`
          : '';
      process.stdout.write(
        `${String(Math.round(elapsedMs / 1000)).padStart(3)} s  ${String(rate).padStart(6)} ops/s  ${total.toFixed(0).padStart(5)} µs${split}\n`,
      );
      last = now;
      lastOps = ops;
      lastMs = elapsedMs;
    },
  });
} finally {
  await c.stop();
  await procs.stopAll();
  rmSync(dir, { recursive: true, force: true });
}
