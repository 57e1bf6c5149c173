// What a node with an empty data directory decides from its peers' handshakes (startup.ts,
// decideEmptyStart): a peer holding a log means this node lost its data; a new cluster only
// once every other member on the command line has answered that it holds nothing. Two wiped
// members of three must not start a second cluster while the third, which holds the log, is
// down (found by an operator wiping two of three nodes with the third paused).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import { resolveNodeConfig } from '../../src/server/config.js';
import { decideEmptyStart } from '../../src/server/startup.js';
import { until } from '../support/until.js';

const config = resolveNodeConfig({
  id: 2,
  dataDir: '/nonexistent/flotilla-empty-start',
  initialCluster:
    '1=127.0.0.1:1@http://127.0.0.1:2,2=127.0.0.1:3@http://127.0.0.1:4,3=127.0.0.1:5@http://127.0.0.1:6',
});

function capture(lines: { msg: string; waitingFor?: number[] }[]): pino.Logger {
  return pino(
    { level: 'info' },
    { write: (s: string) => void lines.push(JSON.parse(s) as { msg: string }) },
  );
}

void test('an empty member waits for every other member before it starts a new cluster', async () => {
  const lines: { msg: string; waitingFor?: number[] }[] = [];
  const peers = new Map<number, boolean | null>([[3, false]]);
  let decided: string | null = null;
  const stop = new AbortController();
  const decision = decideEmptyStart(config, peers, capture(lines), stop.signal, 50).then(
    (r) => (decided = r),
    (e: Error & { code?: string }) => (decided = `threw ${e.code ?? e.message}`),
  );
  // Itself and member 3 are a majority of holders of nothing; member 1 has not answered.
  const said = await until(
    'the wait said',
    () =>
      lines.find((l) => l.msg.startsWith('data directory is empty: waiting for member(s) 1 ')) ??
      null,
  );
  assert.deepEqual(said.waitingFor, [1]);
  assert.equal(decided, null, 'decided without hearing from member 1');
  // A peer that does not say (an older release) is not an answer either.
  peers.set(1, null);
  const n = lines.length;
  await until('said again', () => lines.length > n);
  assert.equal(decided, null);
  peers.set(1, false);
  await decision;
  assert.equal(decided, 'none');
  assert.ok(lines.some((l) => l.msg === 'every member holds no log: starting a new cluster'));
});

void test('an empty member that hears of a log from any member recovers', async () => {
  const lines: { msg: string }[] = [];
  // Member 3 recovering lost data says it holds a log (node-open.ts), as member 1 would.
  const r = await decideEmptyStart(config, new Map([[3, true]]), capture(lines), undefined, 50);
  assert.equal(r, 'recovering');
  assert.match(lines.at(-1)?.msg ?? '', /peers 3 hold a log: this node lost its data/);
});

void test('a wait for a member that never answers ends when the node is stopped', async () => {
  const stop = new AbortController();
  const lines: { msg: string }[] = [];
  const decision = decideEmptyStart(config, new Map([[3, false]]), capture(lines), stop.signal, 50);
  await until('the wait said', () => lines.some((l) => l.msg.includes('waiting for member(s) 1')));
  stop.abort('SIGTERM');
  await assert.rejects(decision, (e: Error & { code?: string }) => e.code === 'SHUTTING_DOWN');
});

void test('with initialClusterState new, a majority of empty members is enough', async () => {
  const lines: { msg: string }[] = [];
  const r = await decideEmptyStart(
    { ...config, initialClusterState: 'new' },
    new Map([[3, false]]),
    capture(lines),
    undefined,
    50,
  );
  assert.equal(r, 'none');
  assert.equal(
    lines.at(-1)?.msg,
    'a majority of members hold no log (initialClusterState new; not heard from 1): starting a new cluster',
  );
  // A member holding a log still makes it recover.
  assert.equal(
    await decideEmptyStart(
      { ...config, initialClusterState: 'new' },
      new Map([[1, true]]),
      capture(lines),
      undefined,
      50,
    ),
    'recovering',
  );
  assert.throws(
    () =>
      resolveNodeConfig({
        id: 2,
        dataDir: '/nonexistent/flotilla-empty-start',
        initialCluster: '2=127.0.0.1:3@http://127.0.0.1:4',
        initialClusterState: 'old',
      }),
    /initialClusterState must be auto or new, got "old"/,
  );
});
