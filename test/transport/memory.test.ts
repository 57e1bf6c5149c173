import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createRng } from '../../src/raft/rng.js';
import type { Message } from '../../src/raft/types.js';
import { MemoryNetwork } from '../../src/transport/memory.js';
import { everyMessage, handleCounts, waitFor } from './fixtures.js';

function hb(from: number, to: number, seq: number): Message {
  return { from, to, term: 1, type: 'heartbeat', commit: 0, seq };
}

void describe('MemoryNetwork', () => {
  void it('delivers every message type and attachments, with stats', async () => {
    const net = new MemoryNetwork();
    await using a = net.connect(1);
    await using b = net.connect(2);
    const got: [Message, Uint8Array | null][] = [];
    b.onMessage((m, att) => got.push([m, att]));
    const msgs = everyMessage(1, 2);
    for (const m of msgs) a.send(m, m.type === 'snapshot' ? new Uint8Array([9, 9]) : undefined);
    await waitFor(() => got.length === msgs.length, 'delivery');
    assert.deepStrictEqual(
      got.map(([m]) => m),
      msgs,
    );
    assert.deepStrictEqual(got.at(-1)?.[1], new Uint8Array([9, 9]));
    assert.equal(a.stats().peers.get(2)?.sent.append?.messages, 1);
  });

  void it('drops and counts invalid messages instead of delivering them', async () => {
    const net = new MemoryNetwork();
    await using a = net.connect(1);
    await using b = net.connect(2);
    let n = 0;
    b.onMessage(() => (n += 1));
    a.send({ ...hb(1, 2, 1), term: -3 });
    a.send(hb(1, 2, 2), new Uint8Array(1)); // attachment on a heartbeat
    // A valid message sent after them arrives after them: once it is in, they were dropped.
    a.send(hb(1, 2, 3));
    await waitFor(() => n >= 1, 'the valid message after the invalid ones');
    assert.equal(n, 1);
    assert.equal(a.stats().peers.get(2)?.drops.invalid, 2);
  });

  void it('partitions, heals, drops with a seeded rate and delays', async () => {
    const net = new MemoryNetwork({ rng: createRng(3) });
    await using a = net.connect(1);
    await using b = net.connect(2);
    const seen: number[] = [];
    b.onMessage((m) => seen.push(m.type === 'heartbeat' ? m.seq : -1));
    net.partition([1], [2]);
    a.send(hb(1, 2, 1));
    net.heal();
    a.send(hb(1, 2, 2));
    await waitFor(() => seen.length === 1, 'after heal');
    assert.deepStrictEqual(seen, [2]);
    net.setDropRate(0.5);
    for (let i = 0; i < 200; i++) a.send(hb(1, 2, 100 + i));
    net.setDropRate(0);
    a.send(hb(1, 2, 500)); // a marker behind the 200: once it is in, they all were
    await waitFor(() => seen.at(-1) === 500, 'the marker after the lossy burst');
    seen.pop();
    const delivered = seen.length - 1;
    assert.ok(delivered > 60 && delivered < 140, `delivered ${delivered} of 200 at rate 0.5`);
    assert.equal(a.stats().peers.get(2)?.drops.disconnected, 1 + (200 - delivered));
    net.setDelay(30, 30);
    const t0 = Date.now();
    a.send(hb(1, 2, 999));
    await waitFor(() => seen.at(-1) === 999, 'delayed message');
    assert.ok(Date.now() - t0 >= 25);
  });

  void it('bounds in-flight messages per link and clears its timers on close', async () => {
    const baseline = handleCounts();
    const net = new MemoryNetwork({ maxInFlightPerLink: 3 });
    net.setDelay(10_000, 10_000);
    const a = net.connect(1);
    const b = net.connect(2);
    for (let i = 0; i < 5; i++) a.send(hb(1, 2, i));
    assert.equal(a.stats().peers.get(2)?.drops.queueFull, 2);
    await a.close();
    await b.close();
    assert.deepStrictEqual(handleCounts(), baseline);
    assert.equal(a.stats().peers.get(2)?.drops.closed, 3);
  });
});
