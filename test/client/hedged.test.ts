// `hedged`: ask candidates in turn for one answer, the next when the one before failed or is
// silent past the hedge, the first answer winning and the others aborted.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FlotillaError } from '../../src/base/errors.js';
import { hedged } from '../../src/client/util.js';

/** A question that never answers until aborted; records its abort. */
function silent(aborted: string[], name: string, signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    signal.addEventListener('abort', () => {
      aborted.push(name);
      reject(new Error(`${name} aborted`));
    });
  });
}

const never = (): boolean => false;

void test('a silent candidate is passed over after the hedge, and aborted once another answers', async () => {
  const asked: string[] = [];
  const aborted: string[] = [];
  const answer = await hedged(
    ['frozen', 'live', 'spare'],
    (c, signal) => {
      asked.push(c);
      return c === 'frozen' ? silent(aborted, c, signal) : Promise.resolve(`from ${c}`);
    },
    { hedgeMs: 20, timeoutMs: 60_000, fatal: never },
  );
  assert.equal(answer, 'from live');
  assert.deepEqual(asked, ['frozen', 'live'], 'the spare was never asked');
  assert.deepEqual(aborted, ['frozen']);
});

void test('a failure moves on at once, without waiting for the hedge', async () => {
  const asked: string[] = [];
  const answer = await hedged(
    ['down', 'live'],
    (c) => {
      asked.push(c);
      return c === 'down' ? Promise.reject(new Error('ECONNREFUSED')) : Promise.resolve(c);
    },
    // A hedge no test waits for: only the failure can have started the second question.
    { hedgeMs: 60_000, timeoutMs: 120_000, fatal: never },
  );
  assert.equal(answer, 'live');
  assert.deepEqual(asked, ['down', 'live']);
});

void test('an error every candidate would give rejects at once; all failing rejects with the last', async () => {
  const asked: string[] = [];
  await assert.rejects(
    hedged(
      ['a', 'b'],
      (c) => {
        asked.push(c);
        return Promise.reject(new FlotillaError('PERMISSION_DENIED', `refused by ${c}`, false));
      },
      { hedgeMs: 60_000, timeoutMs: 120_000, fatal: (e) => e instanceof FlotillaError },
    ),
    /refused by a/,
  );
  assert.deepEqual(asked, ['a'], 'b was not asked after a fatal refusal');
  await assert.rejects(
    hedged(['a', 'b'], (c) => Promise.reject(new Error(`${c} down`)), {
      hedgeMs: 60_000,
      timeoutMs: 120_000,
      fatal: never,
    }),
    /b down/,
  );
});

void test('when every candidate is silent, the time runs out with TIMEOUT and all are aborted', async () => {
  const aborted: string[] = [];
  await assert.rejects(
    hedged(['x', 'y'], (c, signal) => silent(aborted, c, signal), {
      hedgeMs: 5,
      timeoutMs: 50,
      fatal: never,
    }),
    (e: unknown) => e instanceof FlotillaError && e.code === 'TIMEOUT',
  );
  assert.deepEqual(aborted.sort(), ['x', 'y']);
});
