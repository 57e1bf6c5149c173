// Changing a range's replicas while it serves (docs/DESIGN.md, "Ranges in a node"), on four
// in-process nodes: a range split off range 0 is down-replicated to three replicas through the
// node's function (what the placement loop calls), then its leader's replica is moved to the
// fourth node through the API while a writer writes to the range, a duplicate of the move is
// sent at the same time and a retry after it. Every acknowledged write is on every replica
// afterwards; the range's generation rose by one per change; the old replicas gave the range
// up (their directories are gone) and a restart of every node does not bring it back on them,
// while the new replica starts it again from its own directory. Bad moves are refused with
// their codes.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'node:test';
import { cliEntry } from '../../src/cli/cluster.js';
import type { FlotillaNode } from '../../src/server/node.js';
import { groupDir } from '../../src/server/data-dir.js';
import { RETIRED_RANGES_FILE } from '../../src/server/range-dirs.js';
import { TestNodes, postJson, until } from './nodes.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

interface DescriptorJson {
  id: number;
  start: string;
  end: string | null;
  generation: number;
  replicas: number[];
}

/** What node `n` holds of range `id`: key to value, from its own applied state. */
function held(n: FlotillaNode, id: number): Map<string, string> | null {
  const group = n.ranges.group(id);
  if (group === undefined) return null;
  const r = group.range.kv.range({
    range: { key: enc.encode('m'), rangeEnd: new Uint8Array([0]) },
    limit: 0,
    countOnly: false,
  });
  return new Map(r.kvs.map((kv) => [dec.decode(kv.key), dec.decode(kv.value)]));
}

/**
 * Every acknowledged write missing (or with another value) on any replica; empty when each
 * replica holds every one. The checker of this test, itself tested with a planted loss below.
 */
export function lostWrites(
  acked: ReadonlyMap<string, string>,
  replicas: ReadonlyMap<number, ReadonlyMap<string, string> | null>,
): string[] {
  const problems: string[] = [];
  for (const [node, kvs] of replicas) {
    if (kvs === null) {
      problems.push(`node ${node} does not run the range`);
      continue;
    }
    for (const [key, value] of acked)
      if (kvs.get(key) !== value)
        problems.push(
          `node ${node}: ${key} is ${kvs.get(key) ?? 'missing'}, acknowledged ${value}`,
        );
  }
  return problems;
}

void test('the lost-writes checker reports a replica missing an acknowledged write (planted loss)', () => {
  const acked = new Map([
    ['n1', 'a'],
    ['n2', 'b'],
  ]);
  const whole = new Map(acked);
  assert.deepEqual(lostWrites(acked, new Map([[1, whole]])), []);
  const lossy = new Map([['n1', 'a']]);
  const stale = new Map([
    ['n1', 'a'],
    ['n2', 'old'],
  ]);
  assert.deepEqual(
    lostWrites(
      acked,
      new Map<number, Map<string, string> | null>([
        [1, whole],
        [2, lossy],
        [3, stale],
        [4, null],
      ]),
    ),
    [
      'node 2: n2 is missing, acknowledged b',
      'node 3: n2 is old, acknowledged b',
      'node 4 does not run the range',
    ],
  );
});

/** Runs the CLI in a process of its own (the nodes of this process keep serving meanwhile). */
function cli(args: readonly string[]): Promise<{ status: number; out: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [cliEntry(), ...args],
      { encoding: 'utf8', timeout: 60_000 },
      (err, stdout, stderr) =>
        resolve({ status: err === null ? 0 : Number(err.code ?? 1), out: `${stdout}${stderr}` }),
    );
  });
}

function errorCode(json: Record<string, unknown>): string | undefined {
  return (json['error'] as { code?: string } | undefined)?.code;
}

/** The leader of range `id` that every running replica agrees on. */
async function rangeLeader(c: TestNodes, id: number): Promise<number> {
  return until(`an agreed leader of range ${id}`, () => {
    const leaders = c.nodes
      .map((n) => n.ranges.group(id)?.runtime.leaderId())
      .filter((l): l is number => l !== undefined);
    const l = leaders[0] ?? 0;
    return l !== 0 && leaders.every((x) => x === l) ? l : null;
  });
}

void test('a range moves its leader replica to a fourth node while written to; the old replicas give it up for good', async () => {
  const c = await TestNodes.start({ nodes: 4 });
  try {
    await c.waitForLeader();
    await until('the range map bootstrapped', () => c.node(1).meta.machine.map() !== null);
    const split = await postJson(
      `${c.url(1)}/v1/ranges/split`,
      { key: 'm' },
      { timeoutMs: 20_000 },
    );
    assert.equal(split.status, 200, JSON.stringify(split.json));
    const r = (split.json['right'] as DescriptorJson).id;
    assert.deepEqual((split.json['right'] as DescriptorJson).replicas, [1, 2, 3, 4]);
    await until('every node runs the new range', () =>
      c.nodes.every((n) => n.ranges.group(r) !== undefined),
    );

    // Down to three replicas through the node's own function, asked of a node that may not
    // lead the range (it forwards the change).
    const down = await c.node(2).changeReplicas(r, { remove: 4 }, AbortSignal.timeout(60_000));
    assert.deepEqual([down.replicas, down.generation], [[1, 2, 3], 2]);
    await until('node 4 gave the range up', () => c.node(4).ranges.group(r) === undefined);
    await until(
      "node 4's directory of the range is gone",
      () => !existsSync(groupDir(c.dataDir(4), r)),
    );
    assert.equal(c.node(4).lanes.lane(r), undefined);

    // Refusals, nothing changed by any.
    const move = (via: number, body: Record<string, unknown>) =>
      postJson(`${c.url(via)}/v1/ranges/move`, body, { timeoutMs: 90_000 });
    for (const [body, status, code] of [
      [{ range: r, from: 1, to: 9 }, 400, 'NODE_NOT_MEMBER'],
      [{ range: 0, from: 1, to: 4 }, 400, 'RANGE_NOT_MOVABLE'],
      [{ range: 999, from: 1, to: 4 }, 404, 'RANGE_NOT_FOUND'],
      [{ range: r, from: 4, to: 4 }, 400, 'INVALID_REQUEST'],
      [{ range: r, from: 1, to: 2 }, 409, 'REPLICA_EXISTS'],
      [{ range: r, from: 1 }, 400, 'BAD_REQUEST'],
    ] as const) {
      const a = await move(1, body);
      assert.equal(a.status, status, JSON.stringify(a.json));
      assert.equal(errorCode(a.json), code, JSON.stringify(body));
    }

    // The move: from the range's leader to node 4, while a writer writes to the range through
    // a node that keeps its replica, with a duplicate of the move sent at the same time.
    const from = await rangeLeader(c, r);
    const via = [1, 2, 3].find((n) => n !== from) as number;
    const acked = new Map<string, string>();
    let writing = true;
    let acknowledged = 0;
    const writer = (async () => {
      for (let i = 0; writing && i < 5_000; i++) {
        const key = `n${String(i).padStart(4, '0')}`;
        const value = `v${i}`;
        const a = await postJson(
          `${c.url(via)}/v1/kv/put`,
          { key, value },
          { timeoutMs: 10_000 },
        ).catch(() => null);
        if (a?.status === 200) {
          acked.set(key, value);
          acknowledged++;
        }
      }
    })();
    await until('the writer wrote', () => acknowledged >= 10);
    const [first, duplicate] = await Promise.all([
      move(via, { range: r, from, to: 4 }),
      move(from, { range: r, from, to: 4 }),
    ]);
    const answers = [first, duplicate];
    assert.ok(
      answers.every((a) => a.status === 200 || errorCode(a.json) === 'RANGE_CHANGE_IN_PROGRESS'),
      JSON.stringify(answers.map((a) => a.json)),
    );
    assert.ok(
      answers.some((a) => a.status === 200),
      JSON.stringify(answers.map((a) => a.json)),
    );
    const want = [1, 2, 3, 4].filter((n) => n !== from);
    for (const a of answers.filter((x) => x.status === 200))
      assert.deepEqual(
        [
          (a.json['range'] as DescriptorJson).replicas,
          (a.json['range'] as DescriptorJson).generation,
        ],
        [want, 3],
      );
    // A retry of the finished move (from the command line, to the new replica) answers the same
    // descriptor and changes nothing more; a move to a non-member is refused with its code.
    const moveArgs = ['range', 'move', String(r), '--from', String(from), '--to', '4'];
    const retry = await cli([...moveArgs, '--json', '--endpoints', c.url(4)]);
    assert.equal(retry.status, 0, retry.out);
    assert.deepEqual(
      (JSON.parse(retry.out) as { range: unknown }).range,
      first.status === 200 ? first.json['range'] : duplicate.json['range'],
    );
    const table = await cli([...moveArgs, '--endpoints', c.url(4)]);
    assert.match(table.out, new RegExp(`^${r}\\s+"m"\\s+\\+inf\\s+3\\s+${want.join(',')}$`, 'm'));
    const refused = await cli([
      'range',
      'move',
      String(r),
      '--from',
      '4',
      '--to',
      '9',
      '--endpoints',
      c.url(4),
    ]);
    assert.notEqual(refused.status, 0);
    assert.match(refused.out, /NODE_NOT_MEMBER/);
    // Keep writing a little through the new configuration, then stop.
    const before = acknowledged;
    await until('writes after the move', () => acknowledged > before + 5);
    writing = false;
    await writer;

    // Every acknowledged write is on every replica, once each applied what its leader committed.
    const lost = () => lostWrites(acked, new Map(want.map((n) => [n, held(c.node(n), r)])));
    await until(
      () => `every replica holds every acknowledged write: ${lost().slice(0, 5).join('; ')}`,
      () => lost().length === 0,
    );
    // Node `from` may follow in the meta group: it shows the move once it applied the record.
    const recorded = () => c.node(from).meta.machine.map()?.get(r);
    await until(
      () =>
        `node ${from}'s map records range ${r} on [${want.join(',')}] at generation 3: ` +
        `it holds [${recorded()?.replicas.join(',')}] at ${recorded()?.generation}`,
      () => recorded()?.generation === 3 && recorded()?.replicas.join(',') === want.join(','),
      5_000,
    );

    // The old leader gave the range up: its directory is gone and it is recorded as retired.
    await until(
      'the old leader gave the range up',
      () => c.node(from).ranges.group(r) === undefined,
    );
    await until(
      "the old leader's directory of the range is gone",
      () => !existsSync(groupDir(c.dataDir(from), r)),
    );
    const retired = JSON.parse(
      readFileSync(join(c.dataDir(from), RETIRED_RANGES_FILE), 'utf8'),
    ) as {
      retired: number[];
    };
    assert.ok(retired.retired.includes(r));

    // A restart of every node: the old replicas do not run the range again (range 0 still
    // names them among the replicas it split the range off with), node 4 runs it from its own
    // directory, and every acknowledged write is still there.
    await c.restartAll();
    await until('every replica runs the range again', () =>
      want.every((n) => c.node(n).ranges.group(r) !== undefined),
    );
    assert.equal(c.node(from).ranges.group(r), undefined);
    assert.equal(existsSync(groupDir(c.dataDir(from), r)), false);
    await until(
      () =>
        `every replica holds every acknowledged write after the restart: ${lost().slice(0, 5).join('; ')}`,
      () => lost().length === 0,
    );
    assert.equal(c.node(from).ranges.group(r), undefined, 'the old leader stays without the range');
  } finally {
    await c.close();
  }
});
