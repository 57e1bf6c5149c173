// Core throughput: committed entries per second for 3 in-process RaftNodes with in-memory
// storage and a direct in-memory network, on one thread. No simulator, no I/O: a tight loop
// proposes a batch on the leader, moves every message straight to its target, and runs each
// node's Ready loop (persist to an in-memory log, send, apply, advance). Logs are compacted
// as they go so memory stays bounded however long it runs.
//
//   npm run build && node dist/bench/raft/throughput-bench.js [secondsPerPayload]
//
// Prints one line per payload size (16 and 256 bytes) with entries/s and MB/s of payload.

import { createRng, RaftNode, type Entry, type Message, type Ready } from '../../src/raft/index.js';
import { benchPositionals } from '../args.js';

const VOTERS = [1, 2, 3] as const;
const BATCH_ENTRIES = 2048;
/** Compact every node's log to the cluster-wide applied index this often (entries). */
const COMPACT_EVERY = 1 << 16;
const DEFAULT_SECONDS = 8;
const MAX_SECONDS = 60;

/** An in-memory log store standing in for the WAL: it keeps the entries until compaction. */
class MemoryLog {
  private entries: Entry[] = [];
  private first = 1;

  append(batch: readonly Entry[]): void {
    if (batch.length === 0) return;
    const from = (batch[0] as Entry).index;
    const keep = from - this.first;
    if (keep < this.entries.length) this.entries.length = Math.max(0, keep);
    for (const e of batch) this.entries.push(e);
  }

  compact(index: number): void {
    if (index < this.first) return;
    this.entries = this.entries.slice(index + 1 - this.first);
    this.first = index + 1;
  }
}

interface BenchNode {
  readonly raft: RaftNode;
  readonly log: MemoryLog;
  applied: number;
}

function handleReady(n: BenchNode, rd: Ready, outbox: Message[]): void {
  for (const m of rd.messages) outbox.push(m);
  n.log.append(rd.entries);
  for (const m of rd.messagesAfterPersist) outbox.push(m);
  const c = rd.committedEntries.length;
  if (c > 0) n.applied = (rd.committedEntries[c - 1] as Entry).index;
  n.raft.advance(rd);
}

/** Runs every node's Ready loop and delivers messages until the cluster is quiet. */
function settle(nodes: readonly BenchNode[], outbox: Message[]): void {
  for (let rounds = 0; rounds < 1000; rounds++) {
    let busy = false;
    for (const n of nodes) {
      while (n.raft.hasReady()) {
        busy = true;
        handleReady(n, n.raft.ready(), outbox);
      }
    }
    if (outbox.length > 0) {
      busy = true;
      const batch = outbox.splice(0, outbox.length);
      for (const m of batch) (nodes[m.to - 1] as BenchNode).raft.step(m);
    }
    if (!busy) return;
  }
  throw new Error('cluster did not settle within 1000 rounds');
}

function makeCluster(): BenchNode[] {
  return VOTERS.map((id) => ({
    raft: new RaftNode({ id, voters: VOTERS, rng: createRng(id) }),
    log: new MemoryLog(),
    applied: 0,
  }));
}

function run(payloadBytes: number, seconds: number): { entriesPerSec: number; mbPerSec: number } {
  const nodes = makeCluster();
  const outbox: Message[] = [];
  const leader = nodes[0] as BenchNode;
  leader.raft.campaign();
  settle(nodes, outbox);
  if (leader.raft.status().role !== 'leader') throw new Error('node 1 did not become leader');
  const payload = new Uint8Array(payloadBytes).fill(7);
  const batch = Array.from({ length: BATCH_ENTRIES }, () => payload);
  const startApplied = leader.applied;
  let lastCompact = startApplied;
  const began = performance.now();
  const deadline = began + seconds * 1000;
  let now = began;
  while (now < deadline) {
    for (let i = 0; i < 16; i++) {
      const r = leader.raft.proposeBatch(batch);
      if (!r.ok) throw new Error(`proposal refused: ${r.error.code} ${r.error.message}`);
      settle(nodes, outbox);
    }
    const applied = Math.min(...nodes.map((n) => n.applied));
    if (applied - lastCompact >= COMPACT_EVERY) {
      for (const n of nodes) {
        n.raft.compact(applied);
        n.log.compact(applied);
      }
      lastCompact = applied;
    }
    now = performance.now();
  }
  const secs = (now - began) / 1000;
  const entries = leader.applied - startApplied;
  return { entriesPerSec: entries / secs, mbPerSec: (entries * payloadBytes) / secs / 1e6 };
}

function main(): void {
  const seconds = benchPositionals(
    `node dist/bench/raft/throughput-bench.js [secondsPerPayload=${DEFAULT_SECONDS}]`,
    ([arg, ...rest]) => {
      const n = arg === undefined ? DEFAULT_SECONDS : Number(arg);
      if (rest.length > 0 || arg === '' || !(Number.isFinite(n) && n > 0 && n <= MAX_SECONDS))
        return `secondsPerPayload must be in (0, ${MAX_SECONDS}], got ${JSON.stringify(arg)}`;
      return n;
    },
  );
  console.log(
    `raft core throughput: 3 nodes in one thread, in-memory log and network, batches of ${BATCH_ENTRIES}, ${seconds}s per payload`,
  );
  run(16, Math.min(1, seconds)); // warm-up, not reported
  for (const size of [16, 256]) {
    const r = run(size, seconds);
    console.log(
      `payload ${String(size).padStart(3)} B: ${Math.round(r.entriesPerSec).toLocaleString('en-US')} entries/s, ${r.mbPerSec.toFixed(1)} MB/s`,
    );
  }
}

main();
