// Keys that are not UTF-8 on the command line. Node decodes argv as UTF-8 and turns other bytes
// into U+FFFD, so `flotilla kv put $'\xffa' v` wrote the key EF BF BD 61, not FF 61, and
// `kv del --prefix` with such a prefix would delete other keys than those meant. A text key
// holding U+FFFD is now refused as a usage error; `--key-base64` gives any bytes, and
// `kv get --key-base64` and `kv ls --json` give a key or value that is not UTF-8 in base64 too.
// `watch`, `lock` and `elect` take their key or name the same way, and `watch` prints so.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { FlotillaClient } from '../../src/client/index.js';
import { unknownEnvVars } from '../../src/server/config.js';
import { TestNodes } from '../server/nodes.js';
import { exitOf, runCli, startCli, stopAll } from './run.js';
import { until } from '../support/until.js';

const bound = 20_000;
let nodes: TestNodes;
let client: FlotillaClient;
let endpoints: string;

before(async () => {
  nodes = await TestNodes.start({ nodes: 1 });
  await nodes.waitForLeader();
  client = new FlotillaClient({ endpoints: nodes.urls });
  endpoints = nodes.urls.join(',');
});

after(async () => {
  await stopAll();
  await client.close();
  await nodes.close();
});

const cli = (...args: string[]) => runCli([...args, '--endpoints', endpoints], bound);
/** The keys stored under `prefix` (bytes), as base64. */
async function storedKeys(prefix: Buffer): Promise<string[]> {
  const r = await client.range(prefix.toString('base64'), { prefix: true, encoding: 'base64' });
  return r.kvs.map((x) => x.key);
}

const ffa = Buffer.from([0xb1, 0xff, 0x61]);
const ffa64 = ffa.toString('base64');

/** The lines of `kv ls --json`, each parsed. */
function jsonLines(stdout: string): Record<string, unknown>[] {
  return stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

void test('a key given with bytes that are not UTF-8 is refused as a usage error, nothing written', async () => {
  // The byte 0xff reaches the process as it is; Node gives the program U+FFFD for it.
  const run = startCli(
    ['kv', 'put', '--endpoints', endpoints],
    {},
    {
      under: ['sh', '-c', `exec "$0" "$@" "$(printf '\\261\\377a')" v`],
    },
  );
  const code = await exitOf(run, bound);
  assert.equal(code, 2, `stdout:\n${run.out.stdout}\nstderr:\n${run.out.stderr}`);
  assert.match(run.out.stderr, /holds U\+FFFD, which is what bytes that are not UTF-8 become/);
  assert.match(run.out.stderr, /--key-base64/);
  assert.deepEqual(await storedKeys(Buffer.from([0xb1])), []);
  assert.deepEqual(await storedKeys(Buffer.from('\uFFFD')), [], 'nothing under U+FFFD either');
});

void test('--key-base64 puts, gets, lists and deletes a key that is not UTF-8, byte for byte', async () => {
  const put = await cli('kv', 'put', '--key-base64', ffa64, 'value');
  assert.equal(put.code, 0, put.stderr);
  assert.deepEqual(await storedKeys(Buffer.from([0xb1])), [ffa64]);

  const get = await cli('kv', 'get', '--key-base64', ffa64);
  assert.equal(get.code, 0, get.stderr);
  const kv = JSON.parse(get.stdout) as Record<string, unknown>;
  assert.equal(kv['keyBase64'], ffa64);
  assert.equal(kv['key'], '\uFFFD\uFFFDa');
  assert.equal(kv['value'], 'value');
  assert.equal(kv['valueBase64'], undefined, 'a value in UTF-8 is given as text alone');

  const only = await cli('kv', 'get', '--key-base64', ffa64, '--value-only');
  assert.equal(only.code, 0, only.stderr);
  assert.equal(only.stdout, 'value');

  const ls = await cli(
    'kv',
    'ls',
    '--key-base64',
    Buffer.from([0xb1]).toString('base64'),
    '--json',
  );
  assert.equal(ls.code, 0, ls.stderr);
  const lines = jsonLines(ls.stdout);
  assert.deepEqual(
    lines.map((l) => [l['key'], l['keyBase64'], l['value']]),
    [['\uFFFD\uFFFDa', ffa64, 'value']],
  );

  const del = await cli('kv', 'del', '--key-base64', ffa64);
  assert.equal(del.code, 0, del.stderr);
  assert.deepEqual(await storedKeys(Buffer.from([0xb1])), []);
});

void test('kv ls --json gives a value that is not UTF-8 in base64 too; text keys as before', async () => {
  const value = Buffer.from([0x00, 0xfe, 0x41]);
  await client.put(Buffer.from('bin/v').toString('base64'), value.toString('base64'), {
    encoding: 'base64',
  });
  await client.put('bin/w', 'plain');
  const ls = await cli('kv', 'ls', 'bin/', '--json');
  assert.equal(ls.code, 0, ls.stderr);
  const lines = jsonLines(ls.stdout);
  assert.deepEqual(
    lines.map((l) => [l['key'], l['keyBase64'], l['valueBase64']]),
    [
      ['bin/v', undefined, value.toString('base64')],
      ['bin/w', undefined, undefined],
    ],
  );
  const plain = await cli('kv', 'ls', 'bin/');
  assert.equal(plain.code, 0, plain.stderr);
  assert.equal(plain.stdout, `bin/v\t${value.toString('utf8')}\nbin/w\tplain\n`);
});

void test('--key-base64 refuses what is not base64, as a usage error', async () => {
  for (const bad of ['not base64!', 'abc', '====']) {
    const r = await cli('kv', 'get', '--key-base64', bad);
    assert.equal(r.code, 2, `${bad}: ${r.stderr}`);
    assert.match(r.stderr, /--key-base64: the key .* is not base64/);
  }
});

void test('watch, lock and elect refuse a name with bytes that are not UTF-8, as kv put does', async () => {
  for (const [command, rest] of [
    [['kv', 'watch'], []],
    [['watch'], []],
    [['lock'], ['--', 'true']],
    [['elect'], []],
  ] as const) {
    const run = startCli(
      [...command, '--endpoints', endpoints],
      {},
      {
        under: ['sh', '-c', `exec "$0" "$@" "$(printf '\\261\\377a')" ${rest.join(' ')}`],
      },
    );
    const code = await exitOf(run, bound);
    assert.equal(code, 2, `${command.join(' ')}: ${run.out.stdout}\n${run.out.stderr}`);
    assert.match(run.out.stderr, /holds U\+FFFD, which is what bytes that are not UTF-8 become/);
    assert.match(run.out.stderr, /--key-base64/);
  }
  assert.deepEqual(await storedKeys(Buffer.from([0xb1])), [], 'no lock or candidate was queued');
});

void test('kv watch --key-base64 follows a prefix that is not UTF-8, printing keys and values exactly', async () => {
  const prefix = Buffer.from([0xb1, 0xfe]);
  const run = startCli([
    'kv',
    'watch',
    '--key-base64',
    prefix.toString('base64'),
    '--prefix',
    '--prev-kv',
    '--endpoints',
    endpoints,
  ]);
  const key = Buffer.concat([prefix, Buffer.from('k')]);
  const value = Buffer.from([0x00, 0xff]);
  // Written until the watch, once started, has seen one.
  await until(
    () => `a change printed by kv watch; stderr: ${run.out.stderr}`,
    async () => {
      await client.put(key.toString('base64'), value.toString('base64'), { encoding: 'base64' });
      return run.out.stdout.includes('\n');
    },
  );
  await client.put(key.toString('base64'), Buffer.from('text').toString('base64'), {
    encoding: 'base64',
  });
  await until(
    () => `the second change printed; stdout: ${run.out.stdout}`,
    () => run.out.stdout.includes('"text"'),
  );
  run.child.kill('SIGINT');
  assert.equal(await exitOf(run, bound), 0, run.out.stderr);
  const events = jsonLines(run.out.stdout) as { kv: Record<string, unknown>; prevKv?: unknown }[];
  const first = events[0]?.kv;
  assert.equal(first?.['key'], '\uFFFD\uFFFDk');
  assert.equal(first?.['keyBase64'], key.toString('base64'));
  assert.equal(first?.['valueBase64'], value.toString('base64'));
  const last = events.at(-1);
  assert.equal(last?.kv['value'], 'text');
  assert.equal(last?.kv['valueBase64'], undefined, 'a value in UTF-8 is given as text alone');
  assert.equal(
    (last?.prevKv as Record<string, unknown> | undefined)?.['valueBase64'],
    value.toString('base64'),
  );
});

void test('lock --key-base64 holds a lock whose name is not UTF-8, its key in base64 to the command', async () => {
  const name = Buffer.from([0xb1, 0xfd]);
  // The endpoints before `--`: what follows is the command's.
  const r = await runCli(
    [
      'lock',
      '--endpoints',
      endpoints,
      '--key-base64',
      name.toString('base64'),
      '--',
      'sh',
      '-c',
      'printf "%s" "$FLOTILLA_LOCK_KEY_BASE64"',
    ],
    bound,
  );
  assert.equal(r.code, 0, r.stderr);
  const key = Buffer.from(r.stdout, 'base64');
  assert.deepEqual(key.subarray(0, name.length + 1), Buffer.concat([name, Buffer.from('/')]));
  assert.deepEqual(await storedKeys(name), [], 'freed once the command exited');
  // A node started by the locked command does not take the variable for a misspelt setting.
  assert.deepEqual(unknownEnvVars({ FLOTILLA_LOCK_KEY_BASE64: r.stdout }), []);
});

void test('elect --key-base64 campaigns under a name that is not UTF-8; --watch sees its leader', async () => {
  const name = Buffer.from([0xb1, 0xfc]);
  const watcher = startCli([
    'elect',
    '--watch',
    '--key-base64',
    name.toString('base64'),
    '--endpoints',
    endpoints,
  ]);
  const run = startCli([
    'elect',
    '--key-base64',
    name.toString('base64'),
    'me',
    '--endpoints',
    endpoints,
  ]);
  await until(
    () => `elected; stderr: ${run.out.stderr}`,
    () => run.out.stdout.startsWith('elected '),
  );
  const keys = await storedKeys(Buffer.concat([name, Buffer.from('/')]));
  assert.equal(keys.length, 1, 'one candidate, under the name as given');
  await until(
    () => `the leader seen by elect --watch; stdout: ${watcher.out.stdout}`,
    () => watcher.out.stdout.includes('"me"'),
  );
  run.child.kill('SIGINT');
  assert.equal(await exitOf(run, bound), 0, run.out.stderr);
  assert.deepEqual(await storedKeys(name), [], 'resigned');
  watcher.child.kill('SIGINT');
  assert.equal(await exitOf(watcher, bound), 0, watcher.out.stderr);
});
