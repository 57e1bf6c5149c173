import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { encodeMessage, pack } from '../../src/transport/codec.js';
import { FrameType, PREFACE, encodeFrame, encodeSmallFrame } from '../../src/transport/frame.js';
import type { LivenessLane } from '../../src/transport/liveness.js';
import { closedBy, entries, rawSocket, startNode, waitFor, type Node } from './fixtures.js';

const open: Node[] = [];
after(async () => {
  await Promise.all(open.map((n) => n.t.close()));
});

/** Node 1 with a liveness lane (heartbeat 50 ms) and node 2 without, knowing each other. */
async function pair(graceMs: number): Promise<[Node, Node, LivenessLane | null]> {
  const a = await startNode(1, { liveness: { heartbeatMs: 50, graceMs } });
  const b = await startNode(2);
  open.push(a, b);
  a.t.setPeer(2, b.t.address);
  b.t.setPeer(1, a.t.address);
  return [a, b, a.t.liveness];
}

/** Stops this thread (timers, sockets, everything) for `ms`, as a starved process is stopped. */
function blockMainThread(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function laneHeartbeats(n: Node): { term: number; seq: number; commit: number }[] {
  return n.inbox.flatMap(({ msg }) =>
    msg.type === 'heartbeat' && msg.seq === 0
      ? [{ term: msg.term, seq: 0, commit: msg.commit }]
      : [],
  );
}

/**
 * Blocks in 200 ms stretches until the lane has spoken once: its connection is up. Fails after
 * `attempts` stretches (about 300 ms each).
 */
async function laneConnected(a: Node, b: Node, lane: LivenessLane, attempts = 30): Promise<void> {
  for (let attempt = 1; laneHeartbeats(b).length === 0; attempt++) {
    if (attempt > attempts)
      throw new Error(
        `the lane never spoke; node 2 saw ${JSON.stringify(b.inbox.map((r) => r.msg))}`,
      );
    lane.alive();
    blockMainThread(200);
    // A heartbeat from the block, if the lane was up, arrives at once; else the next attempt.
    const deadline = Date.now() + 100;
    while (laneHeartbeats(b).length === 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 5));
  }
  await quiet(a, b, lane);
  b.inbox.length = 0;
}

/**
 * The main thread ticks until the lane's count stands still across two marker round trips:
 * a check that was sending when the block ended has finished, and what it sent has been read.
 * Only then may a test take the count and the inbox as its baseline.
 */
async function quiet(a: Node, b: Node, lane: LivenessLane): Promise<void> {
  let still = 0;
  for (let round = 1; still < 2; round++) {
    if (round > 50) throw new Error(`the lane kept sending: ${lane.sent} heartbeats counted`);
    lane.alive();
    const before = lane.sent;
    await drained(a, b);
    still = lane.sent === before ? still + 1 : 0;
  }
}

/**
 * Everything written to node 2 before now has been read: node 1's main connection carries a
 * marker, and the lane's frames (written earlier, on another connection) were read with it or
 * before it.
 */
async function drained(a: Node, b: Node): Promise<void> {
  const marker = { type: 'heartbeat' as const, from: 1, to: 2, term: 1, commit: 0, seq: 99 };
  a.t.send(marker);
  await waitFor(
    () => b.inbox.some((r) => r.msg.type === 'heartbeat' && r.msg.seq === 99),
    'the marker',
  );
  await new Promise((r) => setImmediate(r));
}

/**
 * Node 1 leads node 2 through its lane; node 2 stops (a crash, or cleanly with GOODBYE) and
 * starts again on its port. Node 1 waits 5-10 s before redialling a peer it lost: without the
 * redial on node 2's HELLO its lane would stay silent that long, past the 3 s this waits.
 */
async function laneAfterRestart(goodbye: boolean): Promise<void> {
  const a = await startNode(1, {
    liveness: { heartbeatMs: 50, graceMs: 2_000 },
    backoff: { baseMs: 10_000, maxMs: 10_000 },
  });
  const b = await startNode(2);
  open.push(a, b);
  a.t.setPeer(2, b.t.address);
  b.t.setPeer(1, a.t.address);
  const lane = a.t.liveness;
  assert.ok(lane !== null);
  lane.lead(0, { term: 4, followers: [2] });
  await laneConnected(a, b, lane);

  // Both of node 1's links lose their connection at once. Node 2 is back within a few
  // milliseconds: its HELLO may reach the lane's thread before the old connection's close.
  const port = b.t.address.port;
  await b.t.close({ goodbye });
  await waitFor(
    () => a.events.some((e) => e.kind === 'reconnect-scheduled'),
    'node 1 finding node 2 gone',
  );
  const heard = a.events.length;
  const b2 = await startNode(2, { listen: { host: '127.0.0.1', port } });
  open.push(b2);
  b2.t.setPeer(1, a.t.address);
  b2.t.send({ type: 'heartbeat-resp', from: 2, to: 1, term: 4, seq: 0, catchingUp: false });
  await waitFor(
    () =>
      a.events.slice(heard).some((e) => e.kind === 'peer-connected' && e.direction === 'inbound'),
    'node 2 dialling in',
  );
  await laneConnected(a, b2, lane, 10);
}

void describe('liveness lane', () => {
  void it("sends a leader's heartbeats while its main thread is stopped, for at most the grace", async () => {
    const [a, b, lane] = await pair(400);
    assert.ok(lane !== null);
    lane.lead(0, { term: 7, followers: [2] });
    await laneConnected(a, b, lane);

    const sentBefore = lane.sent;
    lane.alive();
    blockMainThread(1_200);
    // The heartbeats wait in node 2's socket (same thread): read them now.
    await drained(a, b);
    const seen = laneHeartbeats(b);
    for (const h of seen) assert.deepEqual(h, { term: 7, seq: 0, commit: 0 });
    // 400 ms of grace at one per 50 ms past the first 50 ms of silence: about 7. Not 23, as
    // the whole 1,200 ms block would give without the grace.
    assert.ok(seen.length >= 3 && seen.length <= 10, `heartbeats in the block: ${seen.length}`);
    assert.equal(lane.sent - sentBefore, seen.length, 'what the lane counted it sent');
    assert.equal(
      b.events.filter((e) => e.kind === 'peer-disconnected').length,
      0,
      "the lane must not replace node 1's main connection",
    );
  });

  void it('stays silent while the main thread ticks, and for groups it no longer leads', async () => {
    const [a, b, lane] = await pair(1_000);
    assert.ok(lane !== null);
    lane.lead(0, { term: 3, followers: [2] });
    await laneConnected(a, b, lane);

    // The main thread ticks every 20 ms for 300 ms (stopped in between, so nothing but the
    // lane could speak): never silent for a heartbeat interval, so the lane says nothing.
    for (let i = 0; i < 15; i++) {
      lane.alive();
      blockMainThread(20);
    }
    await drained(a, b);
    assert.equal(laneHeartbeats(b).length, 0, 'the lane spoke for a main thread that ticked');

    // The lane's thread reads this at once, while this thread is blocked below.
    lane.lead(0, null);
    lane.alive();
    blockMainThread(400);
    await drained(a, b);
    assert.equal(laneHeartbeats(b).length, 0, 'the lane spoke for a group no longer led');
  });

  void it('without a lane, a stopped main thread sends nothing (the control)', async () => {
    const [a, b, lane] = await pair(0);
    assert.equal(lane, null);
    await drained(a, b);
    blockMainThread(400);
    await drained(a, b);
    assert.equal(laneHeartbeats(b).length, 0);
  });

  void it('redials a peer at once when it dials in after a crash, not after the backoff', () =>
    laneAfterRestart(false));

  void it('redials a peer at once when it dials in after a clean stop', () =>
    laneAfterRestart(true));

  void it('carries heartbeats only, and a version-2 peer cannot open one', async () => {
    const b = await startNode(2);
    open.push(b);
    b.t.setPeer(1, { host: '127.0.0.1', port: 1 });
    const hello = (over: Record<string, unknown>): Buffer =>
      Buffer.concat([
        PREFACE,
        encodeSmallFrame(
          FrameType.hello,
          pack({
            minVersion: 3,
            maxVersion: 3,
            clusterId: 'test-cluster',
            from: 1,
            to: 2,
            ...over,
          }),
        ),
      ]);

    const s = await rawSocket(b.t.address.port);
    s.write(hello({ lane: 'liveness' }));
    const append = {
      type: 'append' as const,
      from: 1,
      to: 2,
      term: 1,
      prevIndex: 0,
      prevTerm: 0,
      commit: 0,
      entries: entries(1, 8),
    };
    s.write(Buffer.concat(encodeFrame(FrameType.message, [encodeMessage(append, 0)])));
    await closedBy(s);
    const err = b.events.find((e) => e.kind === 'protocol-error');
    assert.ok(
      err?.kind === 'protocol-error' && err.code === 'TRANSPORT_BAD_MESSAGE',
      JSON.stringify(b.events),
    );
    assert.match(err.message, /liveness lane, which carries only heartbeats/);

    const old = await rawSocket(b.t.address.port);
    old.write(hello({ lane: 'liveness', minVersion: 2, maxVersion: 2 }));
    await closedBy(old);
    const refused = b.events.find((e) => e.kind === 'handshake-refused');
    assert.ok(refused?.kind === 'handshake-refused', JSON.stringify(b.events));
    assert.match(refused.reason, /liveness lane in protocol version 2; it needs 3/);

    const odd = await rawSocket(b.t.address.port);
    odd.write(hello({ lane: 'side' }));
    await closedBy(odd);
    assert.ok(
      b.events.some((e) => e.kind === 'protocol-error' && /hello.lane must be/.test(e.message)),
      JSON.stringify(b.events),
    );
  });
});
