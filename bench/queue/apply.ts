// What one job costs every member of the queue group, in one process and without Raft: the
// entries of a job's life (an add; a complete that claims the next job) decoded and applied
// through the path a member's runtime takes for each committed entry (commandsOf, the session
// layer with its envelope and exactly-once table, the queue machine with its events), in
// Readies of `--batch` entries. docs/BENCHMARKS.md ("What one job costs each member").
//
//   node --expose-gc dist/bench/queue/apply.js [--jobs 200000] [--workers 32] [--batch 16]
//        [--payload-bytes 64] [--rounds 3] [--quick] [--json]
//
// The entries are made first, as a leader would propose them (a session envelope around each
// command, the client's mark in it), by a machine that applies them as it goes, so each one
// names the job and token the previous ones made; that machine's results and final state are
// then the reference every timed replica must reproduce. Each round applies all of them to a
// fresh machine: µs per job (two entries) of wall time in apply and of process CPU, garbage
// collections and their pause per job, and the heap the machine holds at the end. A separate
// pass samples the young generation between Readies to estimate the bytes allocated per job.
// The leader alone also encodes each command it proposes (checked by decoding it, as the
// service does): timed on its own line. --quick: a smoke run of a few thousand jobs (a test
// runs it; it asserts no timing).

import { PerformanceObserver } from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';
import { deepStrictEqual, equal } from 'node:assert/strict';
import { createHash, type Hash } from 'node:crypto';
import { Packr } from 'msgpackr';
import type { Entry } from '../../src/raft/index.js';
import { encodeEnvelope } from '../../src/host/envelope.js';
import { commandsOf } from '../../src/host/replay.js';
import { SessionMachine, defaultSessionLimits } from '../../src/host/sessions.js';
import { defaultQueueLimits } from '../../src/base/limits.js';
import {
  QueueStateMachine,
  decodeQueueCommand,
  encodeQueueCommand,
  type QueueCommandAny,
} from '../../src/queue/index.js';
import { benchArgs, benchCount } from '../args.js';

const { values } = benchArgs({
  options: {
    jobs: { type: 'string', default: '200000' },
    workers: { type: 'string', default: '32' },
    batch: { type: 'string', default: '16' },
    'payload-bytes': { type: 'string', default: '64' },
    rounds: { type: 'string', default: '3' },
    quick: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
});

const quick = values.quick;
const jobs = quick ? 2_000 : benchCount('jobs', values.jobs, 2_000_000);
const workers = benchCount('workers', values.workers, 1_000);
const batch = benchCount('batch', values.batch, 10_000);
const payloadBytes = benchCount('payload-bytes', values['payload-bytes'], 65_536);
const rounds = quick ? 1 : benchCount('rounds', values.rounds, 20);

const gc = (globalThis as { gc?: () => void }).gc;
/** Command time: a real date, so times are the doubles they are in production. */
const T0_MS = Date.UTC(2026, 11, 1);
const QUEUE = 'bench';
// The job's data as the eval's load sends it: JSON text of a few numbers and a filler.
const payload = new TextEncoder().encode(
  JSON.stringify({ t: T0_MS, n: 1, pad: 'x'.repeat(Math.max(0, payloadBytes - 36)) }),
);

/** Writes a client has in flight at once: its acknowledgement mark trails its seq by this. */
const IN_FLIGHT = 2 * workers;

class Client {
  private seq = 0;
  constructor(readonly id: string) {}
  envelope(cmd: QueueCommandAny, timeMs: number): Uint8Array {
    const seq = ++this.seq;
    return encodeEnvelope({
      client: this.id,
      seq,
      timeMs,
      payload: encodeQueueCommand(cmd),
      ackedBelow: Math.max(1, seq - IN_FLIGHT + 1),
    });
  }
}

interface Made {
  readonly entries: Entry[];
  /** A digest of every entry's result, in log order: the reference held small. */
  readonly results: string;
  readonly dump: unknown;
}

const packr = new Packr({ useRecords: false, moreTypes: false });

function digestOf(h: Hash, results: readonly unknown[]): void {
  for (const r of results) h.update(packr.pack(r));
}

/**
 * The log of `jobs` lifecycles after `workers` claims: add, then a complete by the worker
 * whose job is oldest, claiming the next. Each entry is applied as it is made, alone.
 */
function makeLog(): Made {
  const machine = new QueueStateMachine();
  const sm = new SessionMachine(machine, defaultSessionLimits);
  const adder = new Client('adder');
  const worker = new Client('worker');
  const entries: Entry[] = [];
  const results = createHash('sha256');
  const step = (data: Uint8Array): unknown => {
    const e: Entry = { index: entries.length + 1, term: 1, type: 'normal', data };
    entries.push(e);
    // Applied at once (the next entry depends on it); the reference results are per entry.
    const [r] = sm.apply(commandsOf([e]));
    digestOf(results, [r]);
    return r;
  };
  // The clock moves 1 ms every 16 entries: a leader proposing about 16,000 entries a second.
  const now = (): number => T0_MS + Math.floor(entries.length / 16);
  const add: QueueCommandAny = { op: 'add', queue: QUEUE, name: 'job', payload };
  const held: { id: string; token: number; worker: string }[] = [];
  for (let w = 0; w < workers; w++) step(adder.envelope(add, now()));
  for (let w = 0; w < workers; w++) {
    const name = `w${w}`;
    const r = step(worker.envelope({ op: 'claim', queue: QUEUE, worker: name }, now())) as {
      jobs: { job: { id: string }; token: number }[];
    };
    const c = r.jobs[0];
    if (c === undefined) throw new Error(`claim ${w} got nothing: ${JSON.stringify(r)}`);
    held.push({ id: c.job.id, token: c.token, worker: name });
  }
  for (let i = 0; i < jobs; i++) {
    step(adder.envelope(add, now()));
    const h = held.shift() as (typeof held)[number];
    const complete: QueueCommandAny = {
      op: 'complete',
      queue: QUEUE,
      id: h.id,
      token: h.token,
      next: { max: 1, worker: h.worker },
    };
    const r = step(worker.envelope(complete, now())) as {
      ok: boolean;
      next?: { jobs: { job: { id: string }; token: number }[] };
    };
    const c = r.next?.jobs[0];
    if (!r.ok || c === undefined)
      throw new Error(`complete ${i} claimed nothing: ${JSON.stringify(r)}`);
    held.push({ id: c.job.id, token: c.token, worker: h.worker });
  }
  return { entries, results: results.digest('hex'), dump: machine.dump() };
}

function readies(entries: readonly Entry[]): Entry[][] {
  const out: Entry[][] = [];
  for (let i = 0; i < entries.length; i += batch) out.push(entries.slice(i, i + batch));
  return out;
}

let gcCount = 0;
let gcMs = 0;
const observer = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    gcCount++;
    gcMs += e.duration;
  }
});
observer.observe({ entryTypes: ['gc'] });

/** Lets the gc observer's pending entries arrive. */
const settleObserver = (): Promise<void> => new Promise((r) => setImmediate(r));

function heapUsed(): number {
  gc?.();
  gc?.();
  return process.memoryUsage().heapUsed;
}

/** The replica whose heap is being measured, held so that it is not collected first. */
const kept: SessionMachine[] = [];

interface Round {
  readonly applyUs: number;
  readonly cpuUs: number;
  readonly gcs: number;
  readonly gcMs: number;
  readonly heldBytes: number;
}

/** Applies every Ready to a fresh replica, as a member's runtime does (applyEntries). */
async function round(ready: readonly Entry[][]): Promise<Round> {
  const before = heapUsed();
  const machine = new QueueStateMachine();
  const sm = new SessionMachine(machine, defaultSessionLimits);
  await settleObserver();
  const gc0 = { n: gcCount, ms: gcMs };
  const cpu0 = process.cpuUsage();
  let applyNs = 0n;
  for (const entries of ready) {
    const t0 = process.hrtime.bigint();
    const results = sm.apply(commandsOf(entries));
    applyNs += process.hrtime.bigint() - t0;
    if (results.length !== entries.length) throw new Error(`${results.length} results`);
  }
  const cpu = process.cpuUsage(cpu0);
  await settleObserver();
  const gcs = gcCount - gc0.n;
  const pauseMs = gcMs - gc0.ms;
  kept.push(sm);
  const heldBytes = heapUsed() - before;
  kept.length = 0;
  return {
    applyUs: Number(applyNs) / 1_000,
    cpuUs: cpu.user + cpu.system,
    gcs,
    gcMs: pauseMs,
    heldBytes,
  };
}

/**
 * Every replica decides the same: one applying in Readies gives the results and the state of
 * the one that made the log, applying one entry at a time.
 */
function check(made: Made, ready: readonly Entry[][]): void {
  const machine = new QueueStateMachine();
  const sm = new SessionMachine(machine, defaultSessionLimits);
  const h = createHash('sha256');
  for (const entries of ready) digestOf(h, sm.apply(commandsOf(entries)));
  equal(h.digest('hex'), made.results, 'a replica applying in Readies answered differently');
  deepStrictEqual(machine.dump(), made.dump, 'a replica applying in Readies holds other state');
}

/** Young-generation bytes used now: rises with every allocation, drops at each scavenge. */
function youngUsed(): number {
  let n = 0;
  for (const s of getHeapSpaceStatistics())
    if (s.space_name === 'new_space') n += s.space_used_size;
  return n;
}

/**
 * Bytes allocated per job, estimated: the young generation's growth over each Ready (a Ready
 * in which a scavenge emptied it is left out, about one in thousands), less what sampling
 * allocates itself. Large objects, allocated elsewhere, are not counted; a job has none.
 */
function allocatedPerJob(ready: readonly Entry[][]): number {
  const sm = new SessionMachine(new QueueStateMachine(), defaultSessionLimits);
  let probe = 0;
  for (let i = 0; i < 100; i++) {
    const a = youngUsed();
    const b = youngUsed();
    if (b >= a) probe = b - a;
  }
  let bytes = 0;
  let entries = 0;
  for (const r of ready) {
    const a = youngUsed();
    sm.apply(commandsOf(r));
    const b = youngUsed();
    if (b < a) continue;
    bytes += b - a - probe;
    entries += r.length;
  }
  return (bytes / entries) * 2;
}

/** The leader's own work per job: each of its two commands encoded, checked, enveloped. */
function leaderEncodeUs(made: Made): number {
  const adder = new Client('adder');
  const cmds: QueueCommandAny[] = [
    { op: 'add', queue: QUEUE, name: 'job', payload },
    { op: 'complete', queue: QUEUE, id: '#123456', token: 1234567, next: { max: 1, worker: 'w7' } },
  ];
  const n = Math.min(jobs, 100_000);
  const t0 = process.hrtime.bigint();
  let sink = 0;
  for (let i = 0; i < n; i++)
    for (const c of cmds) {
      // As QueueService.encode: encoded, decoded with the machine's checks, enveloped.
      const p = encodeQueueCommand(c);
      decodeQueueCommand(p, defaultQueueLimits);
      sink += adder.envelope(c, T0_MS).length;
    }
  const us = Number(process.hrtime.bigint() - t0) / 1_000 / n;
  if (sink === 0 || made.entries.length === 0) throw new Error('nothing encoded');
  return us;
}

const started = performance.now();
const made = makeLog();
const ready = readies(made.entries);
const perJob = (x: number): number => x / jobs;
// Checked against the reference (which warms the paths up) before any round is timed.
check(made, ready);
const out: Round[] = [];
for (let r = 0; r < rounds; r++) out.push(await round(ready));
const alloc = allocatedPerJob(ready);
const leaderUs = leaderEncodeUs(made);
observer.disconnect();

const best = (f: (x: Round) => number): number => Math.min(...out.map(f));
const summary = {
  jobs,
  workers,
  batch,
  payloadBytes: payload.length,
  rounds,
  entries: made.entries.length,
  // The same on a build that decides the same: compared across builds by the before/after run.
  resultsDigest: made.results,
  stateDigest: createHash('sha256').update(packr.pack(made.dump)).digest('hex'),
  applyUsPerJob: perJob(best((x) => x.applyUs)),
  cpuUsPerJob: perJob(best((x) => x.cpuUs)),
  gcsPerKJob: (1_000 * out.reduce((a, x) => a + x.gcs, 0)) / (jobs * rounds),
  gcUsPerJob: (1_000 * out.reduce((a, x) => a + x.gcMs, 0)) / (jobs * rounds),
  allocBytesPerJob: alloc,
  heldBytes: Math.min(...out.map((x) => x.heldBytes)),
  leaderEncodeUsPerJob: leaderUs,
  rounds_: out.map((x) => ({
    applyUsPerJob: perJob(x.applyUs),
    cpuUsPerJob: perJob(x.cpuUs),
    gcs: x.gcs,
    gcMs: x.gcMs,
  })),
};
if (values.json) {
  console.log(JSON.stringify(summary));
} else {
  console.log(
    `Queue apply per member: ${jobs.toLocaleString('en')} jobs (add; complete claiming the next), ` +
      `${workers} workers, Readies of ${batch} entries, ${payload.length}-byte data, node ${process.version}` +
      (gc === undefined ? ', no --expose-gc: held heap includes garbage' : ''),
  );
  for (const [i, x] of summary.rounds_.entries())
    console.log(
      `  round ${i + 1}: apply ${x.applyUsPerJob.toFixed(2)} us/job, cpu ${x.cpuUsPerJob.toFixed(2)} us/job, ` +
        `${x.gcs} gcs (${x.gcMs.toFixed(1)} ms)`,
    );
  console.log(
    `apply: ${summary.applyUsPerJob.toFixed(2)} us per job (best round), cpu ${summary.cpuUsPerJob.toFixed(2)} us per job; ` +
      `gc ${summary.gcsPerKJob.toFixed(2)} per 1,000 jobs, ${summary.gcUsPerJob.toFixed(2)} us per job; ` +
      `about ${summary.allocBytesPerJob.toFixed(0)} bytes allocated per job; ` +
      `${(summary.heldBytes / 2 ** 20).toFixed(1)} MiB held at the end`,
  );
  console.log(
    `leader only: ${summary.leaderEncodeUsPerJob.toFixed(2)} us per job to encode, check and envelope its two commands`,
  );
  console.log(`done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}
