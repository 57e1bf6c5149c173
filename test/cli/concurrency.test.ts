// `flotilla lock`, `flotilla watch` and `lease` against in-process nodes: the command runs
// with the lock's fencing token and the lock is free afterwards; a command that outlives its
// lock's lease is stopped; a lease granted from the command line holds a key.

import assert from 'node:assert/strict';
import { after, afterEach, test } from 'node:test';
import { FlotillaClient, Mutex, Session } from '../../src/client/index.js';
import { TestNodes } from '../server/nodes.js';
import { exitOf, runCli, startCli, stopAll, waitForOutput } from './run.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
after(() => stopAll());

async function cluster(): Promise<{ nodes: TestNodes; client: FlotillaClient; endpoints: string }> {
  const nodes = await TestNodes.start({ nodes: 3 });
  cleanups.push(() => nodes.close());
  await nodes.waitForLeader();
  const client = new FlotillaClient({ endpoints: nodes.urls });
  cleanups.push(() => client.close());
  return { nodes, client, endpoints: nodes.urls.join(',') };
}

void test('flotilla lock runs the command holding the lock, with its token; frees it after', async () => {
  const { client, endpoints } = await cluster();
  const r = await runCli(
    [
      'lock',
      'cron/backup',
      '--endpoints',
      endpoints,
      '--',
      process.execPath,
      '-e',
      'console.log("token=" + process.env.FLOTILLA_LOCK_TOKEN)',
    ],
    20_000,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^token=\d+$/m);
  // Free again: another holder gets it at once.
  const s = await Session.create(client);
  cleanups.push(() => s.close());
  const held = await new Mutex(s, 'cron/backup').lock();
  assert.ok(held.token > Number(/token=(\d+)/.exec(r.stdout)?.[1]));
});

void test('flotilla lock stops a command whose lock was lost', async () => {
  const { client, endpoints } = await cluster();
  const run = startCli([
    'lock',
    'busy',
    '--endpoints',
    endpoints,
    '--ttl',
    '1',
    '--',
    process.execPath,
    '-e',
    'setInterval(() => {}, 1000)',
  ]);
  const deadline = Date.now() + 15_000;
  while (!run.out.stderr.includes('holding lock busy') && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 20));
  assert.match(run.out.stderr, /holding lock busy/);
  // Take the lock away: revoke every lease (the holder's is the only one).
  for (const l of (await client.leases()).leases) await client.leaseRevoke(l.id);
  assert.equal(await exitOf(run, 15_000), 1, run.out.stderr);
  assert.match(run.out.stderr, /lost lock busy/);
});

void test('flotilla lease grant, then kv put --lease: revoking takes the key', async () => {
  const { client, endpoints } = await cluster();
  const g = await runCli(['lease', '--endpoints', endpoints, 'grant', '30'], 20_000);
  assert.equal(g.code, 0, g.stderr);
  const id = (JSON.parse(g.stdout) as { id: number }).id;
  const p = await runCli(
    ['kv', '--endpoints', endpoints, 'put', 'svc/a', 'up', '--lease', String(id)],
    20_000,
  );
  assert.equal(p.code, 0, p.stderr);
  assert.equal((await client.get('svc/a'))?.lease, id);
  const rv = await runCli(['lease', '--endpoints', endpoints, 'revoke', String(id)], 20_000);
  assert.equal(rv.code, 0, rv.stderr);
  assert.equal(await client.get('svc/a'), null);
});

void test('flotilla watch prints past and new changes of a prefix, one JSON line each, until SIGINT', async () => {
  const { client, endpoints } = await cluster();
  const first = (await client.put('app/a', '1')).header.revision;
  await client.put('other', 'x');
  const run = startCli([
    'watch',
    'app/',
    '--prefix',
    '--rev',
    String(first),
    '--endpoints',
    endpoints,
  ]);
  await waitForOutput(run, /"app\/a"/, 20_000);
  const second = (await client.put('app/b', '2')).header.revision;
  await client.delete('app/a');
  await waitForOutput(run, /"type":"delete"/, 20_000);
  run.child.kill('SIGINT');
  assert.equal(await exitOf(run, 20_000), 0, run.out.stderr);
  const lines = run.out.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { revision: number; type: string; kv: { key: string } });
  assert.deepEqual(
    lines.map((l) => [l.type, l.kv.key]),
    [
      ['put', 'app/a'],
      ['put', 'app/b'],
      ['delete', 'app/a'],
    ],
  );
  assert.equal(lines[0]?.revision, first);
  assert.equal(lines[1]?.revision, second);
});
