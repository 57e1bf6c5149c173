// The client's watch loop (watchStream) over a transport the test scripts: what reaches the
// consumer, whatever the node sent and however the stream ended; and over HTTP, from a node
// that falls silent to the next.

import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { FlotillaClient } from '../../src/client/index.js';
import {
  watchSilenceMs,
  watchStream,
  type WatchLine,
  type WatchTransport,
} from '../../src/client/watch.js';

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

void test('a watch asking for progress every second leaves a node silent for three of them', async () => {
  // Node A accepts the watch, says it is created, then says nothing more (a frozen process
  // keeps its connections open); node B serves the change. Before, a stream's silence was
  // never taken for a frozen node's under 30 s, whatever progressNotifyMs the watch asked for.
  const silent: ServerResponse[] = [];
  const a = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    res.write(`${JSON.stringify({ created: true, startRevision: 7, header: { revision: 7 } })}\n`);
    silent.push(res);
  });
  const b = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    res.write(`${JSON.stringify({ created: true, startRevision: 7, header: { revision: 7 } })}\n`);
    res.write(`${JSON.stringify(revisionLine(7))}\n`);
  });
  const urls: string[] = [];
  for (const s of [a, b]) {
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    urls.push(`http://127.0.0.1:${(s.address() as AddressInfo).port}`);
  }
  const client = new FlotillaClient({ endpoints: urls, protocol: 'http' });
  const ac = new AbortController();
  try {
    const first = await Promise.race([
      (async () => {
        for await (const batch of client.watch('k', {
          startRevision: 7,
          progressNotifyMs: 1_000,
          signal: ac.signal,
        }))
          return batch;
        return null;
      })(),
      new Promise<never>((_, reject) =>
        setTimeout(
          () => reject(new Error('the watch stayed on the silent node for 20 s')),
          20_000,
        ).unref(),
      ),
    ]);
    assert.equal(first?.revision, 7);
    assert.equal(silent.length, 1, 'node A was asked first, and left');
  } finally {
    ac.abort();
    await client.close();
    for (const r of silent) r.destroy();
    a.closeAllConnections();
    b.closeAllConnections();
    await Promise.all([a, b].map((s) => new Promise((r) => s.close(r))));
  }
});

void test('the silence a watch allows: three progress intervals, at least 3 s', () => {
  assert.equal(watchSilenceMs(undefined), 30_000);
  assert.equal(watchSilenceMs(1_000), 3_000);
  assert.equal(watchSilenceMs(100), 3_000);
  assert.equal(watchSilenceMs(20_000), 60_000);
});
