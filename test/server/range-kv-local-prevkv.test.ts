// The proposing side of the bound on deletes with `prevKv` (src/server/range-kv-local.ts): a
// node refuses at once, with nothing proposed, when its applied state is already over the
// limit; it puts the bound in the command only once the cluster's feature level has it (a
// member of an older release would ignore it and delete); and the apply, not the early check,
// decides when the range grew in between.

import assert from 'node:assert/strict';
import test from 'node:test';
import { FlotillaError } from '../../src/base/errors.js';
import { FEATURE_LEVEL, features } from '../../src/base/features.js';
import { defaultLimits } from '../../src/base/limits.js';
import type { Command } from '../../src/host/contracts.js';
import type { Op } from '../../src/kv/kv-store.js';
import { KvStateMachine, type TxnCommand } from '../../src/kv/machine.js';
import type { NodeConfig } from '../../src/server/config.js';
import { NodeMetrics } from '../../src/server/metrics.js';
import type { RangeGroup } from '../../src/server/range-groups.js';
import { RangeKvLocal } from '../../src/server/range-kv-local.js';
import type { RangeLane, RangeLanes } from '../../src/server/range-lanes.js';

const b = (s: string): Uint8Array => new TextEncoder().encode(s);
const max = defaultLimits.maxRangeBytes;
const value = new Uint8Array(defaultLimits.maxValueBytes);
/** Records of a 5-byte key and a 1 MiB value: this many fit the limit, one more does not. */
const fit = Math.floor(max / (value.length + 5));

const put = (key: string): Op => ({ kind: 'put', key: b(key), value, prevKv: false });
const delAll: Op = {
  kind: 'delete',
  range: { key: b('big/'), rangeEnd: b('big0') },
  prevKv: true,
};
const txn = (...success: Op[]): TxnCommand => ({ compare: [], success, failure: [] });

/**
 * One range run here over a real state machine: `proposed` holds each command as proposed,
 * and `beforeApply` runs between the proposal and its apply (another write landing first).
 */
function rangeHere(level: number) {
  const machine = new KvStateMachine(defaultLimits);
  let index = 0;
  const apply = (cmd: TxnCommand) => {
    const c: Command = { index: ++index, term: 1, timeMs: 0, payload: KvStateMachine.encode(cmd) };
    return machine.apply([c])[0];
  };
  const proposed: TxnCommand[] = [];
  const hooks = { beforeApply: (): void => undefined };
  const lane = {
    group: {
      range: { kv: machine },
      runtime: {
        term: () => 1,
        propose: (data: Uint8Array) => {
          const cmd = JSON.parse(new TextDecoder().decode(data)) as { i: number };
          hooks.beforeApply();
          return Promise.resolve(apply(proposed[cmd.i] as TxnCommand));
        },
      },
    },
    service: {
      encode: (t: TxnCommand) => {
        proposed.push(t);
        return new TextEncoder().encode(JSON.stringify({ i: proposed.length - 1 }));
      },
    },
    load: { wrote: () => undefined },
  } as unknown as RangeLane;
  const local = new RangeKvLocal({
    config: { id: 1 } as NodeConfig,
    lanes: {} as RangeLanes,
    metrics: new NodeMetrics(1, false),
    range0: {} as RangeGroup,
    sampler: () => undefined,
    featureLevel: () => level,
  });
  const write = (t: TxnCommand) =>
    local.write(lane, t, null, new AbortController().signal, undefined);
  return { machine, apply, proposed, hooks, write };
}

const keys = (n: number, from = 0): Op[] =>
  Array.from({ length: n }, (_, i) => put(`big/${String.fromCharCode(97 + from + i)}`));

void test('over the limit in the applied state: refused at once, nothing proposed', async () => {
  const r = rangeHere(FEATURE_LEVEL);
  for (const op of keys(fit + 1)) r.apply(txn(op));
  await assert.rejects(
    r.write(txn(delAll)),
    (e: unknown) => e instanceof FlotillaError && e.code === 'PREV_KV_TOO_LARGE' && !e.indefinite,
  );
  assert.equal(r.proposed.length, 0, 'nothing was proposed');
  assert.equal(r.machine.keyCount(), fit + 1);
});

void test('within it at the feature level: proposed with the bound, and the apply refuses if the range grew meanwhile', async () => {
  const r = rangeHere(features.boundedPrevKv.level);
  for (const op of keys(fit)) r.apply(txn(op));
  // Another write lands between the check and the apply: the range is then over the limit.
  r.hooks.beforeApply = () => void r.apply(txn(put('big/~')));
  await assert.rejects(
    r.write(txn(delAll)),
    (e: unknown) => e instanceof FlotillaError && e.code === 'PREV_KV_TOO_LARGE',
  );
  const op = r.proposed[0]?.success[0];
  assert.equal(op?.kind === 'delete' && op.prevKvBytesMax, max, 'the bound went in the command');
  assert.equal(r.machine.keyCount(), fit + 1, 'the apply deleted nothing');
});

void test('below the feature level: proposed without the bound, so an older member applies it the same', async () => {
  const r = rangeHere(features.boundedPrevKv.level - 1);
  for (const op of keys(fit)) r.apply(txn(op));
  r.hooks.beforeApply = () => void r.apply(txn(put('big/~')));
  const answer = await r.write(txn(delAll));
  const op = r.proposed[0]?.success[0];
  assert.equal(op?.kind, 'delete');
  assert.equal(op.kind === 'delete' && op.prevKvBytesMax, undefined, 'no bound in the command');
  const res = answer.results[0];
  assert.equal(res?.kind === 'delete' && res.deleted, fit + 1, 'deleted as before the bound');
  // A write without a delete with prevKv is proposed untouched at any level.
  const plain = txn(put('big/z'));
  await r.write(plain);
  assert.equal(r.proposed[1], plain);
});
