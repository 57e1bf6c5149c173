// The set workload's checker (Jepsen's "set" test): clients add unique elements, and after the
// faults heal every node is read once. Set adds commute, so no search is needed: the final reads
// alone decide. Anomalies:
//   - lost:           an acknowledged add missing from some node's final read;
//   - unexpected:     an element nobody ever tried to add;
//   - duplicated:     an element appearing more than once in one read (an add applied twice,
//                     e.g. a retried proposal without exactly-once sessions, Raft thesis §6.3);
//   - failedPresent:  an add reported as definitely failed ('fail') that took effect anyway.
// Unknown adds may or may not appear; how many did is reported for information.

import { CheckError, shown } from './errors.js';
import type { OpStatus } from './history.js';

export interface SetAdd {
  readonly element: string;
  readonly status: OpStatus;
}

export interface FinalRead {
  /** The node the read was served by, for the report. */
  readonly node: string;
  readonly elements: readonly string[];
}

export interface SetHistory {
  /** Every add attempted; each element at most once (the workload adds unique elements). */
  readonly adds: readonly SetAdd[];
  /** One final read per node, taken after the faults healed. */
  readonly finalReads: readonly FinalRead[];
}

export interface SetLimits {
  readonly maxAdds: number;
  readonly maxReads: number;
  readonly maxElementsPerRead: number;
  readonly maxElementBytes: number;
}

export const defaultSetLimits: SetLimits = {
  maxAdds: 10_000_000,
  maxReads: 1000,
  maxElementsPerRead: 10_000_000,
  maxElementBytes: 4096,
};

export interface SetReport {
  /** True when no anomaly was found. */
  readonly valid: boolean;
  readonly acknowledged: number;
  readonly failed: number;
  readonly unknown: number;
  /** Unknown adds present in at least one final read. */
  readonly unknownPresent: number;
  /** Whether every final read holds the same elements (information, not an anomaly). */
  readonly readsAgree: boolean;
  readonly lost: readonly { readonly element: string; readonly missingFrom: readonly string[] }[];
  readonly unexpected: readonly { readonly element: string; readonly node: string }[];
  readonly duplicated: readonly {
    readonly element: string;
    readonly node: string;
    readonly count: number;
  }[];
  readonly failedPresent: readonly {
    readonly element: string;
    readonly nodes: readonly string[];
  }[];
}

function invalid(message: string): CheckError {
  return new CheckError('INVALID_SET_INPUT', message);
}

function checkElement(where: string, element: unknown, limits: SetLimits): void {
  if (typeof element !== 'string' || element.length > limits.maxElementBytes) {
    throw invalid(
      `${where}: elements must be strings of at most ${limits.maxElementBytes} characters, saw ${shown(element)}`,
    );
  }
}

/** Array.isArray without its narrowing to any[]: input arrives from JSON and may be anything. */
function isArray(value: unknown): boolean {
  return Array.isArray(value);
}

function indexAdds(adds: readonly SetAdd[], limits: SetLimits): Map<string, OpStatus> {
  if (!isArray(adds) || adds.length > limits.maxAdds) {
    throw invalid(`adds must be an array of at most ${limits.maxAdds}, saw ${shown(adds.length)}`);
  }
  const status = new Map<string, OpStatus>();
  adds.forEach((add, i) => {
    checkElement(`add #${i}`, add.element, limits);
    if (add.status !== 'ok' && add.status !== 'fail' && add.status !== 'unknown') {
      throw invalid(
        `add #${i}: status must be 'ok', 'fail' or 'unknown', saw ${shown(add.status)}`,
      );
    }
    if (status.has(add.element))
      throw invalid(`add #${i}: element ${shown(add.element)} added twice`);
    status.set(add.element, add.status);
  });
  return status;
}

function checkReads(reads: readonly FinalRead[], limits: SetLimits): void {
  if (!isArray(reads) || reads.length === 0 || reads.length > limits.maxReads) {
    throw invalid(`finalReads must hold 1 to ${limits.maxReads} reads, saw ${shown(reads.length)}`);
  }
  reads.forEach((read, i) => {
    if (typeof read.node !== 'string')
      throw invalid(`read #${i}: node must be a string, saw ${shown(read.node)}`);
    const elements: readonly unknown[] = read.elements;
    if (!isArray(elements) || elements.length > limits.maxElementsPerRead) {
      throw invalid(
        `read #${i} (${read.node}): elements must be an array of at most ${limits.maxElementsPerRead}`,
      );
    }
    for (const e of elements) checkElement(`read #${i} (${read.node})`, e, limits);
  });
}

function countElements(elements: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const e of elements) counts.set(e, (counts.get(e) ?? 0) + 1);
  return counts;
}

function sameKeys(a: Map<string, number>, b: Map<string, number>): boolean {
  if (a.size !== b.size) return false;
  for (const k of a.keys()) if (!b.has(k)) return false;
  return true;
}

/** Judges a set workload. Throws CheckError on malformed input. */
export function checkSet(history: SetHistory, limits: SetLimits = defaultSetLimits): SetReport {
  const status = indexAdds(history.adds, limits);
  checkReads(history.finalReads, limits);
  const counts = history.finalReads.map((r) => countElements(r.elements));
  const unexpected: { element: string; node: string }[] = [];
  const duplicated: { element: string; node: string; count: number }[] = [];
  const presentIn = new Map<string, string[]>();
  history.finalReads.forEach((read, r) => {
    for (const [element, count] of counts[r]!) {
      if (!status.has(element)) unexpected.push({ element, node: read.node });
      if (count > 1) duplicated.push({ element, node: read.node, count });
      const nodes = presentIn.get(element) ?? [];
      nodes.push(read.node);
      presentIn.set(element, nodes);
    }
  });
  const lost: { element: string; missingFrom: string[] }[] = [];
  const failedPresent: { element: string; nodes: string[] }[] = [];
  let unknownPresent = 0;
  const tally = { ok: 0, fail: 0, unknown: 0 };
  for (const [element, s] of status) {
    tally[s]++;
    const nodes = presentIn.get(element);
    if (s === 'ok' && (nodes?.length ?? 0) < history.finalReads.length) {
      const missingFrom = history.finalReads.filter((_, r) => !counts[r]!.has(element));
      lost.push({ element, missingFrom: missingFrom.map((read) => read.node) });
    }
    if (s === 'fail' && nodes) failedPresent.push({ element, nodes });
    if (s === 'unknown' && nodes) unknownPresent++;
  }
  const anomalies = lost.length + unexpected.length + duplicated.length + failedPresent.length;
  return {
    valid: anomalies === 0,
    acknowledged: tally.ok,
    failed: tally.fail,
    unknown: tally.unknown,
    unknownPresent,
    readsAgree: counts.every((c) => sameKeys(c, counts[0]!)),
    lost,
    unexpected,
    duplicated,
    failedPresent,
  };
}
