// The consistency of a range read from its body: `consistency` with the older `serializable`
// flag kept as an alias, and a contradiction between them refused rather than resolved.

import assert from 'node:assert/strict';
import test from 'node:test';
import { FlotillaError } from '../../src/base/errors.js';
import { parseConsistency } from '../../src/api/requests.js';
import type { Obj } from '../../src/api/validate.js';

function codeOf(o: Obj): string {
  try {
    return `ok ${parseConsistency(o)}`;
  } catch (e) {
    if (e instanceof FlotillaError) return `error ${e.code}`;
    throw e;
  }
}

void test('consistency defaults to linearizable, and serializable: true is its alias', () => {
  assert.equal(codeOf({}), 'ok linearizable');
  assert.equal(codeOf({ serializable: false }), 'ok linearizable');
  assert.equal(codeOf({ serializable: true }), 'ok serializable');
  for (const c of ['linearizable', 'serializable', 'lease']) {
    assert.equal(codeOf({ consistency: c }), `ok ${c}`);
  }
});

void test('both fields are accepted when they agree', () => {
  assert.equal(codeOf({ serializable: true, consistency: 'serializable' }), 'ok serializable');
  assert.equal(codeOf({ serializable: false, consistency: 'lease' }), 'ok lease');
  assert.equal(codeOf({ serializable: false, consistency: 'linearizable' }), 'ok linearizable');
});

void test('fields that contradict each other are refused with CONFLICTING_FIELDS', () => {
  assert.equal(codeOf({ serializable: true, consistency: 'lease' }), 'error CONFLICTING_FIELDS');
  assert.equal(
    codeOf({ serializable: true, consistency: 'linearizable' }),
    'error CONFLICTING_FIELDS',
  );
  assert.equal(
    codeOf({ serializable: false, consistency: 'serializable' }),
    'error CONFLICTING_FIELDS',
  );
});

void test('an unknown level or a wrong type is a bad request naming the value', () => {
  assert.equal(codeOf({ consistency: 'eventual' }), 'error BAD_REQUEST');
  assert.equal(codeOf({ consistency: 1 }), 'error BAD_REQUEST');
  assert.equal(codeOf({ consistency: 'lease', serializable: 'yes' }), 'error BAD_REQUEST');
  assert.throws(() => parseConsistency({ consistency: 'Lease' }), /"Lease"/);
});
