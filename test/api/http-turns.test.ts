// Client work takes turns of the event loop (src/api/turns.ts), refusals included: a burst of
// requests refused OVERLOADED is answered a bounded number per turn, like admitted work, so
// that a Raft tick due meanwhile is not kept waiting behind all of them.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { JsonHttpServer } from '../../src/api/http.js';

const servers: JsonHttpServer[] = [];
after(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

async function until(what: string, cond: () => boolean, seen: () => string): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within 5 s; seen ${seen()}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

void test('a request refused OVERLOADED waits for its turn like admitted work', async () => {
  const turns: (() => void)[] = [];
  const http = new JsonHttpServer({
    maxBodyBytes: 1024,
    headersTimeoutMs: 10_000,
    requestTimeoutMs: 10_000,
    idleTimeoutMs: 10_000,
    maxConnections: 100,
    requestsPerTurn: 1,
    turnSchedule: (fn) => turns.push(fn),
    admission: { tryAcquire: () => null, describe: () => 'full', retryAfterSeconds: () => 1 },
  });
  servers.push(http);
  http.route('POST', '/w', () => ({ json: {} }));
  http.countAgainstAdmission('/w');
  const { port } = await http.listen('127.0.0.1:0');
  const answered: number[] = [];
  const send = (n: number) =>
    fetch(`http://127.0.0.1:${port}/w`, { method: 'POST', body: '{}' }).then(async (r) => {
      await r.text();
      answered.push(n);
      return r.status;
    });
  const both = [send(1), send(2)];
  const seen = () => `answered ${JSON.stringify(answered)}, waiting ${http.waitingForTurn()}`;
  // One refusal takes this turn's budget; the other waits for the next turn.
  await until(
    'one answered and one waiting',
    () => answered.length === 1 && http.waitingForTurn() === 1,
    seen,
  );
  const turn = turns.shift();
  assert.ok(turn !== undefined, 'a turn is scheduled');
  turn();
  assert.deepEqual(await Promise.all(both), [429, 429]);
  assert.equal(answered.length, 2);
});
