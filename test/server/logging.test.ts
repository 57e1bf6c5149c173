// What a person reads in a node's log: pre-votes told apart from votes, human lines on a
// terminal and JSON lines for collectors.

import assert from 'node:assert/strict';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import type { RaftEvent } from '../../src/raft/index.js';
import {
  createLogger,
  humanize,
  logRuntimeEvent,
  hostOf,
  RateLimitedWarning,
  reasonClass,
  resolveLogFormat,
  Throttle,
} from '../../src/server/logging.js';
import { resolveNodeConfig } from '../../src/server/config.js';
import { FlotillaNode } from '../../src/server/node.js';
import { groupDir, writeIdentity } from '../../src/server/data-dir.js';
import { openWalStorage } from '../../src/storage/index.js';
import { freePorts } from '../e2e/harness.js';
import { ents, tempDir } from '../storage/helpers.js';
import { ManualClock } from '../support/manual-clock.js';

function sink(isTTY = false): { lines: string[]; write(s: string): void; isTTY: boolean } {
  const lines: string[] = [];
  return { lines, isTTY, write: (s: string) => void lines.push(...s.trimEnd().split('\n')) };
}

const clock = /^\d\d:\d\d:\d\d\.\d{3} /;

void test('pretty lines carry a clock time, the level, the message and the fields', () => {
  const out = sink();
  const log = createLogger(1, { level: 'info', format: 'pretty', out });
  log.info({ term: 2, peer: 3 }, 'became leader');
  log.debug('not at this level');
  assert.equal(out.lines.length, 1, out.lines.join('\n'));
  assert.match(out.lines[0] ?? '', clock);
  assert.equal((out.lines[0] ?? '').replace(clock, ''), 'INFO became leader term=2 peer=3');
});

void test('json lines are pino records', () => {
  const out = sink(true);
  createLogger(7, { level: 'info', format: 'json', out }).warn({ term: 1 }, 'stepped down');
  const rec = JSON.parse(out.lines[0] ?? '') as Record<string, unknown>;
  assert.equal(rec['msg'], 'stepped down');
  assert.equal(rec['level'], 40);
  assert.equal(rec['node'], 7);
  assert.equal(typeof rec['time'], 'number');
});

void test('auto is pretty on a terminal and json otherwise', () => {
  assert.equal(resolveLogFormat('auto', true), 'pretty');
  assert.equal(resolveLogFormat('auto', false), 'json');
  assert.equal(resolveLogFormat('json', true), 'json');
  const tty = sink(true);
  createLogger(1, { level: 'info', out: tty }).info('hello');
  assert.match(tty.lines[0] ?? '', clock);
  const pipe = sink(false);
  createLogger(1, { level: 'info', out: pipe }).info('hello');
  assert.doesNotThrow(() => JSON.parse(pipe.lines[0] ?? ''), pipe.lines[0]);
});

void test('an error is rendered with its stack on the lines below', () => {
  const out = sink();
  const err = new Error('disk on fire');
  createLogger(1, { level: 'info', format: 'pretty', out }).fatal({ err }, 'node stopped');
  assert.equal((out.lines[0] ?? '').replace(clock, ''), 'FATAL node stopped');
  assert.match(out.lines[1] ?? '', /^ {4}Error: disk on fire$/);
  assert.match(out.lines[2] ?? '', /^ {4}\s*at /);
  assert.equal(humanize('not json'), 'not json');
});

void test('pre-votes are logged as pre-votes, votes as votes', () => {
  const out = sink();
  const log = createLogger(1, { level: 'info', format: 'pretty', out });
  const event = (kind: RaftEvent['kind'], reason: string): void =>
    logRuntimeEvent(log, { kind: 'raft', event: { kind, node: 1, term: 1, peer: 3, reason } });
  event('pre-vote-granted', 'pre-vote for term 2');
  event(
    'pre-vote-refused',
    'pre-vote for term 1: that term is not past ours (1), in which we voted for 2',
  );
  event('vote-granted', 'vote for term 2');
  event('vote-refused', 'vote for term 1: already voted for 2 in term 1');
  assert.deepEqual(
    out.lines.map((l) => l.replace(clock, '')),
    [
      'INFO granted pre-vote to 3 term=1 peer=3 reason=pre-vote for term 2',
      'INFO refused pre-vote to 3 term=1 peer=3 reason=pre-vote for term 1: that term is not past ours (1), in which we voted for 2',
      'INFO voted for 3 term=1 peer=3 reason=vote for term 2',
      'INFO refused vote to 3 term=1 peer=3 reason=vote for term 1: already voted for 2 in term 1',
    ],
  );
});

void test('a leader stepping down warns only when it lost its quorum or was removed', () => {
  // Before, every step-down warned, a leadership hand-off at shutdown among them.
  const out = sink();
  const log = createLogger(1, { level: 'warn', format: 'pretty', out });
  const stepDown = (reason: string): void =>
    logRuntimeEvent(log, {
      kind: 'raft',
      event: { kind: 'step-down', node: 1, term: 2, peer: 0, reason },
    });
  stepDown('vote request from 2 in term 3');
  stepDown('append from 3 in term 4');
  stepDown('check-quorum: no contact with a majority');
  stepDown('removed, and heard from no voter in an election timeout');
  assert.deepEqual(
    out.lines.map((l) => l.replace(clock, '').replace(/ term=.*/, '')),
    ['WARN stepped down', 'WARN stepped down'],
  );
  assert.match(out.lines[0] ?? '', /reason=check-quorum/);
});

void test('a node logs the torn WAL tail it cut at start-up: file, offset and bytes dropped', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const kvDir = groupDir(dir, 0);
    const wal = await openWalStorage(kvDir);
    for (let i = 1; i <= 3; i++) await wal.persist(ents(i, i, 1, 0), null);
    await wal.close();
    const seg = join(kvDir, (await readdir(kvDir)).find((n) => n.endsWith('.seg')) ?? '');
    const whole = await readFile(seg);
    await writeFile(seg, Buffer.concat([whole, Buffer.from([1, 2, 3, 4, 5, 6, 7])]));
    const [peer, client] = (await freePorts(2)) as [number, number];
    const out = sink();
    const config = resolveNodeConfig({
      id: 1,
      dataDir: dir,
      initialCluster: `1=127.0.0.1:${peer}@http://127.0.0.1:${client}`,
    });
    // A log without its identity file is refused: the directory is this node's.
    writeIdentity(dir, {
      clusterId: config.clusterId,
      memberId: 1,
      members: [1],
      storage: 'wal',
      recovery: 'none',
    });
    const node = await FlotillaNode.start(config, {
      logger: createLogger(1, { level: 'info', format: 'json', out }),
    });
    await node.close();
    const records = out.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const torn = records.filter((r) => /torn write/.test(String(r['msg'])));
    assert.equal(torn.length, 1, out.lines.join('\n'));
    assert.equal(torn[0]?.['level'], 40, 'at warn');
    assert.equal(torn[0]?.['file'], seg);
    assert.equal(torn[0]?.['offset'], whole.length);
    assert.equal(torn[0]?.['droppedBytes'], 7);
  } finally {
    await cleanup();
  }
});

void test('a throttle says a key a few times per interval, then counts what went unsaid', () => {
  const t = new Throttle(10_000, 3);
  assert.deepEqual([t.take(2, 0), t.take(2, 10), t.take(2, 20)], [0, 0, 0], 'a burst is said');
  for (let ms = 30; ms < 10_000; ms += 30) assert.equal(t.take(2, ms), null, `${ms}`);
  assert.equal(t.take(3, 5_000), 0, 'another key has its own interval');
  assert.equal(t.take(2, 10_000), 333, 'said again after the interval, with the count');
  assert.equal(t.take(2, 10_001), 0);
  assert.equal(t.take(2, 30_000), 0, 'nothing went unsaid since');
  assert.equal(t.take(2, 40_000), 0);
});

void test('a rate-limited warning says a key once per interval, by the clock given, with a count', () => {
  const said: { fields: Record<string, unknown>; msg: string }[] = [];
  const log = {
    warn: (fields: Record<string, unknown>, msg: string) => said.push({ fields, msg }),
  };
  const clock = new ManualClock();
  const w = new RateLimitedWarning(log as never, clock, { intervalMs: 60_000 });
  assert.equal(w.warn('10.0.0.9 bad cert', { remote: '10.0.0.9:1' }, 'refused: bad cert'), true);
  for (let i = 0; i < 5; i++) {
    clock.now += 200; // five a second, as a refused learner dials
    assert.equal(w.warn('10.0.0.9 bad cert', { remote: '10.0.0.9:2' }, 'refused: bad cert'), false);
  }
  assert.equal(w.warn('10.0.0.9 no cert', {}, 'refused: no cert'), true, 'another reason');
  assert.equal(w.warn('10.0.0.8 bad cert', {}, 'refused: bad cert'), true, 'another address');
  assert.equal(said.length, 3);
  clock.now = 60_000;
  assert.equal(w.warn('10.0.0.9 bad cert', { remote: '10.0.0.9:3' }, 'refused: bad cert'), true);
  assert.deepEqual(said[3], {
    fields: { remote: '10.0.0.9:3', unsaid: 5 },
    msg: 'refused: bad cert (and 5 more times since last said)',
  });
  clock.now = 120_000;
  w.warn('10.0.0.9 bad cert', {}, 'refused: bad cert');
  assert.deepEqual(said[4], { fields: {}, msg: 'refused: bad cert' }, 'nothing unsaid since');
});

void test('a rate-limited warning remembers a bounded number of keys', () => {
  const said: string[] = [];
  const clock = new ManualClock();
  const w = new RateLimitedWarning(
    { warn: (_: unknown, msg: string) => said.push(msg) } as never,
    clock,
    {
      intervalMs: 60_000,
      maxKeys: 100,
    },
  );
  // A stranger choosing a new address each time cannot grow the memory.
  for (let i = 0; i < 10_000; i++) w.warn(`10.0.${i >> 8}.${i & 255} x`, {}, `refused ${i}`);
  assert.equal(w.keys, 100);
  assert.equal(said.length, 10_000, 'each new key is said');
  // Keys whose minute is over make room first; a key forgotten is said again when it recurs.
  clock.now = 60_000;
  w.warn('10.9.9.9 x', {}, 'late');
  assert.equal(w.keys, 1);
  assert.equal(hostOf('10.0.0.9:51234'), '10.0.0.9');
  assert.equal(hostOf('::1:51234'), '::1');
});

void test('reasonClass keys a TLS refusal by its kind, not by the certificate the dialler chose', () => {
  const notIssued = (cn: string) =>
    `peer certificate not issued by this cluster's CA (UNABLE_TO_GET_ISSUER_CERT; subject CN=${cn}, issuer CN=Other (${cn}) CA)`;
  // One dialler presenting ever other certificates: one key, so one line a minute.
  assert.equal(reasonClass(notIssued('rogue-1')), reasonClass(notIssued('rogue-2')));
  assert.equal(
    reasonClass('peer certificate expired on Jan  1 00:00:00 2026 GMT (a resumed TLS session; x)'),
    reasonClass('peer certificate expired on Jan  2 00:00:00 2026 GMT (a resumed TLS session; y)'),
  );
  assert.equal(
    reasonClass('ours "a", node 2 sent "junk"'),
    reasonClass('ours "a", node 3 sent "x"'),
  );
  // Another kind of refusal keeps its own key.
  assert.notEqual(reasonClass(notIssued('rogue-1')), reasonClass('peer presented no certificate'));
  assert.notEqual(
    reasonClass('TLS handshake failed (ERR_SSL_WRONG_VERSION_NUMBER: wrong version number)'),
    reasonClass(notIssued('rogue-1')),
  );
});
