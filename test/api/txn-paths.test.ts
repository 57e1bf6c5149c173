// A transaction's bad part is named in its refusal: which compare, which operation of which
// branch. Before, a value of the wrong type said only `"value" must be ...`, leaving the caller
// to guess which of up to 128 compares or operations it was (an etcd user's find).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseWrite } from '../../src/api/requests.js';
import { FlotillaError } from '../../src/base/errors.js';
import { defaultLimits } from '../../src/base/limits.js';

void test("a transaction's refusal names the compare or the operation it is about", () => {
  const ok = { key: 'k', target: 'version', op: '=', value: 1 };
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ compare: [ok, { ...ok, value: 'x' }] }, /^compare\[1\]: .*value/],
    [{ compare: [{ ...ok, target: 'value', value: 7 }] }, /^compare\[0\]: .*value/],
    [{ compare: [{ ...ok, key: 5 }] }, /^compare\[0\]: .*key/],
    [
      { success: [{ put: { key: 'a', value: 'v' } }, { put: { key: 'b', value: 9 } }] },
      /^success\[1\]\.put: .*value/,
    ],
    [{ failure: [{ delete: { key: 'a', prevKv: 'yes' } }] }, /^failure\[0\]\.delete: .*prevKv/],
    [{ success: [{ range: { key: 'a', limit: -1 } }] }, /^success\[0\]\.range: .*limit/],
  ];
  for (const [body, why] of cases)
    assert.throws(
      () => parseWrite('txn', body, defaultLimits),
      (e: unknown) => e instanceof FlotillaError && e.code === 'BAD_REQUEST' && why.test(e.message),
      `${JSON.stringify(body)} should be refused matching ${why.source}`,
    );
});
