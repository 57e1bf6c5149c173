// `flotilla kv put KEY` with the value on standard input (as etcdctl takes it), and
// `kv get --value-only`, which prints the stored bytes: text goes as it is, any other bytes in
// base64, and the round trip keeps every byte; more than any node accepts is refused before
// anything is sent.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, test } from 'node:test';
import { FlotillaClient } from '../../src/client/index.js';
import { cliEntry } from '../../src/cli/cluster.js';
import { TestNodes } from '../server/nodes.js';
import { exitOf, startCli, waitForOutput } from './run.js';

let nodes: TestNodes;
let client: FlotillaClient;
let endpoints: string;

before(async () => {
  nodes = await TestNodes.start({ nodes: 3 });
  await nodes.waitForLeader();
  client = new FlotillaClient({ endpoints: nodes.urls });
  endpoints = nodes.urls.join(',');
});

after(async () => {
  await client.close();
  await nodes.close();
});

/** Runs the CLI with `input` on its standard input; its output as bytes. */
function cli(
  args: readonly string[],
  input: Buffer,
): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliEntry(), ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`flotilla ${args.join(' ')} did not exit within 30 s: ${stderr}`));
    }, 30_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr });
    });
    // A CLI that refuses early closes its end: the rest of the input then has nowhere to go.
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

void test('kv put without a value stores standard input; text stays text', async () => {
  const text = 'line one\nline two, ünïcode\n';
  const r = await cli(['kv', 'put', 'note', '--endpoints', endpoints], Buffer.from(text));
  assert.equal(r.code, 0, r.stderr);
  assert.equal((await client.get('note'))?.value, text);
  const back = await cli(
    ['kv', 'get', 'note', '--value-only', '--endpoints', endpoints],
    Buffer.alloc(0),
  );
  assert.equal(back.code, 0, back.stderr);
  assert.equal(back.stdout.toString('utf8'), text);
});

void test('bytes that are not UTF-8 are stored and read back byte for byte', async () => {
  const bytes = Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 37) % 256));
  const r = await cli(['kv', 'put', 'blob', '--endpoints', endpoints], bytes);
  assert.equal(r.code, 0, r.stderr);
  const kv = await client.get(Buffer.from('blob').toString('base64'), { encoding: 'base64' });
  assert.ok(kv !== null, 'the key was written');
  assert.deepEqual(Buffer.from(kv.value, 'base64'), bytes);
  const back = await cli(
    ['kv', 'get', 'blob', '--value-only', '--endpoints', endpoints],
    Buffer.alloc(0),
  );
  assert.equal(back.code, 0, back.stderr);
  assert.deepEqual(back.stdout, bytes);
});

void test('a byte-order mark is kept: the value is the bytes given', async () => {
  const bom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('with a BOM')]);
  const r = await cli(['kv', 'put', 'bom', '--endpoints', endpoints], bom);
  assert.equal(r.code, 0, r.stderr);
  const back = await cli(
    ['kv', 'get', 'bom', '--value-only', '--endpoints', endpoints],
    Buffer.alloc(0),
  );
  assert.deepEqual(back.stdout, bom);
});

void test('a missing key with --value-only prints nothing and exits 1', async () => {
  const r = await cli(
    ['kv', 'get', 'absent', '--value-only', '--endpoints', endpoints],
    Buffer.alloc(0),
  );
  assert.equal(r.code, 1);
  assert.equal(r.stdout.length, 0);
  assert.match(r.stderr, /key "absent" not found/);
});

void test('standard input larger than any node accepts is refused, and nothing is written', async () => {
  const r = await cli(
    ['kv', 'put', 'huge', '--endpoints', endpoints],
    Buffer.alloc(64 * 1024 * 1024 + 1, 0x61),
  );
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /more than 67108864 bytes, more than any node accepts/);
  assert.equal(await client.get('huge'), null);
});

/**
 * Runs the CLI and closes its standard output after the first chunk, as `| head -c 1` does,
 * while `drive` (given whether the CLI has exited yet) makes it write; resolves with how it
 * exited and what it wrote on standard error.
 */
function cliReaderLeaves(
  args: readonly string[],
  drive: (exited: () => boolean) => Promise<void> = () => Promise.resolve(),
): Promise<{ code: number | null; signal: string | null; stderr: string; firstChunk: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliEntry(), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let firstChunk = 0;
    let exited = false;
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdout.once('data', (d: Buffer) => {
      firstChunk = d.length;
      child.stdout.destroy();
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`flotilla ${args.join(' ')} did not stop within 30 s: ${stderr}`));
    }, 30_000);
    child.once('exit', (code, signal) => {
      exited = true;
      clearTimeout(timer);
      resolve({ code, signal, stderr, firstChunk });
    });
    drive(() => exited).catch(reject);
  });
}

void test('a reader that leaves early stops the command quietly, with status 141', async () => {
  // Larger than a pipe's buffer: the CLI is still writing when its reader goes.
  await client.put('large', 'x'.repeat(1024 * 1024));
  const get = await cliReaderLeaves([
    'kv',
    'get',
    'large',
    '--value-only',
    '--endpoints',
    endpoints,
  ]);
  assert.ok(get.firstChunk > 0, 'some of the value was read');
  assert.equal(get.code, 141, `exit ${get.code} ${get.signal}: ${get.stderr}`);
  assert.equal(get.stderr, '', 'nothing on standard error');

  // A watch writes only when the key changes: it is given changes until it has stopped (the
  // first ones may come before it watches; a later one is its first line, the next finds the
  // pipe closed).
  const watch = await cliReaderLeaves(
    ['watch', 'watched', '--endpoints', endpoints],
    async (exited) => {
      for (let n = 0; n < 1_000 && !exited(); n++) await client.put('watched', `v${n}`);
    },
  );
  assert.equal(watch.code, 141, `exit ${watch.code} ${watch.signal}: ${watch.stderr}`);
  assert.equal(watch.stderr, '');
});

void test('watch --encoding base64 prints binary values byte for byte', async () => {
  // As text, a value that is not UTF-8 came out with replacement characters (an etcd user's
  // find): base64 keeps it.
  const bytes = Buffer.from([0xff, 0x00, 0x80, 0xfe, 0x41]);
  const key = Buffer.from('bin/one').toString('base64');
  await client.put(key, bytes.toString('base64'), { encoding: 'base64' });
  const run = startCli([
    'watch',
    'bin/',
    '--prefix',
    '--rev',
    '1',
    '--encoding',
    'base64',
    '--endpoints',
    endpoints,
  ]);
  try {
    const [line] = await waitForOutput(run, /^\{.*\}$/m, 15_000);
    const e = JSON.parse(line) as { kv: { key: string; value: string } };
    assert.equal(Buffer.from(e.kv.key, 'base64').toString(), 'bin/one');
    assert.deepEqual(Buffer.from(e.kv.value, 'base64'), bytes);
  } finally {
    run.child.kill('SIGINT');
    await exitOf(run, 10_000);
  }
});
