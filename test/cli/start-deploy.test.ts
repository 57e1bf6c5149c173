// `flotilla start` with the settings a container gives a node, as flags: its own name instead
// of a member list, the join URLs every member shares and the bootstrap member. Alone, member 1
// finds no one to join, starts a cluster of itself after its wait, serves, and on SIGTERM
// stops cleanly with exit code 0; `--id host-ordinal` is refused on a host name without one.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { freePorts } from '../e2e/harness.js';
import { exitOf, runCli, startCli, stopAll, waitForOutput } from './run.js';

const dir = mkdtempSync(join(tmpdir(), 'flotilla-start-deploy-'));
after(async () => {
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
});

void test('the bootstrap member started alone waits, starts a cluster of itself, and stops on SIGTERM', async () => {
  const [peer, client, other] = (await freePorts(3)) as [number, number, number];
  const self = `http://127.0.0.1:${client}`;
  const run = startCli([
    'start',
    '--id',
    '1',
    '--data-dir',
    join(dir, 'node1'),
    '--advertise-peer',
    `127.0.0.1:${peer}`,
    '--advertise-client',
    self,
    '--join',
    `${self},http://127.0.0.1:${other}`,
    '--bootstrap-member',
    '1',
    '--bootstrap-wait-ms',
    '500',
    '--log-format',
    'json',
  ]);
  await waitForOutput(run, /starting a new cluster/, 20_000);
  await waitForOutput(run, /node started/, 20_000);
  const deadline = Date.now() + 20_000;
  for (;;) {
    const ready = await fetch(`${self}/readyz`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ready) break;
    if (Date.now() > deadline) throw new Error(`not ready within 20 s:\n${run.out.stdout}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  run.child.kill('SIGTERM');
  assert.equal(await exitOf(run, 15_000), 0, run.out.stderr);
  assert.match(run.out.stdout, /node stopped/);
  // One shutdown, named by its signal: the node's settling after close() is not a second one
  // (it was logged again as "shutting down" with signal "removed", as if it had been removed).
  const shutdowns = run.out.stdout
    .split('\n')
    .filter((l) => l.includes('"msg":"shutting down'))
    .map((l) => (JSON.parse(l) as { signal?: string }).signal);
  assert.deepEqual(shutdowns, ['SIGTERM'], run.out.stdout);
});

void test('--id host-ordinal takes the host name, or is refused naming it', async () => {
  const [peer, client] = (await freePorts(2)) as [number, number];
  const m = /-(\d+)$/.exec(hostname());
  const args = [
    'start',
    '--id',
    'host-ordinal',
    '--data-dir',
    join(dir, 'ordinal'),
    '--advertise-peer',
    `127.0.0.1:${peer}`,
    '--advertise-client',
    `http://127.0.0.1:${client}`,
    '--log-level',
    'silent',
  ];
  if (m === null) {
    const r = await runCli(args, 15_000);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`CONFIG_INVALID: .*"${hostname()}"`));
  } else {
    const run = startCli(args);
    const deadline = Date.now() + 20_000;
    while (
      !(await fetch(`http://127.0.0.1:${client}/v1/status`).then(
        (r) => r.ok,
        () => false,
      ))
    ) {
      if (Date.now() > deadline) throw new Error(`not serving within 20 s:\n${run.out.stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const st = (await (await fetch(`http://127.0.0.1:${client}/v1/status`)).json()) as {
      id: number;
    };
    assert.equal(st.id, Number(m[1]) + 1);
    run.child.kill('SIGTERM');
    assert.equal(await exitOf(run, 15_000), 0);
  }
});

// A node still deciding how to start (its data directory empty, its peers silent; or joining
// through members that do not answer) must stop on SIGTERM as a started one does: a container
// runtime or an operator stopping it should not wait out a join of a minute, or a peer wait that
// never ends, and then kill it.
void test('a node waiting for its peers or for a join stops on SIGTERM, exit code 0', async () => {
  const [p1, c1, p2, c2, p3, c3] = await freePorts(6);
  const members = `1=127.0.0.1:${p1}@http://127.0.0.1:${c1},2=127.0.0.1:${p2}@http://127.0.0.1:${c2},3=127.0.0.1:${p3}@http://127.0.0.1:${c3}`;
  const waiting = startCli([
    'start',
    '--id',
    '1',
    '--data-dir',
    join(dir, 'waiting'),
    '--initial-cluster',
    members,
    '--log-format',
    'json',
  ]);
  await waitForOutput(waiting, /waiting for member\(s\) 2,3 to say/, 20_000);
  waiting.child.kill('SIGTERM');
  assert.equal(await exitOf(waiting, 10_000), 0, waiting.out.stdout + waiting.out.stderr);
  assert.match(waiting.out.stdout, /stopped by SIGTERM while starting/);

  const joining = startCli([
    'start',
    '--id',
    '4',
    '--data-dir',
    join(dir, 'joining'),
    '--advertise-peer',
    `127.0.0.1:${p2}`,
    '--advertise-client',
    `http://127.0.0.1:${c2}`,
    '--join',
    `http://127.0.0.1:${c1}`,
    '--log-format',
    'json',
  ]);
  await waitForOutput(joining, /join attempt failed/, 20_000);
  joining.child.kill('SIGTERM');
  assert.equal(await exitOf(joining, 10_000), 0, joining.out.stdout + joining.out.stderr);
  assert.match(joining.out.stdout, /stopped by SIGTERM while starting/);
});
