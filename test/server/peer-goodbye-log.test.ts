// A member that stops cleanly says GOODBYE on both of its connections to each peer (the one it
// dialled and the one it accepted). node-setup.ts says the stop once per peer, at info; the
// second close is the same stop, kept at debug. It was said twice.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../src/server/logging.js';
import { until } from '../support/until.js';
import { TestNodes } from './nodes.js';

let nodes: TestNodes;
/** Node 1's log records. */
const records: Record<string, unknown>[] = [];

before(async () => {
  nodes = await TestNodes.start({
    nodes: 3,
    logger: (id) =>
      createLogger(id, {
        level: id === 1 ? 'debug' : 'silent',
        format: 'json',
        out: {
          write: (line) => {
            if (id === 1) records.push(JSON.parse(line) as Record<string, unknown>);
          },
        },
      }),
  });
});

after(async () => {
  await nodes.close();
});

const said = (msg: string): Record<string, unknown>[] => records.filter((r) => r['msg'] === msg);

void describe("a peer's clean stop", () => {
  void it('is said once, whichever connection closes first', async () => {
    await nodes.waitForLeader();
    await until(
      () =>
        `node 1 connected both ways to node 2 (saw ${JSON.stringify(said('peer 2 connected'))})`,
      () => said('peer 2 connected').length >= 2,
    );
    await nodes.node(2).close();
    await until(
      () => `both connections to node 2 closed (saw ${JSON.stringify(records.slice(-10))})`,
      () => said('peer 2 closed its other connection').length === 1,
    );
    const stops = said('peer 2 is shutting down (it said goodbye)');
    assert.equal(stops.length, 1, JSON.stringify(stops));
    assert.equal(stops[0]?.['level'], 30, 'said at info');
    assert.deepEqual(said('peer 2 disconnected'), []);
  });
});
