// Many groups writing on one node: what each write costs in syncs when every group has its own
// WAL (each group's appends synced on their own) and when the groups write through the node
// journal (src/storage/journal.ts: the appends of all groups gathered during one sync share one
// write and sync). docs/BENCHMARKS.md, "Shared fsync across groups", records a run.
//
//   node dist/bench/host/groups-writing.js [--groups 1,4,16,64] [--seconds 3] [--callers 2]
//                                          [--reps 3] [--dir <path>] [--raw]
//
// One process, one Host with the real runtime and WAL storage on the real disk (the OS temp
// directory unless --dir), G groups of one voter each, so every commit waits for this node's
// own durable write and nothing else. Each group has --callers proposers, each proposing a
// 256-byte command and waiting for its answer, then the next. Both layouts run for each G, one
// after the other, --reps times over (interleaved, so drift in a shared disk's speed hits both
// alike); each row is the rep with the median writes/s. The storage's file system is wrapped to count syncs: fdatasync and fsync
// calls, and writes to files opened with O_DSYNC (each of those is a sync). Device writes and
// cache flushes come from /proc/diskstats (summed over the virtual and physical disks; other
// processes on the machine add to them). CPU is this process's user + system time.
//
// --raw first runs the disk alone: N files each appended to and synced together (O_DSYNC
// writes issued at once, or writes then fdatasyncs issued at once) against one file receiving
// the N appends in one O_DSYNC write: whether the kernel merges syncs of different files.

import { readFileSync } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { constants } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Host } from '../../src/host/host.js';
import {
  chunkStream,
  systemClock,
  type HostTransport,
  type StateMachine,
} from '../../src/host/contracts.js';
import { createRng } from '../../src/raft/index.js';
import { nodeFs, openNodeJournal, openWalStorage } from '../../src/storage/index.js';
import type { NodeJournal, StorageFile, StorageFs } from '../../src/storage/index.js';
import { benchArgs } from '../args.js';

const PAYLOAD_BYTES = 256;
const ELECTION_WAIT_MS = 10_000;
const WARMUP_MS = 1_000;

/** Keeps nothing: the benchmark measures the write path, not a machine. */
const nothing: StateMachine = {
  apply: (commands) => commands.map(() => null),
  snapshot: () => chunkStream(() => [][Symbol.iterator]()),
  restore: async (chunks) => {
    for await (const _ of chunks) void _;
  },
};

/** One-voter groups send nothing. */
const noPeers: HostTransport = {
  send: () => undefined,
  onMessage: () => undefined,
  close: () => Promise.resolve(),
};

interface SyncCounts {
  syncs: number;
}

/** The real file system, counting every call that waits for the disk. */
function countingFs(counts: SyncCounts): StorageFs {
  const wrap = (fh: StorageFile, dsync: boolean): StorageFile => ({
    write: async (d, o, l, p) => {
      const r = await fh.write(d, o, l, p);
      if (dsync) counts.syncs++;
      return r;
    },
    read: (b, o, l, p) => fh.read(b, o, l, p),
    writev: async (b, p) => {
      const r = await fh.writev(b, p);
      if (dsync) counts.syncs++;
      return r;
    },
    datasync: async () => {
      await fh.datasync();
      counts.syncs++;
    },
    sync: async () => {
      await fh.sync();
      counts.syncs++;
    },
    truncate: (n) => fh.truncate(n),
    close: () => fh.close(),
  });
  return {
    ...nodeFs,
    open: async (path, opts) => wrap(await nodeFs.open(path, opts), opts.dsync === true),
    syncDir: async (dir) => {
      await nodeFs.syncDir(dir);
      counts.syncs++;
    },
  };
}

interface Disk {
  readonly writes: number;
  readonly flushes: number;
}

/** Completed writes and cache flushes of the machine's disks (fields 8 and 19 of diskstats). */
function diskNow(): Disk {
  let writes = 0;
  let flushes = 0;
  try {
    for (const line of readFileSync('/proc/diskstats', 'utf8').split('\n')) {
      const f = line.trim().split(/\s+/);
      if (!/^(vd[a-z]+|sd[a-z]+|nvme\d+n\d+|xvd[a-z]+)$/.test(f[2] ?? '')) continue;
      writes += Number(f[7] ?? 0);
      flushes += Number(f[18] ?? 0);
    }
  } catch {
    // Not Linux: the disk columns read 0.
  }
  return { writes, flushes };
}

interface Row {
  readonly groups: number;
  readonly layout: string;
  readonly writesPerSec: number;
  readonly syncsPerSec: number;
  readonly syncsPerWrite: number;
  readonly devWritesPerWrite: number;
  readonly flushesPerWrite: number;
  readonly cpuUsPerWrite: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
}

async function runLayout(
  base: string,
  groups: number,
  journaled: boolean,
  seconds: number,
  callers: number,
): Promise<Row> {
  const dir = await mkdtemp(join(base, `g${groups}-`));
  const counts: SyncCounts = { syncs: 0 };
  const fs = countingFs(counts);
  const journal: NodeJournal | null = journaled ? await openNodeJournal(dir, { fs }) : null;
  const host = new Host({ id: 1, transport: noPeers, clock: systemClock, tickMs: 10 });
  const rts: Awaited<ReturnType<Host['addGroup']>>[] = [];
  for (let g = 0; g < groups; g++) {
    const storage = await openWalStorage(join(dir, `group-${g}`), {
      fs,
      snapshotsCoverCompaction: true,
      ...(journal === null ? {} : { journal }),
    });
    rts.push(
      await host.addGroup(g, {
        voters: [1],
        storage,
        stateMachine: nothing,
        rng: createRng(g + 1),
        electionTicks: 15,
        heartbeatTicks: 5,
      }),
    );
  }
  const deadline = performance.now() + ELECTION_WAIT_MS;
  while (rts.some((rt) => !rt.isLeader())) {
    if (performance.now() > deadline)
      throw new Error(`${rts.filter((rt) => rt.isLeader()).length} of ${groups} groups elected`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const payload = new Uint8Array(PAYLOAD_BYTES).fill(0x5a);
  let measuring = false;
  let stop = false;
  let done = 0;
  const latencies: number[] = [];
  const caller = async (rt: (typeof rts)[number]): Promise<void> => {
    while (!stop) {
      const t0 = performance.now();
      await rt.propose(payload, { timeoutMs: 30_000 });
      if (measuring) {
        done++;
        latencies.push(performance.now() - t0);
      }
    }
  };
  const loops = rts.flatMap((rt) => Array.from({ length: callers }, () => caller(rt)));
  await new Promise((r) => setTimeout(r, WARMUP_MS));
  const syncs0 = counts.syncs;
  const disk0 = diskNow();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  measuring = true;
  await new Promise((r) => setTimeout(r, seconds * 1000));
  measuring = false;
  const secs = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const disk = diskNow();
  const syncs = counts.syncs - syncs0;
  stop = true;
  await Promise.all(loops);
  await host.close(0);
  await journal?.close();
  await rm(dir, { recursive: true, force: true });
  latencies.sort((a, b) => a - b);
  const per = (n: number): number => (done === 0 ? 0 : n / done);
  return {
    groups,
    layout: journaled ? 'journal' : 'per-group',
    writesPerSec: done / secs,
    syncsPerSec: syncs / secs,
    syncsPerWrite: per(syncs),
    devWritesPerWrite: per(disk.writes - disk0.writes),
    flushesPerWrite: per(disk.flushes - disk0.flushes),
    cpuUsPerWrite: per(cpu.user + cpu.system),
    p50Ms: quantile(latencies, 0.5),
    p99Ms: quantile(latencies, 0.99),
  };
}

type RawMode = 'dsync writes at once' | 'writes, then fdatasyncs at once' | 'one file, one write';

/** N appends of 300 bytes per round, made durable as `mode` says; rounds as fast as they go. */
async function rawRound(base: string, n: number, mode: RawMode, seconds: number): Promise<string> {
  const dir = await mkdtemp(join(base, 'raw-'));
  const files = mode === 'one file, one write' ? 1 : n;
  const dsync = mode === 'writes, then fdatasyncs at once' ? 0 : constants.O_DSYNC;
  const fhs = [];
  for (let k = 0; k < files; k++)
    fhs.push(await open(join(dir, `f${k}`), constants.O_RDWR | constants.O_CREAT | dsync, 0o644));
  const rec = Buffer.alloc(300, 0x5a);
  let position = 0;
  let rounds = 0;
  const disk0 = diskNow();
  const t0 = performance.now();
  try {
    while (performance.now() - t0 < seconds * 1000) {
      if (files === 1 && n > 1) {
        await fhs[0]?.writev(
          Array.from({ length: n }, () => rec),
          position,
        );
        position += n * rec.length;
      } else {
        await Promise.all(fhs.map((fh) => fh.write(rec, 0, rec.length, position)));
        if (dsync === 0) await Promise.all(fhs.map((fh) => fh.datasync()));
        position += rec.length;
      }
      rounds++;
    }
  } finally {
    for (const fh of fhs) await fh.close();
    await rm(dir, { recursive: true, force: true });
  }
  const secs = (performance.now() - t0) / 1000;
  const disk = diskNow();
  const flushes = (disk.flushes - disk0.flushes) / rounds;
  const writes = (disk.writes - disk0.writes) / rounds;
  return `| ${n} | ${mode} | ${fmt(rounds / secs)} | ${fmt((rounds * n) / secs)} | ${writes.toFixed(1)} | ${flushes.toFixed(1)} |`;
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

async function main(): Promise<void> {
  const { values } = benchArgs({
    options: {
      groups: { type: 'string', default: '1,4,16,64' },
      seconds: { type: 'string', default: '3' },
      callers: { type: 'string', default: '2' },
      dir: { type: 'string' },
      raw: { type: 'boolean', default: false },
      reps: { type: 'string', default: '3' },
    },
  });
  const groups = values.groups.split(',').map((s) => Number.parseInt(s, 10));
  const seconds = Number(values.seconds);
  const callers = Number.parseInt(values.callers, 10);
  if (groups.some((g) => !(g >= 1 && g <= 1024)) || !(seconds > 0 && seconds <= 600))
    throw new Error('--groups takes 1..1024 each, --seconds 0..600');
  if (!(callers >= 1 && callers <= 64)) throw new Error('--callers takes 1..64');
  const reps = Number.parseInt(values.reps, 10);
  if (!(reps >= 1 && reps <= 20)) throw new Error('--reps takes 1..20');
  const base = await mkdtemp(join(values.dir ?? tmpdir(), 'flotilla-groups-writing-'));
  console.log(`groups-writing: ${seconds} s per row, ${callers} callers per group, ${base}`);
  try {
    if (values.raw) {
      console.log('\n| files | how | rounds/s | appends/s | device writes/round | flushes/round |');
      console.log('| ---: | --- | ---: | ---: | ---: | ---: |');
      for (const n of groups)
        for (const mode of [
          'dsync writes at once',
          'writes, then fdatasyncs at once',
          'one file, one write',
        ] as const)
          console.log(await rawRound(base, n, mode, Math.min(seconds, 2)));
    }
    console.log(
      '\n| groups | layout | writes/s | syncs/s | syncs/write | device writes/write | flushes/write | CPU µs/write | p50 ms | p99 ms |',
    );
    console.log('| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const g of groups) {
      const runs: Row[][] = [[], []];
      for (let k = 0; k < reps; k++)
        for (const journaled of [false, true])
          runs[journaled ? 1 : 0]?.push(await runLayout(base, g, journaled, seconds, callers));
      for (const layout of runs) {
        const sorted = [...layout].sort((a, b) => a.writesPerSec - b.writesPerSec);
        const r = sorted[Math.floor(sorted.length / 2)];
        if (r === undefined) continue;
        console.log(
          `| ${r.groups} | ${r.layout} | ${fmt(r.writesPerSec)} | ${fmt(r.syncsPerSec)} | ${r.syncsPerWrite.toFixed(3)} | ${r.devWritesPerWrite.toFixed(2)} | ${r.flushesPerWrite.toFixed(3)} | ${fmt(r.cpuUsPerWrite)} | ${r.p50Ms.toFixed(1)} | ${r.p99Ms.toFixed(1)} |`,
        );
      }
    }
  } finally {
    await rm(base, { recursive: true, force: true });
  }
}

void main().catch((err: unknown) => {
  process.stderr.write(`groups-writing: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
