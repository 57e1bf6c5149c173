// The client over the binary protocol against scripted servers: an HTTP server that names a
// binary port, and a binary server that drops connections on cue. What the client reports for
// a request lost with its connection, and how it retries a write, is what the history checkers
// and the exactly-once guarantee rely on.

import assert from 'node:assert/strict';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import {
  FrameReader,
  clientProtocolHeader,
  decodePayload,
  encodeAnswer,
  encodeError,
  encodeFrame,
} from '../../src/api/wire-codec.js';
import { FlotillaClient, FlotillaError } from '../../src/client/index.js';

type Request = { id: number; op: string; body: Record<string, unknown>; clientId: unknown };
/** Answers a request with a result or an error, or drops the connection ('drop'). */
type Script = (r: Request, attempt: number) => unknown;

const closers: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of closers.splice(0)) await c();
});

/** A scripted binary server and an HTTP server that answers every request naming its port. */
async function scripted(
  script: Script,
  /** The handshake answer's featureLevel; none, as a release before the field sends. */
  featureLevel?: number,
): Promise<{ url: string; seen: Request[] }> {
  const seen: Request[] = [];
  const sockets = new Set<Socket>();
  const binary: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    const reader = new FrameReader(1 << 20);
    let clientId: unknown = null;
    socket.on('data', (chunk: Buffer) => {
      for (const p of reader.push(chunk)) {
        const v = decodePayload(p);
        if (!Array.isArray(v)) {
          clientId = (v as { clientId?: unknown }).clientId;
          socket.write(encodeFrame({ version: 1, nodeId: 1, leader: 1, featureLevel }));
          continue;
        }
        const [id, op, body] = v as [number, string, Record<string, unknown>];
        const r = { id, op, body, clientId };
        seen.push(r);
        const answer = script(r, seen.length - 1);
        if (answer === 'drop') socket.destroy();
        else if (answer instanceof FlotillaError) socket.write(encodeError(id, answer));
        else socket.write(encodeAnswer(id, answer));
      }
    });
  });
  await new Promise<void>((r) => binary.listen(0, '127.0.0.1', r));
  const port = (binary.address() as AddressInfo).port;
  const http: HttpServer = createHttpServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json', [clientProtocolHeader]: port });
      res.end(JSON.stringify({ header: { revision: 1, memberId: 1, raftTerm: 1 }, kvs: [] }));
    });
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  closers.push(async () => {
    for (const s of sockets) s.destroy();
    http.closeAllConnections();
    await new Promise((r) => binary.close(r));
    await new Promise((r) => http.close(r));
  });
  return { url: `http://127.0.0.1:${(http.address() as AddressInfo).port}`, seen };
}

const header = { revision: 7, memberId: 1, raftTerm: 1 };

void describe('FlotillaClient over the binary protocol', () => {
  void it('sends a bulk report only to a node whose release knows it', async () => {
    // A node of an earlier release closes the connection on a request type it does not know,
    // failing every request on it: the client must not send it one, but the reports alone.
    for (const level of [undefined, 5, 6]) {
      const { url, seen } = await scripted(
        (r) =>
          r.op === 'queue.reportBulk'
            ? { header, results: [{ state: 'completed' }, { state: 'completed' }] }
            : { header, state: 'completed' },
        level,
      );
      const client = new FlotillaClient({ endpoints: [url] });
      try {
        await client.get('warm-up'); // over HTTP: the answer names the binary port
        assert.equal(client.usesBinary(url), true);
        const q = client.queue('q');
        const done = await Promise.all([q.complete('a', 1), q.complete('b', 2)]);
        assert.deepEqual(
          done.map((d) => d.state),
          ['completed', 'completed'],
        );
        assert.deepEqual(
          seen.map((x) => x.op),
          level === 6 ? ['queue.reportBulk'] : ['queue.complete', 'queue.complete'],
          `a node at feature level ${String(level)}`,
        );
      } finally {
        await client.close();
      }
    }
  });

  void it('retries a write lost with its connection under the same session number', async () => {
    const { url, seen } = await scripted((r, attempt) =>
      r.op === 'put' && attempt === 0 ? 'drop' : { header },
    );
    const client = new FlotillaClient({ endpoints: [url], maxAttempts: 4 });
    try {
      await client.get('warm-up'); // over HTTP: the answer names the binary port
      assert.equal(client.usesBinary(url), true);
      const r = await client.put('k', 'v');
      assert.deepEqual(r.header, header);
      const puts = seen.filter((x) => x.op === 'put');
      assert.equal(puts.length, 2, 'one retry after the drop');
      assert.equal(puts[0]?.body['seq'], puts[1]?.body['seq'], 'the retry reuses the number');
      assert.equal(puts[0]?.body['seq'], 1);
      // The session id travels in the handshake, not in each write.
      for (const p of puts) {
        assert.equal(p.clientId, client.clientId);
        assert.equal(p.body['clientId'], undefined);
      }
    } finally {
      await client.close();
    }
  });

  void it('reports a write lost with its connection as indefinite, a read as definite', async () => {
    const { url } = await scripted(() => 'drop');
    const client = new FlotillaClient({ endpoints: [url], maxAttempts: 1 });
    try {
      await client.status(url).catch(() => undefined); // any HTTP answer names the port
      assert.equal(client.usesBinary(url), true);
      await assert.rejects(client.put('k', 'v'), (e: unknown) => {
        assert.ok(e instanceof FlotillaError);
        assert.equal(e.code, 'CONNECTION');
        assert.equal(e.indefinite, true, e.message);
        return true;
      });
      await assert.rejects(client.get('k'), (e: unknown) => {
        assert.ok(e instanceof FlotillaError);
        assert.equal(e.code, 'CONNECTION');
        assert.equal(e.indefinite, false, e.message);
        return true;
      });
    } finally {
      await client.close();
    }
  });

  void it("passes on a node's error with its code, indefinite and leader", async () => {
    const { url } = await scripted(
      () => new FlotillaError('LEADERSHIP_LOST', 'scripted LEADERSHIP_LOST', true, 3),
    );
    const client = new FlotillaClient({ endpoints: [url], maxAttempts: 1 });
    try {
      await client.get('warm-up');
      await assert.rejects(client.put('k', 'v'), (e: unknown) => {
        assert.ok(e instanceof FlotillaError);
        assert.equal(e.code, 'LEADERSHIP_LOST');
        assert.equal(e.indefinite, true);
        assert.equal(e.leader, 3);
        return true;
      });
    } finally {
      await client.close();
    }
  });

  void it("stays on HTTP with protocol 'http'", async () => {
    const { url, seen } = await scripted(() => ({ header }));
    const client = new FlotillaClient({ endpoints: [url], protocol: 'http' });
    try {
      await client.get('a');
      await client.put('b', 'v');
      assert.equal(client.usesBinary(url), false);
      assert.equal(seen.length, 0, 'nothing went to the binary port');
    } finally {
      await client.close();
    }
  });
});
