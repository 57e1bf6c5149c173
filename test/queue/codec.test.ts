// Queue commands encode to the same bytes whether or not a field is undefined: the encoder
// copies a command only when it must drop such a field (codec.ts), and the copy and the
// original pack alike. Entries written before and after that change are the same bytes.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Packr } from 'msgpackr';
import { defaultQueueLimits } from '../../src/base/limits.js';
import { checkProposal, decodeQueueCommand, encodeQueueCommand } from '../../src/queue/codec.js';
import type { QueueCommandAny } from '../../src/queue/types.js';

const packr = new Packr({ useRecords: false, moreTypes: false });

/** The encoding as it was: every command copied without its undefined fields, then packed. */
function reference(v: object): Uint8Array {
  const strip = (o: object): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(o)) {
      if (x === undefined) continue;
      const plain =
        x !== null && typeof x === 'object' && !(x instanceof Uint8Array) && !Array.isArray(x);
      out[k] = plain ? strip(x as object) : x;
    }
    return out;
  };
  return packr.pack(strip(v));
}

const payload = new TextEncoder().encode('{"n":1}');
const commands: QueueCommandAny[] = [
  { op: 'add', queue: 'q', name: 'job', payload },
  { op: 'add', queue: 'q', name: 'job', payload, id: 'a1', delayMs: 5, priority: 2 },
  {
    op: 'add',
    queue: 'q',
    name: 'job',
    payload,
    backoff: { kind: 'fixed', delayMs: 3, maxDelayMs: 3 },
  },
  { op: 'claim', queue: 'q', max: 4, worker: 'w1' },
  { op: 'claim', queue: 'q', max: 4, maxBytes: 4_194_304 },
  { op: 'complete', queue: 'q', id: '#12', token: 99, next: { max: 1, worker: 'w1' } },
  { op: 'complete', queue: 'q', id: '#12', token: 99, next: { max: 9, maxBytes: 1 } },
  { op: 'fail', queue: 'q', id: '#12', token: 99, error: 'boom', final: true },
  { op: 'fail', queue: 'q', id: '#12', token: 99, error: 'released', release: true },
  { op: 'tick' },
];

void test('a command packs to the same bytes as its copy without undefined fields', () => {
  for (const c of commands) {
    assert.deepStrictEqual(encodeQueueCommand(c), reference(c), JSON.stringify(c));
    // And with undefined fields, at the top and nested, which the copy drops.
    const withHoles = { ...c, id: undefined, next: { max: 2, worker: undefined } };
    const bytes = encodeQueueCommand(withHoles as unknown as QueueCommandAny);
    assert.deepStrictEqual(bytes, reference(withHoles));
  }
});

void test('an encoded command decodes to the command', () => {
  for (const c of commands.filter((x) => x.op !== 'fail'))
    assert.deepStrictEqual(decodeQueueCommand(encodeQueueCommand(c), defaultQueueLimits), c);
});

void test('a release is a single fail: not false, not with final, not in a bulk report', () => {
  const packr = new Packr({ useRecords: false, moreTypes: false });
  const fail = { op: 'fail', queue: 'q', id: 'j', token: 3, error: 'released' };
  const pack = (v: object) => packr.pack(JSON.parse(JSON.stringify(v)));
  // The same without release decodes: each refusal below is the release's.
  decodeQueueCommand(pack({ ...fail, release: true }), defaultQueueLimits);
  decodeQueueCommand(
    pack({ op: 'reportBulk', queue: 'q', reports: [{ ...fail, queue: undefined }] }),
    defaultQueueLimits,
  );
  for (const bad of [
    { ...fail, release: false },
    { ...fail, release: true, final: true },
    { op: 'reportBulk', queue: 'q', reports: [{ ...fail, queue: undefined, release: true }] },
  ])
    assert.throws(() => decodeQueueCommand(pack(bad), defaultQueueLimits), JSON.stringify(bad));
});

void test("a claim's byte bound is a positive integer, in a claim and in a report's next", () => {
  const packr = new Packr({ useRecords: false, moreTypes: false });
  const pack = (v: object) => packr.pack(JSON.parse(JSON.stringify(v)));
  const next = { op: 'complete', queue: 'q', id: 'j', token: 3 };
  for (const maxBytes of [0, -1, 1.5, '4'])
    for (const bad of [
      { op: 'claim', queue: 'q', maxBytes },
      { ...next, next: { maxBytes } },
    ])
      assert.throws(
        () => decodeQueueCommand(pack(bad), defaultQueueLimits),
        /maxBytes/,
        JSON.stringify(bad),
      );
});

void test('an empty or blank failure message or worker name is refused when proposed, applied when read back', () => {
  const fail = { op: 'fail', queue: 'q', id: 'j', token: 1 } as const;
  const refused: [QueueCommandAny, RegExp][] = [
    [{ ...fail, error: '' }, /^"error" is empty/],
    [{ ...fail, error: ' \n' }, /^"error" is only whitespace/],
    [{ ...fail, error: '', release: true }, /^"error" is empty/],
    [{ ...fail, error: 'x', next: { worker: '' } }, /^"next.worker" is empty/],
    [{ op: 'claim', queue: 'q', worker: '\t' }, /^"worker" is only whitespace/],
    [
      {
        op: 'reportBulk',
        queue: 'q',
        reports: [
          { op: 'complete', id: 'a', token: 1 },
          { op: 'fail', id: 'j', token: 1, error: ' ' },
        ],
      },
      /^reports\[1\]: "error" is only whitespace/,
    ],
  ];
  for (const [cmd, message] of refused) {
    assert.throws(
      () => checkProposal(cmd),
      (e: Error & { code?: string }) => e.code === 'BAD_REQUEST' && message.test(e.message),
      JSON.stringify(cmd),
    );
    // An entry a release before the check wrote still applies as it did on every member.
    assert.deepEqual(decodeQueueCommand(encodeQueueCommand(cmd), defaultQueueLimits), cmd);
  }
  for (const cmd of commands) checkProposal(cmd);
  checkProposal({ ...fail, error: ' x ' });
});
