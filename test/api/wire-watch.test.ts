// Watches over the binary client protocol, on a real 3-node cluster in this process: a watch's
// lines arrive as frames under its id beside ordinary requests on the same connection; many
// watches share a connection; a cancel ends one; a compacted start, a refused body and a
// reader that stops reading each end it the way docs/CLIENT-PROTOCOL.md says; and the client's
// watch() goes over the protocol and resumes across its node shutting down.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { encodeFrame } from '../../src/api/wire-codec.js';
import { FlotillaError } from '../../src/base/errors.js';
import { FlotillaClient } from '../../src/client/index.js';
import { WireConnection } from '../../src/client/wire.js';
import { TestNodes } from '../server/nodes.js';
import { RawConnection } from './raw-wire.js';

type Frame = [number, number, Record<string, unknown>];

let cluster: TestNodes;
let leader: number;

before(async () => {
  cluster = await TestNodes.start({
    nodes: 3,
    clientProtocol: true,
    config: { maxWatchBufferBytes: 1024 },
  });
  leader = await cluster.waitForLeader();
});

after(async () => {
  await cluster.close();
});

async function put(key: string, value: string): Promise<number> {
  const c = await WireConnection.connect({
    host: '127.0.0.1',
    port: cluster.binaryPort(leader),
    timeoutMs: 5_000,
  });
  try {
    const r = (await c.request('put', { key, value }, { read: false })) as {
      header: { revision: number };
    };
    return r.header.revision;
  } finally {
    c.close();
  }
}

/** The frames under request id `id`, in arrival order. */
function framesOf(c: RawConnection, id: number): Frame[] {
  return c.answers().filter((f) => f[0] === id);
}

void describe('watch over the binary protocol', () => {
  void it('streams lines under the watch id beside other requests, until a cancel ends it', async () => {
    const c = await RawConnection.open(cluster.binaryPort(leader));
    try {
      c.socket.write(encodeFrame([7, 'watch', { key: 'ww/a', progressNotifyMs: 100 }]));
      await c.until('the created line', () => framesOf(c, 7).length >= 1);
      const [created] = framesOf(c, 7);
      assert.deepEqual([created?.[0], created?.[1]], [7, 2]);
      assert.equal(created?.[2]['created'], true, JSON.stringify(created));
      // An ordinary request on the same connection, while the watch is open.
      c.socket.write(encodeFrame([8, 'put', { key: 'ww/a', value: 'one' }]));
      await c.until('the put answer and its event', () =>
        framesOf(c, 7).some((f) => Array.isArray(f[2]['events'])),
      );
      const [answer] = framesOf(c, 8);
      assert.equal(answer?.[1], 0, JSON.stringify(answer));
      const revision = (answer?.[2]['header'] as { revision: number }).revision;
      const event = framesOf(c, 7).find((f) => Array.isArray(f[2]['events']));
      assert.equal((event?.[2]['header'] as { revision: number }).revision, revision);
      assert.deepEqual(
        (event?.[2]['events'] as { type: string; kv: { key: string; value: string } }[]).map(
          (e) => [e.type, e.kv.key, e.kv.value],
        ),
        [['put', 'ww/a', 'one']],
      );
      await c.until('a progress line', () => framesOf(c, 7).some((f) => f[2]['progress']));
      c.socket.write(encodeFrame([9, 'cancel', { id: 7 }]));
      await c.until('the cancel answer and the end of the watch', () =>
        framesOf(c, 7).some((f) => f[1] === 0),
      );
      assert.deepEqual(framesOf(c, 9), [[9, 0, { canceled: true }]]);
      assert.deepEqual(framesOf(c, 7).at(-1), [7, 0, { canceled: true }]);
      // Cancelling it again finds nothing; the connection stays usable.
      c.socket.write(encodeFrame([10, 'cancel', { id: 7 }]));
      await c.until('the second cancel answer', () => framesOf(c, 10).length === 1);
      assert.deepEqual(framesOf(c, 10), [[10, 0, { canceled: false }]]);
      const after = framesOf(c, 7).length;
      await put('ww/a', 'two');
      c.socket.write(encodeFrame([11, 'status', {}]));
      await c.until('a status answer after the put', () => framesOf(c, 11).length === 1);
      assert.equal(framesOf(c, 7).length, after, 'nothing arrives for a cancelled watch');
      assert.equal(c.closed, false);
    } finally {
      c.socket.destroy();
    }
  });

  void it('many watches share a connection, each seeing only its own keys, in revision order', async () => {
    const conn = await WireConnection.connect({
      host: '127.0.0.1',
      port: cluster.binaryPort(leader),
      timeoutMs: 5_000,
    });
    const stop = new AbortController();
    try {
      const seen = new Map<string, number[]>();
      const follow = async (prefix: string) => {
        const got: number[] = [];
        seen.set(prefix, got);
        for await (const [status, line] of conn.stream(
          'watch',
          { key: prefix, prefix: true },
          { signal: stop.signal, idleMs: 30_000 },
        )) {
          if (status !== 2) return;
          const l = line as { header?: { revision: number }; events?: { kv: { key: string } }[] };
          if (l.events === undefined) continue;
          for (const e of l.events) assert.ok(e.kv.key.startsWith(prefix), e.kv.key);
          got.push(l.header?.revision as number);
        }
      };
      // Stopping the watches ends each with ABORTED; anything else fails the test.
      const watching = ['mw/a/', 'mw/b/', 'mw/c/'].map((p) =>
        follow(p).catch((err: unknown) => {
          if (!(err instanceof FlotillaError && err.code === 'ABORTED')) throw err;
        }),
      );
      // Each watch is open once a status request sent after it is answered (frames in order).
      await conn.request('status', {}, { read: true });
      const written = new Map<string, number[]>([
        ['mw/a/', []],
        ['mw/b/', []],
        ['mw/c/', []],
      ]);
      for (let i = 0; i < 30; i++) {
        const prefix = ['mw/a/', 'mw/b/', 'mw/c/'][i % 3] as string;
        const r = (await conn.request(
          'put',
          { key: `${prefix}${i}`, value: 'x' },
          { read: false },
        )) as {
          header: { revision: number };
        };
        written.get(prefix)?.push(r.header.revision);
      }
      const deadline = Date.now() + 10_000;
      const complete = () =>
        [...written].every(([p, revs]) => (seen.get(p)?.length ?? 0) >= revs.length);
      while (!complete() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      for (const [p, revs] of written)
        assert.deepEqual(seen.get(p), revs, `watch ${p}: its revisions, once each, in order`);
      stop.abort();
      await Promise.all(watching);
    } finally {
      stop.abort();
      conn.close();
    }
  });

  void it('a compacted start ends with COMPACTED; a bad key and a bad body are refused alone', async () => {
    const first = await put('cw/a', '1');
    await put('cw/a', '2');
    const client = new FlotillaClient({ endpoints: [cluster.url(leader)], protocol: 'http' });
    try {
      await client.compact(first + 1);
    } finally {
      await client.close();
    }
    const c = await RawConnection.open(cluster.binaryPort(leader));
    try {
      c.socket.write(encodeFrame([1, 'watch', { key: 'cw/a', startRevision: first }]));
      c.socket.write(encodeFrame([2, 'watch', { key: 'k'.repeat(100_000) }]));
      await c.until('both refusals', () => framesOf(c, 1).length > 0 && framesOf(c, 2).length > 0);
      const compacted = framesOf(c, 1).at(-1);
      assert.equal(compacted?.[1], 1, JSON.stringify(compacted));
      assert.equal(compacted?.[2]['code'], 'COMPACTED');
      assert.equal(compacted?.[2]['resumeRevision'], undefined, 'no resuming below compaction');
      assert.equal(compacted?.[2]['compactRevision'], first + 1);
      const tooLarge = framesOf(c, 2).at(-1);
      assert.equal(tooLarge?.[1], 1, JSON.stringify(tooLarge));
      assert.equal(tooLarge?.[2]['code'], 'KEY_TOO_LARGE');
      assert.equal(c.closed, false, 'a refused request leaves the connection open');
      c.socket.write(encodeFrame([3, 'watch', { key: 'cw/a', since: 4 }]));
      await c.until('its refusal', () => framesOf(c, 3).length > 0);
      const unknown = framesOf(c, 3).at(-1);
      assert.equal(unknown?.[1], 1, JSON.stringify(unknown));
      assert.equal(unknown?.[2]['code'], 'UNKNOWN_FIELD', JSON.stringify(unknown));
      assert.equal(c.closed, false, 'a refused body leaves the connection open');
      assert.equal(framesOf(c, 0).length, 0, 'no connection error');
    } finally {
      c.socket.destroy();
    }
  });

  void it('a connection that stops reading has its watch cancelled with where to resume', async () => {
    const c = await RawConnection.open(cluster.binaryPort(leader));
    try {
      const start = await put('sw/big', 'start');
      c.socket.write(encodeFrame([1, 'watch', { key: 'sw/big', startRevision: start }]));
      await c.until('the created line', () => framesOf(c, 1).length >= 2);
      c.socket.pause();
      const written = [start];
      const value = 'v'.repeat(200_000);
      // Enough to fill the socket's buffers while nothing is read.
      for (let i = 0; i < 60; i++) written.push(await put('sw/big', value));
      c.socket.resume();
      await c.until('the watch to end', () => framesOf(c, 1).some((f) => f[1] !== 2), 20_000);
      const frames = framesOf(c, 1);
      const end = frames.at(-1) as Frame;
      assert.equal(end[1], 1, `an error ends it: ${JSON.stringify(end).slice(0, 300)}`);
      assert.equal(end[2]['code'], 'WATCH_TOO_SLOW');
      const sent = frames
        .filter((f) => f[1] === 2 && f[2]['events'] !== undefined)
        .map((f) => (f[2]['header'] as { revision: number }).revision);
      assert.deepEqual(sent, written.slice(0, sent.length), 'what was sent is a prefix, in order');
      assert.ok(sent.length < written.length, 'it was cut before the end');
      assert.equal(end[2]['resumeRevision'], (sent.at(-1) as number) + 1);
      assert.equal(c.closed, false, 'the connection itself stays open');
    } finally {
      c.socket.destroy();
    }
  });

  void it("the client's watch goes over the protocol and resumes across its node shutting down", async () => {
    const order = [leader, ...[1, 2, 3].filter((id) => id !== leader)];
    const endpoints = order.map((id) => cluster.url(id));
    const watcher = new FlotillaClient({ endpoints });
    const writer = new FlotillaClient({ endpoints });
    const stop = new AbortController();
    try {
      // One call teaches the client the first node's binary port (in an answer's header).
      await watcher.get('rw/none');
      assert.ok(watcher.usesBinary(cluster.url(leader)), 'the client learned the binary port');
      // From the revision after the store's now: a watch that registers after the first put
      // (a loaded machine) must still deliver it.
      const from = (await watcher.range('rw/', { prefix: true, limit: 1 })).header.revision + 1;
      const delivered: number[] = [];
      const watching = (async () => {
        for await (const batch of watcher.watch('rw/', {
          prefix: true,
          signal: stop.signal,
          progressNotifyMs: 200,
          startRevision: from,
        }))
          if (batch.events.length > 0) delivered.push(batch.revision);
      })();
      const acked = [(await writer.put('rw/0', '0')).header.revision];
      const deadline = Date.now() + 10_000;
      while (delivered.length === 0 && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(delivered, acked, 'the first write is delivered');
      assert.ok(
        cluster.node(leader).watchHub.size() >= 1,
        'the watch is on the first endpoint, the leader',
      );
      let failed = 0;
      for (let i = 1; i < 40; i++) {
        if (i === 15) await cluster.node(leader).close();
        try {
          acked.push((await writer.put(`rw/${i}`, String(i))).header.revision);
        } catch {
          failed++;
        }
      }
      const last = acked.at(-1) as number;
      const until = Date.now() + 15_000;
      while (!delivered.includes(last) && Date.now() < until)
        await new Promise((r) => setTimeout(r, 10));
      stop.abort();
      await watching;
      for (let i = 1; i < delivered.length; i++)
        assert.ok(
          (delivered[i] as number) > (delivered[i - 1] as number),
          `revisions in order, none twice: ${delivered.join(',')}`,
        );
      for (const r of acked)
        assert.ok(delivered.includes(r), `revision ${r} delivered (got ${delivered.join(',')})`);
      // The old leader ended its watch on shutdown: a binary-protocol watch, by its metric.
      const counted = (await cluster.node(leader).metrics.httpRequests.get()).values;
      assert.ok(
        counted.some((v) => v.labels['route'] === 'binary:watch' && v.value >= 1),
        `the first stream was a binary watch: ${JSON.stringify(counted.map((v) => v.labels))}`,
      );
      assert.ok(
        delivered.length <= acked.length + failed,
        'nothing delivered that was not written',
      );
    } finally {
      stop.abort();
      await watcher.close();
      await writer.close();
    }
  });
});
