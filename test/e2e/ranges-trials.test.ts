// Trying a split store as a stranger would, on four real processes: range R (the keys from
// "m" on) runs on nodes 1-3, and node 4, which does not run it, is the one spoken to.
// - Values one byte under the limit and at it are stored and read back whole; one byte over is
//   refused VALUE_TOO_LARGE, definite, and leaves the key as it was.
// - 1,000 concurrent connections each put once through node 4: every answer is a success or a
//   definite OVERLOADED (the node's concurrency limit, cut to 100 here so it is reached), and
//   the set checker finds every success on the range and no refused write.
// - R's leader is frozen (SIGSTOP) and its replica moved to node 4 while a writer writes to R;
//   the leader is let go (SIGCONT): the move completes, and every acknowledged write reads back.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { Agent, request } from 'undici';
import { checkSet, type SetAdd } from '../../src/check/index.js';
import type { MoveResponse } from '../../src/api/types.js';
import { FlotillaError } from '../../src/client/index.js';
import { SET_PREFIX, SetWorkload } from '../chaos/workload.js';
import { TestCluster } from './harness.js';
import { PrefixWriter, lostWrites, until } from './range-writers.js';

/** The default `maxValueBytes`. */
const MAX_VALUE = 1_048_576;
const CONNECTIONS = 1_000;
const INFLIGHT_MAX = 100;

const clusters: TestCluster[] = [];
after(async () => {
  for (const c of clusters) await c.stop();
});

interface Answer {
  readonly status: number;
  readonly code: string | null;
  readonly indefinite: boolean | null;
}

/** One put as curl would send it: no client, no session, no retry. */
async function rawPut(url: string, key: string, value: string, agent?: Agent): Promise<Answer> {
  const res = await request(`${url}/v1/kv/put`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ key, value }),
    headersTimeout: 60_000,
    bodyTimeout: 60_000,
    ...(agent === undefined ? {} : { dispatcher: agent }),
  });
  const json = (await res.body.json()) as { error?: { code: string; indefinite: boolean } };
  return {
    status: res.statusCode,
    code: json.error?.code ?? null,
    indefinite: json.error?.indefinite ?? null,
  };
}

void test(
  'a stranger on a split store: value limits, 1,000 connections through a node without the range, a move under a frozen leader',
  { timeout: 300_000 },
  async () => {
    const cluster = await TestCluster.create({
      nodes: 4,
      env: {
        // No replica moves but the test's own.
        FLOTILLA_PLACEMENT: 'off',
        FLOTILLA_MAX_INFLIGHT_REQUESTS: String(INFLIGHT_MAX),
        // Refused at once past it, so that the burst below reaches the limit for certain
        // (a wait for a slot is tested in test/server/admission.test.ts).
        FLOTILLA_MAX_INFLIGHT_WAIT_MS: '0',
      },
    });
    clusters.push(cluster);
    await cluster.start();
    const admin = cluster.client([1, 2, 3]);
    const via4 = cluster.client([4]);
    const stranger = cluster.member(4).client;
    try {
      await until('the range map bootstrapped', async () => {
        const r = await admin.ranges();
        return r.ranges.length === 1 ? r : null;
      });
      const split = await admin.splitRange('m', { replicas: [1, 2, 3] });
      const rangeId = split.right.id;
      await until('node 4 serves writes to the range', async () => {
        await via4.put('m/ready', '1');
        return true;
      });

      // Values at the limit, through the node that does not run the range.
      for (const size of [MAX_VALUE - 1, MAX_VALUE]) {
        const key = `m/value-${size}`;
        const value = 'v'.repeat(size);
        const a = await rawPut(stranger, key, value);
        assert.deepEqual(a, { status: 200, code: null, indefinite: null }, `a value of ${size}`);
        const read = await via4.get(key);
        assert.equal(read?.value.length, size, `${key} reads back whole`);
        assert.equal(read?.value, value);
      }
      const overKey = `m/value-${MAX_VALUE - 1}`;
      const over = await rawPut(stranger, overKey, 'w'.repeat(MAX_VALUE + 1));
      assert.deepEqual(over, { status: 413, code: 'VALUE_TOO_LARGE', indefinite: false });
      assert.equal((await via4.get(overKey))?.value, 'v'.repeat(MAX_VALUE - 1), 'left as it was');
      await assert.rejects(
        via4.put(overKey, 'w'.repeat(MAX_VALUE + 1)),
        (err: unknown) =>
          err instanceof FlotillaError && err.code === 'VALUE_TOO_LARGE' && !err.indefinite,
      );

      // 1,000 connections at once through node 4, one put each.
      const agent = new Agent({ connections: CONNECTIONS });
      const tally = new Map<string, number>();
      let adds: SetAdd[];
      try {
        adds = await Promise.all(
          Array.from({ length: CONNECTIONS }, async (_, i): Promise<SetAdd> => {
            const element = `burst-${i}`;
            const a = await rawPut(stranger, SET_PREFIX + element, 'x', agent).catch(
              (err: unknown): Answer => ({
                status: 0,
                code: `no answer: ${(err as Error).message}`,
                indefinite: true,
              }),
            );
            const what =
              a.status === 200
                ? '200'
                : `${a.status} ${a.code} (${a.indefinite === false ? 'definite' : 'indefinite'})`;
            tally.set(what, (tally.get(what) ?? 0) + 1);
            return {
              element,
              status: a.status === 200 ? 'ok' : a.indefinite === false ? 'fail' : 'unknown',
            };
          }),
        );
      } finally {
        await agent.close();
      }
      const seen = JSON.stringify(Object.fromEntries(tally));
      const answers = [...tally.keys()];
      assert.ok(
        answers.every((w) => w === '200' || w === '429 OVERLOADED (definite)'),
        `only successes and definite OVERLOADED: ${seen}`,
      );
      assert.ok(
        (tally.get('429 OVERLOADED (definite)') ?? 0) > 0,
        `the limit was reached: ${seen}`,
      );
      assert.ok((tally.get('200') ?? 0) >= INFLIGHT_MAX / 2, `writes went through: ${seen}`);
      const finalReads = await Promise.all(
        [1, 4].map((id) => SetWorkload.finalRead(cluster.member(id).client, `node ${id}`)),
      );
      const report = checkSet({ adds, finalReads });
      assert.ok(
        report.valid,
        `${seen}: lost ${JSON.stringify(report.lost.slice(0, 5))}, refused but applied ` +
          `${JSON.stringify(report.failedPresent.slice(0, 5))}`,
      );
      // The checker sees a refused write reported as a success (a planted loss).
      const refused = adds.find((a) => a.status === 'fail') as SetAdd;
      const planted = checkSet({
        adds: adds.map((a) => (a === refused ? { ...a, status: 'ok' as const } : a)),
        finalReads,
      });
      assert.deepEqual(
        planted.lost.map((l) => l.element),
        [refused.element],
      );
      console.log(`# ${CONNECTIONS} connections through node 4: ${seen}`);

      // A move while the range's leader is frozen.
      const writerClient = cluster.client([1, 2, 3]);
      const writer = new PrefixWriter(writerClient, 'm/w');
      try {
        await until('the writer writes', () => (writer.acked.size >= 20 ? true : null));
        const leader = await until('a leader of the range', async () => {
          const r = await admin.ranges();
          const l = r.ranges.find((x) => x.id === rangeId)?.leader ?? 0;
          return l > 0 ? l : null;
        });
        cluster.pause(leader);
        let moved: MoveResponse | undefined;
        try {
          const mover = cluster.client([1, 2, 3].filter((id) => id !== leader));
          try {
            const before = writer.acked.size;
            const t = Date.now();
            moved = await mover.moveRange(rangeId, leader, 4);
            const tookMs = Date.now() - t;
            await until('writes while the old leader is frozen', () =>
              writer.acked.size >= before + 20 ? true : null,
            ).catch((err: unknown) => {
              throw new Error(
                `${(err as Error).message}: the move took ${tookMs} ms; ${before} before it; ${writer.progress()}\n${cluster.dumpLogs()}`,
              );
            });
          } finally {
            await mover.close();
          }
        } finally {
          cluster.resume(leader);
        }
        assert.deepEqual(
          moved?.range.replicas,
          [1, 2, 3, 4].filter((id) => id !== leader),
        );
        const after = writer.acked.size;
        await until('writes after the old leader came back', () =>
          writer.acked.size >= after + 20 ? true : null,
        );
        await until(
          `node ${leader} gave the range up`,
          async () => ((await cluster.status(leader))?.ranges === 1 ? true : null),
          60_000,
        );
      } finally {
        await writer.stop();
        await writerClient.close();
      }
      for (const id of [4, 1]) {
        const reader = cluster.client([id]);
        try {
          const lost = await lostWrites(reader, [writer]);
          assert.deepEqual(lost.slice(0, 10), [], `${lost.length} of ${writer.acked.size} lost`);
        } finally {
          await reader.close();
        }
      }
      console.log(
        `# move under a frozen leader: ${writer.acked.size} writes acknowledged, failed ${JSON.stringify([...writer.failed])}`,
      );
    } finally {
      await admin.close();
      await via4.close();
    }
  },
);
