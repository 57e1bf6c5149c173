// The fuzzer's command line: a bad option exits 1 naming it (no stack trace), and Ctrl-C in
// the middle of a run stops the in-process node and removes its data directory.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot } from '../support/root.js';

const cli = join(repoRoot(), 'dist', 'test', 'fuzz', 'cli.js');

void test('bad options exit 1 with one line naming the option, not a stack trace', () => {
  for (const [args, message] of [
    [['--protocol', 'smtp'], /--protocol: unknown "smtp"; choose from http, wire, peer, all/],
    [['--protocol', 'http,'], /--protocol: unknown ""/],
    [['--replay', '4,x'], /--replay must be an integer/],
    [['--inputs', '-1'], /--inputs must be an integer/],
    [['--bogus'], /unknown option '--bogus'/],
  ] as const) {
    const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 30_000 });
    const out = r.stdout + r.stderr;
    assert.equal(r.status, 1, `${args.join(' ')}:\n${out}`);
    assert.match(out, message, args.join(' '));
    assert.doesNotMatch(out, /\n\s+at /, `${args.join(' ')} printed a stack trace:\n${out}`);
  }
});

void test('SIGINT mid-run stops the node and leaves no data directory behind', async (t) => {
  // The fuzzer's node makes its directory under os.tmpdir(); a private TMPDIR shows whether
  // anything is left there.
  const tmp = mkdtempSync(join(tmpdir(), 'fuzz-cli-test-'));
  t.after(() => rmSync(tmp, { recursive: true, force: true }));
  const child = spawn(
    process.execPath,
    [cli, '--protocol', 'http', '--inputs', '1000000', '--time', '120', '--progress-every', '1'],
    { env: { ...process.env, TMPDIR: tmp }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let out = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  const progressed = new Promise<void>((resolve) => {
    const onData = (b: Buffer): void => {
      out += b.toString('utf8');
      if (/http: \d+ inputs in/.test(out)) resolve();
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
  });
  const bound = (ms: number, what: string): Promise<never> =>
    new Promise((_, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${what} within ${ms} ms; saw:\n${out}`)),
        ms,
      );
      timer.unref();
    });
  await Promise.race([
    progressed,
    exited.then(() => bound(0, 'exited before progress')),
    bound(60_000, 'no progress line'),
  ]);
  assert.equal(
    readdirSync(tmp).length,
    1,
    `the running node's directory is under TMPDIR: ${readdirSync(tmp).join(', ')}`,
  );
  child.kill('SIGINT');
  const code = await Promise.race([exited, bound(15_000, 'did not exit after SIGINT')]);
  assert.equal(code, 130, out);
  assert.deepEqual(readdirSync(tmp), [], `left behind after SIGINT:\n${out}`);
});
