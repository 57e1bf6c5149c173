// A member's disk fills up under a running cluster: a follower's data directory lies on a small
// tmpfs, which the test fills while writes go on. The follower's key-value group stops (a
// failed write is latched: STORAGE.md, "Guarantees"); the node must say so where an operator
// and an orchestrator look (/readyz, /healthz, /v1/status, /metrics) rather than report itself
// ready while it applies nothing, the others must go on serving, and once space is freed a
// restart must bring it back with every acknowledged write. Mounting needs root: without it the
// test skips, saying why.

import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, openSync, closeSync, rmSync, rmdirSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, test } from 'node:test';
import { cliEntry } from '../../src/cli/cluster.js';
import { FlotillaClient } from '../../src/client/index.js';
import { TestNodes, postJson, until } from './nodes.js';

const execFileAsync = promisify(execFile);
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A small tmpfs of our own, unmounted and removed after the test; null (why) without root. */
function smallDisk(sizeMb: number): { dir: string } | { skip: string } {
  if (process.getuid?.() !== 0) return { skip: 'mounting a small file system needs root' };
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-full-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMb}m`, 'tmpfs', dir]);
  } catch (err) {
    rmdirSync(dir);
    return { skip: `cannot mount a tmpfs: ${String(err)}` };
  }
  cleanups.push(() => {
    execFileSync('umount', [dir]);
    rmdirSync(dir);
  });
  return { dir };
}

/** Writes zeros to `file` until the file system refuses with ENOSPC; returns the bytes written. */
function fill(file: string): number {
  const fd = openSync(file, 'w');
  const block = Buffer.alloc(64 * 1024);
  let written = 0;
  try {
    for (let i = 0; i < 100_000; i++) written += writeSync(fd, block);
    throw new Error(`${file}: no ENOSPC after ${written} bytes`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
  return written;
}

async function get(url: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(new Error(`${url}: no answer within 5 s`)), 5_000);
  try {
    const res = await fetch(url, { signal: ac.signal });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  } finally {
    clearTimeout(timer);
  }
}

async function put(url: string, key: string): Promise<boolean> {
  const r = await postJson(
    `${url}/v1/kv/put`,
    { key, value: 'v'.repeat(512) },
    { timeoutMs: 8_000 },
  );
  return r.status === 200;
}

async function keysOn(url: string): Promise<Set<string>> {
  const r = await postJson(
    `${url}/v1/kv/range`,
    {
      key: 'k',
      prefix: true,
      consistency: 'serializable',
      limit: 100_000,
    },
    { timeoutMs: 5_000 },
  );
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return new Set((r.json['kvs'] as { key: string }[]).map((kv) => kv.key));
}

/**
 * Three nodes, node 3's data directory on an 8 MB tmpfs of its own, closed after the test; or
 * why not (mounting needs root), for the test to skip saying so.
 */
async function nodesWithSmallDisk(): Promise<
  { disk: { dir: string }; nodes: TestNodes } | { skip: string }
> {
  const disk = smallDisk(8);
  if ('skip' in disk) return disk;
  const nodes = await TestNodes.start({
    nodes: 3,
    configOf: (id) => (id === 3 ? { dataDir: join(disk.dir, 'data') } : {}),
  });
  cleanups.push(() => nodes.close());
  return { disk, nodes };
}

void test('a follower whose disk fills says so, the others serve, and a restart brings it back', async (t) => {
  const started = await nodesWithSmallDisk();
  if ('skip' in started) {
    t.skip(started.skip);
    return;
  }
  const { disk, nodes } = started;
  let leader = await nodes.waitForLeader();
  // Node 3 must be a follower: hand leadership away (refused until node 1 has answered it).
  leader = await until('a leader other than node 3', () => {
    const l = nodes.node(1).runtime.leaderId();
    if (l !== 3) return l !== 0 && l;
    try {
      nodes.node(3).runtime.transferLeadership(1);
    } catch {
      // Not yet: asked again on the next poll.
    }
    return false;
  });
  const acked: string[] = [];
  for (let i = 0; i < 20; i++) if (await put(nodes.url(leader), `k${i}`)) acked.push(`k${i}`);
  // A watch on node 3: it must end when the group stops, so that its client resumes elsewhere.
  const watch = await fetch(`${nodes.url(3)}/v1/watch`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ key: 'k', prefix: true }),
    signal: AbortSignal.timeout(60_000),
  });
  assert.equal(watch.status, 200);
  const watchEnded = watch.text().then(
    (text) => ({ text }),
    (err: unknown) => ({ text: `the stream failed: ${String(err)}` }),
  );
  // And the client's watch, node 3 first: it must go on through another node.
  const client = new FlotillaClient({ endpoints: [nodes.url(3), nodes.url(leader)] });
  const stopWatching = new AbortController();
  cleanups.push(async () => {
    stopWatching.abort();
    await client.close();
  });
  const watchedFrom = acked.length;
  const seen = new Set<string>();
  const watching = (async () => {
    for await (const batch of client.watch('k', { prefix: true, signal: stopWatching.signal }))
      for (const e of batch.events) seen.add(e.kv.key);
  })().catch((err: unknown) => seen.add(`watch failed: ${String(err)}`));
  const filler = join(disk.dir, 'filler');
  fill(filler);

  // Writes go on through the leader until node 3's key-value group fails its write.
  let i = 20;
  await until(
    () =>
      `node 3's key-value group stopped (status ${JSON.stringify(nodes.node(3).nodeStatus().stoppedGroups)})`,
    async () => {
      for (let n = 0; n < 10; n++, i++)
        if (await put(nodes.url(leader), `k${i}`)) acked.push(`k${i}`);
      return (nodes.node(3).nodeStatus().stoppedGroups ?? []).some((g) => g.group === 0);
    },
    30_000,
  );

  const url3 = nodes.url(3);
  const ready = await get(`${url3}/readyz`);
  assert.equal(ready.status, 503, JSON.stringify(ready.json));
  assert.match(
    String(ready.json['reason']),
    /stopped after a storage failure \(.*ENOSPC.*\); restart the node/,
  );
  const live = await get(`${url3}/healthz`);
  assert.equal(live.status, 503, JSON.stringify(live.json));
  assert.equal(live.json['ok'], false);
  const status = await get(`${url3}/v1/status`);
  const stopped = status.json['stoppedGroups'] as { group: number; error: string }[];
  assert.ok(
    stopped.some((g) => g.group === 0 && /ENOSPC/.test(g.error)),
    JSON.stringify(stopped),
  );
  const metrics = await (await fetch(`${url3}/metrics`)).text();
  const stoppedGauge = /flotilla_raft_groups\{state="stopped"[^}]*\} (\d+)/.exec(metrics);
  assert.ok(stoppedGauge !== null && Number(stoppedGauge[1]) >= 1, 'no stopped groups in /metrics');
  // The healthy members are unaffected.
  for (const id of [1, 2]) assert.equal((await get(`${nodes.url(id)}/healthz`)).status, 200);
  // Its watch ended, telling the client to resume on another node; a new one is refused.
  const { text } = await watchEnded;
  const last = JSON.parse(text.trim().split('\n').at(-1) ?? '{}') as {
    canceled?: boolean;
    error?: { code: string; message: string };
    resumeRevision?: number;
  };
  assert.equal(last.canceled, true, text.slice(-500));
  assert.equal(last.error?.code, 'WATCH_RESET', text.slice(-500));
  assert.match(last.error?.message ?? '', /storage failure; resume the watch on another node/);
  assert.equal(typeof last.resumeRevision, 'number', text.slice(-500));
  const another = await postJson(`${url3}/v1/watch`, { key: 'k' }, { timeoutMs: 5_000 });
  assert.equal(another.json['canceled'], true, JSON.stringify(another.json));
  assert.equal((another.json['error'] as { code: string }).code, 'STORAGE_FAILED');
  // `flotilla status` says node 3 stopped, not that it still leads or follows.
  const { stdout } = await execFileAsync(process.execPath, [
    cliEntry(),
    'status',
    '--endpoints',
    [1, 2, 3].map((id) => nodes.url(id)).join(','),
  ]);
  assert.match(
    stdout,
    /^3\s+\d+\s+\S+\s+stopped \(disk failed as (follower|leader|candidate)\)/m,
    stdout,
  );
  assert.doesNotMatch(stdout, /^[12]\s+\d+\s+\S+\s+stopped/m, stdout);
  // A serializable read is refused too: what the stopped group applied lags for good.
  const stale = await postJson(
    `${url3}/v1/kv/range`,
    { key: 'k', prefix: true, consistency: 'serializable' },
    { timeoutMs: 5_000 },
  );
  assert.equal(stale.status, 500, JSON.stringify(stale.json));
  assert.equal((stale.json['error'] as { code: string }).code, 'STORAGE_FAILED');

  // The other two still make a majority: writes go on, through node 3 too (forwarded).
  for (let n = 0; n < 10; n++, i++) {
    assert.ok(await put(nodes.url(leader), `k${i}`), `write k${i} refused with node 3 stopped`);
    acked.push(`k${i}`);
  }

  const wanted = acked.slice(watchedFrom);
  await until(
    () =>
      `the client's watch to see ${wanted.filter((k) => !seen.has(k)).join(' ')} (seen ${[...seen].join(' ')})`,
    () => wanted.every((k) => seen.has(k)),
    20_000,
  );
  stopWatching.abort();
  await watching;
  // A client that asks node 3 first is refused there and answered by another node.
  const fresh = new FlotillaClient({ endpoints: [url3, nodes.url(leader)], rangeRouting: false });
  cleanups.push(() => fresh.close());
  for (const consistency of ['linearizable', 'serializable'] as const) {
    const got = await fresh.get(wanted.at(-1) ?? 'k0', { consistency });
    assert.equal(got?.value, 'v'.repeat(512), consistency);
  }

  rmSync(filler);
  await nodes.restartAt(3, undefined);
  assert.equal((await get(`${url3}/healthz`)).status, 200);
  for (const id of [1, 2, 3]) {
    await until(
      `node ${id} holds all ${acked.length} acknowledged writes`,
      async () => {
        const have = await keysOn(nodes.url(id));
        return acked.every((k) => have.has(k));
      },
      20_000,
    );
  }
  assert.deepEqual(nodes.node(3).nodeStatus().stoppedGroups, []);
});

void test('a queue leader whose disk fills ends the claims waiting on it at once, not at their deadline', async (t) => {
  const started = await nodesWithSmallDisk();
  if ('skip' in started) {
    t.skip(started.skip);
    return;
  }
  const { disk, nodes } = started;
  await nodes.waitForLeader();
  // Node 3 must lead the queue group: hand its leadership there.
  const queueLeader = (): number => nodes.node(1).queueService.runtime.leaderId();
  await until('node 3 leading the queue group', () => {
    const l = queueLeader();
    if (l === 3) return true;
    if (l !== 0) {
      try {
        nodes.node(l).queueService.runtime.transferLeadership(3);
      } catch {
        // Not yet: asked again on the next poll.
      }
    }
    return false;
  });
  const url3 = nodes.url(3);
  const add = (queue: string): Promise<{ status: number; json: Record<string, unknown> }> =>
    postJson(
      `${url3}/v1/queue/add`,
      { queue, name: 'n', data: 'x'.repeat(512) },
      { timeoutMs: 8_000 },
    );
  assert.equal((await add('busy')).status, 200);
  // A worker waits on node 3 for a job on a queue nothing is added to, as long as it may.
  const waitMs = 30_000;
  const claim = postJson(
    `${url3}/v1/queue/claim`,
    { queue: 'idle', worker: 'w', waitMs },
    { timeoutMs: waitMs - 5_000 },
  );
  await until('the claim waiting on node 3', async () => {
    const metrics = await (await fetch(`${url3}/metrics`)).text();
    return /^flotilla_queue_claim_waiters(\{[^}]*\})? [1-9]/m.test(metrics);
  });
  fill(join(disk.dir, 'filler'));
  // Adds to another queue until node 3's queue group fails its write and stops. Once the disk
  // is full an add may fail or go unanswered: that is what the loop waits for, and the last
  // outcome is named if the group never stops.
  let lastAdd = 'none yet';
  await until(
    () =>
      `node 3's queue group stopped (status ${JSON.stringify(nodes.node(3).nodeStatus().stoppedGroups)}; last add: ${lastAdd})`,
    async () => {
      lastAdd = await add('busy').then(
        (r) => `${r.status} ${JSON.stringify(r.json).slice(0, 200)}`,
        (err: unknown) => `no answer: ${String(err)}`,
      );
      return (nodes.node(3).nodeStatus().stoppedGroups ?? []).some((g) => g.group === 1);
    },
    20_000,
  );
  // Refused well before its deadline: the postJson above gives up 5 s before it.
  const r = await claim;
  assert.equal(r.status, 500, JSON.stringify(r.json));
  assert.equal(
    (r.json['error'] as { code: string }).code,
    'STORAGE_FAILED',
    JSON.stringify(r.json),
  );
});
