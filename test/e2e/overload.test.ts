// Overload: 3,000 concurrent writes, 1,000 sent to each node of a 3-node cluster of real
// processes, first as raw HTTP requests (no session, no retries), then through three clients.
// Every answer's definite/indefinite flag is checked against what the cluster applied, with
// the set checker of the fault-injection suite: an acknowledged write must be on every node,
// a write refused as definite on none. And a client told NOT_LEADER or NO_LEADER by a node
// under load must get its write through, not a storm of refusals.
//
// The election timeout is cut to 40-80 ms so the burst costs the leader its quorum and the
// cluster elects again while writes are in flight, as a busier machine did with the default
// 150-300 ms: the case where answers were refusals and LEADERSHIP_LOST.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { Agent, request } from 'undici';
import { checkSet, type OpStatus, type SetAdd } from '../../src/check/index.js';
import { FlotillaClient, FlotillaError } from '../../src/client/index.js';
import { SET_PREFIX, SetWorkload } from '../chaos/workload.js';
import { TestCluster } from './harness.js';

const PER_NODE = 1_000;

const clusters: TestCluster[] = [];
after(async () => {
  for (const c of clusters) await c.stop();
});

/** Raw writes without a session: the node's own answer, flag included, is the outcome. */
async function rawBurst(cluster: TestCluster, tally: Map<string, number>): Promise<SetAdd[]> {
  const agent = new Agent({ connections: PER_NODE });
  try {
    return await Promise.all(
      cluster.members.flatMap((m) =>
        Array.from({ length: PER_NODE }, async (_, i): Promise<SetAdd> => {
          const element = `raw-${m.id}-${i}`;
          const status = await rawPut(agent, m.client, SET_PREFIX + element, tally);
          return { element, status };
        }),
      ),
    );
  } finally {
    await agent.close();
  }
}

async function rawPut(
  agent: Agent,
  url: string,
  key: string,
  tally: Map<string, number>,
): Promise<OpStatus> {
  const count = (what: string): void => void tally.set(what, (tally.get(what) ?? 0) + 1);
  try {
    const res = await request(`${url}/v1/kv/put`, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ key, value: 'x'.repeat(100) }),
      headersTimeout: 30_000,
      bodyTimeout: 30_000,
    });
    const json = (await res.body.json()) as { error?: { code: string; indefinite: boolean } };
    if (res.statusCode === 200) {
      count('200');
      return 'ok';
    }
    const e = json.error;
    count(`${res.statusCode} ${e?.code ?? '?'}${e?.indefinite === false ? '' : ' (indefinite)'}`);
    return e?.indefinite === false ? 'fail' : 'unknown';
  } catch (err) {
    count(`no answer: ${(err as Error).message}`);
    return 'unknown';
  }
}

/** The same through clients, one starting on each node: sessions, retries, leader hints. */
async function clientBurst(cluster: TestCluster, tally: Map<string, number>): Promise<SetAdd[]> {
  const endpoints = cluster.endpoints();
  const clients = endpoints.map(
    (_, k) =>
      new FlotillaClient({
        endpoints: endpoints.map((_e, i) => endpoints[(i + k) % endpoints.length] as string),
        timeoutMs: 10_000,
        deadlineMs: 30_000,
        maxAttempts: 30,
        connections: 256,
      }),
  );
  try {
    return await Promise.all(
      clients.flatMap((c, k) =>
        Array.from({ length: PER_NODE }, async (_, i): Promise<SetAdd> => {
          const element = `client-${k}-${i}`;
          try {
            await c.put(SET_PREFIX + element, 'x'.repeat(100));
            tally.set('ok', (tally.get('ok') ?? 0) + 1);
            return { element, status: 'ok' };
          } catch (err) {
            const e = err instanceof FlotillaError ? err : null;
            const what = `${e?.code ?? String(err)}${e?.indefinite === false ? '' : ' (indefinite)'}`;
            tally.set(what, (tally.get(what) ?? 0) + 1);
            return { element, status: e?.indefinite === false ? 'fail' : 'unknown' };
          }
        }),
      ),
    );
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}

void test(
  'overload: every flag matches what applied, and clients get their writes through',
  { timeout: 240_000 },
  async () => {
    const cluster = await TestCluster.create({
      nodes: 3,
      extraArgs: ['--election-ticks', '4', '--heartbeat-ticks', '1'],
    });
    clusters.push(cluster);
    await cluster.start();

    const raw = new Map<string, number>();
    const rawAdds = await rawBurst(cluster, raw);
    const viaClient = new Map<string, number>();
    const clientAdds = await clientBurst(cluster, viaClient);
    const seen = `raw answers ${JSON.stringify(Object.fromEntries(raw))}; client outcomes ${JSON.stringify(Object.fromEntries(viaClient))}`;

    // Settle: a write through the leader commits everything before it in the leader's log;
    // once every node applied it, nothing from the bursts can still change.
    const leader = await cluster.waitForLeader(30_000);
    const barrier = cluster.client([leader]);
    try {
      await barrier.put('barrier', 'b');
    } finally {
      await barrier.close();
    }
    await cluster.waitForApplied(await cluster.maxCommit(), 30_000);
    const finalReads = await Promise.all(
      cluster.members.map((m) => SetWorkload.finalRead(m.client, `node ${m.id}`)),
    );
    const report = checkSet({ adds: [...rawAdds, ...clientAdds], finalReads });
    assert.ok(
      report.valid,
      `${seen}\nlost ${JSON.stringify(report.lost.slice(0, 5))}, refused as definite but ` +
        `applied ${JSON.stringify(report.failedPresent.slice(0, 5))}, duplicated ` +
        `${JSON.stringify(report.duplicated.slice(0, 5))}`,
    );
    assert.equal(
      viaClient.get('ok'),
      PER_NODE * cluster.members.length,
      `every client write went through: ${seen}`,
    );
    console.log(
      `# ${seen}; ${report.unknownPresent} of ${report.unknown} indefinite outcomes applied`,
    );
  },
);
