// The client's watch loop (watchStream) over a transport the test scripts: what reaches the
// consumer, whatever the node sent and however the stream ended.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { watchStream, type WatchLine, type WatchTransport } from '../../src/client/watch.js';

/** A transport whose one stream holds `lines`, all available at once (as a read buffer is). */
function scripted(lines: WatchLine[]): WatchTransport {
  return {
    endpoints: ['http://node-1'],
    lines: async function* () {
      await Promise.resolve();
      yield* lines;
    },
  };
}

const revisionLine = (revision: number): WatchLine => ({
  header: { revision },
  events: [
    {
      type: 'put',
      kv: {
        key: 'k',
        value: `v${revision}`,
        createRevision: 1,
        modRevision: revision,
        version: revision,
      },
    },
  ],
});

void test('an aborted watch yields nothing more, even what its stream already read', async () => {
  const lines: WatchLine[] = [{ created: true, startRevision: 1, header: { revision: 50 } }];
  for (let r = 1; r <= 50; r++) lines.push(revisionLine(r));
  const ac = new AbortController();
  const seen: number[] = [];
  for await (const batch of watchStream(scripted(lines), 'k', {
    startRevision: 1,
    signal: ac.signal,
  })) {
    seen.push(batch.revision);
    if (batch.revision === 3) ac.abort();
    assert.ok(seen.length <= 50, `the watch went on after the abort: ${seen.length} batches`);
  }
  assert.deepEqual(seen, [1, 2, 3], 'nothing after the batch that aborted');
});

void test('a watch ended COMPACTED throws with the compact revision, as a number', async () => {
  const lines: WatchLine[] = [
    { created: true, startRevision: 3, header: { revision: 9 } },
    {
      canceled: true,
      error: { code: 'COMPACTED', message: 'compacted to 7', compactRevision: 7 },
    },
  ];
  const seen: unknown[] = [];
  await assert.rejects(
    (async () => {
      for await (const batch of watchStream(scripted(lines), 'k', { startRevision: 3 }))
        seen.push(batch);
    })(),
    { code: 'COMPACTED', compactRevision: 7 },
  );
  assert.deepEqual(seen, []);
});

void test('a start revision that is negative or not an integer is refused, not watched from now', async () => {
  // It watched from now, silently, where HTTP refuses it.
  for (const startRevision of [-5, -1, 1.5, Number.NaN]) {
    const it = watchStream(scripted([]), 'x', { startRevision });
    await assert.rejects(it.next(), (e: unknown) => {
      assert.equal((e as { code?: string }).code, 'BAD_REQUEST', String(e));
      return true;
    });
  }
});
