// The start-up check of the limits' relations (src/base/limits.ts): the defaults agree, and
// each relation, broken alone, is refused with a message naming its two limits. The shared
// key and value checks answer with their stable codes.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FlotillaError } from '../../src/base/errors.js';
import {
  LimitsError,
  base64Bytes,
  checkKey,
  checkLimits,
  checkProposalBytes,
  checkValue,
  defaultLimits,
  type Limits,
} from '../../src/base/limits.js';
import { maxWriteEnvelopeBytes } from '../../src/kv/machine.js';
import { nodeLimitEncodings } from '../../src/server/config.js';

const MiB = 1024 * 1024;
/** The defaults with the proposal limit a node derives from its key and value limits. */
const nodeDefaults: Limits = {
  ...defaultLimits,
  maxProposalBytes: maxWriteEnvelopeBytes(defaultLimits),
};

function refusal(l: Limits): LimitsError {
  try {
    checkLimits(l, nodeLimitEncodings);
  } catch (err) {
    assert.ok(err instanceof LimitsError, `not a LimitsError: ${String(err)}`);
    assert.equal(err.code, 'CONFIG_INVALID');
    return err;
  }
  assert.fail(`accepted ${JSON.stringify(l)}`);
}

void test("a node's default limits agree", () => {
  checkLimits(nodeDefaults, nodeLimitEncodings);
});

// Each case breaks one relation by the smallest step from the defaults.
const proposal = nodeDefaults.maxProposalBytes;
const cases: [string, Partial<Limits>, [keyof Limits, keyof Limits], RegExp][] = [
  [
    'a put in base64 must fit the body',
    {
      maxBodyBytes:
        base64Bytes(defaultLimits.maxKeyBytes) +
        base64Bytes(defaultLimits.maxValueBytes) +
        nodeLimitEncodings.putBodyOverheadBytes -
        1,
    },
    ['maxValueBytes', 'maxBodyBytes'],
    /maxBodyBytes \(1400495\) must hold a put .* in base64: \d+ bytes for maxKeyBytes 1024 and maxValueBytes 1048576/,
  ],
  [
    'a write at the key and value limits must fit the proposal limit',
    { maxProposalBytes: proposal - 1 },
    ['maxValueBytes', 'maxProposalBytes'],
    new RegExp(`maxProposalBytes \\(${proposal - 1}\\) must hold one write .*: ${proposal} bytes`),
  ],
  [
    'storage must take the largest proposal',
    { maxEntryBytes: proposal - 1 },
    ['maxProposalBytes', 'maxEntryBytes'],
    new RegExp(`maxEntryBytes \\(${proposal - 1}\\) is below maxProposalBytes \\(${proposal}\\)`),
  ],
  [
    'a frame must carry the largest proposal in an append',
    { maxFrameBytes: proposal + nodeLimitEncodings.appendOverheadBytes - 1 },
    ['maxProposalBytes', 'maxFrameBytes'],
    /maxFrameBytes \(\d+\) must hold an append of maxProposalBytes/,
  ],
  [
    'a frame must carry a full append message',
    {
      maxBytesPerMsg: 4 * MiB,
      maxFrameBytes: 4 * MiB + nodeLimitEncodings.appendOverheadBytes - 1,
    },
    ['maxBytesPerMsg', 'maxFrameBytes'],
    /maxFrameBytes \(\d+\) must hold an append of maxBytesPerMsg \(4194304\)/,
  ],
  [
    'the uncommitted bound must hold a full append',
    { maxUncommittedBytes: defaultLimits.maxBytesPerMsg - 1 },
    ['maxBytesPerMsg', 'maxUncommittedBytes'],
    /maxUncommittedBytes \(1048575\) is below maxBytesPerMsg \(1048576\)/,
  ],
  [
    'the inflight bound must hold a full append',
    { maxInflightBytes: defaultLimits.maxBytesPerMsg - 1 },
    ['maxBytesPerMsg', 'maxInflightBytes'],
    /maxInflightBytes \(1048575\) is below maxBytesPerMsg \(1048576\)/,
  ],
  [
    'a snapshot storage accepts must be sendable',
    { maxAttachmentBytes: defaultLimits.maxSnapshotBytes - 1 },
    ['maxSnapshotBytes', 'maxAttachmentBytes'],
    /maxAttachmentBytes \(1073741823\) is below maxSnapshotBytes \(1073741824\)/,
  ],
  [
    'a limit must be a positive integer',
    { maxKeyBytes: 0 },
    ['maxKeyBytes', 'maxKeyBytes'],
    /maxKeyBytes must be a positive integer, got 0/,
  ],
];

for (const [name, change, conflict, message] of cases) {
  void test(`refused: ${name}`, () => {
    const err = refusal({ ...nodeDefaults, ...change });
    assert.deepEqual(err.conflict, conflict);
    assert.match(err.message, message);
    // One step back and the relation holds again: the check is at the boundary, not near it.
    const key = Object.keys(change)[0] as keyof Limits;
    if (key !== 'maxKeyBytes' && key !== 'maxBytesPerMsg')
      checkLimits(
        { ...nodeDefaults, ...change, [key]: (change[key] as number) + 1 },
        nodeLimitEncodings,
      );
  });
}

void test('a larger value limit needs a larger body and proposal limit, and names them', () => {
  const bigger = { ...nodeDefaults, maxValueBytes: 2 * MiB };
  assert.deepEqual(refusal(bigger).conflict, ['maxValueBytes', 'maxBodyBytes']);
  assert.deepEqual(refusal({ ...bigger, maxBodyBytes: 4 * MiB }).conflict, [
    'maxValueBytes',
    'maxProposalBytes',
  ]);
  checkLimits(
    { ...bigger, maxBodyBytes: 4 * MiB, maxProposalBytes: maxWriteEnvelopeBytes(bigger) },
    nodeLimitEncodings,
  );
});

function code(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    assert.ok(err instanceof FlotillaError, String(err));
    return `${err.code}${err.indefinite ? ' (indefinite)' : ''}`;
  }
  return 'accepted';
}

void test('keys, values and proposals are checked at their limits with stable codes', () => {
  const l = { maxKeyBytes: 4, maxValueBytes: 8, maxProposalBytes: 100 };
  assert.equal(
    code(() => checkKey(new Uint8Array(0), l)),
    'KEY_EMPTY',
  );
  assert.equal(
    code(() => checkKey(new Uint8Array(4), l)),
    'accepted',
  );
  assert.equal(
    code(() => checkKey(new Uint8Array(5), l)),
    'KEY_TOO_LARGE',
  );
  assert.equal(
    code(() => checkValue(new Uint8Array(0), l)),
    'accepted',
  );
  assert.equal(
    code(() => checkValue(new Uint8Array(8), l)),
    'accepted',
  );
  assert.equal(
    code(() => checkValue(new Uint8Array(9), l)),
    'VALUE_TOO_LARGE',
  );
  assert.equal(
    code(() => checkProposalBytes(100, l)),
    'accepted',
  );
  assert.equal(
    code(() => checkProposalBytes(101, l)),
    'TXN_TOO_LARGE',
  );
});
