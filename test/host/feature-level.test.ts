// The cluster's active feature level in the session layer (DESIGN.md, "Upgrades"): raised by
// envelope kind 3 in log order, never lowered, kept in the snapshot (absent from one written
// before the gate: 0), and a bad level or an envelope kind this release does not know is
// answered BAD_COMMAND without a change, the same on every replica.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Packr } from 'msgpackr';
import { chunkStream, type Command, type StateMachine } from '../../src/host/contracts.js';
import { KIND_FEATURE_LEVEL, encodeEnvelope, encodeFeatureLevel } from '../../src/host/envelope.js';
import { SessionMachine } from '../../src/host/sessions.js';

/** A machine that remembers nothing and answers every command with its index. */
class Echo implements StateMachine {
  apply(commands: readonly Command[]): unknown[] {
    return commands.map((c) => c.index);
  }
  snapshot(): AsyncIterable<Uint8Array> {
    return chunkStream(() => [new Uint8Array([1])][Symbol.iterator]());
  }
  async restore(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    for await (const _ of chunks) void _;
  }
}

const level = (index: number, l: number): Command => ({
  index,
  term: 1,
  timeMs: 0,
  payload: encodeEnvelope({
    kind: KIND_FEATURE_LEVEL,
    client: '',
    seq: 0,
    timeMs: 0,
    payload: encodeFeatureLevel(l),
  }),
});

async function collect(it: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const c of it) out.push(c);
  return out;
}

function replay(chunks: readonly Uint8Array[]): AsyncIterable<Uint8Array> {
  return chunkStream(() => chunks[Symbol.iterator]());
}

void test('the level rises in log order, never goes down, and survives a snapshot', async () => {
  const sm = new SessionMachine(new Echo());
  const seen: number[] = [];
  sm.onFeatureLevel((l) => seen.push(l));
  assert.equal(sm.featureLevel(), 0);
  assert.deepEqual(sm.apply([level(1, 2), level(2, 1)]), [
    { featureLevel: 2 },
    { featureLevel: 2 },
  ]);
  assert.equal(sm.featureLevel(), 2);
  assert.deepEqual(seen, [2]);
  const restored = new SessionMachine(new Echo());
  await restored.restore(replay(await collect(sm.snapshot())));
  assert.equal(restored.featureLevel(), 2);
});

void test('a snapshot written before the gate restores at level 0, and one at level 0 holds no field', async () => {
  const sm = new SessionMachine(new Echo());
  const chunks = await collect(sm.snapshot());
  const header = new Packr({ useRecords: false }).unpack(chunks[0] as Uint8Array) as object;
  assert.equal('featureLevel' in header, false);
  const restored = new SessionMachine(new Echo());
  await restored.restore(replay(chunks));
  assert.equal(restored.featureLevel(), 0);
});

void test('a bad level and an unknown envelope kind are BAD_COMMAND and change nothing', () => {
  const packr = new Packr({ useRecords: false, moreTypes: false, variableMapSize: true });
  const bad: Command = {
    index: 1,
    term: 1,
    timeMs: 0,
    payload: packr.pack([1, KIND_FEATURE_LEVEL, '', 0, 0, packr.pack(-1)]),
  };
  // A kind a later release adds: this one refuses it, as every replica of it does.
  const later: Command = {
    index: 2,
    term: 1,
    timeMs: 0,
    payload: packr.pack([1, 9, '', 0, 0, packr.pack('x')]),
  };
  const a = new SessionMachine(new Echo());
  const b = new SessionMachine(new Echo());
  const ra = a.apply([bad, later]);
  const rb = b.apply([bad, later]);
  assert.deepEqual(ra, rb);
  for (const r of ra) assert.equal((r as { refused: string }).refused, 'BAD_COMMAND');
  assert.equal(a.featureLevel(), 0);
});
