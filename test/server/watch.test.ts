// Watches over HTTP on real in-process nodes: a watch from a past revision replays the history
// and follows new writes; a client's watch survives the shutdown of the node it reads from,
// with every acknowledged revision delivered once and in order; a reader that stops reading is
// cancelled with where to resume, not buffered without bound; the number of watches is bounded.

import assert from 'node:assert/strict';
import { request, type IncomingMessage } from 'node:http';
import { afterEach, test } from 'node:test';
import { FlotillaClient } from '../../src/client/index.js';
import { TestNodes, postJson } from './nodes.js';
import { until } from '../support/until.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function start(config: Record<string, unknown> = {}, clientProtocol = false) {
  const nodes = await TestNodes.start({ nodes: 3, config, clientProtocol });
  cleanups.push(() => nodes.close());
  const leader = await nodes.waitForLeader();
  return { nodes, leader, followers: [1, 2, 3].filter((id) => id !== leader) };
}

interface Line {
  created?: boolean;
  startRevision?: number;
  canceled?: boolean;
  resumeRevision?: number;
  progress?: boolean;
  header?: { revision: number };
  events?: { type: string; kv: { key: string; value: string }; prevKv?: { value: string } }[];
  error?: { code: string; message: string };
}

/** Opens a watch with node:http, paused: nothing is read until a LineReader reads it. */
async function openWatch(url: string, body: unknown): Promise<IncomingMessage> {
  const u = new URL('/v1/watch', url);
  return new Promise((resolve, reject) => {
    const req = request(
      u,
      { method: 'POST', headers: { 'content-type': 'application/json' } },
      (res) => {
        res.pause();
        resolve(res);
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

/**
 * Reads a stream's lines across calls: each call reads until `done` holds of the lines seen in
 * that call (or the stream ends), within `timeoutMs`. The stream stays open between calls.
 */
class LineReader {
  private readonly it: AsyncIterator<Buffer>;
  private buffered = '';
  private readonly queue: Line[] = [];

  constructor(res: IncomingMessage) {
    this.it = (res as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  }

  async until(done: (seen: Line[]) => boolean, timeoutMs = 10_000): Promise<Line[]> {
    const seen: Line[] = [];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.queue.length > 0) {
        seen.push(this.queue.shift() as Line);
        if (done(seen)) return seen;
      }
      const left = deadline - Date.now();
      let timer: NodeJS.Timeout | undefined;
      const next = await Promise.race([
        this.it.next(),
        new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), Math.max(0, left)))),
      ]);
      clearTimeout(timer);
      if (next === 'timeout')
        throw new Error(`not within ${timeoutMs} ms; saw ${JSON.stringify(seen)}`);
      if (next.done === true) return seen;
      this.buffered += next.value.toString('utf8');
      let nl: number;
      while ((nl = this.buffered.indexOf('\n')) >= 0) {
        this.queue.push(JSON.parse(this.buffered.slice(0, nl)) as Line);
        this.buffered = this.buffered.slice(nl + 1);
      }
    }
  }
}

const put = async (url: string, key: string, value: string): Promise<number> => {
  const r = await postJson(`${url}/v1/kv/put`, { key, value }, { timeoutMs: 10_000 });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return (r.json as unknown as Line).header?.revision as number;
};

void test('a watch from a past revision replays, then follows, on a follower', async () => {
  const { nodes, leader, followers } = await start();
  const at = nodes.url(leader);
  const r1 = await put(at, 'w/a', '1');
  await put(at, 'other', 'x');
  const r3 = await put(at, 'w/b', '1');
  const res = await openWatch(nodes.url(followers[0] as number), {
    key: 'w/',
    prefix: true,
    startRevision: r1,
    prevKv: true,
    progressNotifyMs: 100,
  });
  assert.equal(res.statusCode, 200);
  const reader = new LineReader(res);
  const replayed = await reader.until((s) => s.filter((l) => l.events).length >= 2);
  assert.equal(replayed[0]?.created, true);
  assert.equal(replayed[0]?.startRevision, r1);
  const events = replayed.filter((l) => l.events);
  assert.deepEqual(
    events.map((l) => [
      l.header?.revision,
      l.events?.map((e) => `${e.type} ${e.kv.key}=${e.kv.value}`),
    ]),
    [
      [r1, ['put w/a=1']],
      [r3, ['put w/b=1']],
    ],
  );
  const r4 = await put(at, 'w/a', '2');
  const live = await reader.until((s) => s.some((l) => l.events));
  const ev = live.find((l) => l.events);
  assert.equal(ev?.header?.revision, r4);
  assert.deepEqual(ev?.events?.[0]?.prevKv?.value, '1', 'prevKv is the replaced version');
  const idle = await reader.until((s) => s.some((l) => l.progress));
  assert.ok(
    (idle.find((l) => l.progress)?.header?.revision ?? 0) >= r4,
    'a progress line says everything up to its revision was sent',
  );
  res.destroy();
  const compacted = await postJson(`${at}/v1/kv/compact`, { revision: r3 }, { timeoutMs: 10_000 });
  assert.equal(compacted.status, 200, JSON.stringify(compacted.json));
  const gone = await openWatch(at, { key: 'w/a', startRevision: r1 });
  const refused = await new LineReader(gone).until((s) => s.some((l) => l.canceled));
  assert.equal(refused.find((l) => l.canceled)?.error?.code, 'COMPACTED');
  assert.equal(
    (refused.find((l) => l.canceled)?.error as { compactRevision?: number } | undefined)
      ?.compactRevision,
    r3,
  );
});

void test('a client watch resumes across its node shutting down: every revision once, in order', async () => {
  const { nodes, leader, followers } = await start();
  const order = [leader, ...followers];
  const watcher = new FlotillaClient({ endpoints: order.map((id) => nodes.url(id)) });
  const writer = new FlotillaClient({ endpoints: order.map((id) => nodes.url(id)) });
  const stop = new AbortController();
  cleanups.push(async () => {
    stop.abort();
    await watcher.close();
    await writer.close();
  });
  const delivered: number[] = [];
  const acked: number[] = [];
  let failedWrites = 0;
  const watching = (async () => {
    for await (const batch of watcher.watch('w/', {
      prefix: true,
      signal: stop.signal,
      progressNotifyMs: 200,
    })) {
      if (batch.events.length > 0) delivered.push(batch.revision);
    }
  })();
  // The watch is open (on the leader) once a first write shows up in it.
  acked.push((await writer.put('w/0', '0')).header.revision);
  const deadline = Date.now() + 10_000;
  while (delivered.length === 0 && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(delivered, acked, 'the first write is delivered');
  for (let i = 1; i < 60; i++) {
    if (i === 20) await nodes.node(leader).close(); // hands over, ends its watches, stops
    try {
      acked.push((await writer.put(`w/${i}`, String(i))).header.revision);
    } catch {
      failedWrites++;
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
    assert.ok(
      delivered.includes(r),
      `acknowledged revision ${r} delivered (got ${delivered.join(',')})`,
    );
  assert.ok(
    delivered.length <= acked.length + failedWrites,
    `nothing delivered that was not written: ${delivered.join(',')}`,
  );
});

void test('a reader that stops reading is cancelled with where to resume; watches are bounded', async () => {
  const { nodes, leader } = await start({ maxWatchBufferBytes: 1024, maxWatches: 1 });
  const at = nodes.url(leader);
  const first = await put(at, 'big', 'start');
  const res = await openWatch(at, { key: 'big', startRevision: first });
  const second = await postJson(`${at}/v1/watch`, { key: 'x' }, { timeoutMs: 10_000 }).catch(
    (err: unknown) => ({ status: 0, json: { error: String(err) } }),
  );
  assert.equal(second.status, 429, JSON.stringify(second.json));
  const value = 'v'.repeat(200_000);
  const written: number[] = [first];
  // Enough to fill the socket's buffers while the watch is not read.
  for (let i = 0; i < 60; i++) written.push(await put(at, 'big', value));
  const seen = await new LineReader(res).until((s) => s.some((l) => l.canceled), 20_000);
  const cancel = seen.find((l) => l.canceled);
  assert.equal(cancel?.error?.code, 'WATCH_TOO_SLOW', JSON.stringify(cancel));
  const sent = seen.filter((l) => l.events).map((l) => l.header?.revision as number);
  assert.deepEqual(sent, written.slice(0, sent.length), 'what was sent is a prefix, in order');
  assert.ok(sent.length < written.length, 'it was cut before the end');
  assert.equal(
    cancel?.resumeRevision,
    (sent.at(-1) as number) + 1,
    'resume right after the last one sent',
  );
  // The cancelled watch no longer counts against the limit.
  const deadline = Date.now() + 5_000;
  while (nodes.node(leader).watchHub.size() > 0 && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 10));
  assert.equal(nodes.node(leader).watchHub.size(), 0);
});

/** The node's `flotilla_watches` gauge, read from its /metrics as a scraper would. */
async function openWatches(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => /^flotilla_watches[{ ]/.test(l));
  assert.ok(line !== undefined, 'flotilla_watches is exported');
  return Number(line.split(' ').at(-1));
}

async function waitForWatches(url: string, want: number): Promise<void> {
  let seen = -1;
  await until(
    () => `flotilla_watches on ${url} to be ${want}; last seen ${seen}`,
    async () => (seen = await openWatches(url)) === want,
    10_000,
  );
}

void test('watches whose readers went are freed, over HTTP and the binary protocol (/metrics)', async () => {
  const { nodes, followers } = await start({}, true);
  const at = nodes.url(followers[0] as number);
  await waitForWatches(at, 0);
  const http = await Promise.all([1, 2, 3].map((i) => openWatch(at, { key: `gone/${i}` })));
  for (const res of http) await new LineReader(res).until((s) => s.some((l) => l.created));
  const client = new FlotillaClient({ endpoints: [at], rangeRouting: false });
  cleanups.push(() => client.close());
  // Learn the node's binary port first, so the watches go over it.
  await client.put('gone/0', '0');
  assert.ok(client.usesBinary(at), 'the client speaks the binary protocol to the node');
  const stop = new AbortController();
  // Each ends when the client closes under it (CLIENT_CLOSED, or quietly if it saw the abort).
  const wire = [1, 2]
    .map(async (i) => {
      for await (const batch of client.watch(`gone/w${i}`, { signal: stop.signal })) void batch;
    })
    .map((p) =>
      p.then(
        () => 'ended',
        (err: unknown) => (err as { code?: string }).code,
      ),
    );
  await waitForWatches(at, 5);
  for (const res of http) res.destroy();
  await waitForWatches(at, 2);
  await client.close(); // its connections go with the watches on them
  await waitForWatches(at, 0);
  stop.abort();
  for (const how of await Promise.all(wire))
    assert.ok(how === 'ended' || how === 'CLIENT_CLOSED', String(how));
});

void test('HTTP watches beyond the pool size neither wait nor hold up the calls (a keep-alive)', async () => {
  const { nodes, leader } = await start();
  const at = nodes.url(leader);
  // Two connections per endpoint, three watches: a watch holds its connection while it lives.
  const client = new FlotillaClient({
    endpoints: [at],
    protocol: 'http',
    connections: 2,
    timeoutMs: 2_000,
    deadlineMs: 4_000,
  });
  const stop = new AbortController();
  cleanups.push(async () => {
    stop.abort();
    await client.close();
  });
  const seen = new Map<string, number>();
  const watches = ['a', 'b', 'c'].map(async (k) => {
    for await (const batch of client.watch(`pool/${k}`, { signal: stop.signal }))
      for (const e of batch.events) seen.set(e.kv.key, batch.revision);
  });
  await waitForWatches(at, 3);
  const lease = await client.leaseGrant(10);
  await client.leaseKeepAlive(lease.id);
  const revisions = new Map<string, number>();
  for (const k of ['a', 'b', 'c'])
    revisions.set(
      `pool/${k}`,
      (await client.put(`pool/${k}`, k, { lease: lease.id })).header.revision,
    );
  await until(
    () => `every watch to see its key written (${JSON.stringify([...seen])})`,
    () => seen.size === 3,
    10_000,
  );
  assert.deepEqual(seen, revisions, 'every watch saw its key written');
  stop.abort();
  await Promise.all(watches);
});

void test('a watch on a node that has known no leader for a while ends, with where to resume', async () => {
  // It went on saying "nothing new" every progress interval, which kept the client's failover
  // from ever starting, while the rest of the cluster might go on writing (an etcd user's find;
  // etcd's clients ask for the same with WithRequireLeader).
  const { nodes, followers } = await start();
  const watched = followers[0] as number;
  const rev = await put(nodes.url(watched), 'lw', 'v1');
  const res = await openWatch(nodes.url(watched), { key: 'lw', progressNotifyMs: 200 });
  const lines = new LineReader(res);
  await lines.until((seen) => seen.some((l) => l.progress === true));
  // The two others stop: the watched node is left alone, with no leader to be had.
  for (const id of [1, 2, 3].filter((n) => n !== watched)) await nodes.node(id).close();
  const end = await lines.until((seen) => seen.some((l) => l.canceled === true), 15_000);
  const last = end.find((l) => l.canceled === true) as Line;
  assert.equal(last.error?.code, 'NO_LEADER', JSON.stringify(last));
  assert.equal(last.resumeRevision, rev + 1);
});
