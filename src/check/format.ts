// Human-readable renderings of operations and verdicts, for test failures and the chaos run's
// summary. A violation is shown as the tail of the longest linearizable prefix, the register's
// value after it, and the operations none of which can come next: that is where to look.

import type { Operation, Value } from './history.js';
import type { CheckResult, IndexedOperation, Violation } from './register.js';

/** How many operations of the prefix to show before the dead end. */
const prefixTailOps = 10;

function v(value: Value | undefined): string {
  return value === undefined ? '?' : JSON.stringify(value);
}

function time(ms: number | null): string {
  return ms === null ? '?' : ms.toFixed(3);
}

function describe(op: Operation): string {
  const known = op.status === 'ok';
  switch (op.kind) {
    case 'read':
      return `read -> ${known ? v(op.output) : '?'}`;
    case 'write':
      return `write ${v(op.input)}`;
    case 'cas': {
      const result = known ? String(op.output) : '?';
      return `cas ${v(op.input.expected)} -> ${v(op.input.new)} : ${result}`;
    }
  }
}

/** One line: `#12 client 3 key "k" write "a" [10.000, 12.500] ok`. */
export function formatOperation({ index, op }: IndexedOperation): string {
  const end =
    op.status === 'unknown'
      ? `inf) (gave up at ${time(op.completeMs)})`
      : `${time(op.completeMs)}]`;
  return (
    `#${index} client ${op.client} key ${JSON.stringify(op.key)} ${describe(op)} ` +
    `[${time(op.invokeMs)}, ${end} ${op.status}`
  );
}

export function formatViolation(violation: Violation): string {
  const { prefix, candidates } = violation;
  const tail = prefix.slice(-prefixTailOps);
  const lines = [
    `Not linearizable: key ${JSON.stringify(violation.key)}.`,
    `Longest linearizable prefix: ${prefix.length} operations` +
      (tail.length < prefix.length ? `; the last ${tail.length}, in order:` : ', in order:'),
    ...tail.map((op) => `  ${formatOperation(op)}`),
    `Register value after the prefix: ${violation.valueAfterPrefix}`,
    `No order works from here. Operations that could go next, none of which fits:`,
    ...candidates.map((op) => `  ${formatOperation(op)}`),
  ];
  return lines.join('\n');
}

/** A summary of every key, followed by each violation in full. */
export function formatResult(result: CheckResult): string {
  const lines = [`Verdict: ${result.verdict}`];
  for (const k of result.perKey) {
    const why = k.unknownReason === null ? '' : ` (${k.unknownReason})`;
    lines.push(
      `  key ${JSON.stringify(k.key)}: ${k.verdict}${why}, ${k.opCount} ops, ` +
        `${k.steps} steps, ${k.elapsedMs.toFixed(1)} ms`,
    );
  }
  for (const violation of result.violations) lines.push('', formatViolation(violation));
  return lines.join('\n');
}
