// Several Raft groups in one host: one transport and one ticker shared, messages routed by
// group, and a fault in one group (its disk fails) leaving the other serving.

import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import {
  chunkStream,
  systemClock,
  type Command,
  type GroupStorage,
  type StateMachine,
} from '../../src/host/contracts.js';
import { Host } from '../../src/host/host.js';
import type { RaftRuntime } from '../../src/host/runtime.js';
import { FlotillaError } from '../../src/base/errors.js';
import { createMemoryStorage } from '../../src/storage/index.js';
import { MemoryNetwork } from '../../src/transport/index.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Records what it applied; its snapshot is one chunk per applied command. */
class Log implements StateMachine {
  readonly applied: string[] = [];
  readonly leaders: number[] = [];
  apply(commands: readonly Command[]): unknown[] {
    return commands.map((c) => {
      this.applied.push(dec.decode(c.payload));
      return c.index;
    });
  }
  snapshot(): AsyncIterable<Uint8Array> {
    const items = this.applied.map((a) => enc.encode(a));
    return chunkStream(() => items[Symbol.iterator]());
  }
  async restore(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    this.applied.length = 0;
    for await (const c of chunks) this.applied.push(dec.decode(c));
  }
  onLeaderChange(leader: number): void {
    this.leaders.push(leader);
  }
}

/**
 * Memory storage whose writes can be made to fail, like a disk that died, or to hang, like one
 * that stopped answering.
 */
function failable(): {
  storage: GroupStorage;
  fail(): void;
  hang(): void;
  release(): void;
  closed(): boolean;
} {
  const inner = createMemoryStorage({ quiet: true });
  let failing = false;
  let hanging = false;
  const held: (() => void)[] = [];
  let closed = false;
  return {
    storage: {
      initialState: () => inner.initialState(),
      persist: (e, h) =>
        hanging
          ? new Promise<void>((resolve, reject) =>
              held.push(() => void inner.persist(e, h).then(resolve, reject)),
            )
          : failing
            ? Promise.reject(new Error('EIO: injected write failure'))
            : inner.persist(e, h),
      saveSnapshot: (m, d) => inner.saveSnapshot(m, d),
      loadSnapshot: () => inner.loadSnapshot(),
      close: () => {
        closed = true;
        return inner.close();
      },
    },
    fail: () => {
      failing = true;
    },
    hang: () => {
      hanging = true;
    },
    release: () => {
      hanging = false;
      for (const write of held.splice(0)) write();
    },
    closed: () => closed,
  };
}

const GROUPS = [1, 2] as const;

interface Node {
  readonly host: Host;
  readonly groups: Map<number, { rt: RaftRuntime; sm: Log; disk: ReturnType<typeof failable> }>;
}

const hosts: Host[] = [];
afterEach(async () => {
  for (const h of hosts.splice(0)) await h.close(0);
});

async function cluster(n: number): Promise<{ net: MemoryNetwork; nodes: Node[] }> {
  const net = new MemoryNetwork();
  const voters = Array.from({ length: n }, (_, i) => i + 1);
  const nodes = await Promise.all(
    voters.map(async (id): Promise<Node> => {
      const host = new Host({ id, transport: net.connect(id), clock: systemClock, tickMs: 5 });
      hosts.push(host);
      const groups = new Map<
        number,
        { rt: RaftRuntime; sm: Log; disk: ReturnType<typeof failable> }
      >();
      for (const g of GROUPS) {
        const sm = new Log();
        const disk = failable();
        const rt = await host.addGroup(g, {
          voters,
          storage: disk.storage,
          stateMachine: sm,
          electionTicks: 15,
          heartbeatTicks: 3,
        });
        groups.set(g, { rt, sm, disk });
      }
      return { host, groups };
    }),
  );
  return { net, nodes };
}

/** Waits (bounded) until `pred` holds, failing with `what` and what was last seen. */
async function until(what: string, pred: () => boolean, seen: () => unknown, ms = 5_000) {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline)
      assert.fail(`${what}: not within ${ms} ms; saw ${JSON.stringify(seen())}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function leaderOf(nodes: Node[], g: number, except = 0): RaftRuntime | undefined {
  return nodes
    .map((n) => n.groups.get(g)?.rt)
    .find((rt) => rt?.isLeader() === true && rt.id !== except);
}

async function waitLeader(nodes: Node[], g: number, except = 0): Promise<RaftRuntime> {
  await until(
    `a leader for group ${g}`,
    () => leaderOf(nodes, g, except) !== undefined,
    () => nodes.map((n) => n.groups.get(g)?.rt.status().role),
  );
  return leaderOf(nodes, g, except) as RaftRuntime;
}

void test('two groups on three hosts: each commits its own commands, and only its own', async () => {
  const { nodes } = await cluster(3);
  for (const g of GROUPS) {
    const leader = await waitLeader(nodes, g);
    for (let i = 0; i < 5; i++) await leader.propose(enc.encode(`g${g}-${i}`));
  }
  for (const g of GROUPS) {
    const want = Array.from({ length: 5 }, (_, i) => `g${g}-${i}`);
    await until(
      `every host applied group ${g}'s commands`,
      () => nodes.every((n) => n.groups.get(g)?.sm.applied.length === 5),
      () => nodes.map((n) => n.groups.get(g)?.sm.applied),
    );
    for (const n of nodes) assert.deepEqual(n.groups.get(g)?.sm.applied, want);
  }
  // Leader changes reach the state machine.
  for (const n of nodes)
    for (const g of GROUPS) assert.ok((n.groups.get(g)?.sm.leaders.length ?? 0) > 0);
});

void test('a failed disk stops its group on that host; the other group keeps serving there', async () => {
  const { nodes } = await cluster(3);
  const l1 = await waitLeader(nodes, 1);
  const victim = nodes.find((n) => n.host.id === l1.id) as Node;
  await l1.propose(enc.encode('before'));
  victim.groups.get(1)?.disk.fail();
  await assert.rejects(
    l1.propose(enc.encode('lost')),
    (e: unknown) => e instanceof FlotillaError && e.code === 'STORAGE_FAILED',
  );
  // Group 1 carries on with the other two hosts.
  const next = await waitLeader(nodes, 1, victim.host.id);
  assert.equal(await next.propose(enc.encode('after')).then(() => 'ok'), 'ok');
  // Group 2 is untouched on every host, the victim included: a write through its leader
  // applies everywhere, and the victim can still lead it.
  const l2 = await waitLeader(nodes, 2);
  await l2.propose(enc.encode('g2 still serves'));
  await until(
    'the victim host applied group 2',
    () => victim.groups.get(2)?.sm.applied.includes('g2 still serves') === true,
    () => victim.groups.get(2)?.sm.applied,
  );
  const victim2 = victim.groups.get(2)?.rt as RaftRuntime;
  if (!victim2.isLeader()) {
    l2.transferLeadership(victim.host.id);
    await until(
      'the victim host took group 2 over',
      () => victim2.isLeader(),
      () => victim2.status().role,
    );
  }
  await victim2.propose(enc.encode('led by the victim'));
});

void test('messages for a group the host does not run are counted and dropped', async () => {
  const net = new MemoryNetwork();
  const a = new Host({ id: 1, transport: net.connect(1), clock: systemClock, tickMs: 5 });
  const b = new Host({ id: 2, transport: net.connect(2), clock: systemClock, tickMs: 5 });
  hosts.push(a, b);
  const sm = new Log();
  await b.addGroup(1, {
    voters: [1, 2],
    storage: createMemoryStorage({ quiet: true }),
    stateMachine: sm,
  });
  const transport = net.connect(3);
  transport.send({ type: 'heartbeat', from: 3, to: 2, term: 1, commit: 0, seq: 0 }, undefined, 7);
  await until(
    'the stray message arrived',
    () => b.stats().unrouted === 1,
    () => b.stats(),
  );
  assert.equal(sm.applied.length, 0);
  await transport.close();
});

void test('closing the host closes every group, then every group storage', async () => {
  const net = new MemoryNetwork();
  const host = new Host({ id: 1, transport: net.connect(1), clock: systemClock, tickMs: 5 });
  const disks = [failable(), failable()];
  for (const [i, d] of disks.entries())
    await host.addGroup(i, { voters: [1], storage: d.storage, stateMachine: new Log() });
  const rt = host.group(0) as RaftRuntime;
  await until(
    'the single voter leads',
    () => rt.isLeader(),
    () => rt.status().role,
  );
  await host.close();
  assert.deepEqual(
    disks.map((d) => d.closed()),
    [true, true],
  );
  await assert.rejects(
    rt.propose(enc.encode('late')),
    (e: unknown) => e instanceof FlotillaError && e.code === 'SHUTTING_DOWN',
  );
  await assert.rejects(
    host.addGroup(5, { voters: [1], storage: failable().storage, stateMachine: new Log() }),
    /closed/,
  );
});

void test('a close that cannot finish says what it waits for, group by group', async () => {
  // A node a SIGTERM did not stop (an operator's container run) said nothing of why: the
  // node now logs what its close waits for after a while (runNode), from these stages.
  const net = new MemoryNetwork();
  const host = new Host({ id: 1, transport: net.connect(1), clock: systemClock, tickMs: 5 });
  const disks = [failable(), failable()];
  for (const [i, d] of disks.entries())
    await host.addGroup(i, { voters: [1], storage: d.storage, stateMachine: new Log() });
  const rt = host.group(1) as RaftRuntime;
  await until(
    'the single voter leads',
    () => rt.isLeader(),
    () => rt.status().role,
  );
  assert.deepEqual(host.closing(), []);
  (disks[1] as ReturnType<typeof failable>).hang();
  // Held by the disk: it ends applied once the disk answers, or refused by the close.
  const write = rt.propose(enc.encode('held')).then(
    () => 'applied',
    (e: unknown) => {
      if (e instanceof FlotillaError && e.code === 'SHUTTING_DOWN') return 'refused';
      throw e;
    },
  );
  const closed = host.close(0);
  await until(
    'group 1 named as waiting for its Ready',
    () =>
      host.closing().some((c) => c.group === 1 && /finishing the Ready in progress/.test(c.stage)),
    () => host.closing(),
  );
  // Group 0, whose disk answers, finishes its close; group 1 stays named.
  await until(
    'group 1 alone still closing',
    () => host.closing().length === 1 && host.closing()[0]?.group === 1,
    () => host.closing(),
  );
  // The disk answers again: the close ends, and nothing is left waiting.
  (disks[1] as ReturnType<typeof failable>).release();
  await closed;
  assert.deepEqual(host.closing(), []);
  assert.match(await write, /^(applied|refused)$/);
});
