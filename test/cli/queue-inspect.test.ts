// `flotilla queue inspect` on data directories left by real nodes, with either storage kind:
// what it prints is what the API said before the node stopped. The node snapshots every 10
// entries, so the queue is rebuilt from a snapshot and the log after it. A directory that holds
// no queue group, and one a running node holds, are refused with a clear error and exit 1.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, test } from 'node:test';
import { openNodeJournal } from '../../src/storage/index.js';
import { SEGMENT_NAME } from '../../src/storage/wal-writer.js';
import { TestNodes, postJson } from '../server/nodes.js';
import { runCli, stopAll } from './run.js';

type Json = Record<string, unknown>;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
after(() => stopAll());

async function ok(nodes: TestNodes, path: string, body: Json): Promise<Json> {
  const r = await postJson(`${nodes.url(1)}/v1/queue/${path}`, body, { timeoutMs: 15_000 });
  assert.equal(r.status, 200, `${path} ${JSON.stringify(body)}: ${JSON.stringify(r.json)}`);
  return r.json;
}

/** Some jobs in every kind of state, in two queues, one paused. */
async function populate(nodes: TestNodes): Promise<void> {
  for (let i = 0; i < 12; i++)
    await ok(nodes, 'add', { queue: 'mail', name: 'send', data: { n: i }, maxAttempts: 2 });
  await ok(nodes, 'add', { queue: 'mail', name: 'later', id: 'later', delayMs: 3_600_000 });
  const claimed = (await ok(nodes, 'claim', { queue: 'mail', max: 3, worker: 'w1' }))['jobs'] as {
    job: Json;
    token: number;
  }[];
  const [a, b] = claimed;
  await ok(nodes, 'complete', { queue: 'mail', id: a?.job['id'], token: a?.token, result: 'ok' });
  await ok(nodes, 'fail', {
    queue: 'mail',
    id: b?.job['id'],
    token: b?.token,
    error: 'smtp down',
    final: true,
  });
  await ok(nodes, 'cancel', { queue: 'mail', id: '#5' });
  await ok(nodes, 'add', { queue: 'other', name: 'x', id: 'other-1' });
  await ok(nodes, 'pause', { queue: 'other' });
}

/** Every job of a queue as the API lists it, by state. */
async function apiJobs(nodes: TestNodes, queue: string): Promise<Json[]> {
  const out: Json[] = [];
  for (const state of ['waiting', 'delayed', 'active', 'completed', 'failed', 'dead', 'cancelled'])
    out.push(...((await ok(nodes, 'list', { queue, state }))['jobs'] as Json[]));
  return out;
}

const essentials = (j: Json): unknown[] => [
  j['queue'],
  j['id'],
  j['state'],
  j['attempts'],
  j['runAtMs'],
  j['error'],
  j['data'],
  j['token'],
];

for (const storage of ['wal', 'sqlite'] as const)
  void test(`queue inspect shows what the API said before the node stopped (${storage})`, async () => {
    const nodes = await TestNodes.start({
      nodes: 1,
      config: { storage, snapshotEveryEntries: 10 },
    });
    cleanups.push(() => nodes.close());
    await nodes.waitForLeader();
    await populate(nodes);
    // The commit index is a restart hint, recorded with the next entries written (the leader
    // ticks every second). Stop once the recorded one covers a job added after the latest
    // snapshot, so the rebuild needs both the snapshot and the log after it to get it right.
    const runtime = nodes.node(1).queueService.runtime;
    const recorded = (): { commit: number; snapshot: number } => {
      const st = runtime.storage.initialState();
      return { commit: st.hardState.commit, snapshot: st.snapshot?.index ?? 0 };
    };
    let settled = false;
    for (let attempt = 0; attempt < 5 && !settled; attempt++) {
      await ok(nodes, 'add', { queue: 'pad', name: 'p', id: `pad-${attempt}` });
      const written = runtime.appliedIndex();
      const deadline = Date.now() + 10_000;
      while (recorded().commit < written && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      const r = recorded();
      assert.ok(r.commit >= written, `last write ${written}, recorded ${JSON.stringify(r)}`);
      settled = r.snapshot > 0 && r.snapshot < written;
    }
    assert.ok(settled, `no job added past the latest snapshot: ${JSON.stringify(recorded())}`);
    const queues = ['mail', 'other', 'pad'];
    const expectedJobs = (await Promise.all(queues.map((q) => apiJobs(nodes, q)))).flat();
    const expectedStats = await Promise.all(
      queues.map(async (queue) => (await ok(nodes, 'stats', { queue }))['stats'] as Json),
    );
    await nodes.stop();

    const dir = nodes.dataDir(1);
    const json = await runCli(['queue', 'inspect', '--data-dir', dir, '--json'], 30_000);
    assert.equal(json.code, 0, json.stderr);
    const seen = JSON.parse(json.stdout) as {
      storage: string;
      snapshotIndex: number;
      appliedIndex: number;
      queues: Json[];
      jobs: Json[];
    };
    assert.equal(seen.storage, storage);
    assert.ok(seen.snapshotIndex > 0, 'rebuilt from a snapshot and the log after it');
    assert.ok(
      seen.appliedIndex > seen.snapshotIndex,
      JSON.stringify({ ...seen, jobs: seen.jobs.length }),
    );
    assert.deepEqual(seen.jobs.map(essentials), expectedJobs.map(essentials));
    assert.deepEqual(
      seen.queues.map((q) => [q['queue'], q['paused'], q['counts'], q['totals']]),
      expectedStats.map((q) => [q['queue'], q['paused'], q['counts'], q['totals']]),
    );

    // Text, filtered: only the dead job of "mail", with its error.
    const dead = await runCli(
      ['queue', 'inspect', '--data-dir', dir, '--queue', 'mail', '--state', 'dead'],
      30_000,
    );
    assert.equal(dead.code, 0, dead.stderr);
    const deadJob = expectedJobs.find((j) => j['state'] === 'dead');
    const rows = dead.stdout.split('\n').filter((l) => l.startsWith('#'));
    assert.equal(rows.length, 1, dead.stdout);
    assert.match(
      rows[0] ?? '',
      new RegExp(`^${deadJob?.['id'] as string}\\s+mail\\s+dead\\s+1/2\\s.*smtp down$`),
    );
    assert.match(dead.stdout, /^mail\s+no\s+8\s+1\s+1\s+1\s+0\s+1\s+1$/m);
    assert.doesNotMatch(dead.stdout, /other/);
  });

// A node run with walSync "shared" acknowledges a write once its node journal holds it; the
// group's own segment receives it after, unsynced. Power lost in between leaves the write in
// the journal only: here the segment's tail is zeroed as lost pages would be, and the journal
// holds those bytes, as the node left it. Inspect must redo the journal into its copy.
void test('queue inspect redoes the node journal a node with a shared sync left behind', async () => {
  const nodes = await TestNodes.start({ nodes: 1, config: { walSync: 'shared' } });
  cleanups.push(() => nodes.close());
  await nodes.waitForLeader();
  await populate(nodes);
  const expected = (await Promise.all(['mail', 'other'].map((q) => apiJobs(nodes, q)))).flat();
  await nodes.stop();

  const dataDir = nodes.dataDir(1);
  const group = join(dataDir, 'group-1');
  const segments = readdirSync(group)
    .filter((n) => SEGMENT_NAME.test(n))
    .sort();
  const last = join(group, segments.at(-1) ?? assert.fail(`no segment in ${group}`));
  const bytes = readFileSync(last);
  // The last third of what the segment holds up to its final non-zero byte: the newest jobs.
  let end = bytes.length;
  while (end > 0 && bytes[end - 1] === 0) end--;
  const cut = Math.floor((end * 2) / 3);
  assert.ok(cut > 0 && end - cut > 64, `segment ${last} holds ${end} bytes`);
  const lost = Buffer.from(bytes.subarray(cut, end));
  const journal = await openNodeJournal(dataDir);
  const segment = {
    path: last,
    write: () => Promise.resolve(), // the pages that never reached the disk
    sync: () => Promise.reject(new Error('power lost')),
  };
  await journal.write(segment, cut, [lost]);
  await assert.rejects(journal.close(), /power lost/); // the journal file stays, as after a crash
  assert.ok(
    readdirSync(dataDir).some((n) => n.startsWith('journal-')),
    'a journal file is left',
  );
  writeFileSync(last, Buffer.concat([bytes.subarray(0, cut), Buffer.alloc(bytes.length - cut)]));

  const json = await runCli(['queue', 'inspect', '--data-dir', dataDir, '--json'], 30_000);
  assert.equal(json.code, 0, json.stderr);
  const seen = JSON.parse(json.stdout) as { jobs: Json[] };
  assert.deepEqual(seen.jobs.map(essentials), expected.map(essentials));
  // Read-only: the node's own directory still holds the journal and the zeroed tail.
  assert.ok(
    readdirSync(dataDir).some((n) => n.startsWith('journal-')),
    'journal left in place',
  );
  assert.ok(
    readFileSync(last)
      .subarray(cut, end)
      .every((b) => b === 0),
    'segment untouched',
  );
});

void test('queue inspect refuses a directory without a queue group, and a running node’s', async () => {
  const garbage = mkdtempSync(join(tmpdir(), 'flotilla-garbage-'));
  cleanups.push(() => rmSync(garbage, { recursive: true, force: true }));
  mkdirSync(join(garbage, 'group-1'));
  writeFileSync(join(garbage, 'group-1', 'notes.txt'), 'not a log');
  writeFileSync(join(garbage, 'flotilla-node.json'), '{"format":2}');
  for (const dir of [garbage, join(garbage, 'missing')]) {
    const r = await runCli(['queue', 'inspect', '--data-dir', dir], 30_000);
    assert.equal(r.code, 1, `${dir}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, /DATA_DIR_INVALID: .*(holds no queue group|is not a directory)/);
    assert.equal(r.stdout, '');
  }
  // A SQLite file that is not a database.
  writeFileSync(join(garbage, 'group-1', 'raft.sqlite'), 'x'.repeat(4096));
  const junk = await runCli(['queue', 'inspect', '--data-dir', garbage], 30_000);
  assert.equal(junk.code, 1, junk.stdout + junk.stderr);
  assert.match(junk.stderr, /^flotilla: \w+: /);

  const nodes = await TestNodes.start({ nodes: 1 });
  cleanups.push(() => nodes.close());
  await nodes.waitForLeader();
  const running = await runCli(['queue', 'inspect', '--data-dir', nodes.dataDir(1)], 30_000);
  assert.equal(running.code, 1, running.stdout + running.stderr);
  assert.match(running.stderr, /STORAGE_LOCKED: .*held by live process/);
  await nodes.stop();
  // A --queue no queue can have is refused (it printed "(no queues)" and exit 0); an unknown
  // one is named.
  const bad = await runCli(
    ['queue', 'inspect', '--data-dir', nodes.dataDir(1), '--queue', 'bad name'],
    30_000,
  );
  assert.equal(bad.code, 1, bad.stdout + bad.stderr);
  assert.match(bad.stderr, /BAD_REQUEST: --queue must be 1 to 128 letters/);
  const unknown = await runCli(
    ['queue', 'inspect', '--data-dir', nodes.dataDir(1), '--queue', 'insp'],
    30_000,
  );
  assert.equal(unknown.code, 0, unknown.stdout + unknown.stderr);
  assert.match(unknown.stdout, /\(no queue named "insp" here\)/);
});
