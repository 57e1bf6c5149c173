// Coalesced heartbeats (protocol version 4, src/transport/coalesced.ts): the record codec,
// many groups' heartbeats and answers over one connection in a few frames, and a peer that
// speaks only version 3 on either side.

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import {
  COUNT_BYTES,
  RECORD_BYTES,
  decodeHeartbeats,
  encodeHeartbeats,
} from '../../src/transport/coalesced.js';
import { pack } from '../../src/transport/codec.js';
import { FrameType, PREFACE, encodeSmallFrame } from '../../src/transport/frame.js';
import { TransportError } from '../../src/transport/errors.js';
import type { Heartbeat, HeartbeatResponse, Message } from '../../src/raft/types.js';
import { closedBy, rawSocket, startNode, waitFor, type Node } from './fixtures.js';

const open: Node[] = [];
after(async () => {
  await Promise.all(open.map((n) => n.t.close()));
});

type Beat = { msg: Heartbeat | HeartbeatResponse; group: number };
type Got = { msg: Message; group: number };

/** For each group, a heartbeat from 1 to 2 and an answer from 1 to 2 (1 leads some, follows others). */
function beats(groups: number, term = 7): Beat[] {
  const out: Beat[] = [];
  for (let g = 0; g < groups; g++) {
    out.push({
      msg: { type: 'heartbeat', from: 1, to: 2, term: term + g, commit: 1000 + g, seq: g },
      group: g,
    });
    out.push({
      msg: { type: 'heartbeat-resp', from: 1, to: 2, term, seq: 5 * g, catchingUp: g % 3 === 0 },
      group: 1_000_000 + g,
    });
  }
  return out;
}

/**
 * What was sent but not received, and what was received but not sent, as readable keys: the
 * check every test of the coalesced path makes.
 */
export function undelivered(
  sent: readonly { msg: Message; group: number }[],
  received: readonly { msg: Message; group: number }[],
): { missing: string[]; extra: string[] } {
  // Fields in a fixed order: the two paths build their messages' fields in different orders.
  const key = (r: { msg: Message; group: number }): string =>
    `${r.group}:${JSON.stringify(r.msg, Object.keys(r.msg).sort())}`;
  const got = new Map<string, number>();
  for (const r of received) got.set(key(r), (got.get(key(r)) ?? 0) + 1);
  const missing: string[] = [];
  for (const s of sent) {
    const n = got.get(key(s)) ?? 0;
    if (n === 0) missing.push(key(s));
    else got.set(key(s), n - 1);
  }
  const extra = [...got].flatMap(([k, n]) => Array<string>(n).fill(k));
  return { missing, extra };
}

async function node(id: number, protocolVersionMax?: number): Promise<Node & { got: Got[] }> {
  const n = await startNode(id, protocolVersionMax === undefined ? {} : { protocolVersionMax });
  open.push(n);
  const got: Got[] = [];
  n.t.onMessage((msg, _a, group) => got.push({ msg, group }));
  return { ...n, got };
}

void describe('coalesced heartbeats: the record codec', () => {
  void it('round-trips heartbeats and answers of many groups, with the largest integers', () => {
    const items = beats(50);
    items.push({
      msg: {
        type: 'heartbeat',
        from: 1,
        to: 2,
        term: Number.MAX_SAFE_INTEGER,
        commit: Number.MAX_SAFE_INTEGER,
        seq: Number.MAX_SAFE_INTEGER,
      },
      group: 0xffff_ffff,
    });
    const payload = encodeHeartbeats(items);
    assert.equal(payload.byteLength, COUNT_BYTES + items.length * RECORD_BYTES);
    const back = decodeHeartbeats(payload, 1, 2);
    assert.deepStrictEqual(undelivered(items, back), { missing: [], extra: [] });
    assert.deepStrictEqual(back, items, 'in the order sent');
  });

  void it('the check names a record a coalescer lost (planted: group 17 left out)', () => {
    const items = beats(40);
    const lossy = encodeHeartbeats(items.filter((b) => b.group !== 17));
    const { missing, extra } = undelivered(items, decodeHeartbeats(lossy, 1, 2));
    assert.deepStrictEqual(extra, []);
    assert.equal(missing.length, 1);
    assert.match(missing[0] ?? '', /^17:.*"heartbeat"/);
  });

  void it('refuses a payload that is not whole records, or records that are no message', () => {
    const one = encodeHeartbeats(beats(1).slice(0, 1));
    const bad = (p: Buffer, code: string, re: RegExp): void => {
      assert.throws(
        () => decodeHeartbeats(p, 1, 2),
        (e: unknown) => e instanceof TransportError && e.code === code && re.test(e.message),
      );
    };
    bad(Buffer.alloc(2), 'TRANSPORT_BAD_FRAME', /has no count/);
    bad(Buffer.alloc(4), 'TRANSPORT_BAD_FRAME', /says 0 records/);
    bad(one.subarray(0, one.byteLength - 1), 'TRANSPORT_BAD_FRAME', /says 1 records/);
    const kind = Buffer.from(one);
    kind.writeUInt8(3, COUNT_BYTES);
    bad(kind, 'TRANSPORT_BAD_MESSAGE', /kind 3/);
    const flags = Buffer.from(one);
    flags.writeUInt8(1, COUNT_BYTES + 1); // catchingUp on a heartbeat
    bad(flags, 'TRANSPORT_BAD_MESSAGE', /flags 1/);
    const huge = Buffer.from(one);
    huge.writeUInt32BE(2 ** 21, COUNT_BYTES + 6); // term's high word: 2^53
    bad(huge, 'TRANSPORT_BAD_MESSAGE', /term is above 2\^53 - 1/);
  });
});

void describe('coalesced heartbeats on TCP', () => {
  void it('delivers 600 groups heartbeats and answers, from a few frames', async () => {
    const a = await node(1);
    const b = await node(2);
    a.t.setPeer(2, b.t.address);
    b.t.setPeer(1, a.t.address);
    // The connection is open once one message went through; sends before wait for it.
    a.t.send({ type: 'timeout-now', from: 1, to: 2, term: 1 }, undefined, 9);
    await waitFor(() => b.got.length === 1, 'the first message');
    b.got.length = 0;
    const framesBefore = a.t.stats().peers.get(2)?.framesSent ?? 0;
    const items = beats(600);
    // A vote in the middle: a batch is written before it, and order around it is kept.
    const vote: Message = {
      type: 'vote',
      from: 1,
      to: 2,
      term: 9,
      lastLogIndex: 3,
      lastLogTerm: 2,
      transfer: false,
    };
    items.forEach((it, i) => {
      a.t.send(it.msg, undefined, it.group);
      if (i === 599) a.t.send(vote, undefined, 4);
    });
    a.t.flush();
    await waitFor(() => b.got.length >= items.length + 1, `${items.length + 1} messages`);
    const voteAt = b.got.findIndex((r) => r.msg.type === 'vote');
    assert.equal(voteAt, 600, 'the vote between the two halves, where it was sent');
    const beatsGot = b.got.filter((r) => r.msg.type !== 'vote');
    assert.deepStrictEqual(undelivered(items, beatsGot), { missing: [], extra: [] });
    const out = a.t.stats().peers.get(2);
    const frames = (out?.framesSent ?? 0) - framesBefore;
    assert.equal(frames, 3, 'one HEARTBEATS frame, the vote, another HEARTBEATS frame');
    assert.equal(out?.sent.heartbeat?.messages, 600);
    assert.equal(out?.sent['heartbeat-resp']?.messages, 600);
    const inb = b.t.stats().peers.get(1);
    assert.equal(inb?.received.heartbeat?.messages, 600);
    assert.equal(
      inb?.received.heartbeat?.bytes,
      out?.sent.heartbeat?.bytes,
      'bytes shared out alike',
    );
  });

  void it('sends a quiescing heartbeat in a MESSAGE frame of its own, flag and all', async () => {
    const a = await node(4);
    const b = await node(5);
    a.t.setPeer(5, b.t.address);
    b.t.setPeer(4, a.t.address);
    a.t.send({ type: 'timeout-now', from: 4, to: 5, term: 1 }, undefined, 9);
    await waitFor(() => b.got.length === 1, 'the first message');
    b.got.length = 0;
    const framesBefore = a.t.stats().peers.get(5)?.framesSent ?? 0;
    const quiet: Beat = {
      msg: { type: 'heartbeat', from: 4, to: 5, term: 3, commit: 8, seq: 2, quiesce: true },
      group: 6,
    };
    const items: Beat[] = [
      { msg: { type: 'heartbeat', from: 4, to: 5, term: 3, commit: 8, seq: 1 }, group: 5 },
      quiet,
      { msg: { type: 'heartbeat', from: 4, to: 5, term: 3, commit: 8, seq: 3 }, group: 7 },
    ];
    for (const it of items) a.t.send(it.msg, undefined, it.group);
    a.t.flush();
    await waitFor(() => b.got.length >= 3, '3 messages');
    assert.deepStrictEqual(undelivered(items, b.got), { missing: [], extra: [] });
    assert.deepStrictEqual(
      b.got.find((r) => r.group === 6),
      quiet,
    );
    const frames = (a.t.stats().peers.get(5)?.framesSent ?? 0) - framesBefore;
    assert.equal(frames, 3, 'a HEARTBEATS frame, the MESSAGE frame, another HEARTBEATS frame');
  });

  void it('splits a batch larger than one frame may hold', async () => {
    // 1 KiB frames hold 34 records.
    const small = await startNode(2, {
      maxFrameBytes: 1024,
      maxHandshakeFrameBytes: 1024,
      chunkBytes: 512,
    });
    open.push(small);
    const got: Beat[] = [];
    small.t.onMessage((msg, _a, group) => got.push({ msg: msg as Beat['msg'], group }));
    const sender = await startNode(3, {
      maxFrameBytes: 1024,
      maxHandshakeFrameBytes: 1024,
      chunkBytes: 512,
    });
    open.push(sender);
    sender.t.setPeer(2, small.t.address);
    small.t.setPeer(3, sender.t.address);
    const items = beats(50).map((b) => ({ ...b, msg: { ...b.msg, from: 3 } })) as Beat[];
    sender.t.send({ type: 'timeout-now', from: 3, to: 2, term: 1 });
    await waitFor(() => got.length === 1, 'the first message');
    got.length = 0;
    for (const it of items) sender.t.send(it.msg, undefined, it.group);
    await waitFor(() => got.length >= items.length, `${items.length} messages`);
    assert.deepStrictEqual(undelivered(items, got), { missing: [], extra: [] });
    assert.equal(small.t.stats().peers.get(3)?.errors.TRANSPORT_FRAME_TOO_LARGE, undefined);
    assert.equal(sender.t.stats().peers.get(2)?.framesSent, 1 + Math.ceil(100 / 34));
  });
});

void describe('coalesced heartbeats beside a version-3 peer', () => {
  for (const pinned of [1, 2] as const) {
    void it(`node ${pinned} speaks only version 3: one frame per message, each way, all delivered`, async () => {
      const a = await node(1, pinned === 1 ? 3 : undefined);
      const b = await node(2, pinned === 2 ? 3 : undefined);
      a.t.setPeer(2, b.t.address);
      b.t.setPeer(1, a.t.address);
      for (const [from, to] of [
        [a, b],
        [b, a],
      ] as const) {
        const fromId = from === a ? 1 : 2;
        const toId = 3 - fromId;
        from.t.send({ type: 'timeout-now', from: fromId, to: toId, term: 1 });
        await waitFor(() => to.got.length === 1, 'the first message');
        to.got.length = 0;
        const frames0 = from.t.stats().peers.get(toId)?.framesSent ?? 0;
        const items = beats(40).map((x) => ({
          ...x,
          msg: { ...x.msg, from: fromId, to: toId },
        })) as Beat[];
        for (const it of items) from.t.send(it.msg, undefined, it.group);
        await waitFor(() => to.got.length >= items.length, `${items.length} messages`);
        assert.deepStrictEqual(undelivered(items, to.got), { missing: [], extra: [] });
        const frames = (from.t.stats().peers.get(toId)?.framesSent ?? 0) - frames0;
        assert.equal(frames, items.length, 'version 3: one MESSAGE frame per heartbeat');
      }
    });
  }

  void it('a HEARTBEATS frame on a version-3 connection is refused as a bad frame', async () => {
    const b = await node(2);
    b.t.setPeer(1, { host: '127.0.0.1', port: 1 });
    const s = await rawSocket(b.t.address.port);
    const hello = { minVersion: 2, maxVersion: 3, clusterId: 'test-cluster', from: 1, to: 2 };
    s.write(Buffer.concat([PREFACE, encodeSmallFrame(FrameType.hello, pack(hello))]));
    s.write(encodeSmallFrame(FrameType.heartbeats, encodeHeartbeats(beats(2))));
    await closedBy(s);
    await waitFor(
      () => (b.t.stats().peers.get(1)?.errors.TRANSPORT_BAD_FRAME ?? 0) === 1,
      'the refusal counted',
    );
    assert.equal(b.got.length, 0);
    const e = b.events.find((x) => x.kind === 'protocol-error');
    assert.ok(e?.kind === 'protocol-error');
    assert.match(e.message, /protocol version 3; it needs 4/);
  });

  void it('refuses a protocolVersionMax it does not speak, and a lane below version 3', async () => {
    await assert.rejects(
      startNode(5, { protocolVersionMax: 6 }),
      /protocolVersionMax must be 2..5/,
    );
    await assert.rejects(
      startNode(5, { protocolVersionMax: 2, liveness: { heartbeatMs: 50, graceMs: 1000 } }),
      /liveness lane needs protocol version 3/,
    );
  });
});
