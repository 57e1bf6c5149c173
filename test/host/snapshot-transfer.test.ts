// Snapshots sent in chunks between real runtimes on an in-memory network: a follower behind the
// compacted log receives the snapshot chunk by chunk, and a transfer cut by a lost chunk, a
// corrupt chunk, a restart of the follower or a change of leader goes on from the last chunk
// the follower holds rather than from byte 0. A follower whose storage takes snapshots as a
// stream (the WAL) installs through it. Each test counts the chunk bytes that crossed
// the network, so a transfer that started over would fail it.

import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { crc32c } from '@node-rs/crc32';
import {
  chunkStream,
  systemClock,
  type Command,
  type GroupStorage,
  type HostTransport,
  type StateMachine,
} from '../../src/host/contracts.js';
import { Host } from '../../src/host/host.js';
import type { RaftRuntime } from '../../src/host/runtime.js';
import type { RuntimeEvent } from '../../src/host/runtime-options.js';
import { MemoryPartialSnapshots } from '../../src/host/snapshot-transfer.js';
import { createMemoryDisk, createMemoryStorage, type MemoryDisk } from '../../src/storage/index.js';
import { MemoryNetwork } from '../../src/transport/index.js';
import type { Message } from '../../src/raft/index.js';
import { FlotillaError } from '../../src/base/errors.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
const CHUNK = 512;
const WRITES = 300;

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
    const parts: Uint8Array[] = [];
    for await (const c of chunks) parts.push(c);
    const all = dec.decode(Buffer.concat(parts));
    this.applied.splice(0, this.applied.length, ...(JSON.parse(all) as string[]));
  }
}

/** What a test does with a chunk the sender hands its transport: pass, drop, or replace. */
type Tap = (m: Message & { type: 'snapshot' }, sealed: Uint8Array) => 'drop' | Uint8Array | null;

interface Member {
  id: number;
  host: Host;
  rt: RaftRuntime;
  sm: Log;
  disk: MemoryDisk;
  partials: MemoryPartialSnapshots;
  events: RuntimeEvent[];
}

interface Cluster {
  net: MemoryNetwork;
  members: Map<number, Member>;
  /** Chunk bytes sent to each node, by the sender's tap (what crossed the network). */
  sentTo: Map<number, number>;
  tap: { fn: Tap };
  /** The size of the snapshot being sent, as its chunks say. */
  total: number;
}

const hosts: Host[] = [];
afterEach(async () => {
  for (const h of hosts.splice(0)) await h.close(0);
});

function tapped(inner: HostTransport, c: Cluster): HostTransport {
  return {
    send: (msg, attachment, group) => {
      if (msg.type === 'snapshot' && attachment !== undefined) {
        c.total = msg.totalBytes;
        const r = c.tap.fn(msg, attachment);
        if (r === 'drop') return;
        c.sentTo.set(msg.to, (c.sentTo.get(msg.to) ?? 0) + msg.length);
        inner.send(msg, r ?? attachment, group);
        return;
      }
      inner.send(msg, attachment, group);
    },
    flush: () => inner.flush?.(),
    onMessage: (h) => inner.onMessage(h),
    close: () => inner.close(),
  };
}

/** What the members' storage was asked to save, when it takes snapshots as streams. */
const streamed = { whole: 0, pieces: 0 };

/**
 * Memory storage that also takes a snapshot as a stream of pieces, as the WAL does: the path a
 * follower installs by without holding the snapshot whole.
 */
function streamingStorage(inner: GroupStorage): GroupStorage {
  return {
    initialState: () => inner.initialState(),
    persist: (entries, hs) => inner.persist(entries, hs),
    saveSnapshot: (meta, data) => {
      streamed.whole++;
      return inner.saveSnapshot(meta, data);
    },
    saveSnapshotFrom: async (meta, data) => {
      const parts: Uint8Array[] = [];
      for await (const p of data) parts.push(p);
      streamed.pieces++;
      const bytes = Buffer.concat(parts);
      await inner.saveSnapshot(meta, bytes);
      return bytes.length;
    },
    loadSnapshot: () => inner.loadSnapshot(),
    close: () => inner.close(),
  };
}

async function startMember(
  c: Cluster,
  id: number,
  disk: MemoryDisk,
  partials: MemoryPartialSnapshots,
  sm = new Log(),
  streaming = false,
): Promise<Member> {
  const events: RuntimeEvent[] = [];
  const host = new Host({
    id,
    transport: tapped(c.net.connect(id), c),
    clock: systemClock,
    tickMs: 5,
    onEvent: (_g, e) => events.push(e),
  });
  hosts.push(host);
  const rt = await host.addGroup(0, {
    voters: [1, 2, 3],
    storage: streaming
      ? streamingStorage(createMemoryStorage({ quiet: true, disk }))
      : createMemoryStorage({ quiet: true, disk }),
    partialSnapshots: partials,
    stateMachine: sm,
    electionTicks: 15,
    heartbeatTicks: 3,
    snapshotEveryEntries: 50,
    // At every multiple of 50, whatever the snapshot's size: the tests count on index 300.
    snapshotLogRatio: 0,
    snapshotCatchupEntries: 5,
    // Unpaced: a member still saving its snapshot at 250 when it applies 300 skips that one
    // (the next boundary takes it), and on a loaded machine a paced save at 250 outlasted the
    // next 50 writes, leaving a follower without the snapshot at 300 the tests count on.
    snapshotEncodeShare: 1,
    raft: { snapshotChunkBytes: CHUNK },
  });
  const m = { id, host, rt, sm, disk, partials, events };
  c.members.set(id, m);
  return m;
}

async function until(what: string, pred: () => boolean, seen: () => unknown, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline)
      assert.fail(`${what}: not within ${ms} ms; saw ${JSON.stringify(seen())}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function leaderOf(c: Cluster): Member | undefined {
  return [...c.members.values()].find((m) => m.rt.isLeader());
}

/**
 * Three nodes; one follower is cut off while the leader applies WRITES values of 100 bytes and
 * snapshots and compacts (the other follower too). Returns with the link healed: the leader
 * has started sending the cut-off follower its snapshot.
 */
async function behindFollower(
  tap: Tap = () => null,
  streaming = false,
): Promise<{
  c: Cluster;
  leader: Member;
  behind: Member;
  other: Member;
}> {
  const c: Cluster = {
    net: new MemoryNetwork(),
    members: new Map(),
    sentTo: new Map(),
    tap: { fn: () => null },
    total: 0,
  };
  await Promise.all(
    [1, 2, 3].map((id) =>
      startMember(c, id, createMemoryDisk(), new MemoryPartialSnapshots(), new Log(), streaming),
    ),
  );
  await until(
    'a leader',
    () => leaderOf(c) !== undefined,
    () => null,
  );
  const leader = leaderOf(c) as Member;
  const [behind, other] = [...c.members.values()].filter((m) => m !== leader) as [Member, Member];
  c.net.partition([leader.id, other.id], [behind.id]);
  for (let i = 0; i < WRITES; i += 50)
    await Promise.all(
      Array.from({ length: 50 }, (_, j) =>
        leader.rt.propose(enc.encode(`v${i + j}`.padEnd(100, '.'))),
      ),
    );
  // Both snapshotted at index 300 (every multiple of 50) and compacted behind it.
  await until(
    'leader and follower compacted at the same snapshot',
    () => [leader, other].every((m) => m.rt.status().firstIndex > 250),
    () => [leader, other].map((m) => m.rt.status().firstIndex),
  );
  c.tap.fn = tap;
  c.net.heal();
  return { c, leader, behind, other };
}

async function caughtUp(c: Cluster, m: Member, leader: Member): Promise<void> {
  await until(
    `node ${m.id} installs the snapshot and catches up`,
    () => m.sm.applied.length === leader.sm.applied.length,
    () => ({
      applied: m.sm.applied.length,
      want: leader.sm.applied.length,
      sent: [...c.sentTo],
      incoming: m.rt.status().incomingSnapshot,
    }),
  );
  assert.deepEqual(m.sm.applied, leader.sm.applied);
  assert.ok(
    m.events.some((e) => e.kind === 'snapshot-restored'),
    'the follower caught up through a snapshot',
  );
}

void test('a snapshot travels in chunks; status shows the transfer; the follower catches up', async () => {
  let seen: { leader: unknown; follower: unknown } | null = null;
  const s = await behindFollower();
  s.c.tap.fn = (m) => {
    if (m.offset === 10 * CHUNK && seen === null)
      seen = {
        leader: s.leader.rt.snapshotTransfers(),
        follower: s.behind.rt.snapshotTransfers(),
      };
    return null;
  };
  await caughtUp(s.c, s.behind, s.leader);
  const sent = s.c.sentTo.get(s.behind.id) ?? 0;
  assert.ok(sent >= s.c.total && sent <= s.c.total + 2 * CHUNK, `sent ${sent}`);
  assert.ok(seen !== null, 'the tap saw chunk 10');
  const { leader, follower } = seen as { leader: unknown[]; follower: unknown[] };
  const out = leader[0] as {
    direction: string;
    peer: number;
    bytesDone: number;
    totalBytes: number;
  };
  assert.equal(out.direction, 'send');
  assert.equal(out.peer, s.behind.id);
  assert.equal(out.bytesDone, 10 * CHUNK);
  assert.equal(out.totalBytes, s.c.total);
  const inc = follower[0] as { direction: string; bytesDone: number };
  assert.equal(inc.direction, 'receive');
  assert.ok(inc.bytesDone > 0 && inc.bytesDone <= 10 * CHUNK, JSON.stringify(inc));
  // Once installed, no transfer is shown.
  assert.deepEqual(s.leader.rt.snapshotTransfers(), []);
  assert.deepEqual(s.behind.rt.snapshotTransfers(), []);
});

void test('a follower whose storage takes a snapshot as a stream installs one through it', async () => {
  const s = await behindFollower(() => null, true);
  const before = { ...streamed };
  await caughtUp(s.c, s.behind, s.leader);
  assert.equal(streamed.whole, before.whole, 'a snapshot was saved from one buffer');
  assert.ok(streamed.pieces > before.pieces, 'the install saved no stream');
  const saved = s.behind.disk.snapshot;
  const sent = s.leader.disk.snapshot;
  assert.ok(saved !== null && sent !== null);
  assert.equal(saved.meta.index, sent.meta.index);
  assert.deepEqual(Buffer.from(saved.data), Buffer.from(sent.data));
});

void test('a lost chunk is sent again, and only it', async () => {
  let dropped = 0;
  const s = await behindFollower((m) => {
    if (m.offset === 7 * CHUNK && dropped === 0) {
      dropped++;
      return 'drop';
    }
    return null;
  });
  await caughtUp(s.c, s.behind, s.leader);
  assert.equal(dropped, 1);
  const sent = s.c.sentTo.get(s.behind.id) ?? 0;
  // A retry from byte 0 would send 7 chunks more than this.
  assert.ok(sent <= s.c.total + 3 * CHUNK, `sent ${sent} of ${s.c.total}`);
});

void test('a chunk whose bytes do not match their checksum is refused and sent again', async () => {
  let corrupted = 0;
  const s = await behindFollower((m, sealed) => {
    if (m.offset !== 5 * CHUNK || corrupted > 0) return null;
    corrupted++;
    const bad = sealed.slice();
    bad[17] = (bad[17] ?? 0) ^ 0xff;
    return bad;
  });
  await caughtUp(s.c, s.behind, s.leader);
  assert.equal(corrupted, 1);
  const refused = s.behind.events.filter((e) => e.kind === 'snapshot-chunk-refused');
  assert.deepEqual(
    refused.map((e) => (e.kind === 'snapshot-chunk-refused' ? e.offset : -1)),
    [5 * CHUNK],
  );
  assert.equal(s.behind.rt.snapshotCounters().corruptChunks, 1);
  const sent = s.c.sentTo.get(s.behind.id) ?? 0;
  assert.ok(sent <= s.c.total + 3 * CHUNK, `sent ${sent} of ${s.c.total}`);
});

void test('a snapshot whose bytes do not match its id is discarded and sent again whole', async () => {
  // The chunk's own checksum is made to match the wrong bytes, as if they were damaged
  // before it was computed: only the check of the whole snapshot can catch it.
  let corrupted = 0;
  const s = await behindFollower((m, sealed) => {
    if (m.offset !== 3 * CHUNK || corrupted > 0) return null;
    corrupted++;
    const bad = sealed.slice();
    bad[9] = (bad[9] ?? 0) ^ 0x01;
    const body = bad.subarray(0, m.length);
    new DataView(bad.buffer).setUint32(m.length, crc32c(Buffer.from(body)) >>> 0, true);
    return bad;
  });
  await caughtUp(s.c, s.behind, s.leader);
  assert.equal(corrupted, 1);
  assert.equal(s.behind.events.filter((e) => e.kind === 'snapshot-refused').length, 1);
  const sent = s.c.sentTo.get(s.behind.id) ?? 0;
  assert.ok(sent >= 2 * s.c.total, `sent ${sent}: the refused snapshot is sent again whole`);
});

void test('a follower restarted mid-transfer resumes from the chunks it kept', async () => {
  let chunksDelivered = 0;
  const stop: { p: Promise<void> | null } = { p: null };
  const s = await behindFollower((m) => {
    if (m.to !== s.behind.id) return null;
    if (stop.p !== null) return 'drop';
    chunksDelivered++;
    if (chunksDelivered === 20) stop.p = s.behind.host.close(0);
    return null;
  });
  await until(
    'the follower stopped mid-transfer',
    () => stop.p !== null,
    () => chunksDelivered,
  );
  await stop.p;
  const kept = (await s.behind.partials.load())?.received ?? 0;
  assert.ok(kept >= 15 * CHUNK && kept < s.c.total, `kept ${kept}`);
  s.c.sentTo.set(s.behind.id, 0);
  s.c.tap.fn = () => null;
  const again = await startMember(s.c, s.behind.id, s.behind.disk, s.behind.partials);
  assert.equal(again.rt.status().incomingSnapshot?.received, kept);
  await caughtUp(s.c, again, s.leader);
  const sent = s.c.sentTo.get(again.id) ?? 0;
  // From byte 0 it would be the whole snapshot again.
  assert.ok(sent <= s.c.total - kept + 3 * CHUNK, `sent ${sent} after the restart, kept ${kept}`);
});

void test('a new leader with the same snapshot resumes the transfer its predecessor began', async () => {
  let chunksDelivered = 0;
  const stop: { p: Promise<void> | null } = { p: null };
  const s = await behindFollower((m) => {
    if (m.to !== s.behind.id || m.from !== s.leader.id) return null;
    if (stop.p !== null) return 'drop';
    chunksDelivered++;
    if (chunksDelivered === 20) stop.p = s.leader.host.close(0);
    return null;
  });
  await until(
    'the leader stopped mid-transfer',
    () => stop.p !== null,
    () => chunksDelivered,
  );
  await stop.p;
  s.c.members.delete(s.leader.id);
  await until(
    `node ${s.other.id} leads`,
    () => s.other.rt.isLeader(),
    () => s.other.rt.status().role,
  );
  const held = s.behind.rt.status().incomingSnapshot?.received ?? 0;
  assert.ok(held >= 15 * CHUNK, `held ${held}`);
  await caughtUp(s.c, s.behind, s.other);
  const fromNew = s.c.sentTo.get(s.behind.id) ?? 0;
  const fromOld = 20 * CHUNK;
  assert.ok(
    fromNew - fromOld <= s.c.total - held + 3 * CHUNK,
    `new leader sent ${fromNew - fromOld}, the follower held ${held} of ${s.c.total}`,
  );
});

void test('no backup capture while a snapshot from the leader is half installed; one after it', async () => {
  const s = await behindFollower();
  // Hold the follower's restore once it starts: the state machine is then half replaced.
  let release: () => void = () => undefined;
  const gate = new Promise<void>((r) => (release = r));
  let entered = false;
  const restore = s.behind.sm.restore.bind(s.behind.sm);
  s.behind.sm.restore = async (chunks) => {
    entered = true;
    await gate;
    return restore(chunks);
  };
  await until(
    'the follower installs the snapshot',
    () => entered,
    () => s.behind.rt.status().incomingSnapshot,
  );
  try {
    assert.throws(
      () => s.behind.rt.captureApplied(),
      (e: unknown) => e instanceof FlotillaError && e.code === 'SNAPSHOT_BUSY',
    );
  } finally {
    // Else the held restore would keep the follower's host from closing.
    release();
  }
  await caughtUp(s.c, s.behind, s.leader);
  const cap = s.behind.rt.captureApplied();
  assert.equal(cap.index, s.behind.rt.appliedIndex());
  assert.equal(cap.term, s.leader.rt.status().term);
  assert.deepEqual([...cap.voters].sort(), [1, 2, 3]);
  const asOf = [...s.behind.sm.applied];
  // Applied after the capture: not in it.
  await s.leader.rt.propose(enc.encode('later'));
  await until(
    'the follower applies the later write',
    () => s.behind.sm.applied.length > asOf.length,
    () => s.behind.sm.applied.length,
  );
  const parts: Uint8Array[] = [];
  for await (const p of cap.chunks) parts.push(p);
  assert.deepEqual(JSON.parse(dec.decode(Buffer.concat(parts))), asOf);
});
