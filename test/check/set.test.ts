// The set-workload checker: each anomaly is planted once and must be reported, and a clean
// run (including unknown adds that did or did not land) must pass.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CheckError, checkSet, type SetAdd, type SetHistory } from '../../src/check/index.js';

const adds: SetAdd[] = [
  { element: 'e1', status: 'ok' },
  { element: 'e2', status: 'ok' },
  { element: 'e3', status: 'unknown' },
  { element: 'e4', status: 'unknown' },
  { element: 'e5', status: 'fail' },
];

function reads(...perNode: string[][]): SetHistory['finalReads'] {
  return perNode.map((elements, i) => ({ node: `n${i + 1}`, elements }));
}

void test('a clean set run passes and counts what it saw', () => {
  const report = checkSet({ adds, finalReads: reads(['e1', 'e2', 'e3'], ['e3', 'e2', 'e1']) });
  assert.equal(report.valid, true);
  assert.deepEqual(
    [report.acknowledged, report.failed, report.unknown, report.unknownPresent, report.readsAgree],
    [2, 1, 2, 1, true],
  );
});

void test('an acknowledged add missing from one node is lost', () => {
  const report = checkSet({ adds, finalReads: reads(['e1', 'e2'], ['e1']) });
  assert.equal(report.valid, false);
  assert.deepEqual(report.lost, [{ element: 'e2', missingFrom: ['n2'] }]);
  assert.equal(report.readsAgree, false);
});

void test('an element nobody added is unexpected', () => {
  const report = checkSet({ adds, finalReads: reads(['e1', 'e2', 'zz']) });
  assert.deepEqual(report.unexpected, [{ element: 'zz', node: 'n1' }]);
  assert.equal(report.valid, false);
});

void test('an element appearing twice is duplicated, even an unknown one', () => {
  const report = checkSet({ adds, finalReads: reads(['e1', 'e2', 'e4', 'e4']) });
  assert.deepEqual(report.duplicated, [{ element: 'e4', node: 'n1', count: 2 }]);
  assert.equal(report.valid, false);
});

void test('an add reported as failed that took effect is caught', () => {
  const report = checkSet({ adds, finalReads: reads(['e1', 'e2', 'e5'], ['e1', 'e2']) });
  assert.deepEqual(report.failedPresent, [{ element: 'e5', nodes: ['n1'] }]);
  assert.equal(report.valid, false);
});

void test('malformed set input is refused with a typed error', () => {
  const isCode = (code: string, message: RegExp) => (err: unknown) =>
    err instanceof CheckError && err.code === code && message.test(err.message);
  const twice = [...adds, { element: 'e1', status: 'ok' as const }];
  assert.throws(
    () => checkSet({ adds: twice, finalReads: reads([]) }),
    isCode('INVALID_SET_INPUT', /add #5: element "e1" added twice/),
  );
  assert.throws(
    () => checkSet({ adds, finalReads: [] }),
    isCode('INVALID_SET_INPUT', /1 to 1000 reads, saw 0/),
  );
  const limits = { maxAdds: 10, maxReads: 10, maxElementsPerRead: 10, maxElementBytes: 2 };
  assert.throws(
    () => checkSet({ adds: [{ element: 'long', status: 'ok' }], finalReads: reads([]) }, limits),
    isCode('INVALID_SET_INPUT', /at most 2 characters, saw "long"/),
  );
});
