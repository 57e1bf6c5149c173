// `flotilla queue` against in-process nodes: add from the command line, then `work` runs a
// command per job with the data on its standard input and its id in the environment; exit 0
// completes the job, anything else fails it; Ctrl-C (SIGINT) stops the worker cleanly.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, test } from 'node:test';
import { FlotillaClient } from '../../src/client/index.js';
import { TestNodes } from '../server/nodes.js';
import { until } from '../support/until.js';
import { exitOf, runCli, startCli, stopAll, waitForOutput } from './run.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
after(() => stopAll());

/** In-process nodes with a leader, and a client of them; both closed after the test. */
async function cluster(n: number): Promise<{ client: FlotillaClient; endpoints: string }> {
  const nodes = await TestNodes.start({ nodes: n });
  cleanups.push(() => nodes.close());
  await nodes.waitForLeader();
  const client = new FlotillaClient({ endpoints: nodes.urls });
  cleanups.push(() => client.close());
  return { client, endpoints: nodes.urls.join(',') };
}

void test('queue add, then queue work: exit 0 completes, anything else fails', async () => {
  const { client, endpoints } = await cluster(3);
  const good = await runCli(
    ['queue', '--endpoints', endpoints, 'add', 'jobs', '{"ok":true}'],
    20_000,
  );
  assert.equal(good.code, 0, good.stderr);
  const bad = await runCli(
    ['queue', '--endpoints', endpoints, 'add', 'jobs', '{"ok":false}', '--attempts', '1'],
    20_000,
  );
  assert.equal(bad.code, 0, bad.stderr);
  const badId = (JSON.parse(bad.stdout) as { id: string }).id;
  // The command reads the job's data and exits 0 or 3 by it, printing its id.
  const script =
    'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{console.log("job",process.env.FLOTILLA_JOB_ID);' +
    'process.exit(JSON.parse(s).ok?0:3)})';
  const work = startCli([
    'queue',
    '--endpoints',
    endpoints,
    'work',
    'jobs',
    '--',
    process.execPath,
    '-e',
    script,
  ]);
  const q = client.queue('jobs');
  const deadline = Date.now() + 20_000;
  let counts = (await q.stats()).stats?.counts;
  while ((counts?.completed !== 1 || counts.dead !== 1) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    counts = (await q.stats()).stats?.counts;
  }
  assert.deepEqual([counts?.completed, counts?.dead], [1, 1], JSON.stringify(counts));
  assert.match((await q.get(badId)).job.error ?? '', /exit 3/);
  assert.match(work.out.stdout, /job /);
  // Each job's outcome is a line on standard error as it happens.
  const goodId = (JSON.parse(good.stdout) as { id: string }).id;
  await waitForOutput(work, new RegExp(`job ${goodId}: completed`), 10_000);
  await waitForOutput(work, new RegExp(`job ${badId}: failed: exit 3`), 10_000);
  work.child.kill('SIGINT');
  assert.equal(await exitOf(work, 20_000), 0, work.out.stderr);
});

void test('queue config and queue repeat add|list|remove', async () => {
  const nodes = await TestNodes.start({ nodes: 1 });
  cleanups.push(() => nodes.close());
  await nodes.waitForLeader();
  const endpoints = nodes.urls.join(',');
  const cli = async (...args: string[]): Promise<Record<string, unknown>> => {
    const r = await runCli(['queue', '--endpoints', endpoints, ...args], 20_000);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  };
  // cq does not exist yet: config makes it only when told to.
  await cli(
    'config',
    'cq',
    '--create',
    '--rate',
    '5/1000',
    '--concurrency',
    '2',
    '--keep-dead',
    '7:60000',
    '--max-releases',
    '1',
  );
  const stats = (await cli('stats', 'cq'))['stats'] as Record<string, unknown>;
  assert.deepEqual(
    [stats['rateLimit'], stats['concurrency'], stats['keepDead'], stats['maxReleases']],
    [{ max: 5, intervalMs: 1000 }, 2, { count: 7, ageMs: 60_000 }, 1],
  );
  const badReleases = await runCli(
    ['queue', '--endpoints', endpoints, 'config', 'cq', '--max-releases', '-1'],
    20_000,
  );
  assert.notEqual(badReleases.code, 0);
  assert.match(badReleases.stderr, /--max-releases/);
  await cli('config', 'cq', '--rate', 'none');
  assert.equal(((await cli('stats', 'cq'))['stats'] as Record<string, unknown>)['rateLimit'], null);
  const badRate = await runCli(
    ['queue', '--endpoints', endpoints, 'config', 'cq', '--rate', '5'],
    20_000,
  );
  assert.notEqual(badRate.code, 0);
  assert.match(badRate.stderr, /MAX\/MS/);
  const none = await runCli(['queue', '--endpoints', endpoints, 'config', 'cq'], 20_000);
  assert.notEqual(none.code, 0, 'a config naming no setting is refused');
  // A name no queue has: the answer says null, and standard error says why, for a typo.
  const unknown = await runCli(['queue', '--endpoints', endpoints, 'stats', 'cqq'], 20_000);
  assert.equal(unknown.code, 0, unknown.stderr);
  assert.equal((JSON.parse(unknown.stdout) as { stats: unknown }).stats, null);
  assert.match(unknown.stderr, /no queue "cqq" on this cluster \(did you mean "cq"\?\)/);
  const known = await runCli(['queue', '--endpoints', endpoints, 'stats', 'cq'], 20_000);
  assert.equal(known.stderr, '', 'a queue that exists gets no note');
  const added = await cli('repeat', 'add', 'cq', 'daily', '{"d":1}', '--cron', '15 4 * * *');
  assert.equal(new Date(added['nextRunMs'] as number).getUTCHours(), 4);
  const listed = (await cli('repeat', 'list', 'cq'))['repeatables'] as Record<string, unknown>[];
  assert.deepEqual(
    listed.map((r) => [r['repeatId'], r['cron'], r['data']]),
    [['daily', '15 4 * * *', { d: 1 }]],
  );
  const both = await runCli(
    [
      'queue',
      '--endpoints',
      endpoints,
      'repeat',
      'add',
      'cq',
      'x',
      '--every',
      '5',
      '--cron',
      '* * * * *',
    ],
    20_000,
  );
  assert.notEqual(both.code, 0, 'both --every and --cron is refused');
  await cli('repeat', 'remove', 'cq', 'daily');
  assert.deepEqual((await cli('repeat', 'list', 'cq'))['repeatables'], []);
});

void test('queue pause|resume|config refuse a queue that does not exist unless --create; queue ls', async () => {
  const { client, endpoints } = await cluster(1);
  const run = (...args: string[]) => runCli(['queue', '--endpoints', endpoints, ...args], 20_000);
  const statsOf = async (name: string) => (await client.queue(name).stats()).stats;
  assert.equal((await run('add', 'emails', '{"to":"a@example.com"}')).code, 0);
  // A typo: refused as a usage error, naming the queue and the way to make it on purpose, and
  // nothing is created (it would count against the cluster's queues for good).
  for (const args of [
    ['pause', 'emials'],
    ['resume', 'emials'],
    ['config', 'emials', '--concurrency', '2'],
  ]) {
    const typo = await run(...args);
    assert.equal(typo.code, 2, `${args.join(' ')}: ${typo.stderr}`);
    assert.equal(typo.stdout, '');
    assert.match(
      typo.stderr,
      /no queue "emials" on this cluster \(did you mean "emails"\?\); nothing was changed/,
    );
    assert.match(typo.stderr, /--create/);
    assert.equal(await statsOf('emials'), null, `${args[0]} created the queue`);
  }
  // A queue that exists needs no flag.
  assert.equal((await run('pause', 'emails')).code, 0);
  assert.equal((await statsOf('emails'))?.paused, true);
  assert.equal((await run('config', 'emails', '--concurrency', '3')).code, 0);
  assert.equal((await statsOf('emails'))?.concurrency, 3);
  assert.equal((await run('resume', 'emails')).code, 0);
  assert.equal((await statsOf('emails'))?.paused, false);
  // --create makes the queue on purpose, and is no setting of config.
  const created = await run('pause', 'later', '--create');
  assert.equal(created.code, 0, created.stderr);
  assert.equal((await statsOf('later'))?.paused, true);
  const configured = await run('config', 'fresh', '--concurrency', '4', '--create');
  assert.equal(configured.code, 0, configured.stderr);
  assert.equal((await statsOf('fresh'))?.concurrency, 4);
  // Two letters swapped, the commonest slip, is one edit from the name meant.
  const swapped = await run('pause', 'fersh');
  assert.equal(swapped.code, 2, swapped.stderr);
  assert.match(swapped.stderr, /no queue "fersh" on this cluster \(did you mean "fresh"\?\)/);
  // A name near none of them is refused without a suggestion.
  const far = await run('pause', 'zzzzzzzz');
  assert.equal(far.code, 2, far.stderr);
  assert.match(far.stderr, /no queue "zzzzzzzz" on this cluster; nothing was changed/);
  // `queue ls` lists them in name order, a page at a time.
  const ls = await run('ls');
  assert.equal(ls.code, 0, ls.stderr);
  const listed = JSON.parse(ls.stdout) as { queues: { queue: string; paused: boolean }[] };
  assert.deepEqual(
    listed.queues.map((q) => [q.queue, q.paused]),
    [
      ['emails', false],
      ['fresh', false],
      ['later', true],
    ],
  );
  const page = JSON.parse((await run('ls', '--limit', '1', '--after', 'emails')).stdout) as {
    queues: { queue: string }[];
    next: string | null;
  };
  assert.deepEqual([page.queues.map((q) => q.queue), page.next], [['fresh'], 'fresh']);
  const bad = await run('ls', '--limit', '0');
  assert.equal(bad.code, 2, bad.stderr);
});

void test('queue add-bulk adds a file of lines in bulk adds; a bad line adds nothing', async () => {
  const { client, endpoints } = await cluster(3);
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-bulk-'));
  cleanups.push(() => Promise.resolve(rmSync(dir, { recursive: true, force: true })));
  const file = join(dir, 'jobs.ndjson');
  const lines = Array.from({ length: 25 }, (_, i) => JSON.stringify({ n: i }));
  writeFileSync(file, lines.slice(0, 10).join('\n') + '\n\n' + lines.slice(10).join('\n') + '\n');
  const r = await runCli(
    ['queue', '--endpoints', endpoints, 'add-bulk', 'bulk', '--file', file, '--batch', '7'],
    20_000,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { queue: 'bulk', jobs: 25, duplicates: 0 });
  const q = client.queue('bulk');
  assert.equal((await q.stats()).stats?.counts.waiting, 25);
  const page = await q.list('waiting', { limit: 100 });
  assert.deepEqual(
    page.jobs.map((j) => (j.data as { n: number }).n),
    Array.from({ length: 25 }, (_, i) => i),
  );
  // Line 12 of this file (after a blank line) is not JSON: refused, naming it, nothing added.
  writeFileSync(file, lines.slice(0, 10).join('\n') + '\n\n' + '{"n": 1' + '\n' + lines[11]);
  const bad = await runCli(
    ['queue', '--endpoints', endpoints, 'add-bulk', 'other', '--file', file],
    20_000,
  );
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /line 12 is not JSON/);
  assert.equal((await client.queue('other').stats()).stats, null);
  // Line 3's data is one byte over the limit as JSON: refused before lines 1 and 2 go in.
  const over = JSON.stringify('a'.repeat(256 * 1024 - 1));
  writeFileSync(file, `${lines[0]}\n${lines[1]}\n${over}\n`);
  const big = await runCli(
    ['queue', '--endpoints', endpoints, 'add-bulk', 'another', '--file', file, '--batch', '1'],
    20_000,
  );
  assert.notEqual(big.code, 0);
  assert.match(
    big.stderr,
    /VALUE_TOO_LARGE: line 3: the job's data is 262145 bytes as JSON; the limit is 262144; nothing was added/,
  );
  assert.equal((await client.queue('another').stats()).stats, null);
});

void test('queue add QUEUE - takes the data from standard input', async () => {
  const { client, endpoints } = await cluster(1);
  const add = async (input: Buffer): Promise<{ code: number | string; out: string }> => {
    const run = startCli(
      ['queue', '--endpoints', endpoints, 'add', 'piped', '-'],
      {},
      {
        stdin: true,
      },
    );
    run.child.stdin?.end(input);
    const code = await exitOf(run, 20_000);
    return { code, out: run.out.stdout + run.out.stderr };
  };
  const json = await add(Buffer.from('{"to": "a@example.com", "n": [1, 2]}\n'));
  assert.equal(json.code, 0, json.out);
  const text = await add(Buffer.from('two lines,\nüñïcode\n'));
  assert.equal(text.code, 0, text.out);
  const q = client.queue('piped');
  const page = await q.list('waiting', { limit: 10 });
  assert.deepEqual(
    page.jobs.map((j) => j.data),
    [{ to: 'a@example.com', n: [1, 2] }, 'two lines,\nüñïcode\n'],
  );
  const binary = await add(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]));
  assert.notEqual(binary.code, 0);
  assert.match(binary.out, /standard input is not UTF-8 text/);
  assert.equal((await q.stats()).stats?.counts.waiting, 2, 'the refused input added nothing');
});

void test('queue add and add-bulk: JSON after a byte-order mark is that JSON; add-bulk takes UTF-8 only', async () => {
  const { client, endpoints } = await cluster(1);
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-bom-'));
  cleanups.push(() => Promise.resolve(rmSync(dir, { recursive: true, force: true })));
  const bom = Buffer.from([0xef, 0xbb, 0xbf]);
  const add = async (input: Buffer): Promise<{ code: number | string; out: string }> => {
    const run = startCli(
      ['queue', '--endpoints', endpoints, 'add', 'marked', '-'],
      {},
      { stdin: true },
    );
    run.child.stdin?.end(input);
    const code = await exitOf(run, 20_000);
    return { code, out: run.out.stdout + run.out.stderr };
  };
  // A JSON file an editor saved with a mark: its JSON, not a refusal quoting an invisible
  // character. Text that is not JSON stays as it is, mark and all.
  const json = await add(Buffer.concat([bom, Buffer.from('{"to": "a@example.com"}\n')]));
  assert.equal(json.code, 0, json.out);
  const text = await add(Buffer.concat([bom, Buffer.from('plain')]));
  assert.equal(text.code, 0, text.out);
  const marked = await client.queue('marked').list('waiting', { limit: 10 });
  assert.deepEqual(
    marked.jobs.map((j) => j.data),
    [{ to: 'a@example.com' }, '\uFEFFplain'],
  );

  const file = join(dir, 'jobs.ndjson');
  writeFileSync(file, Buffer.concat([bom, Buffer.from('{"n":1}\n{"n":2}\n')]));
  const bulk = await runCli(
    ['queue', '--endpoints', endpoints, 'add-bulk', 'bulk-marked', '--file', file],
    20_000,
  );
  assert.equal(bulk.code, 0, bulk.stderr);
  const page = await client.queue('bulk-marked').list('waiting', { limit: 10 });
  assert.deepEqual(
    page.jobs.map((j) => j.data),
    [{ n: 1 }, { n: 2 }],
  );
  // A byte that is not UTF-8 is refused, as `queue add -` refuses it, rather than added as
  // U+FFFD: the job's data would differ from the file's without a word.
  writeFileSync(
    file,
    Buffer.concat([Buffer.from('{"n":1}\n{"s":"x'), Buffer.from([0xff]), Buffer.from('y"}\n')]),
  );
  const binary = await runCli(
    ['queue', '--endpoints', endpoints, 'add-bulk', 'bulk-binary', '--file', file],
    20_000,
  );
  assert.notEqual(binary.code, 0, binary.stdout);
  assert.match(binary.stderr, /is not UTF-8 text/);
  assert.equal((await client.queue('bulk-binary').stats()).stats, null, 'nothing was added');
});

void test('queue repeat add QUEUE ID - takes the data from standard input, as queue add does', async () => {
  const { client, endpoints } = await cluster(1);
  const run = startCli(
    [
      'queue',
      '--endpoints',
      endpoints,
      'repeat',
      'add',
      'piped-repeat',
      'nightly',
      '-',
      '--cron',
      '0 3 * * *',
    ],
    {},
    { stdin: true },
  );
  run.child.stdin?.end('{"report": "sales"}\n');
  assert.equal(await exitOf(run, 20_000), 0, run.out.stderr);
  // Taken as the text "-" before, every job of the schedule carried that.
  const { repeatables } = await client.queue('piped-repeat').repeatables();
  assert.deepEqual(
    repeatables.map((r) => [r.repeatId, r.data]),
    [['nightly', { report: 'sales' }]],
  );
});

void test('queue work records HOST:PID as the worker of the jobs it claims, or its --name', async () => {
  const { client, endpoints } = await cluster(1);
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-named-'));
  cleanups.push(() => Promise.resolve(rmSync(dir, { recursive: true, force: true })));
  const q = client.queue('named');
  // Each job's command runs until the test creates the file named after the job.
  const command = [
    process.execPath,
    '-e',
    'const f=require("path").join(process.argv[1],process.env.FLOTILLA_JOB_ID.replace("#",""));' +
      'const t=setInterval(()=>{if(require("fs").existsSync(f))clearInterval(t)},20)',
    dir,
  ];
  const workerOf = async (
    extra: string[],
  ): Promise<{ worker: string; pid: number | undefined }> => {
    const run = startCli([
      'queue',
      '--endpoints',
      endpoints,
      'work',
      'named',
      ...extra,
      '--',
      ...command,
    ]);
    const { id } = await q.add('job', null);
    const worker = await until(
      () => `job ${id} active\n${run.out.stderr}`,
      async () => {
        const { job } = await q.get(id);
        return job.state === 'active' ? job.worker : null;
      },
    );
    writeFileSync(join(dir, id.replace('#', '')), '');
    await waitForOutput(run, new RegExp(`job ${id}: completed`), 20_000);
    run.child.kill('SIGINT');
    assert.equal(await exitOf(run, 20_000), 0, run.out.stderr);
    return { worker: worker ?? '(none)', pid: run.child.pid };
  };
  const byDefault = await workerOf([]);
  assert.equal(byDefault.worker, `${hostname()}:${byDefault.pid}`);
  assert.equal((await workerOf(['--name', 'mailer-7'])).worker, 'mailer-7');
});

void test('queue work: a command that does not read its standard input still completes', async () => {
  const { client, endpoints } = await cluster(1);
  const q = client.queue('deaf');
  // Data past what the pipe (a socket pair) buffers, so writing it outlives the command's input.
  const big = 'x'.repeat(260_000);
  for (let i = 0; i < 3; i++) await q.add('j', { big, i });
  // Closes its standard input at once, then exits 0 a little later: the worker's write of the
  // data meets a closed pipe (EPIPE), which must not take the worker down.
  const script = 'require("fs").closeSync(0);setTimeout(()=>process.exit(0),200)';
  const work = startCli([
    'queue',
    '--endpoints',
    endpoints,
    'work',
    'deaf',
    '--concurrency',
    '3',
    '--',
    process.execPath,
    '-e',
    script,
  ]);
  const deadline = Date.now() + 20_000;
  let counts = (await q.stats()).stats?.counts;
  while (counts?.completed !== 3 && Date.now() < deadline && work.child.exitCode === null) {
    await new Promise((r) => setTimeout(r, 100));
    counts = (await q.stats()).stats?.counts;
  }
  assert.equal(work.child.exitCode, null, `the worker exited: ${work.out.stderr}`);
  assert.equal(counts?.completed, 3, JSON.stringify(counts));
  work.child.kill('SIGINT');
  assert.equal(await exitOf(work, 20_000), 0, work.out.stderr);
  assert.doesNotMatch(work.out.stderr, /EPIPE/);
});

void test('queue add-bulk splits a file of large jobs into writes that fit a log entry', async () => {
  // A log entry of about 300 KB here: a batch of two 250 KB jobs is refused whole
  // (PROPOSAL_TOO_LARGE) and must be split again, one job per write.
  const nodes = await TestNodes.start({ nodes: 1, config: { maxValueBytes: 300_000 } });
  cleanups.push(() => nodes.close());
  await nodes.waitForLeader();
  const client = new FlotillaClient({ endpoints: nodes.urls });
  cleanups.push(() => client.close());
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-bulk-'));
  cleanups.push(() => Promise.resolve(rmSync(dir, { recursive: true, force: true })));
  const file = join(dir, 'big.ndjson');
  const lines = Array.from({ length: 5 }, (_, i) =>
    JSON.stringify({ i, pad: 'x'.repeat(250_000) }),
  );
  writeFileSync(file, lines.join('\n') + '\n');
  const q = client.queue('big');
  // The same five in one bulk add: refused, nothing added.
  await assert.rejects(
    q.addBulk(lines.map((l) => ({ name: 'job', data: JSON.parse(l) as unknown }))),
    (err: Error & { code?: string }) => err.code === 'PROPOSAL_TOO_LARGE',
  );
  assert.equal((await q.stats()).stats, null);
  const r = await runCli(
    ['queue', '--endpoints', nodes.urls.join(','), 'add-bulk', 'big', '--file', file],
    30_000,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { queue: 'big', jobs: 5, duplicates: 0 });
  const page = await q.list('waiting', { limit: 10 });
  assert.deepEqual(
    page.jobs.map((j) => (j.data as { i: number }).i),
    [0, 1, 2, 3, 4],
  );
});

void test('queue list and repeat list page on with --after, from the "next" they print', async () => {
  const { client, endpoints } = await cluster(1);
  const q = client.queue('paged');
  for (let i = 0; i < 5; i++) await q.add('j', i, { id: `p${i}` });
  for (let i = 0; i < 3; i++) await q.repeat(`r${i}`, null, { everyMs: 3_600_000 });
  const cli = async (...args: string[]): Promise<Record<string, unknown>> => {
    const r = await runCli(['queue', '--endpoints', endpoints, ...args], 20_000);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  };
  const ids: unknown[] = [];
  let after: number | null | undefined = undefined;
  for (let page = 0; page < 5; page++) {
    const more = after === undefined || after === null ? [] : ['--after', String(after)];
    const r = await cli('list', 'paged', 'waiting', '--limit', '2', ...more);
    ids.push(...(r['jobs'] as { id: string }[]).map((j) => j.id));
    after = r['next'] as number | null;
    if (after === null) break;
  }
  assert.deepEqual(ids, ['p0', 'p1', 'p2', 'p3', 'p4']);
  const first = await cli('repeat', 'list', 'paged', '--limit', '2');
  const rest = await cli('repeat', 'list', 'paged', '--after', first['next'] as string);
  assert.deepEqual(
    [
      ...(first['repeatables'] as { repeatId: string }[]),
      ...(rest['repeatables'] as { repeatId: string }[]),
    ].map((r) => r.repeatId),
    ['r0', 'r1', 'r2'],
  );
  const bad = await runCli(
    ['queue', '--endpoints', endpoints, 'list', 'paged', 'waiting', '--after', '-1'],
    20_000,
  );
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--after/);
});

void test('queue work: Ctrl-C past the grace stops a command that ignores SIGTERM', async () => {
  const { client, endpoints } = await cluster(1);
  const q = client.queue('stubborn');
  const { id } = await q.add('j', null);
  // Ignores SIGTERM and would run a minute; prints its pid so a failed test can still end it.
  const script =
    'process.on("SIGTERM",()=>{});console.error("pid",process.pid);setTimeout(()=>{},60000)';
  const work = startCli([
    'queue',
    '--endpoints',
    endpoints,
    'work',
    'stubborn',
    '--',
    process.execPath,
    '-e',
    script,
  ]);
  let pid = 0;
  cleanups.push(() => {
    if (pid !== 0) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone: what the test wants.
      }
    }
    return Promise.resolve();
  });
  await waitForOutput(work, /pid \d+/, 20_000);
  pid = Number(/pid (\d+)/.exec(work.out.stderr)?.[1] ?? 0);
  assert.notEqual(pid, 0, `the command did not start: ${work.out.stderr}`);
  const stoppedAt = Date.now();
  work.child.kill('SIGINT');
  // 10 s of grace, then SIGTERM, then SIGKILL 5 s later: well under the command's minute.
  assert.equal(await exitOf(work, 30_000), 0, work.out.stderr);
  assert.ok(Date.now() - stoppedAt < 25_000, `exited after ${Date.now() - stoppedAt} ms`);
  assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, 'the command was killed');
  const job = (await q.get(id)).job;
  assert.equal(job.error, 'released: the worker closed');
  assert.notEqual(job.state, 'active');
});

async function stopSpawner(queue: string, signals: number): Promise<void> {
  // A script's `sleep` outlived the killed shell: it ran on beside the job's next worker, and,
  // holding the standard error, kept the worker from exiting until it ended.
  const { client, endpoints } = await cluster(1);
  const q = client.queue(queue);
  await q.add('j', null);
  // The command starts a child that ignores SIGTERM and shares its standard error; both would
  // run a minute, and print their pids so a failed test can still end them.
  const stubborn =
    'process.on("SIGTERM",()=>{});console.error("pid",process.pid);setTimeout(()=>{},60000)';
  const parent =
    `require("child_process").spawn(process.execPath,["-e",${JSON.stringify(stubborn)}],{stdio:"inherit"});` +
    stubborn;
  const work = startCli([
    'queue',
    '--endpoints',
    endpoints,
    'work',
    queue,
    '--',
    process.execPath,
    '-e',
    parent,
  ]);
  const pids: number[] = [];
  cleanups.push(() => {
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone: what the test wants.
      }
    }
    return Promise.resolve();
  });
  await waitForOutput(work, /pid \d+[^]*pid \d+/, 20_000);
  for (const m of work.out.stderr.matchAll(/pid (\d+)/g)) pids.push(Number(m[1]));
  assert.equal(pids.length, 2, work.out.stderr);
  const stoppedAt = Date.now();
  work.child.kill('SIGINT');
  if (signals === 2) {
    // Once the first is handled: two sent at once may arrive as one.
    await waitForOutput(work, /finishing the jobs running/, 20_000);
    work.child.kill('SIGINT');
  }
  assert.equal(await exitOf(work, 30_000), signals === 1 ? 0 : 130, work.out.stderr);
  assert.ok(Date.now() - stoppedAt < 25_000, `exited after ${Date.now() - stoppedAt} ms`);
  // Dead once gone or a zombie: one whose parent died waits for init to reap it.
  for (const pid of pids) await until(`process ${pid} killed`, () => !alive(pid), 5_000);
}

/** Whether process `pid` runs (a zombie, dead and not yet reaped, does not). */
function alive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

void test('queue work: stopping a job stops what its command started, not only the command', () =>
  stopSpawner('spawner', 1));

// In groups of their own the commands no longer get the terminal's signals: had the worker gone
// alone, they would have run on, orphaned, beside the jobs' next workers.
void test('queue work: a second Ctrl-C stops at once, and the commands with it', () =>
  stopSpawner('spawner2', 2));

void test('queue work refuses a command that cannot run, before it claims a job', async () => {
  const { client, endpoints } = await cluster(1);
  const q = client.queue('typo');
  const { id } = await q.add('j', null);
  for (const cmd of ['/no/such/dir/send-mail.sh', 'no-such-command-anywhere']) {
    const work = startCli(['queue', '--endpoints', endpoints, 'work', 'typo', '--', cmd]);
    assert.equal(await exitOf(work, 20_000), 1, work.out.stderr);
    assert.match(work.out.stderr, new RegExp(`cannot run "${cmd}".*nothing was claimed`));
  }
  const job = (await q.get(id)).job;
  assert.deepEqual([job.state, job.attempts], ['waiting', 0]);
});

void test('queue add refuses DATA that begins as JSON but is not, and takes plain text', async () => {
  const { client, endpoints } = await cluster(1);
  for (const data of ['{"to":"a@b.c"', '[1, 2', '"unterminated']) {
    const r = await runCli(['queue', '--endpoints', endpoints, 'add', 'typed', data], 20_000);
    assert.equal(r.code, 1, `${data}: ${r.stdout}`);
    assert.match(r.stderr, /BAD_REQUEST: DATA begins as JSON but is not JSON/);
  }
  assert.equal((await client.queue('typed').stats()).stats, null, 'nothing was added');
  const text = await runCli(['queue', '--endpoints', endpoints, 'add', 'typed', 'hello'], 20_000);
  assert.equal(text.code, 0, text.stderr);
  const { id } = JSON.parse(text.stdout) as { id: string };
  assert.equal((await client.queue('typed').get(id)).job.data, 'hello');
});

void test('queue add --lease and --backoff set the job lease and backoff; bad values add nothing', async () => {
  const { client, endpoints } = await cluster(1);
  const add = async (...args: string[]) =>
    runCli(['queue', '--endpoints', endpoints, 'add', 'timed', '{}', ...args], 20_000);
  // Before, neither option existed: commander refused them as unknown, exit 1.
  const refusedWith = [
    [['--lease', '0'], /--lease must be in 1\.\.31622400000, got 0/],
    [['--lease', '31622400001'], /--lease must be in 1\.\.31622400000, got 31622400001/],
    [['--lease', '5s'], /--lease must be an integer, got "5s"/],
    // Before, these three went to the cluster and came back refused by it (exit 1).
    [['--priority', '1000001'], /--priority must be in 0\.\.1000000, got 1000001/],
    [['--attempts', '1001'], /--attempts must be in 1\.\.1000, got 1001/],
    [['--delay', '31622400001'], /--delay must be in 0\.\.31622400000, got 31622400001/],
    [
      ['--backoff', 'linear:100'],
      /--backoff must be fixed:MS, exponential:MS or exponential:MS:MAXMS/,
    ],
    [['--backoff', 'fixed'], /--backoff must be fixed:MS/],
    [['--backoff', 'fixed:-1'], /--backoff must be fixed:MS/],
    // A fixed backoff has no longest delay to give.
    [['--backoff', 'fixed:100:200'], /--backoff must be fixed:MS, exponential:MS or/],
    [['--backoff', 'fixed:31622400001'], /--backoff delay must be at most 31622400000 ms/],
    [
      ['--backoff', 'exponential:10:31622400001'],
      /--backoff longest delay must be at most 31622400000 ms/,
    ],
    [
      ['--backoff', 'exponential:5000:1000'],
      /--backoff longest delay \(1000 ms\) must not be below/,
    ],
  ] as const;
  for (const [args, message] of refusedWith) {
    const r = await add(...args);
    assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
    assert.match(r.stderr, message, args.join(' '));
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
  assert.equal((await client.queue('timed').stats()).stats, null, 'nothing was added');

  const job = async (...args: string[]) => {
    const r = await add(...args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    const { id } = JSON.parse(r.stdout) as { id: string };
    return (await client.queue('timed').get(id)).job;
  };
  const fixed = await job('--lease', '5000', '--backoff', 'fixed:250');
  assert.equal(fixed.leaseMs, 5_000);
  assert.deepEqual(fixed.backoff, { kind: 'fixed', delayMs: 250, maxDelayMs: 60_000 });
  const capped = await job('--backoff', 'exponential:2000:10000');
  assert.deepEqual(capped.backoff, { kind: 'exponential', delayMs: 2_000, maxDelayMs: 10_000 });
  const plain = await job();
  assert.equal(plain.leaseMs, 30_000, 'the default lease when none is given');
});

void test('queue add-bulk and repeat add take --priority, --attempts, --lease and --backoff too', async () => {
  const { client, endpoints } = await cluster(1);
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-bulk-flags-'));
  cleanups.push(() => Promise.resolve(rmSync(dir, { recursive: true, force: true })));
  const file = join(dir, 'jobs.ndjson');
  writeFileSync(file, '{"n":1}\n{"n":2}\n');
  const flags = ['--priority', '3', '--attempts', '2', '--lease', '5000'];
  const bulk = await runCli(
    [
      'queue',
      '--endpoints',
      endpoints,
      'add-bulk',
      'flagged',
      '--file',
      file,
      ...flags,
      '--backoff',
      'fixed:250',
    ],
    20_000,
  );
  // Before, add-bulk knew none of these options: commander refused them as unknown.
  assert.equal(bulk.code, 0, bulk.stderr);
  const page = await client.queue('flagged').list('waiting', { limit: 10 });
  assert.equal(page.jobs.length, 2);
  for (const j of page.jobs) {
    assert.deepEqual(
      [j.priority, j.maxAttempts, j.leaseMs, j.backoff],
      [3, 2, 5_000, { kind: 'fixed', delayMs: 250, maxDelayMs: 60_000 }],
      JSON.stringify(j),
    );
  }
  const badBulk = await runCli(
    ['queue', '--endpoints', endpoints, 'add-bulk', 'unflagged', '--file', file, '--lease', '0'],
    20_000,
  );
  assert.equal(badBulk.code, 2, badBulk.stderr);
  assert.match(badBulk.stderr, /--lease must be/);
  assert.equal((await client.queue('unflagged').stats()).stats, null, 'nothing was added');

  const rep = await runCli(
    [
      'queue',
      '--endpoints',
      endpoints,
      'repeat',
      'add',
      'flagged',
      'hourly',
      '--every',
      '3600000',
      ...flags,
      '--backoff',
      'exponential:100:900',
    ],
    20_000,
  );
  assert.equal(rep.code, 0, rep.stderr);
  const [r] = (await client.queue('flagged').repeatables()).repeatables;
  assert.deepEqual(
    [r?.priority, r?.maxAttempts, r?.leaseMs, r?.backoff],
    [3, 2, 5_000, { kind: 'exponential', delayMs: 100, maxDelayMs: 900 }],
    JSON.stringify(r),
  );
});

void test("queue list and repeat list take --limit up to the server's page size, and no more", async () => {
  const { client, endpoints } = await cluster(1);
  await client.queue('paged').add('job', null);
  const run = (...args: string[]) => runCli(['queue', '--endpoints', endpoints, ...args], 20_000);
  // The CLI's bound is the server's: the largest it allows is served.
  const list = await run('list', 'paged', 'waiting', '--limit', '1000');
  assert.equal(list.code, 0, list.stderr);
  const repeats = await run('repeat', 'list', 'paged', '--limit', '1000');
  assert.equal(repeats.code, 0, repeats.stderr);
  // One more is a usage error (exit 2), where the server used to refuse it (exit 1).
  const over = await run('list', 'paged', 'waiting', '--limit', '1001');
  assert.equal(over.code, 2, over.stderr);
  assert.match(over.stderr, /--limit must be in 1\.\.1000, got 1001/);
});
