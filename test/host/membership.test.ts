// Membership changes through the runtime, on three in-memory nodes: a fourth joins as a
// learner and catches up, is promoted, an original member is removed, and after every node
// restarts from its storage the configuration is the new one (from the snapshot and the log,
// never from the member list the nodes were started with).

import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { FlotillaError } from '../../src/base/errors.js';
import {
  chunkStream,
  systemClock,
  type Command,
  type StateMachine,
} from '../../src/host/contracts.js';
import { Host } from '../../src/host/host.js';
import type { RaftRuntime } from '../../src/host/runtime.js';
import type { ConfChange, ConfState } from '../../src/raft/index.js';
import { createMemoryDisk, createMemoryStorage, type MemoryDisk } from '../../src/storage/index.js';
import { MemoryNetwork } from '../../src/transport/index.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
const INITIAL = [1, 2, 3];

class Log implements StateMachine {
  readonly applied: string[] = [];
  apply(commands: readonly Command[]): unknown[] {
    return commands.map((c) => this.applied.push(dec.decode(c.payload)));
  }
  snapshot(): AsyncIterable<Uint8Array> {
    const data = enc.encode(JSON.stringify(this.applied));
    return chunkStream(() => [data][Symbol.iterator]());
  }
  async restore(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    for await (const c of chunks)
      this.applied.splice(0, this.applied.length, ...(JSON.parse(dec.decode(c)) as string[]));
  }
}

interface Member {
  readonly id: number;
  readonly rt: RaftRuntime;
  readonly sm: Log;
}

const hosts: Host[] = [];
afterEach(async () => {
  for (const h of hosts.splice(0)) await h.close(0);
});

/** Starts node `id` on its disk; every node is told the initial member list only. */
async function start(net: MemoryNetwork, id: number, disk: MemoryDisk): Promise<Member> {
  const host = new Host({ id, transport: net.connect(id), clock: systemClock, tickMs: 5 });
  hosts.push(host);
  const sm = new Log();
  const rt = await host.addGroup(0, {
    voters: INITIAL,
    storage: createMemoryStorage({ quiet: true, disk }),
    stateMachine: sm,
    electionTicks: 15,
    heartbeatTicks: 3,
    // Small, so that snapshots (and their configurations) are taken during the test.
    snapshotEveryEntries: 20,
    snapshotCatchupEntries: 5,
  });
  return { id, rt, sm };
}

/** Polls `check` until it returns a value, or fails with what `seen` describes. */
async function waitFor<T>(
  what: string,
  check: () => T | undefined,
  seen: () => string,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = check();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`Timed out waiting for ${what}; saw ${seen()}`);
}

function describeAll(members: readonly Member[]): string {
  return members
    .map((m) => {
      const s = m.rt.status();
      return `${m.id}: ${s.role} term=${s.term} commit=${s.commit} applied=${m.rt.appliedIndex()} voters=(${s.conf.voters.join(',')}) learners=(${s.conf.learners.join(',')}) outgoing=(${s.conf.outgoing.join(',')})`;
    })
    .join('; ');
}

function leaderAmong(members: readonly Member[]): Promise<Member> {
  return waitFor(
    'a leader',
    () => {
      const l = members.find((m) => m.rt.isLeader());
      return l !== undefined && members.every((m) => m.rt.leaderId() === l.id) ? l : undefined;
    },
    () => describeAll(members),
  );
}

/** Proposes through whichever node leads, retrying while leadership moves. */
async function write(members: readonly Member[], value: string): Promise<void> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const leader = await leaderAmong(members);
    try {
      await leader.rt.propose(enc.encode(value));
      return;
    } catch (err) {
      if (!(err instanceof FlotillaError) || err.indefinite) throw err;
    }
  }
  throw new Error(`write ${value} refused 20 times: ${describeAll(members)}`);
}

async function change(members: readonly Member[], cc: ConfChange): Promise<ConfState> {
  const leader = await leaderAmong(members);
  return leader.rt.proposeConfChange(cc);
}

async function appliedEverywhere(members: readonly Member[], count: number): Promise<void> {
  await waitFor(
    `${count} writes applied on nodes ${members.map((m) => m.id).join(',')}`,
    () => (members.every((m) => m.sm.applied.length >= count) ? true : undefined),
    () => members.map((m) => `${m.id}: ${m.sm.applied.length}`).join(', '),
  );
}

void test('a learner joins, catches up, is promoted; a member leaves; a restart keeps it all', async () => {
  const disks = new Map([1, 2, 3, 4].map((id) => [id, createMemoryDisk()]));
  let net = new MemoryNetwork();
  const original = await Promise.all(
    INITIAL.map((id) => start(net, id, disks.get(id) as MemoryDisk)),
  );
  for (let i = 0; i < 30; i++) await write(original, `a${i}`);

  // Node 4 starts with the initial member list, in which it is no voter: it waits.
  const fourth = await start(net, 4, disks.get(4) as MemoryDisk);
  const learner = await change(original, { changes: [{ kind: 'add-learner', node: 4 }] });
  assert.deepEqual(learner, {
    voters: [1, 2, 3],
    learners: [4],
    outgoing: [],
    learnersNext: [],
    autoLeave: false,
  });
  const all = [...original, fourth];
  // It catches up (from a snapshot: the leader compacted its log) and the leader reports it.
  await appliedEverywhere([fourth], 30);
  const leader = await leaderAmong(original);
  const progress = await waitFor(
    "the learner's progress at the leader's commit index",
    () => {
      const st = leader.rt.status();
      const p = st.progress[4];
      return p !== undefined && p.match >= st.commit ? p : undefined;
    },
    () => JSON.stringify(leader.rt.status().progress),
  );
  assert.equal(progress.learner, true);
  assert.deepEqual(leader.rt.status().learners, [4]);
  assert.equal(fourth.rt.status().role, 'follower');

  const promoted = await change(all, { changes: [{ kind: 'add-voter', node: 4 }] });
  assert.deepEqual(promoted.voters, [1, 2, 3, 4]);
  assert.deepEqual(promoted.learners, []);

  // Remove an original member other than the leader (a leader removing itself steps down).
  const now = await leaderAmong(all);
  const gone = original.find((m) => m !== now) as Member;
  const removed = await change(all, { changes: [{ kind: 'remove', node: gone.id }] });
  const expected = [1, 2, 3, 4].filter((id) => id !== gone.id);
  assert.deepEqual(removed.voters, expected);
  const members = all.filter((m) => m !== gone);
  // Enough writes for every member to snapshot after the last change.
  for (let i = 0; i < 30; i++) await write(members, `b${i}`);
  await appliedEverywhere(members, 60);
  for (const m of members) {
    await waitFor(
      `node ${m.id} in configuration (${expected.join(',')})`,
      () => (m.rt.status().conf.voters.join() === expected.join() ? true : undefined),
      () => describeAll(members),
    );
  }

  // Restart every node, the removed one too, on a fresh network from the same disks.
  for (const h of hosts.splice(0)) await h.close(0);
  for (const [id, disk] of disks) {
    const snapshot = disk.snapshot?.meta ?? null;
    if (id !== gone.id) assert.deepEqual(snapshot?.voters, expected, `snapshot of node ${id}`);
  }
  net = new MemoryNetwork();
  const restarted = await Promise.all(
    [1, 2, 3, 4].map((id) => start(net, id, disks.get(id) as MemoryDisk)),
  );
  const staying = restarted.filter((m) => m.id !== gone.id);
  for (const m of staying) {
    assert.deepEqual(
      m.rt.status().conf,
      { voters: expected, learners: [], outgoing: [], learnersNext: [], autoLeave: false },
      `node ${m.id} after the restart`,
    );
  }
  await write(staying, 'c0');
  await appliedEverywhere(staying, 61);
  const after = await leaderAmong(staying);
  assert.notEqual(after.id, gone.id);
  assert.deepEqual(after.rt.status().voters, expected);
});
