// The fuzz driver shared by the three protocols: generates input i from (seed, i), sends it
// through the protocol's target with a bound on its time, tallies what the node answered
// (a code per refusal), samples the heap, and records every failure with the seed, the index
// and the input, so that `--replay <index>` sends that one input again.

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { FuzzRng, hex } from './gen.js';

/** One generated input: the bytes sent, and how they were made. */
export interface FuzzInput {
  /** `random`, `structured` or `mutated` (a structured input with byte mutations), ... */
  readonly kind: string;
  /** What the input says in words: the endpoint or frame it derives from. */
  readonly what: string;
  readonly bytes: Buffer;
}

/** What the node made of one input. */
export type Verdict =
  /** Served: `outcome` is `ok`, a refusal's code, or `closed` (no answer was owed). */
  | { readonly ok: true; readonly outcome: string }
  | { readonly ok: false; readonly failure: string };

export interface FuzzTarget {
  readonly protocol: string;
  generate(rng: FuzzRng): FuzzInput;
  /** Sends one input and judges the answer. Must settle; the driver bounds it too. */
  exercise(input: FuzzInput): Promise<Verdict>;
  /** After the run: the node still serves (a put and a get, a commit); null when it does. */
  stillServes(): Promise<string | null>;
  /**
   * Removes what valid inputs stored (keys, history), by requests, before the heap is
   * measured: what stays is what the node kept of its own.
   */
  clear?(): Promise<void>;
  /** What the run saw that is no failure but worth a line in the report. */
  notes?(): string[];
  close(): Promise<void>;
}

/**
 * The verdict, unless the node logged an error (an exception it did not expect) meanwhile:
 * then that is the failure. With inputs in flight at once it may belong to one beside this
 * one; a replay with --concurrency 1 tells.
 */
export function unlessLogged(v: Verdict, logged: string[]): Verdict {
  if (logged.length === 0) return v;
  const line = `the node logged an error: ${logged.splice(0).join('; ')}`;
  return { ok: false, failure: v.ok ? line : `${v.failure}; ${line}` };
}

export interface FuzzOptions {
  readonly seed: number;
  readonly inputs: number;
  /** Stop generating after this long, whatever the count. */
  readonly timeMs: number;
  /** Inputs in flight at once. */
  readonly concurrency: number;
  /** An input not settled within this is a hang. */
  readonly inputTimeoutMs: number;
  /** Stop after this many failures. */
  readonly maxFailures?: number;
  /** Only these indexes (a replay). */
  readonly only?: readonly number[];
  /** Kept up to date with the indexes of the inputs in flight: what to replay after a crash. */
  readonly inFlight?: Set<number>;
  readonly progress?: (line: string) => void;
  readonly progressEveryMs?: number;
}

export interface FuzzFailure {
  readonly seed: number;
  readonly index: number;
  readonly kind: string;
  readonly what: string;
  readonly failure: string;
  readonly inputHex: string;
}

export interface FuzzReport {
  readonly protocol: string;
  readonly seed: number;
  readonly inputs: number;
  readonly elapsedMs: number;
  readonly inputsPerSecond: number;
  /** Outcomes by code (`ok`, `closed`, or the refusal's code). */
  readonly outcomes: Record<string, number>;
  readonly byKind: Record<string, number>;
  /** Heap in use after a full collection, before and after the run (and clear()). */
  readonly heapBeforeBytes: number;
  readonly heapAfterBytes: number;
  /** The largest heap sampled during the run (without collecting). */
  readonly heapMaxBytes: number;
  readonly failures: FuzzFailure[];
  /** Null when the node still served after the run; otherwise what failed. */
  readonly stillServes: string | null;
  readonly notes: string[];
}

export async function runFuzz(target: FuzzTarget, o: FuzzOptions): Promise<FuzzReport> {
  const outcomes: Record<string, number> = {};
  const byKind: Record<string, number> = {};
  const failures: FuzzFailure[] = [];
  const maxFailures = o.maxFailures ?? 10;
  const heapBeforeBytes = settledHeap();
  let heapMaxBytes = heapBeforeBytes;
  const started = performance.now();
  const indexes = o.only ?? null;
  const total = indexes?.length ?? o.inputs;
  let next = 0;
  let done = 0;
  let lastProgress = started;

  const take = (): number | null => {
    if (next >= total || failures.length >= maxFailures) return null;
    if (performance.now() - started > o.timeMs) return null;
    const k = next++;
    return indexes === null ? k : (indexes[k] as number);
  };

  const one = async (index: number): Promise<void> => {
    let input: FuzzInput;
    try {
      input = target.generate(new FuzzRng(o.seed, index));
    } catch (err) {
      const failure = `the generator failed: ${String(err)}`;
      failures.push({ seed: o.seed, index, kind: '?', what: '?', failure, inputHex: '' });
      return;
    }
    byKind[input.kind] = (byKind[input.kind] ?? 0) + 1;
    o.inFlight?.add(index);
    const verdict = await bounded(target.exercise(input), o.inputTimeoutMs);
    o.inFlight?.delete(index);
    if (verdict.ok) outcomes[verdict.outcome] = (outcomes[verdict.outcome] ?? 0) + 1;
    else
      failures.push({
        seed: o.seed,
        index,
        kind: input.kind,
        what: input.what,
        failure: verdict.failure,
        inputHex: hex(input.bytes),
      });
    done++;
    if (done % 256 === 0) heapMaxBytes = Math.max(heapMaxBytes, process.memoryUsage().heapUsed);
    const now = performance.now();
    if (o.progress !== undefined && now - lastProgress >= (o.progressEveryMs ?? 5_000)) {
      lastProgress = now;
      const s = (now - started) / 1000;
      o.progress(
        `${target.protocol}: ${done} inputs in ${s.toFixed(0)} s (${(done / s).toFixed(0)}/s), ` +
          `heap ${mib(process.memoryUsage().heapUsed)} MiB, failures ${failures.length}`,
      );
    }
  };

  const worker = async (): Promise<void> => {
    for (let i = take(); i !== null; i = take()) await one(i);
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  const elapsedMs = performance.now() - started;
  const stillServes = await target.stillServes();
  await target.clear?.();
  const heapAfterBytes = settledHeap();
  return {
    protocol: target.protocol,
    seed: o.seed,
    inputs: done,
    elapsedMs,
    inputsPerSecond: done / (elapsedMs / 1000),
    outcomes,
    byKind,
    heapBeforeBytes,
    heapAfterBytes,
    heapMaxBytes: Math.max(heapMaxBytes, heapAfterBytes),
    failures,
    stillServes,
    notes: target.notes?.() ?? [],
  };
}

/** The verdict, or a hang failure if the input did not settle within `ms`. */
async function bounded(p: Promise<Verdict>, ms: number): Promise<Verdict> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<Verdict>((resolve) => {
    timer = setTimeout(
      () => resolve({ ok: false, failure: `hang: neither answered nor closed within ${ms} ms` }),
      ms,
    );
  });
  try {
    return await Promise.race([
      p.catch((err: unknown): Verdict => ({ ok: false, failure: `fuzzer error: ${String(err)}` })),
      hang,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Heap in use after a full collection. */
function settledHeap(): number {
  const gc = collector();
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

/** The collector: global with --expose-gc, else turned on now (node --test passes no flag). */
function collector(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (exposed !== undefined) return exposed;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

function mib(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(1);
}

/** The report as lines for a terminal or a log. */
export function formatReport(r: FuzzReport): string {
  const codes = Object.entries(r.outcomes)
    .sort((a, b) => b[1] - a[1])
    .map(([c, n]) => `${c} ${n}`)
    .join(', ');
  const kinds = Object.entries(r.byKind)
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
  const lines = [
    `${r.protocol}: seed ${r.seed}, ${r.inputs} inputs in ${(r.elapsedMs / 1000).toFixed(1)} s ` +
      `(${r.inputsPerSecond.toFixed(0)}/s)`,
    `  inputs by kind: ${kinds}`,
    `  outcomes: ${codes}`,
    `  heap: ${mib(r.heapBeforeBytes)} MiB before, ${mib(r.heapAfterBytes)} MiB after ` +
      `(after a full collection), ${mib(r.heapMaxBytes)} MiB at most`,
    `  still serves: ${r.stillServes === null ? 'yes' : `NO: ${r.stillServes}`}`,
    ...r.notes.map((n) => `  note: ${n}`),
    `  failures: ${r.failures.length}`,
  ];
  for (const f of r.failures)
    lines.push(
      `  FAILURE seed ${f.seed} index ${f.index} (${f.kind}, ${f.what}): ${f.failure}`,
      `    replay: --protocol ${r.protocol} --seed ${f.seed} --replay ${f.index}`,
      `    input: ${f.inputHex}`,
    );
  return lines.join('\n');
}
