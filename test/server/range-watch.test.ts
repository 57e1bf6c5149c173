// How a relayed watch ends (src/server/range-watch.ts): a replica played by a loopback server
// that sends a scripted stream. The replica shutting down, its stream breaking or just ending
// all end the relayed watch WATCH_RESET at the revision after the last one relayed (the client
// resumes there, on any node); any other ending is passed on as it came.

import assert from 'node:assert/strict';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import test from 'node:test';
import { Pool } from 'undici';
import type { ErrorCode } from '../../src/base/errors.js';
import type { WatchEvent } from '../../src/kv/watch-hub.js';
import { RemoteWatches } from '../../src/server/range-watch.js';

const b64 = (s: string): string => Buffer.from(s).toString('base64');

/** An event line of a replica's stream (base64, as the relay asks for). */
function eventLine(revision: number, value: string): string {
  const kv = {
    key: b64('w1'),
    value: b64(value),
    createRevision: 2,
    modRevision: revision,
    version: revision - 1,
  };
  return JSON.stringify({
    header: { revision, memberId: 2, raftTerm: 3 },
    events: [{ type: 'put', kv }],
  });
}

interface Ending {
  readonly code: ErrorCode;
  readonly message: string;
  readonly resume: number | null;
}

/**
 * Relays a watch from a replica whose stream is `script` (it writes the lines it wants and
 * ends or breaks the response); answers the events relayed and how the watch ended.
 */
async function relay(
  script: (res: ServerResponse) => void,
): Promise<{ events: [number, string][]; ending: Ending; openAfter: number }> {
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      res.write(
        JSON.stringify({ created: true, startRevision: 5, header: { revision: 4 } }) + '\n',
      );
      script(res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const pool = new Pool(url);
  const watches = new RemoteWatches({
    selfId: 4,
    members: [{ id: 2, peer: '127.0.0.1:1', client: url }],
    pool: () => pool,
    leader: () => 2,
    openTimeoutMs: 5_000,
  });
  try {
    const events: [number, string][] = [];
    let timer: NodeJS.Timeout | undefined;
    const ending = await new Promise<Ending>((resolve, reject) => {
      // A bound, not a pause: the ending arrives long before it, or the test fails saying so.
      timer = setTimeout(
        () => reject(new Error(`no ending within 10 s; relayed ${JSON.stringify(events)}`)),
        10_000,
      );
      void watches
        .watch(
          { id: 7, start: Buffer.from('m'), end: null, generation: 1, replicas: [1, 2, 3] },
          {
            range: { key: Buffer.from('w'), rangeEnd: Buffer.from('x') },
            startRevision: 5,
            prevKv: false,
          },
          {
            events: (revision: number, evs: readonly WatchEvent[]) => {
              for (const e of evs) events.push([revision, Buffer.from(e.kv.value).toString()]);
            },
            ended: (code, message, resume) => resolve({ code, message, resume }),
          },
          { progressMs: 1_000 },
        )
        .then((w) => {
          if (w.startRevision !== 5) reject(new Error(`started at ${w.startRevision}, not 5`));
        }, reject);
    });
    clearTimeout(timer);
    return { events, ending, openAfter: watches.count() };
  } finally {
    await pool.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

void test('a replica shutting down ends the relayed watch WATCH_RESET after the last revision relayed', async () => {
  const { events, ending, openAfter } = await relay((res) => {
    res.write(eventLine(5, 'a') + '\n');
    res.write(JSON.stringify({ progress: true, header: { revision: 7 } }) + '\n');
    res.end(
      JSON.stringify({
        canceled: true,
        error: { code: 'SHUTTING_DOWN', message: 'The node is shutting down' },
        resumeRevision: 8,
      }) + '\n',
    );
  });
  assert.deepEqual(events, [[5, 'a']]);
  assert.equal(ending.code, 'WATCH_RESET', ending.message);
  assert.equal(ending.resume, 8, 'every change up to 7 was relayed');
  assert.match(ending.message, /node 2.*shutting down.*resume from revision 8/);
  assert.equal(openAfter, 0, 'the relay is no longer counted');
});

void test('a broken stream, or one that just ends, ends the relayed watch WATCH_RESET', async () => {
  const broken = await relay((res) => {
    res.write(eventLine(5, 'a') + '\n', () => res.destroy());
  });
  assert.deepEqual(broken.events, [[5, 'a']]);
  assert.deepEqual([broken.ending.code, broken.ending.resume], ['WATCH_RESET', 6]);

  const ended = await relay((res) => res.end());
  assert.deepEqual(ended.events, []);
  assert.deepEqual(
    [ended.ending.code, ended.ending.resume],
    ['WATCH_RESET', 5],
    'nothing relayed: resume where the watch started',
  );
});

void test('any other ending by the replica is passed on as it came: COMPACTED ends it, no resuming', async () => {
  const { ending } = await relay((res) => {
    res.end(
      JSON.stringify({
        canceled: true,
        error: { code: 'COMPACTED', message: 'compacted at revision 9' },
      }) + '\n',
    );
  });
  assert.deepEqual(ending, { code: 'COMPACTED', message: 'compacted at revision 9', resume: null });
});
