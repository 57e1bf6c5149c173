// The key-value path's retry after WRONG_RANGE (src/server/range-kv-path.ts): a node that
// routed by a descriptor its range's leader had already changed (or by a map that lags) catches
// up with that range and the map and routes once more; a second WRONG_RANGE, or any other
// error, is the caller's.

import assert from 'node:assert/strict';
import test from 'node:test';
import { FlotillaError } from '../../src/base/errors.js';
import { FEATURE_LEVEL } from '../../src/base/features.js';
import type { NodeConfig } from '../../src/server/config.js';
import { NodeMetrics } from '../../src/server/metrics.js';
import type { RangeGroup } from '../../src/server/range-groups.js';
import { RangeKvPath } from '../../src/server/range-kv-path.js';
import type { RangeLanes } from '../../src/server/range-lanes.js';
import type { RangeTarget, RemoteRanges } from '../../src/server/range-remote.js';
import type { RemoteWatches } from '../../src/server/range-watch.js';

const b = (s: string): Uint8Array => new TextEncoder().encode(s);

/** Routes to the ranges `routes` in turn (run here) and records the refreshes asked for. */
function fakeLanes(routes: readonly number[]): {
  lanes: RemoteRanges;
  caughtUp: (number | null)[];
} {
  const caughtUp: (number | null)[] = [];
  let next = 0;
  const lanes = {
    route: (): RangeTarget => ({
      local: true,
      id: routes[Math.min(next++, routes.length - 1)] ?? 0,
    }),
    refresh: (id: number | null) => {
      caughtUp.push(id);
      return Promise.resolve();
    },
  } as unknown as RemoteRanges;
  return { lanes, caughtUp };
}

function path(remote: RemoteRanges): RangeKvPath {
  return new RangeKvPath({
    config: { id: 1 } as NodeConfig,
    lanes: {} as RangeLanes,
    metrics: new NodeMetrics(1, false),
    range0: {} as RangeGroup,
    sampler: () => undefined,
    remote,
    mapSize: () => 1,
    remoteWatches: {} as RemoteWatches,
    featureLevel: () => FEATURE_LEVEL,
  });
}

const idOf = (t: RangeTarget): number => (t.local ? t.id : t.descriptor.id);

const spans = [{ key: b('x'), rangeEnd: null }];
const signal = new AbortController().signal;
const wrongRange = () => new FlotillaError('WRONG_RANGE', 'Key "x" is outside the range');

void test('a WRONG_RANGE is retried once, after catching up with the range that refused', async () => {
  const { lanes, caughtUp } = fakeLanes([0, 3]);
  const tried: number[] = [];
  const r = await path(lanes).routed(spans, 'write', signal, (t) => {
    tried.push(idOf(t));
    return idOf(t) === 0 ? Promise.reject(wrongRange()) : Promise.resolve('ok');
  });
  assert.equal(r, 'ok');
  assert.deepEqual(tried, [0, 3], 'routed again, to the range that holds the key now');
  assert.deepEqual(caughtUp, [0], 'caught up with the range that refused first');
});

void test('a second WRONG_RANGE, and any other error, reach the caller', async () => {
  const { lanes, caughtUp } = fakeLanes([0, 0]);
  let calls = 0;
  await assert.rejects(
    path(lanes).routed(spans, 'write', signal, () => {
      calls++;
      return Promise.reject(wrongRange());
    }),
    (err: unknown) => err instanceof FlotillaError && err.code === 'WRONG_RANGE',
  );
  assert.equal(calls, 2, 'one retry, not a loop');
  assert.deepEqual(caughtUp, [0]);
  const other = fakeLanes([0]);
  await assert.rejects(
    path(other.lanes).routed(spans, 'write', signal, () =>
      Promise.reject(new FlotillaError('NOT_LEADER', 'no')),
    ),
    (err: unknown) => err instanceof FlotillaError && err.code === 'NOT_LEADER',
  );
  assert.deepEqual(other.caughtUp, [], 'no catch-up for an error that is not about routing');
});

void test('no range holding the keys here yet (routing itself refused) waits for the ranges starting', async () => {
  const caughtUp: (number | null)[] = [];
  let first = true;
  const lanes = {
    route: () => {
      if (first) {
        first = false;
        throw wrongRange();
      }
      return { local: true, id: 3 } satisfies RangeTarget;
    },
    refresh: (id: number | null) => {
      caughtUp.push(id);
      return Promise.resolve();
    },
  } as unknown as RemoteRanges;
  const r = await path(lanes).routed(spans, 'write', signal, (t) => Promise.resolve(idOf(t)));
  assert.equal(r, 3);
  assert.deepEqual(caughtUp, [null]);
});
