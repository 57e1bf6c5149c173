// The list of queues (`/v1/queue/queues`, `queue.queues`, `client.queues`): in name order, a
// page at a time, each queue with its counts, the same over HTTP and the binary protocol, bad
// input refused; and a client whose node runs a release before the read sends nothing over the
// binary protocol (which would close the connection on an unknown type).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FlotillaClient, FlotillaError, type QueuesResponse } from '../../src/client/index.js';
import type { WireConnection } from '../../src/client/wire.js';
import { until } from '../support/until.js';
import { TestNodes, postJson } from './nodes.js';

let nodes: TestNodes;
let binary: FlotillaClient;
let http: FlotillaClient;

/** Made in this order, listed in name order. */
const made = ['mail', 'billing', 'audit.log', 'Zeta', 'reports-2', 'a:b'];

before(async () => {
  nodes = await TestNodes.start({ nodes: 1, clientProtocol: true });
  await nodes.waitForQueueLeader();
  binary = new FlotillaClient({ endpoints: nodes.urls });
  http = new FlotillaClient({ endpoints: nodes.urls, protocol: 'http' });
});

after(async () => {
  await binary.close();
  await http.close();
  await nodes.close();
});

/** Every page of the list, `limit` at a time. */
async function allPages(c: FlotillaClient, limit: number): Promise<QueuesResponse[]> {
  const pages: QueuesResponse[] = [];
  for (let after: string | null | undefined; after !== null;) {
    const page = await c.queues({ limit, ...(after === undefined ? {} : { after }) });
    pages.push(page);
    after = page.next;
    assert.ok(pages.length <= made.length + 1, `pages never end: ${JSON.stringify(pages)}`);
  }
  return pages;
}

void describe('the list of queues', () => {
  void it('is empty on a new cluster', async () => {
    const r = await binary.queues();
    assert.deepEqual([r.queues, r.next], [[], null]);
    assert.equal(r.header.memberId, 1, JSON.stringify(r.header));
  });

  void it('lists every queue in name order, in pages, with its counts', async () => {
    for (const [i, name] of made.entries()) {
      const q = binary.queue(name);
      if (i % 3 === 2) await q.configure({ concurrency: 2 });
      else for (let n = 0; n <= i; n++) await q.add('job', { n });
    }
    await binary.queue('billing').pause();
    const sorted = [...made].sort();
    for (const c of [binary, http]) {
      const whole = await c.queues();
      assert.deepEqual(
        whole.queues.map((q) => q.queue),
        sorted,
      );
      assert.equal(whole.next, null);
      const mail = whole.queues.find((q) => q.queue === 'mail');
      const billing = whole.queues.find((q) => q.queue === 'billing');
      const audit = whole.queues.find((q) => q.queue === 'audit.log');
      assert.deepEqual([mail?.counts.waiting, mail?.paused], [1, false]);
      assert.deepEqual([billing?.counts.waiting, billing?.paused], [2, true]);
      assert.equal(audit?.counts.waiting, 0, 'configured, never added to');

      const pages = await allPages(c, 4);
      assert.deepEqual(
        pages.map((p) => p.queues.map((q) => q.queue)),
        [sorted.slice(0, 4), sorted.slice(4)],
      );
      assert.equal(pages[0]?.next, sorted[3]);
      // One queue past the page: there is a next page.
      assert.equal((await c.queues({ limit: made.length - 1 })).next, sorted.at(-2));
      // A page of exactly what is left says it is the last.
      const two = await c.queues({ after: sorted[3] as string, limit: 2 });
      assert.equal(two.next, null);
    }
  });

  void it('refuses bad input, with the code and message of the field', async () => {
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ limit: 0 }, 'BAD_REQUEST', /"limit" must be an integer in \[1, 1000\], got 0/],
      [{ limit: 1001 }, 'BAD_REQUEST', /"limit" must be an integer in \[1, 1000\], got 1001/],
      [{ after: '' }, 'BAD_REQUEST', /"after"/],
      [{ after: 'has space' }, 'BAD_REQUEST', /"after"/],
      [{ after: 5 }, 'BAD_REQUEST', /"after" must be a string/],
      [{ queue: 'mail' }, 'UNKNOWN_FIELD', /queue/],
    ];
    for (const [body, code, message] of cases) {
      const r = await postJson(`${nodes.url(1)}/v1/queue/queues`, body, { timeoutMs: 10_000 });
      const err = (r.json as { error?: { code: string; message: string } }).error;
      assert.equal(r.status, 400, JSON.stringify(r.json));
      assert.equal(err?.code, code, JSON.stringify(r.json));
      assert.match(err?.message ?? '', message);
    }
  });

  void it('is not sent over the binary protocol to a node of a release before it', async () => {
    const c = new FlotillaClient({ endpoints: nodes.urls });
    try {
      // Open the client's binary connections (its first answer over HTTP names the port),
      // then make them say an earlier release's level.
      const wires = (c as unknown as { connections: { wires: Map<string, unknown[]> } }).connections
        .wires;
      await until('every binary connection of the client open', async () => {
        await c.queue('mail').stats();
        // Array.from: a slot not filled yet is a hole, which flat() would leave out.
        const slots = [...wires.values()].flatMap((a) => Array.from(a));
        return slots.length > 0 && slots.every((w) => w !== undefined);
      });
      const conns = (await Promise.all([...wires.values()].flat())).filter((w) => w !== undefined);
      assert.ok(conns.length > 0, 'no binary connection was made');
      for (const conn of conns as WireConnection[])
        Object.assign(conn, { hello: { ...conn.hello, featureLevel: 10 } });
      await assert.rejects(c.queues(), (e: unknown) => {
        assert.ok(e instanceof FlotillaError, String(e));
        assert.equal(e.code, 'FEATURE_NOT_ENABLED', e.message);
        assert.match(e.message, /queue\.queues needs 11/);
        return true;
      });
      // Nothing was sent: the connection still serves.
      const s = await c.queue('mail').stats();
      assert.equal(s.stats?.queue, 'mail');
    } finally {
      await c.close();
    }
  });
});
