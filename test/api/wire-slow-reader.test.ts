// A binary-protocol client that stops reading while its watch has something to send: the watch
// ends WATCH_TOO_SLOW with where to resume, and that last frame must reach the client when it
// reads again, however long it paused. The connection is not idle while answers wait for its
// reader: closing it then (its idle timer fires, for nothing moves) dropped the frames still
// buffered in the node, the resume point among them.

import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { encodeFrame } from '../../src/api/wire-codec.js';
import { WireConnection } from '../../src/client/wire.js';
import { TestNodes } from '../server/nodes.js';
import { RawConnection } from './raw-wire.js';

const idleTimeoutMs = 300;
let cluster: TestNodes;

before(async () => {
  cluster = await TestNodes.start({
    nodes: 1,
    clientProtocol: true,
    // More than one event frame: the watch ends only once the socket's buffers are full.
    config: { maxWatchBufferBytes: 512 * 1024, httpIdleTimeoutMs: idleTimeoutMs },
  });
  await cluster.waitForLeader();
});

after(async () => {
  await cluster.close();
});

function watchEnds(code: string): number {
  const metric = cluster.node(1).metrics.httpRequests as unknown as {
    hashMap: Record<string, { labels: { route: string; status: string }; value: number }>;
  };
  let n = 0;
  for (const v of Object.values(metric.hashMap))
    if (v.labels.route === 'binary:watch' && v.labels.status === code) n += v.value;
  return n;
}

void it("a paused reader gets its watch's WATCH_TOO_SLOW after the idle timeout", async () => {
  const writer = await WireConnection.connect({
    host: '127.0.0.1',
    port: cluster.binaryPort(1),
    timeoutMs: 5_000,
  });
  const c = await RawConnection.open(cluster.binaryPort(1));
  try {
    const put = async (value: string): Promise<number> =>
      (
        (await writer.request('put', { key: 'slow/k', value }, { read: false })) as {
          header: { revision: number };
        }
      ).header.revision;
    const start = await put('start');
    const slowBefore = watchEnds('WATCH_TOO_SLOW');
    c.socket.write(encodeFrame([1, 'watch', { key: 'slow/k', startRevision: start }]));
    await c.until('the created line', () => c.answers().filter((f) => f[0] === 1).length >= 2);
    c.socket.pause();
    // Enough to fill the socket's buffers while nothing is read, until the node ends the watch.
    const value = 'v'.repeat(200_000);
    for (let i = 0; i < 400 && watchEnds('WATCH_TOO_SLOW') === slowBefore; i++) await put(value);
    assert.equal(watchEnds('WATCH_TOO_SLOW'), slowBefore + 1, 'the node ended the watch');
    // The reader stays away for several idle timeouts with the watch's last frames unread.
    const back = performance.now() + 4 * idleTimeoutMs;
    while (performance.now() < back) await new Promise((r) => setTimeout(r, idleTimeoutMs / 4));
    c.socket.resume();
    await c.until(
      'the watch to end',
      () => c.closed || c.answers().some((f) => f[0] === 1 && f[1] !== 2),
      10_000,
    );
    const end = c.answers().find((f) => f[0] === 1 && f[1] !== 2);
    assert.equal(end?.[2]['code'], 'WATCH_TOO_SLOW', JSON.stringify(end ?? c.answers().at(-1)));
    assert.equal(typeof end?.[2]['resumeRevision'], 'number');
    // Drained, with nothing in flight and no watch, it is idle now, and closed as such.
    await c.until('the idle connection to close', () => c.closed, 10 * idleTimeoutMs + 5_000);
  } finally {
    c.socket.destroy();
    writer.close();
  }
});

void it('a connection found busy at its first idle timeout is closed once it is idle', async () => {
  const c = await RawConnection.open(cluster.binaryPort(1));
  try {
    c.socket.write(encodeFrame([1, 'watch', { key: 'busy/k' }]));
    await c.until('the created line', () => c.answers().some((f) => f[0] === 1));
    // A watch open and quiet past several idle timeouts: busy, not idle.
    const later = performance.now() + 4 * idleTimeoutMs;
    while (performance.now() < later) await new Promise((r) => setTimeout(r, idleTimeoutMs / 4));
    assert.equal(c.closed, false, 'a connection with a watch open is not idle');
    c.socket.write(encodeFrame([2, 'cancel', { id: 1 }]));
    await c.until('the watch closed', () => c.answers().some((f) => f[0] === 1 && f[1] === 0));
    await c.until('the idle connection to close', () => c.closed, 10 * idleTimeoutMs + 5_000);
  } finally {
    c.socket.destroy();
  }
});
