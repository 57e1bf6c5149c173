// What the host tells the liveness lane (DESIGN.md, "The liveness lane"): which groups this
// node leads, in which term and to whom. It must be right, since the lane speaks for exactly
// those groups while the main thread is silent; and it must be cheap with many groups, so the
// host asks a group only when its runtime says its leadership may have changed, and every
// group once a second, rather than every group at every tick.

import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import {
  chunkStream,
  systemClock,
  type HostTransport,
  type LivenessReporter,
  type StateMachine,
} from '../../src/host/contracts.js';
import { Host } from '../../src/host/host.js';
import { createRng } from '../../src/raft/index.js';
import { createMemoryStorage } from '../../src/storage/index.js';
import { MemoryNetwork } from '../../src/transport/index.js';

const GROUPS = 20;

const nothing: StateMachine = {
  apply: (commands) => commands.map(() => null),
  snapshot: () => chunkStream(() => [][Symbol.iterator]()),
  restore: async (chunks) => {
    for await (const _ of chunks) void _;
  },
};

type Leading = { readonly term: number; readonly followers: readonly number[] } | null;

/** Records what the host says: ticks, every report, and the latest per group. */
class Reporter implements LivenessReporter {
  ticks = 0;
  reports = 0;
  readonly latest = new Map<number, Leading>();
  alive(): void {
    this.ticks++;
  }
  lead(group: number, leading: Leading): void {
    this.reports++;
    this.latest.set(group, leading === null ? null : { ...leading });
  }
}

const hosts: Host[] = [];
afterEach(async () => {
  for (const h of hosts.splice(0)) await h.close(0);
});

async function cluster(net: MemoryNetwork): Promise<{ host: Host; lane: Reporter }[]> {
  const out: { host: Host; lane: Reporter }[] = [];
  for (const id of [1, 2, 3]) {
    const t = net.connect(id);
    const lane = new Reporter();
    const transport: HostTransport = {
      send: (m, a, g) => t.send(m, a, g),
      onMessage: (h) => t.onMessage(h),
      close: () => t.close(),
      liveness: lane,
    };
    const host = new Host({ id, transport, clock: systemClock, tickMs: 10 });
    hosts.push(host);
    for (let g = 0; g < GROUPS; g++)
      await host.addGroup(g, {
        voters: [1, 2, 3],
        storage: createMemoryStorage({ quiet: true }),
        stateMachine: nothing,
        rng: createRng(100 * id + g),
      });
    out.push({ host, lane });
  }
  return out;
}

async function until(what: string, ms: number, pred: () => string | null): Promise<void> {
  const deadline = Date.now() + ms;
  for (let seen = pred(); seen !== null; seen = pred()) {
    if (Date.now() > deadline) assert.fail(`${what}: not within ${ms} ms; ${seen}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Where a host's last reports differ from what its groups lead now; null: they agree. */
function wrong(n: { host: Host; lane: Reporter }): string | null {
  for (let g = 0; g < GROUPS; g++) {
    const now = n.host.group(g)?.leading() ?? null;
    const told = n.lane.latest.get(g) ?? null;
    if (JSON.stringify(now) !== JSON.stringify(told))
      return `host ${n.host.id} group ${g}: leads ${JSON.stringify(now)}, lane told ${JSON.stringify(told)}`;
  }
  return null;
}

void test('the lane is told what every group leads, once, and not again at every tick', async () => {
  const net = new MemoryNetwork();
  const nodes = await cluster(net);
  await until('every group led and every lane told so', 10_000, () => {
    for (let g = 0; g < GROUPS; g++)
      if (!nodes.some((n) => n.host.group(g)?.isLeader() === true)) return `group ${g} unled`;
    for (const n of nodes) {
      const w = wrong(n);
      if (w !== null) return w;
    }
    return null;
  });
  for (const n of nodes)
    for (let g = 0; g < GROUPS; g++) {
      const told = n.lane.latest.get(g);
      if (told === null || told === undefined) continue;
      assert.deepStrictEqual(
        [...told.followers].sort(),
        [1, 2, 3].filter((i) => i !== n.host.id),
      );
    }
  // 150 idle ticks: at most one sweep of every group (each once a second) and a few changes;
  // asking every group every tick would be GROUPS × 150.
  const [n1] = nodes as [{ host: Host; lane: Reporter }];
  const ticks0 = n1.lane.ticks;
  const reports0 = n1.lane.reports;
  await until('150 ticks', 10_000, () => (n1.lane.ticks - ticks0 >= 150 ? null : 'ticking'));
  const reports = n1.lane.reports - reports0;
  assert.ok(reports <= 2 * GROUPS + 5, `${reports} reports in 150 ticks of ${GROUPS} idle groups`);
  assert.equal(wrong(n1), null);
});

void test('a leader that steps down is reported within a few ticks, not at the next sweep', async () => {
  const net = new MemoryNetwork();
  const nodes = await cluster(net);
  await until('group 0 led', 10_000, () =>
    nodes.some((n) => n.host.group(0)?.isLeader() === true) ? null : 'unled',
  );
  const leader = nodes.find((n) => n.host.group(0)?.isLeader() === true) as (typeof nodes)[0];
  await until('its lane told', 2_000, () => (leader.lane.latest.get(0) ? null : 'not told'));
  // Cut off, the leader steps down once check-quorum finds no followers.
  net.isolate(leader.host.id);
  await until('the isolated leader to step down', 10_000, () =>
    leader.host.group(0)?.leading() === null ? null : 'still leads',
  );
  const ticks0 = leader.lane.ticks;
  await until('the lane told', 2_000, () =>
    leader.lane.latest.get(0) === null ? null : 'not told',
  );
  const ticks = leader.lane.ticks - ticks0;
  assert.ok(ticks <= 3, `told after ${ticks} ticks`);
  net.heal();
});
