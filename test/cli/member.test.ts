// `flotilla member ...` and `flotilla leader transfer` against a running cluster (in-process
// nodes): each command's output, and each refusal with its code and exit status (1 for a
// refusal by the cluster, 2 for a usage error, nothing sent).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { freePorts } from '../e2e/harness.js';
import { TestNodes } from '../server/nodes.js';
import { runCli, stopAll } from './run.js';
import type { MembersResponse } from '../../src/api/types.js';

const bound = 20_000;
let nodes: TestNodes;
let endpoints: string;

before(async () => {
  nodes = await TestNodes.start({ nodes: 3 });
  await nodes.waitForLeader();
  endpoints = [1, 2, 3].map((id) => nodes.url(id)).join(',');
});

after(async () => {
  await stopAll();
  await nodes.close();
});

const member = (...args: string[]) => runCli(['member', '--endpoints', endpoints, ...args], bound);

function refused(r: { code: number | string; stderr: string }, code: string): void {
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`^flotilla: ${code}: `));
}

void test('member list prints every member and its role in both groups', async () => {
  const r = await member('list');
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.match(lines[0] ?? '', /^ID\s+PEER\s+CLIENT\s+ROLE\s+QUEUE-ROLE\s+MATCH\s+LAG/);
  assert.equal(lines.length, 4, r.stdout);
  for (const line of lines.slice(1))
    assert.match(line, /^\d\*?\s+127\.0\.0\.1:\d+\s+http\S+\s+voter\s+voter/);
  const json = await member('list', '--json');
  const v = JSON.parse(json.stdout) as MembersResponse;
  assert.deepEqual(v.groups[0]?.voters, [1, 2, 3]);
});

void test('member add-learner, promote, remove, and the refusals of each', async () => {
  const [p, c] = (await freePorts(2)) as [number, number];
  const addr = [`127.0.0.1:${p}`, `http://127.0.0.1:${c}`];
  const added = await member('add-learner', '7', ...addr);
  assert.equal(added.code, 0, added.stderr);
  assert.match(added.stdout, /^7\s+127\.0\.0\.1:\d+\s+http\S+\s+learner/m);
  // The same add again (a retry whose first attempt applied) succeeds; as a voter it is refused.
  const again = await member('add-learner', '7', ...addr);
  assert.equal(again.code, 0, again.stderr);
  refused(await member('add', '7', ...addr), 'MEMBERSHIP_ALREADY_MEMBER');
  refused(await member('promote', '9'), 'MEMBERSHIP_UNKNOWN_MEMBER');
  refused(await member('remove', '9'), 'MEMBERSHIP_UNKNOWN_MEMBER');
  refused(
    await member('add', '8', nodes.node(1).config.members[0]!.peer, addr[1]!),
    'MEMBERSHIP_INVALID',
  );
  const removed = await member('remove', '7');
  assert.equal(removed.code, 0, removed.stderr);
  assert.match(removed.stdout, /^removed: 7$/m);
  refused(await member('add', '7', ...addr), 'MEMBER_REMOVED');
});

void test('usage errors are refused before anything is sent', async () => {
  for (const args of [
    ['add', 'x', '127.0.0.1:1', 'http://127.0.0.1:2'],
    ['promote', '0'],
    ['add', '5', '127.0.0.1:1'],
  ]) {
    const r = await member(...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
  }
  const bad = await runCli(
    ['member', '--endpoints', endpoints, 'add', '5', 'nope', 'http://a:1'],
    bound,
  );
  refused(bad, 'BAD_REQUEST');
  const join = await runCli(
    [
      'start',
      '--id',
      '5',
      '--data-dir',
      '/tmp/unused',
      '--initial-cluster',
      '5=127.0.0.1:1@http://127.0.0.1:2',
      '--join',
      'not a url',
    ],
    bound,
  );
  assert.equal(join.code, 2, join.stderr);
  assert.match(join.stderr, /CONFIG_INVALID: join address "not a url" is not a URL/);
});

void test('leader transfer hands leadership over; to a non-member it is refused', async () => {
  const before = await nodes.waitForLeader();
  const r = await runCli(['leader', '--endpoints', endpoints, 'transfer'], bound);
  assert.equal(r.code, 0, r.stderr);
  // It says how the transfer ended: which node leads now.
  const said = /^node (\d+) leads now \(node (\d+) led before\)$/m.exec(r.stdout);
  assert.ok(said !== null, r.stdout);
  assert.equal(Number(said[2]), before);
  const deadline = Date.now() + 10_000;
  let now = before;
  while (Date.now() < deadline && (now === before || now === 0)) {
    await new Promise((res) => setTimeout(res, 50));
    now = nodes.node(1).runtime.leaderId();
  }
  assert.notEqual(now, before, 'another voter leads');
  assert.equal(Number(said[1]), now, 'the node it named');
  // To the node that leads: nothing to do, and it says so.
  const same = await runCli(
    ['leader', '--endpoints', endpoints, 'transfer', '--to', String(now)],
    bound,
  );
  assert.equal(same.code, 0, same.stderr);
  assert.match(same.stdout, new RegExp(`^node ${now} already leads: nothing to transfer$`, 'm'));
  refused(
    await runCli(['leader', '--endpoints', endpoints, 'transfer', '--to', '99'], bound),
    'UNKNOWN_NODE',
  );
});
