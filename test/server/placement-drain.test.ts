// A drain carried out by the placement loop in running nodes (docs/DESIGN.md, "Placement"):
// four in-process members, two ranges split off range 0 on members 1, 2 and 3. Member 1 (which
// leads a range, if any does there) is drained while a writer writes to both ranges: the loop
// moves its replicas to member 4, one step at a time through the ranges' own moves, until it
// holds none; every acknowledged write is then on every replica of its range, and removing the
// member is no longer refused. Undrained, it receives its share back.

import assert from 'node:assert/strict';
import test from 'node:test';
import { FlotillaClient } from '../../src/client/index.js';
import type { FlotillaNode } from '../../src/server/node.js';
import { TestNodes, postJson, until } from './nodes.js';
import { pino } from 'pino';

const enc = new TextEncoder();
const dec = new TextDecoder();

/** What node `n` holds of range `id`, key to value; null when it does not run it. */
function held(n: FlotillaNode, id: number): Map<string, string> | null {
  const group = n.ranges.group(id);
  if (group === undefined) return null;
  const r = group.range.kv.range({
    range: { key: enc.encode('\0'), rangeEnd: new Uint8Array([0]) },
    limit: 0,
    countOnly: false,
  });
  return new Map(r.kvs.map((kv) => [dec.decode(kv.key), dec.decode(kv.value)]));
}

/** Every acknowledged write a replica lacks (or holds another value of); empty when none. */
function missing(
  acked: ReadonlyMap<string, string>,
  kvs: ReadonlyMap<string, string> | null,
  who: string,
) {
  if (kvs === null) return [`${who} does not run the range`];
  return [...acked]
    .filter(([k, v]) => kvs.get(k) !== v)
    .map(([k, v]) => `${who}: ${k} is ${kvs.get(k) ?? 'missing'}, acknowledged ${v}`);
}

void test('the missing-writes checker names a replica without an acknowledged write (planted loss)', () => {
  const acked = new Map([
    ['n1', 'a'],
    ['t1', 'b'],
  ]);
  assert.deepEqual(missing(acked, new Map(acked), 'node 1'), []);
  assert.deepEqual(missing(acked, new Map([['n1', 'a']]), 'node 2'), [
    'node 2: t1 is missing, acknowledged b',
  ]);
  assert.deepEqual(missing(acked, null, 'node 3'), ['node 3 does not run the range']);
});

void test('a drained member loses its replicas to the others while both ranges are written; undrained, it gets its share', async () => {
  const lines: string[] = [];
  const c = await TestNodes.start({
    nodes: 4,
    config: { placement: 'on', placementEveryMs: 200, logLevel: 'info' },
    logger: (id) =>
      pino(
        { level: 'info' },
        {
          write: (l: string) =>
            void (/placement|replica|range/.test(l) && lines.push(`${id} ${l}`)),
        },
      ),
  });
  const client = new FlotillaClient({ endpoints: [1, 2, 3, 4].map((id) => c.url(id)) });
  try {
    await c.waitForLeader();
    await until('the range map bootstrapped', () =>
      c.nodes.every((n) => n.meta.machine.map() !== null),
    );
    const split = async (key: string) => {
      const a = await postJson(
        `${c.url(1)}/v1/ranges/split`,
        { key, replicas: [1, 2, 3] },
        { timeoutMs: 20_000 },
      );
      assert.equal(a.status, 200, JSON.stringify(a.json));
      return (a.json['right'] as { id: number }).id;
    };
    const m = await split('m');
    const t = await split('t');
    const rangeOf = (key: string) => (key < 't' ? m : t);
    const map = () => c.node(4).meta.machine.map();
    // Four members, six replicas on three of them: the loop first gives node 4 its share.
    const counts = () =>
      [1, 2, 3, 4].map((n) => [m, t].filter((id) => map()?.get(id)?.replicas.includes(n)).length);
    const spread = () => Math.max(...counts()) - Math.min(...counts());
    // Node 4's map may not show the second split yet: counted before it does, the replicas
    // would look spread already.
    await until("every node's map shows both ranges", () =>
      c.nodes.every((n) => n.meta.machine.map()?.get(t) !== undefined),
    );
    const spreadCounts = await until(
      'the replicas spread over the four members',
      async () => {
        const now = counts();
        const even = Math.max(...now) - Math.min(...now) <= 1;
        return even && (await client.placement()).pending === 0 ? now : null;
      },
      60_000,
    );
    assert.deepEqual(spreadCounts.sort(), [1, 1, 2, 2]);
    // The member drained: the leader of range m (its replica hands leadership off as it goes).
    const victim = await until('a leader of range m', () => {
      const l =
        c
          .node(map()?.get(m)?.replicas[0] ?? 1)
          .ranges.group(m)
          ?.runtime.leaderId() ?? 0;
      return l > 0 ? l : null;
    });
    const others = [1, 2, 3, 4].filter((n) => n !== victim);

    const acked = new Map<string, string>();
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing && i < 20_000; i++) {
        const key = `${i % 2 === 0 ? 'n' : 'u'}${String(i).padStart(5, '0')}`;
        const a = await postJson(
          `${c.url(2)}/v1/kv/put`,
          { key, value: `v${i}` },
          { timeoutMs: 15_000 },
        ).catch(() => null);
        if (a?.status === 200) acked.set(key, `v${i}`);
      }
    })();
    await until('the writer wrote', () => acked.size >= 20);

    assert.deepEqual((await client.drainNode(victim)).draining, [victim]);
    const show = async () =>
      JSON.stringify({
        placement: await client.placement(),
        map: [m, t].map((id) => map()?.get(id)?.replicas),
      });
    const drained = await until(
      'the drained member holds no replica of either range',
      () => {
        const rs = [m, t].map((id) => map()?.get(id)?.replicas ?? []);
        return rs.every((r) => !r.includes(victim) && r.length === 3) ? rs : null;
      },
      40_000,
    ).catch(async (err: unknown) => {
      throw new Error(`${(err as Error).message}: ${await show()}\n${lines.join('')}`);
    });
    assert.deepEqual(drained, [others, others]);
    const before = acked.size;
    await until('writes after the drain', () => acked.size > before + 10);
    writing = false;
    await writer;

    for (const id of [m, t]) {
      const mine = new Map([...acked].filter(([k]) => rangeOf(k) === id));
      await until(`every replica of range ${id} holds every acknowledged write`, () =>
        others.every((n) => missing(mine, held(c.node(n), id), `node ${n}`).length === 0),
      );
    }
    await until('the drained member gave both ranges up', () =>
      [m, t].every((id) => c.node(victim).ranges.group(id) === undefined),
    );
    const p = await client.placement();
    assert.ok(p.stepsDone >= 2, JSON.stringify(p));
    assert.deepEqual(p.draining, [victim]);

    // Undrained, it is the emptiest (none, the others two each): a replica moves back to it.
    await client.undrainNode(victim);
    await until(
      'the undrained member holds a replica again, the replicas spread evenly',
      async () =>
        [m, t].some((id) => map()?.get(id)?.replicas.includes(victim) === true) &&
        spread() <= 1 &&
        (await client.placement()).pending === 0,
      60_000,
    );
  } finally {
    await client.close();
    await c.close();
  }
});
