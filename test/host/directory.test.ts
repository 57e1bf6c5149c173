// The member directory: its entries round-trip, a removed id is refused for good, it is applied
// in log order beside the commands by the session layer, and it survives a snapshot (and a
// snapshot written before it existed loads an empty one).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Packr } from 'msgpackr';
import {
  MemberDirectory,
  decodeDirectoryChange,
  encodeDirectoryChange,
  type DirectoryChange,
} from '../../src/host/directory.js';
import { KIND_DIRECTORY, decodeEnvelope, encodeEnvelope } from '../../src/host/envelope.js';
import { SessionMachine } from '../../src/host/sessions.js';
import { chunkStream, type Command, type StateMachine } from '../../src/host/contracts.js';

const m4 = { id: 4, peer: '127.0.0.1:7004', client: 'http://127.0.0.1:8004', autoPromote: true };

void test('directory changes round-trip, and malformed ones are refused with a reason', () => {
  for (const c of [
    { op: 'set', member: m4 },
    { op: 'remove', id: 9 },
  ] as DirectoryChange[])
    assert.deepEqual(decodeDirectoryChange(encodeDirectoryChange(c)), c);
  const packr = new Packr({ useRecords: false });
  assert.throws(() => decodeDirectoryChange(packr.pack(['set', 0, 'a:1', 'http://a', true])), /id/);
  assert.throws(() => decodeDirectoryChange(packr.pack(['set', 4, 'a:1'])), /malformed/);
  assert.throws(() => decodeDirectoryChange(packr.pack({ op: 'set' })), /not a directory/);
});

void test('a removed id is never set again', () => {
  const d = new MemberDirectory();
  assert.deepEqual(d.apply({ op: 'set', member: m4 }), { directory: true });
  d.apply({ op: 'remove', id: 4 });
  assert.equal(d.isRemoved(4), true);
  const again = d.apply({ op: 'set', member: m4 });
  assert.equal((again as { refused?: string }).refused, 'MEMBER_REMOVED');
  assert.deepEqual(d.removed(), [4]);
});

/** Records what it applies; its snapshot is one chunk of that list. */
class Recorder implements StateMachine {
  applied: string[] = [];
  apply(commands: readonly Command[]): unknown[] {
    return commands.map((c) => {
      this.applied.push(new TextDecoder().decode(c.payload));
      return 'ok';
    });
  }
  snapshot(): AsyncIterable<Uint8Array> {
    const data = new TextEncoder().encode(JSON.stringify(this.applied));
    return chunkStream(() => [data][Symbol.iterator]());
  }
  async restore(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    for await (const c of chunks)
      this.applied = JSON.parse(new TextDecoder().decode(c)) as string[];
  }
}

function command(index: number, kind: 'kv' | 'dir', payload: Uint8Array): Command {
  return {
    index,
    term: 1,
    timeMs: 0,
    payload: encodeEnvelope({
      ...(kind === 'dir' ? { kind: KIND_DIRECTORY } : {}),
      client: '',
      seq: 0,
      timeMs: 1,
      payload,
    }),
  };
}

async function collect(it: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const c of it) out.push(c);
  return out;
}

void test('the session layer applies directory entries in log order and keeps them in its snapshot', async () => {
  const inner = new Recorder();
  const sm = new SessionMachine(inner);
  const seen: number[][] = [];
  sm.directory.onChange(() => seen.push(sm.directory.list().map((m) => m.id)));
  const enc = (s: string) => new TextEncoder().encode(s);
  const results = sm.apply([
    command(1, 'kv', enc('a')),
    command(2, 'dir', encodeDirectoryChange({ op: 'set', member: m4 })),
    command(3, 'kv', enc('b')),
    command(4, 'dir', enc('garbage')),
  ]);
  assert.deepEqual(results.slice(0, 3), ['ok', { directory: true }, 'ok']);
  assert.equal((results[3] as { refused?: string }).refused, 'BAD_COMMAND');
  assert.deepEqual(inner.applied, ['a', 'b'], 'directory entries never reach the inner machine');
  assert.deepEqual(seen, [[4]]);
  assert.equal(decodeEnvelope(command(2, 'dir', enc('x')).payload).kind, KIND_DIRECTORY);

  const chunks = await collect(sm.snapshot());
  const restored = new SessionMachine(new Recorder());
  await restored.restore(chunkStream(() => chunks[Symbol.iterator]()));
  assert.deepEqual(restored.directory.list(), [m4]);

  // A snapshot header from before the directory existed: the same, without `directory`.
  const packr = new Packr({ useRecords: false, moreTypes: false });
  const header = packr.unpack(chunks[0] as Uint8Array) as Record<string, unknown>;
  delete header['directory'];
  const legacy = [packr.pack(header), ...chunks.slice(1)];
  const old = new SessionMachine(new Recorder());
  old.directory.apply({ op: 'set', member: m4 });
  await old.restore(chunkStream(() => legacy[Symbol.iterator]()));
  assert.deepEqual(old.directory.list(), [], 'a snapshot without a directory has none');
});
