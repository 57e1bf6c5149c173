// The meta group's side of a node (src/server/meta-service.ts) before the map exists: a split
// asked of a cluster that has just started reaches the allocator before the meta group's
// leader bootstrapped the map. Before, that was answered `RANGE_MAP_REFUSED`, which API.md
// describes as "the split applied, but the map did not take it", and which the client does
// not retry: a user splitting right after `flotilla start` was told a split had happened.

import assert from 'node:assert/strict';
import test from 'node:test';
import { pino } from 'pino';
import { FlotillaError } from '../../src/base/errors.js';
import { decodeEnvelope } from '../../src/host/envelope.js';
import type { RaftRuntime } from '../../src/host/runtime.js';
import { MetaStateMachine, type MetaResult } from '../../src/ranges/meta-machine.js';
import { MetaService } from '../../src/server/meta-service.js';
import { ManualClock } from '../support/manual-clock.js';

/** A meta service whose group applies each proposal to a real machine at once. */
function service(machine: MetaStateMachine): MetaService {
  let index = 0;
  const runtime = {
    isLeader: () => true,
    status: () => ({ commit: index }),
    appliedIndex: () => index,
    propose: (data: Uint8Array): Promise<MetaResult> => {
      index++;
      const e = decodeEnvelope(data);
      const [r] = machine.apply([{ index, term: 1, timeMs: e.timeMs, payload: e.payload }]);
      return Promise.resolve(r as MetaResult);
    },
  };
  return new MetaService({
    // What `allocate` and `check` use of a runtime: leadership, indices, proposals.
    runtime: runtime as unknown as RaftRuntime,
    machine,
    clock: new ManualClock(),
    firstRangeReplicas: () => [1],
    checkEveryMs: 1_000,
    log: pino({ level: 'silent' }),
    gate: null,
  });
}

void test('an allocation before the map is bootstrapped is NO_LEADER (retried), not RANGE_MAP_REFUSED', async () => {
  const machine = new MetaStateMachine();
  const meta = service(machine);
  await assert.rejects(meta.allocate(), (err: unknown) => {
    assert.ok(err instanceof FlotillaError, String(err));
    assert.equal(err.code, 'NO_LEADER', err.message);
    assert.equal(err.indefinite, false);
    assert.match(err.message, /not bootstrapped yet .*nothing changed/);
    return true;
  });
  // Once bootstrapped, the same call allocates (the refusal was the missing map's alone).
  await meta.check();
  assert.notEqual(machine.map(), null);
  assert.ok((await meta.allocate()) >= 3);
});
