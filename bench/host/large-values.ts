// Memory under large values: how much log a group holds in memory after N writes of large values,
// with the log bounded in bytes (snapshotLogBytes, default) and in entries only (--log-bytes off,
// what the runtime did before). docs/BENCHMARKS.md, "Memory: large values", records a run.
//
//   node --expose-gc dist/bench/host/large-values.js [--count 2000] [--value-kib 256]
//                                                    [--log-bytes default|off|<bytes>] [--dir <path>]
//
// One process, one Host with the real runtime and WAL storage on the real disk (the OS temp
// directory unless --dir), one group of one voter. The state machine keeps only the last value
// written (one key rewritten N times), so what grows is the log, not the state. Four proposers
// write --count values of --value-kib KiB. Printed: the core's log (first and last index) and
// the storage's, the snapshots saved, and the process's memory (RSS and ArrayBuffer bytes, after
// a full collection when run with --expose-gc) before the writes and after.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Host } from '../../src/host/host.js';
import {
  chunkStream,
  systemClock,
  type Command,
  type HostTransport,
  type StateMachine,
} from '../../src/host/contracts.js';
import { openWalStorage } from '../../src/storage/index.js';
import { benchArgs } from '../args.js';

const PROPOSERS = 4;
const ELECTION_WAIT_MS = 10_000;

/** Keeps the last value written: the state of one key rewritten again and again. */
class LastValue implements StateMachine {
  last: Uint8Array = new Uint8Array(0);
  apply(commands: readonly Command[]): unknown[] {
    for (const c of commands) this.last = c.payload;
    return commands.map(() => null);
  }
  snapshot(): AsyncIterable<Uint8Array> {
    const data = this.last.slice();
    return chunkStream(() => [data][Symbol.iterator]());
  }
  async restore(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    for await (const c of chunks) this.last = c.slice();
  }
}

/** One-voter groups send nothing. */
const noPeers: HostTransport = {
  send: () => undefined,
  onMessage: () => undefined,
  close: () => Promise.resolve(),
};

function memoryMb(): { rss: number; arrayBuffers: number } {
  (globalThis as { gc?: () => void }).gc?.();
  const m = process.memoryUsage();
  return { rss: Math.round(m.rss / 1e6), arrayBuffers: Math.round(m.arrayBuffers / 1e6) };
}

async function main(): Promise<void> {
  const { values } = benchArgs({
    options: {
      count: { type: 'string', default: '2000' },
      'value-kib': { type: 'string', default: '256' },
      'log-bytes': { type: 'string', default: 'default' },
      dir: { type: 'string' },
    },
  });
  const count = Number.parseInt(values.count, 10);
  const valueBytes = Number.parseInt(values['value-kib'], 10) * 1024;
  const logBytes = values['log-bytes'];
  const dir = await mkdtemp(join(values.dir ?? tmpdir(), 'large-values-'));
  const saved: number[] = [];
  const host = new Host({
    id: 1,
    transport: noPeers,
    clock: systemClock,
    onEvent: (_g, e) => {
      if (e.kind === 'snapshot-saved') saved.push(e.index);
    },
  });
  try {
    const storage = await openWalStorage(join(dir, 'group-0'), { snapshotsCoverCompaction: true });
    const rt = await host.addGroup(0, {
      voters: [1],
      storage,
      stateMachine: new LastValue(),
      ...(logBytes === 'default'
        ? {}
        : { snapshotLogBytes: logBytes === 'off' ? Number.MAX_SAFE_INTEGER : Number(logBytes) }),
    });
    await rt.waitForLeader({ timeoutMs: ELECTION_WAIT_MS });
    const before = memoryMb();
    const started = Date.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: PROPOSERS }, async () => {
        while (next < count) {
          next += 1;
          const value = new Uint8Array(valueBytes);
          value.fill(next % 251);
          await rt.propose(value, { timeoutMs: 60_000 });
        }
      }),
    );
    const seconds = (Date.now() - started) / 1000;
    // Measured with the group still open: its log is what is being measured.
    const after = memoryMb();
    const st = rt.status();
    console.log(
      JSON.stringify({
        count,
        valueKiB: valueBytes / 1024,
        snapshotLogBytes: logBytes,
        seconds: Math.round(seconds * 10) / 10,
        coreLog: { firstIndex: st.firstIndex, lastIndex: st.lastIndex },
        storageLog: { firstIndex: storage.log.firstIndex(), lastIndex: storage.log.lastIndex() },
        snapshots: saved.length,
        lastSnapshot: saved.at(-1) ?? null,
        memoryMbBefore: before,
        memoryMbAfter: after,
      }),
    );
  } finally {
    await host.close(0).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
