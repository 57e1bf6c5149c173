// The command line against a node that requires a token: `--token` and FLOTILLA_TOKEN on the
// commands that talk to a cluster, the refusals with their codes, and `flotilla token`.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { sha256 } from '../../src/api/auth.js';
import { TestNodes } from '../server/nodes.js';
import { runCli, stopAll } from './run.js';

const bound = 20_000;
const readToken = 'cli-reader-0123456789abcdef';
const writeToken = 'cli-writer-0123456789abcdef';
const adminToken = 'cli-admin-0123456789abcdef';
let dir: string;
let nodes: TestNodes;
let endpoint: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'flotilla-cli-auth-'));
  const tokens = join(dir, 'tokens.yaml');
  writeFileSync(
    tokens,
    [
      'tokens:',
      `  - { name: reader, role: read, sha256: ${sha256(readToken).toString('hex')} }`,
      `  - { name: writer, role: write, token: ${writeToken} }`,
      `  - { name: admin, role: admin, token: ${adminToken} }`,
    ].join('\n'),
  );
  const nodeToken = join(dir, 'node-token');
  writeFileSync(nodeToken, adminToken);
  nodes = await TestNodes.start({
    nodes: 1,
    config: { authTokensFile: tokens, authNodeTokenFile: nodeToken },
  });
  await nodes.waitForLeader();
  endpoint = nodes.url(1);
});

after(async () => {
  await stopAll();
  await nodes.close();
  rmSync(dir, { recursive: true, force: true });
});

function refused(r: { code: number | string; stderr: string }, code: string): void {
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`^flotilla: ${code}: `));
}

void test('kv refuses without a token and with a read token writing, and writes with a write token', async () => {
  const kv = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    runCli(['kv', '--endpoints', endpoint, ...args], bound, env);
  refused(await kv(['put', 'k', 'v']), 'UNAUTHENTICATED');
  refused(await kv(['--token', readToken, 'put', 'k', 'v']), 'PERMISSION_DENIED');
  refused(await kv(['put', 'k', 'v'], { FLOTILLA_TOKEN: readToken }), 'PERMISSION_DENIED');
  const put = await kv(['put', 'k', 'v'], { FLOTILLA_TOKEN: writeToken });
  assert.equal(put.code, 0, put.stderr);
  const get = await kv(['--token', readToken, 'get', 'k']);
  assert.equal(get.code, 0, get.stderr);
  assert.match(get.stdout, /"value": "v"/);
});

void test('member, status and snapshot save take the token too, and need the roles they need', async () => {
  const env = (token: string) => ({ FLOTILLA_TOKEN: token });
  refused(
    await runCli(['member', '--endpoints', endpoint, 'list'], bound, env(writeToken)),
    'PERMISSION_DENIED',
  );
  const list = await runCli(['member', '--endpoints', endpoint, 'list'], bound, env(adminToken));
  assert.equal(list.code, 0, list.stderr);
  const status = await runCli(['status', '--endpoints', endpoint], bound, env(readToken));
  assert.equal(status.code, 0, status.stderr);
  assert.doesNotMatch(status.stdout, /unreachable/);
  const file = join(dir, 'backup.flbk');
  refused(
    await runCli(['snapshot', 'save', file, '--endpoints', endpoint], bound, env(writeToken)),
    'PERMISSION_DENIED',
  );
  const saved = await runCli(
    ['snapshot', 'save', file, '--endpoints', endpoint, '--token', adminToken],
    bound,
  );
  assert.equal(saved.code, 0, saved.stderr);
});

void test('flotilla token prints a random token and the tokens file entry that admits it', async () => {
  const a = await runCli(['token', '--name', 'web', '--role', 'write'], bound);
  assert.equal(a.code, 0, a.stderr);
  const made = JSON.parse(a.stdout) as {
    token: string;
    entry: { name: string; role: string; sha256: string };
  };
  assert.match(made.token, /^[A-Za-z0-9_-]{43}$/);
  assert.deepEqual(made.entry, {
    name: 'web',
    role: 'write',
    sha256: sha256(made.token).toString('hex'),
  });
  const b = await runCli(['token', '--name', 'web', '--role', 'write'], bound);
  assert.notEqual((JSON.parse(b.stdout) as { token: string }).token, made.token);
  const bad = await runCli(['token', '--name', 'web', '--role', 'root'], bound);
  assert.equal(bad.code, 2, bad.stderr);
});
