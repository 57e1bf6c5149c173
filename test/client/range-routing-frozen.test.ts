// A routing client whose first endpoint takes requests and answers none (a stopped process's
// socket, or a hung one) must still fetch the range map from another endpoint without first
// waiting out its whole per-attempt timeout there. Before, the map's fetch asked the endpoints
// one after another within one timeout in all: the frozen first endpoint used all of it, the
// map was not fetched, and the call went to that endpoint again, so every new client (each
// `flotilla kv` command) waited twice `timeoutMs` while a node was frozen.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { FlotillaClient } from '../../src/client/index.js';
import { BlackHole, TestNodes } from '../server/nodes.js';

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** Resolves with what `p` settles to, or rejects once `ms` pass without it. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([p, bound]).finally(() => clearTimeout(timer));
}

for (const protocol of ['http', 'auto'] as const) {
  void test(`over ${protocol}, a frozen first endpoint does not hold up a new client's first write`, async () => {
    const hole = await BlackHole.start();
    cleanups.push(() => hole.close());
    const nodes = await TestNodes.start({ nodes: 3, clientProtocol: protocol === 'auto' });
    cleanups.push(() => nodes.close());
    await nodes.waitForLeader();
    // A timeout far above the test's bound: a client that waits it out on the frozen
    // endpoint fails the bound, one that moves on passes it with room to spare.
    const client = new FlotillaClient({
      endpoints: [hole.url, ...nodes.urls],
      protocol,
      timeoutMs: 60_000,
      deadlineMs: 120_000,
    });
    cleanups.push(() => client.close());
    await within(client.put('frozen-first', 'v'), 20_000, 'the first put');
    assert.ok(hole.requests > 0, 'the frozen endpoint was asked first');
    const routing = client.rangeRoutingState();
    assert.ok(
      routing.version > 0,
      `the range map was fetched elsewhere (${String(routing.lastError)})`,
    );
    assert.equal((await within(client.get('frozen-first'), 20_000, 'the get'))?.value, 'v');
  });
}
