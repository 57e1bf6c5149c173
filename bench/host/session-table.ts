// The heap the session table holds (docs/BENCHMARKS.md, "Session table"): S sessions, W writes
// each, applied through the session layer (SessionMachine) as a node applies them, once with
// writes that carry no acknowledgement mark (a session keeps its window of 256 results) and
// once with the mark of a client with K writes in flight (the mark is K - 1 below each seq).
// The inner machine keeps nothing and answers each write as the key-value store answers a put,
// so the heap measured is the table's: heap used after a full collection, less the heap before.
//
//   node --expose-gc dist/bench/host/session-table.js [--sessions 1000] [--writes 10000]

import { benchArgs } from '../args.js';
import { chunkStream, type Command, type StateMachine } from '../../src/host/contracts.js';
import { encodeEnvelope } from '../../src/host/envelope.js';
import { SessionMachine, defaultSessionLimits } from '../../src/host/sessions.js';

const { values } = benchArgs({
  options: {
    sessions: { type: 'string', default: '1000' },
    writes: { type: 'string', default: '10000' },
  },
});

function positive(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) {
    process.stderr.write(`--${name} must be a positive integer, got ${v}\n`);
    process.exit(2);
  }
  return n;
}

const sessions = positive('sessions', values.sessions);
const writes = positive('writes', values.writes);

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) {
  process.stderr.write('run with node --expose-gc\n');
  process.exit(2);
}

/** Keeps nothing; answers each command as the key-value store answers a put. */
class PutAnswers implements StateMachine {
  apply(commands: readonly Command[]): unknown[] {
    return commands.map((c) => ({
      revision: c.index,
      succeeded: true,
      results: [{ kind: 'put', prevKv: null }],
    }));
  }
  snapshot(): AsyncIterable<Uint8Array> {
    return chunkStream(() => [][Symbol.iterator]());
  }
  async restore(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    for await (const _ of chunks) void _;
  }
}

function heapUsed(): number {
  gc?.();
  gc?.();
  return process.memoryUsage().heapUsed;
}

/** Applies every write, a round of one per session at a time; `inFlight` 0: no mark. */
function run(inFlight: number): { heapBytes: number; results: number; ms: number } {
  const limits = { ...defaultSessionLimits, maxSessions: Math.max(sessions, 1) };
  const before = heapUsed();
  const sm = new SessionMachine(new PutAnswers(), limits);
  const payload = new Uint8Array(8);
  const started = performance.now();
  let index = 0;
  for (let seq = 1; seq <= writes; seq++) {
    const round: Command[] = [];
    for (let s = 0; s < sessions; s++) {
      const mark = inFlight === 0 ? {} : { ackedBelow: Math.max(1, seq - inFlight + 1) };
      round.push({
        index: ++index,
        term: 1,
        timeMs: 0,
        payload: encodeEnvelope({
          client: `client-${s.toString().padStart(6, '0')}`,
          seq,
          timeMs: 1_000,
          payload,
          ...mark,
        }),
      });
    }
    sm.apply(round);
  }
  const ms = performance.now() - started;
  const heapBytes = heapUsed() - before;
  const results = sm.resultsHeld();
  if (sm.sessions() !== sessions) throw new Error(`${sm.sessions()} sessions, not ${sessions}`);
  return { heapBytes, results, ms };
}

const MiB = 1024 * 1024;
process.stdout.write(
  `${sessions} sessions, ${writes} writes each, window ${defaultSessionLimits.window}\n`,
);
process.stdout.write(
  'writes carry                 results held   heap held, MiB   bytes per result   run, s\n',
);
for (const [what, inFlight] of [
  ['no mark (the window)', 0],
  ['the mark, 1 in flight', 1],
  ['the mark, 16 in flight', 16],
] as const) {
  const r = run(inFlight);
  process.stdout.write(
    `${what.padEnd(28)} ${r.results.toLocaleString('en').padStart(12)}   ` +
      `${(r.heapBytes / MiB).toFixed(1).padStart(14)}   ` +
      `${(r.heapBytes / Math.max(1, r.results)).toFixed(0).padStart(16)}   ` +
      `${(r.ms / 1000).toFixed(1).padStart(6)}\n`,
  );
}
