// A node that lost its data recovers every range it held (docs/DESIGN.md, "A node that lost its
// data", "Every range it held"), on four in-process nodes. Node 4 holds range 0, a range split
// off range 0 with it among the replicas (its own range 0 log names it), and a range it was
// moved onto (split off a range it had been removed from: only the meta group's map names it
// there). A range split off range 0 naming node 4 and since moved off it is one its replayed
// range 0 log starts again. Node 4's data directory is wiped and the node started again with
// its old command while writes go on. It must start recovering in every range group it runs
// and cast no vote in one before that group caught up, start the moved-on range from the map,
// give the moved-off one up, say so in its status and readiness until recovered, and every
// acknowledged write must be on every replica the map names. The same run with range recovery
// skipped (a planted defect) is caught by the same checks.

import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import test from 'node:test';
import { pino } from 'pino';
import type { NodeStatus } from '../../src/api/types.js';
import type { ConfState } from '../../src/raft/index.js';
import { simpleConf } from '../../src/raft/index.js';
import type { RangeDescriptor } from '../../src/ranges/types.js';
import { readIdentity } from '../../src/server/data-dir.js';
import { FlotillaNode } from '../../src/server/node.js';
import { RETIRED_RANGES_FILE } from '../../src/server/range-dirs.js';
import { retireVerdict, type RetireInput } from '../../src/server/range-retirer.js';
import { TestNodes, postJson, until } from './nodes.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

interface LogLine {
  readonly group: number;
  readonly msg: string;
}

/** Keeps a node's log lines, each with its group (the key-value group's carry none: 0). */
function capture(id: number, lines: LogLine[]): pino.Logger {
  return pino(
    { level: 'info', base: { node: id } },
    {
      write: (s: string) => {
        const o = JSON.parse(s) as { group?: number; msg?: string };
        lines.push({ group: o.group ?? 0, msg: o.msg ?? '' });
      },
    },
  );
}

/**
 * What the recovery of `groups` did wrong, read from the node's log since it started: a group
 * that never started recovering, voted before it caught up, or never caught up. Empty when
 * every one recovered as it must. The checker of this test, tested with planted logs below.
 */
export function recoveryProblems(lines: readonly LogLine[], groups: readonly number[]): string[] {
  const problems: string[] = [];
  for (const g of groups) {
    const msgs = lines.filter((l) => l.group === g).map((l) => l.msg);
    const started = msgs.indexOf('recovery started');
    const finished = msgs.indexOf('recovery finished');
    const end = finished < 0 ? msgs.length : finished;
    const first = msgs.findIndex((m) => m.startsWith('voted for'));
    if (started < 0) problems.push(`group ${g} never started recovering`);
    if (first >= 0 && (started < 0 || first < end))
      problems.push(`group ${g} ${msgs[first] ?? ''} before it caught up`);
    if (finished < 0) problems.push(`group ${g} never caught up`);
  }
  return problems;
}

void test('the recovery checker reports a group that skipped recovery or voted while recovering (planted)', () => {
  const good: LogLine[] = [
    { group: 5, msg: 'recovery started' },
    { group: 5, msg: 'leader is 1' },
    { group: 5, msg: 'recovery finished' },
    { group: 5, msg: 'voted for 2' },
  ];
  assert.deepEqual(recoveryProblems(good, [5]), []);
  const skipped: LogLine[] = [{ group: 5, msg: 'voted for 2' }];
  assert.deepEqual(recoveryProblems(skipped, [5]), [
    'group 5 never started recovering',
    'group 5 voted for 2 before it caught up',
    'group 5 never caught up',
  ]);
  const early: LogLine[] = [
    { group: 5, msg: 'recovery started' },
    { group: 5, msg: 'voted for 3' },
    { group: 5, msg: 'recovery finished' },
  ];
  assert.deepEqual(recoveryProblems(early, [5, 7]), [
    'group 5 voted for 3 before it caught up',
    'group 7 never started recovering',
    'group 7 never caught up',
  ]);
});

void test('a recovering copy of a range is judged by the range map alone, once the map caught up and no leader fed it for the abandon time', () => {
  const desc = (replicas: number[], generation: number): RangeDescriptor => ({
    id: 5,
    start: enc.encode('m'),
    end: null,
    generation,
    replicas,
  });
  const conf = (voters: number[]): ConfState => simpleConf(voters);
  const base: RetireInput = {
    self: 4,
    conf: conf([1, 2, 3, 4]),
    descriptor: desc([1, 2, 3, 4], 1),
    mapped: undefined,
    wasMember: true,
    preparing: false,
    idleMs: 0,
    abandonAfterMs: 6_000,
  };
  const out = (o: Partial<RetireInput>): string | null => retireVerdict({ ...base, ...o });
  // Replaying its log it applied a removal that a later change undid: not out while recovering.
  assert.match(out({ conf: conf([1, 2, 3]) }) ?? '', /applied its removal/);
  assert.equal(out({ conf: conf([1, 2, 3]), recovering: true }), null);
  // Prepared and never added, nothing arrives: out, recovering or not (nothing else ends it).
  const absent = { conf: conf([1, 2, 3]), descriptor: desc([1, 2, 3], 1), wasMember: false };
  const prepared = { ...absent, preparing: true, idleMs: 30_000 };
  assert.match(out(prepared) ?? '', /no progress/);
  assert.match(out({ ...prepared, recovering: true }) ?? '', /no progress/);
  assert.equal(out({ ...prepared, recovering: true, idleMs: 1_000 }), null);
  // A split's seed names it, the map (caught up) says a later change removed it: out once
  // nothing arrived for the abandon time. Before, the range may have added it back since (a
  // move is recorded in the map once done) and its leader be about to catch the copy up
  // (simulator seed 788 of --ranges --moves --meta --wipe-every 300 gave such a copy up).
  const moved = { mapped: desc([1, 2, 3], 2), recovering: true, idleMs: 6_000 };
  assert.match(out(moved) ?? '', /range map holds it at generation 2/);
  assert.match(out({ ...moved, mapCurrent: true }) ?? '', /range map holds it/);
  assert.equal(out({ ...moved, idleMs: 5_999 }), null);
  // A copy not recovering is out at once: it applied what it knows committed.
  assert.match(out({ ...moved, recovering: false, idleMs: 0 }) ?? '', /range map holds it/);
  // ... and a recovering one not before the meta group here caught up: its map may miss a change.
  assert.equal(out({ ...moved, mapCurrent: false }), null);
});

interface DescriptorJson {
  id: number;
  replicas: number[];
  generation: number;
}

async function split(c: TestNodes, key: string): Promise<DescriptorJson> {
  const r = await postJson(`${c.url(1)}/v1/ranges/split`, { key }, { timeoutMs: 30_000 });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return r.json['right'] as DescriptorJson;
}

/** Key to value of every key node `n` holds in range `id`, from its own applied state. */
function held(n: FlotillaNode, id: number): Map<string, string> | null {
  const group = n.ranges.group(id);
  if (group === undefined) return null;
  const r = group.range.kv.range({
    range: { key: new Uint8Array([0]), rangeEnd: new Uint8Array([0]) },
    limit: 0,
    countOnly: false,
  });
  return new Map(r.kvs.map((kv) => [dec.decode(kv.key), dec.decode(kv.value)]));
}

/**
 * Acknowledged writes missing from a replica the map names for the key's range. Each replica's
 * keys are read once per call: read once per key, a probe over thousands of writes held the
 * event loop the nodes share for seconds, and they could not catch up while it was probed.
 */
function lostWrites(c: TestNodes, acked: ReadonlyMap<string, string>): string[] {
  const map = c.node(1).meta.machine.map();
  if (map === null) return ['no range map'];
  const problems: string[] = [];
  const copies = new Map<string, Map<string, string> | null>();
  const copy = (n: number, id: number): Map<string, string> | null => {
    const at = `${n}/${id}`;
    if (!copies.has(at)) copies.set(at, held(c.node(n), id));
    return copies.get(at) ?? null;
  };
  for (const [key, value] of acked) {
    const d = map.lookup(enc.encode(key));
    if (d === undefined) {
      problems.push(`${key}: in no range`);
      continue;
    }
    for (const n of d.replicas) {
      const got = copy(n, d.id);
      if (got === null) problems.push(`node ${n} does not run range ${d.id} (${key})`);
      else if (got.get(key) !== value)
        problems.push(`node ${n} range ${d.id}: ${key} is ${got.get(key) ?? 'missing'}`);
    }
  }
  return problems;
}

interface WipeRun {
  /** Range split off range 0 with node 4 (from range 0's log). */
  readonly split: number;
  /** Range node 4 was moved onto (from the map only). */
  readonly moved: number;
  /** Range split off range 0 with node 4, later moved off it. */
  readonly movedOff: number;
  readonly problems: string[];
  readonly lines: readonly LogLine[];
  readonly statuses: readonly NodeStatus[];
  /** The identity file's recovery, read just before each status. */
  readonly identities: readonly (string | undefined)[];
  readonly readyz: readonly { status: number; reason: string }[];
  readonly lost: string[];
  /** Node 4's record of where it knows every range it ran from: before the wipe, then polled. */
  readonly completeFrom: { readonly before: unknown; readonly polled: readonly unknown[] };
}

/** `completeFrom` in a node's range record (undefined: no record, or not known). */
function completeFrom(dataDir: string): unknown {
  try {
    const text = readFileSync(join(dataDir, RETIRED_RANGES_FILE), 'utf8');
    return (JSON.parse(text) as { completeFrom?: unknown }).completeFrom;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** The scenario; `planted`: node 4 restarts with range recovery skipped. */
async function wipeRun(planted: boolean): Promise<WipeRun> {
  const c = await TestNodes.start({ nodes: 4 });
  const acked = new Map<string, string>();
  let writing = true;
  let writer: Promise<void> = Promise.resolve();
  try {
    await c.waitForLeader();
    await until('the range map bootstrapped', () => c.node(1).meta.machine.map() !== null);
    const rA = await split(c, 'm');
    const rB = await split(c, 'g');
    assert.deepEqual(
      [rA.replicas, rB.replicas],
      [
        [1, 2, 3, 4],
        [1, 2, 3, 4],
      ],
    );
    await until('every node runs both ranges', () =>
      c.nodes.every((n) => n.ranges.group(rA.id) && n.ranges.group(rB.id)),
    );
    await c.node(1).changeReplicas(rB.id, { remove: 4 }, AbortSignal.timeout(60_000));
    await until('node 4 gave range B up', () => c.node(4).ranges.group(rB.id) === undefined);
    const rD = await split(c, 'j');
    assert.deepEqual(rD.replicas, [1, 2, 3]);
    await until('nodes 1-3 run range D', () =>
      [1, 2, 3].every((n) => c.node(n).ranges.group(rD.id) !== undefined),
    );
    await c.node(2).changeReplicas(rD.id, { add: 4, remove: 1 }, AbortSignal.timeout(60_000));
    await until('node 4 runs range D', () => c.node(4).ranges.group(rD.id) !== undefined);

    // A writer through node 1 to every range (a: range 0, h: B, k: D, n: A) from here on.
    writer = (async () => {
      for (let i = 0; writing && i < 20_000; i++) {
        const key = `${'ahkn'[i % 4] as string}${String(i).padStart(5, '0')}`;
        const a = await postJson(
          `${c.url(1)}/v1/kv/put`,
          { key, value: `v${i}` },
          { timeoutMs: 10_000 },
        ).catch(() => null);
        if (a?.status === 200) acked.set(key, `v${i}`);
      }
    })();
    await until('writes to every range', () => acked.size >= 40);

    // Wipe node 4 and start it again with its old configuration.
    const completeBefore = completeFrom(c.dataDir(4));
    const polled: unknown[] = [];
    await c.node(4).close();
    rmSync(c.dataDir(4), { recursive: true, force: true });
    const before = acked.size;
    await until('writes while node 4 is down', () => acked.size >= before + 20);
    const lines: LogLine[] = [];
    const n4 = await FlotillaNode.start(c.config(4), {
      logger: capture(4, lines),
      ...(planted ? { unsafeSkipRangeRecovery: true } : {}),
    });
    c.nodes[3] = n4;
    const statuses: NodeStatus[] = [];
    const identities: (string | undefined)[] = [];
    const readyz: { status: number; reason: string }[] = [];
    await until(
      'node 4 recovered',
      async () => {
        identities.push(readIdentity(c.dataDir(4))?.recovery);
        polled.push(completeFrom(c.dataDir(4)));
        const s = await fetch(`${c.url(4)}/v1/status`);
        const status = (await s.json()) as NodeStatus;
        statuses.push(status);
        const r = await fetch(`${c.url(4)}/readyz`);
        readyz.push({ status: r.status, reason: await r.text() });
        return !status.recovering && r.status === 200;
      },
      60_000,
    );
    identities.push(readIdentity(c.dataDir(4))?.recovery);
    polled.push(completeFrom(c.dataDir(4)));
    const after = acked.size;
    await until('writes after node 4 recovered', () => acked.size >= after + 20);
    writing = false;
    await writer;
    let lost: string[] = [];
    await until(
      'every replica holds every acknowledged write',
      () => (lost = lostWrites(c, acked)).length === 0,
      30_000,
    ).catch(() => undefined);
    return {
      split: rA.id,
      moved: rD.id,
      movedOff: rB.id,
      problems: recoveryProblems(lines, [0, 1, 2, rA.id, rD.id]),
      lines,
      statuses,
      identities,
      readyz,
      lost,
      completeFrom: { before: completeBefore, polled },
    };
  } finally {
    writing = false;
    await writer;
    await c.close();
  }
}

void test('a wiped node recovers every range it held, from its logs and from the range map', async () => {
  const run = await wipeRun(false);
  const show = (): string =>
    JSON.stringify({ lines: run.lines.filter((l) => /recover|voted|range map/.test(l.msg)) });
  assert.deepEqual(run.problems, [], show());
  assert.deepEqual(run.lost, []);
  // The moved-on range was started from the map; the moved-off one given up.
  assert.ok(
    run.lines.some((l) => l.msg.includes(`the range map says this node holds range ${run.moved}`)),
    show(),
  );
  assert.ok(
    run.lines.some((l) => l.msg.startsWith(`giving range ${run.movedOff} up`)),
    show(),
  );
  const last = run.statuses.at(-1);
  assert.deepEqual(
    [last?.recovering, last?.recoveringGroups, last?.recoveryWaitingFor],
    [false, [], []],
  );
  assert.deepEqual(
    last?.rangesInMap,
    [0, run.split, run.moved].sort((a, b) => a - b),
  );
  // While it recovered, the status named what it waited for and /readyz answered 503.
  const waiting = run.statuses.filter((s) => s.recovering);
  assert.ok(waiting.length > 0, 'never seen recovering');
  assert.ok(
    waiting.every((s) => (s.recoveryWaitingFor ?? []).length > 0),
    JSON.stringify(waiting),
  );
  assert.ok(
    run.readyz.some((r) => r.status === 503 && /recovering/.test(r.reason)),
    JSON.stringify(run.readyz),
  );
  // A new data directory knows every range it ran; a wiped one none until the map was read,
  // then those allocated since: every range allocated before the wipe is below that.
  const { before, polled } = run.completeFrom;
  assert.equal(before, 3);
  const after = polled.at(-1);
  assert.ok(
    typeof after === 'number' &&
      after > Math.max(run.split, run.moved, run.movedOff) &&
      polled.every((v) => v === undefined || v === after),
    JSON.stringify({ polled, ranges: [run.split, run.moved, run.movedOff] }),
  );
  // The identity file said recovering for as long as the node did, and none at the end.
  assert.equal(run.identities[0], 'recovering');
  assert.equal(run.identities.at(-1), 'none');
  run.identities
    .slice(0, run.statuses.length)
    .forEach((r, i) =>
      assert.ok(
        r === 'recovering' || run.statuses[i]?.recovering === false,
        `sample ${i}: ${JSON.stringify(run.statuses[i])}`,
      ),
    );
});

void test('the same run with range recovery skipped is caught (planted defect)', async () => {
  const run = await wipeRun(true);
  assert.ok(
    run.problems.includes(`group ${run.split} never started recovering`),
    JSON.stringify(run.problems),
  );
  assert.ok(
    run.problems.includes(`group ${run.moved} never started recovering`),
    JSON.stringify(run.problems),
  );
});
