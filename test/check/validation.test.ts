// Malformed histories and options are refused with a typed error naming the problem, never
// judged: a recording bug must not pass for a linearizable run.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CheckError, checkHistory, type Operation } from '../../src/check/index.js';
import { r, w } from './ops.js';

function rejects(history: unknown, code: string, message: RegExp, options = {}): void {
  assert.throws(
    // The point is to feed in what the types forbid, as a JSONL file might.
    () => checkHistory(history as Operation[], options),
    (err: unknown) => err instanceof CheckError && err.code === code && message.test(err.message),
  );
}

void test('bad operations are named with the value seen', () => {
  rejects([w(1, 5, 4, 'a')], 'INVALID_OPERATION', /#0: completeMs precedes invokeMs 5, saw 4/);
  rejects([w(-1, 0, 1, 'a')], 'INVALID_OPERATION', /client must be a non-negative integer, saw -1/);
  rejects(
    [w(1, 0, 1, 'a'), { ...r(1, 2, 3, 'a'), output: undefined }],
    'INVALID_OPERATION',
    /#1: an ok read needs an output/,
  );
  rejects(
    [{ ...w(1, 0, 1, 'a'), kind: 'delete' }],
    'INVALID_OPERATION',
    /kind must be .* saw "delete"/,
  );
  rejects([w(1, 0, null, 'a')], 'INVALID_OPERATION', /completeMs is null but status is ok/);
  rejects([w(1, Number.NaN, 1, 'a')], 'INVALID_OPERATION', /invokeMs must be a finite number/);
  rejects(
    [{ ...w(1, 0, 1, 'a'), input: 7 }],
    'INVALID_OPERATION',
    /input must be a string or null, saw 7/,
  );
  rejects(
    [{ ...w(1, 0, 1, 'a'), status: 'maybe' }],
    'INVALID_OPERATION',
    /status must be .* saw "maybe"/,
  );
});

void test('a client running two operations at once is a recording bug', () => {
  rejects(
    [w(1, 0, 10, 'a'), r(1, 5, 6, 'a')],
    'CLIENT_OVERLAP',
    /Client 1: operation #1 invoked at 5/,
  );
  // Touching intervals are fine, and so is moving on after giving up.
  assert.equal(checkHistory([w(1, 0, 10, 'a'), r(1, 10, 11, 'a')]).verdict, 'ok');
  const gaveUp: Operation = { ...w(1, 0, null, 'a'), status: 'unknown' };
  assert.equal(checkHistory([gaveUp, r(1, 5, 6, null)]).verdict, 'ok');
});

void test('limits and options are enforced', () => {
  const limits = { maxOps: 2, maxKeyBytes: 4, maxValueBytes: 3 };
  const three = [w(1, 0, 1, 'a'), w(1, 2, 3, 'b'), w(1, 4, 5, 'c')];
  rejects(three, 'HISTORY_TOO_LARGE', /at most 2 operations, saw 3/, { limits });
  rejects([w(1, 0, 1, 'abcd')], 'INVALID_OPERATION', /longer than 3 characters, saw 4/, { limits });
  rejects([w(1, 0, 1, 'a', { key: 'long-key' })], 'INVALID_OPERATION', /key must be/, { limits });
  rejects([], 'INVALID_OPTIONS', /timeBudgetMs must be a positive number, saw 0/, {
    timeBudgetMs: 0,
  });
  rejects([], 'INVALID_OPTIONS', /maxStepsPerKey .* saw -1/, { maxStepsPerKey: -1 });
});
