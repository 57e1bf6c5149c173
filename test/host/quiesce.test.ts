// Quiescing idle groups on three hosts over TCP (DESIGN.md, "Quiescing idle groups"): the
// groups go quiet once idle and are no longer ticked; a proposal wakes its group and commits;
// when a node falls silent, the groups it led wake on the other nodes, through the hosts'
// node-level heartbeats and failure detection, and elect new leaders. The same cluster with
// that failure detection planted out shows the groups stuck under the silent leader.

import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { chunkStream, systemClock, type StateMachine } from '../../src/host/contracts.js';
import { Host } from '../../src/host/host.js';
import { createRng } from '../../src/raft/index.js';
import { createMemoryStorage } from '../../src/storage/index.js';
import { TcpTransport } from '../../src/transport/tcp.js';

const GROUPS = 24;

const nothing: StateMachine = {
  apply: (commands) => commands.map(() => null),
  snapshot: () => chunkStream(() => [][Symbol.iterator]()),
  restore: async (chunks) => {
    for await (const _ of chunks) void _;
  },
};

interface Member {
  readonly id: number;
  readonly host: Host;
  readonly transport: TcpTransport;
}

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

/**
 * Three hosts running the same GROUPS groups with quiescing on. `deaf` hosts drop every
 * node-level heartbeat and never watch their peers' silence: the planted fault.
 */
async function cluster(o: { deaf?: boolean } = {}): Promise<Member[]> {
  const transports = await Promise.all(
    [1, 2, 3].map((id) =>
      TcpTransport.listen({
        nodeId: id,
        clusterId: 'quiesce',
        listen: { host: '127.0.0.1', port: 0 },
        backoff: { baseMs: 10, maxMs: 100 },
      }),
    ),
  );
  for (const t of transports) cleanup.push(() => t.close());
  for (const [i, t] of transports.entries())
    for (const [j, peer] of transports.entries()) if (i !== j) t.setPeer(j + 1, peer.address);
  const members: Member[] = [];
  for (const [i, transport] of transports.entries()) {
    const host = new Host({
      id: i + 1,
      clock: systemClock,
      tickMs: 10,
      transport: {
        send: (m, a, g) => transport.send(m, a, g),
        flush: () => transport.flush(),
        onMessage: (h) => transport.onMessage(h),
        close: () => transport.close(),
      },
    });
    if (o.deaf === true) plantDeaf(host);
    cleanup.push(() => host.close(0));
    for (let g = 0; g < GROUPS; g++)
      await host.addGroup(g, {
        voters: [1, 2, 3],
        storage: createMemoryStorage({ quiet: true }),
        stateMachine: nothing,
        rng: createRng(1_000 * (i + 1) + g),
        electionTicks: 15,
        heartbeatTicks: 5,
        raft: { quiesce: true },
      });
    members.push({ id: i + 1, host, transport });
  }
  return members;
}

/** The planted fault: the host's node-level failure detection does nothing. */
function plantDeaf(host: Host): void {
  (host as unknown as { watchPeers: () => void }).watchPeers = () => {};
}

async function until<T>(
  what: string,
  ms: number,
  f: () => T | null,
  seen: () => string,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== null) return v;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${ms} ms waiting for ${what}; saw ${seen()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Each group's leader, once every listed host knows the same one for every group. */
function leaders(ms: readonly Member[]): number[] | null {
  const out: number[] = [];
  for (let g = 0; g < GROUPS; g++) {
    const l = ms[0]?.host.group(g)?.leaderId() ?? 0;
    if (l === 0 || ms.some((m) => m.host.group(g)?.leaderId() !== l)) return null;
    out.push(l);
  }
  return out;
}

const quiescedCounts = (ms: readonly Member[]): string =>
  ms.map((m) => `node ${m.id}: ${m.host.stats().quiesced} of ${GROUPS} quiesced`).join(', ');

async function allQuiesced(ms: readonly Member[]): Promise<void> {
  await until(
    'every group quiesced on every node',
    10_000,
    () => (ms.every((m) => m.host.stats().quiesced === GROUPS) ? true : null),
    () => quiescedCounts(ms),
  );
}

void test('idle groups quiesce; a proposal wakes its group, commits, and it quiesces again', async () => {
  const ms = await cluster();
  const lead = await until(
    'a leader per group',
    20_000,
    () => leaders(ms),
    () => 'none yet',
  );
  await allQuiesced(ms);
  const leader = ms[(lead[3] as number) - 1] as Member;
  const rt = leader.host.group(3);
  assert.ok(rt !== undefined);
  await rt.propose(new TextEncoder().encode('x'), { timeoutMs: 5_000 });
  await allQuiesced(ms);
  // Waking and quiescing again moved no leadership.
  assert.deepStrictEqual(leaders(ms), lead);
});

/**
 * Cuts node 3 off (its transport closes: to the others it is a crashed node) and waits for
 * every group to have a leader among nodes 1 and 2. Returns what the survivors saw.
 */
async function cutNode3(ms: readonly Member[], boundMs: number): Promise<number[]> {
  const lead = await until(
    'a leader per group',
    20_000,
    () => leaders(ms),
    () => 'none yet',
  );
  await allQuiesced(ms);
  assert.ok(lead.includes(3), `node 3 leads no group (${lead.join(',')}): the test proves nothing`);
  await (ms[2] as Member).transport.close();
  const survivors = ms.slice(0, 2);
  return until(
    'groups node 3 led to elect a leader on node 1 or 2',
    boundMs,
    () => {
      const l = leaders(survivors);
      return l !== null && !l.includes(3) ? l : null;
    },
    () =>
      `${survivors.map((m) => `node ${m.id} leaders ${Array.from({ length: GROUPS }, (_, g) => m.host.group(g)?.leaderId() ?? 0).join(',')}`).join('; ')}; ${quiescedCounts(survivors)}`,
  );
}

void test('a node that falls silent: the groups it led wake on the others and elect', async () => {
  const ms = await cluster();
  const after = await cutNode3(ms, 10_000);
  assert.ok(after.every((l) => l === 1 || l === 2));
  assert.ok(
    (ms[0] as Member).host.stats().wokenBySilence + (ms[1] as Member).host.stats().wokenBySilence >
      0,
  );
});

void test('planted: without the node-level failure detection, the groups stay under the silent leader', async () => {
  const ms = await cluster({ deaf: true });
  await assert.rejects(cutNode3(ms, 3_000), /groups node 3 led to elect a leader/);
});
