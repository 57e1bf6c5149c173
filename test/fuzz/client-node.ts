// The node the two client protocols are fuzzed against: one in-process Flotilla node (a
// one-member cluster) serving HTTP and the binary protocol on 127.0.0.1, with its real WAL,
// and what "it still serves" means for it: a put and a get over each protocol.

import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Packr, Unpackr } from 'msgpackr';
import { resolveNodeConfig } from '../../src/server/config.js';
import { createLogger } from '../../src/server/logging.js';
import { FlotillaNode } from '../../src/server/node.js';
import { freePorts } from '../e2e/harness.js';

export interface ClientNode {
  readonly node: FlotillaNode;
  readonly httpPort: number;
  readonly wirePort: number;
  readonly maxBodyBytes: number;
  /** What the node logged at error level; the fuzzer takes (empties) it after each input. */
  readonly internalErrors: string[];
  /** Deletes every key and compacts the history away. */
  clear(): Promise<void>;
  /** A put and a get over HTTP; null when both worked. */
  httpStillServes(): Promise<string | null>;
  /** A put and a get over the binary protocol; null when both worked. */
  wireStillServes(): Promise<string | null>;
  close(): Promise<void>;
}

export async function startClientNode(): Promise<ClientNode> {
  const [peer, http, wire] = (await freePorts(3)) as [number, number, number];
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-fuzz-'));
  const maxBodyBytes = 256 * 1024;
  const config = resolveNodeConfig({
    id: 1,
    dataDir: dir,
    initialCluster: `1=127.0.0.1:${peer}@http://127.0.0.1:${http}`,
    listenClient: `127.0.0.1:${http}`,
    clientProtocolPort: wire,
    // Small limits are met more often by mutated bodies; the relations between them are
    // checked at start-up as for any node.
    maxKeyBytes: 1024,
    maxValueBytes: 64 * 1024,
    maxBodyBytes,
    httpHeadersTimeoutMs: 2_000,
    httpRequestTimeoutMs: 4_000,
  });
  // The node logs an exception it did not expect at error level (http.ts onError): a bug
  // even when the client already had its answer, e.g. a 400 for a cut request.
  const internalErrors: string[] = [];
  const logger = createLogger(1, {
    level: 'error',
    format: 'json',
    out: {
      write: (line: string) => {
        const r = JSON.parse(line) as { msg?: string; err?: { message?: string } };
        internalErrors.push(`${r.msg ?? '?'}: ${r.err?.message ?? ''}`);
      },
    },
  });
  const node = await FlotillaNode.start(config, { logger });
  try {
    await until('the node to lead', () => node.runtime.isLeader(), 10_000);
  } catch (err) {
    await node.close();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    node,
    httpPort: http,
    wirePort: wire,
    maxBodyBytes,
    internalErrors,
    clear: () => clearStore(http),
    httpStillServes: () => httpPutGet(http),
    wireStillServes: () => wirePutGet(wire),
    close: async () => {
      await node.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function until(what: string, done: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`No ${what} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function post(port: number, path: string, body: unknown) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

/** Every key (from byte 0 to the largest key there can be) deleted, then compacted. */
async function clearStore(port: number): Promise<void> {
  const all = {
    key: Buffer.of(0).toString('base64'),
    rangeEnd: Buffer.alloc(1024, 0xff).toString('base64'),
    encoding: 'base64',
  };
  const del = await post(port, '/v1/kv/delete', all);
  const header = del.json['header'] as { revision?: number } | undefined;
  if (del.status !== 200 || header?.revision === undefined)
    throw new Error(`Clearing the store failed: ${JSON.stringify(del.json)}`);
  const compact = await post(port, '/v1/kv/compact', { revision: header.revision });
  if (compact.status !== 200 && compact.json['error'] !== undefined) {
    const code = (compact.json['error'] as { code?: string }).code;
    // Compacted already (the automatic compactor got there first) is as good.
    if (code !== 'COMPACTED') throw new Error(`Compacting failed: ${JSON.stringify(compact.json)}`);
  }
}

async function httpPutGet(port: number): Promise<string | null> {
  const value = `alive-${Date.now()}`;
  try {
    const put = await post(port, '/v1/kv/put', { key: 'fuzz/after', value });
    if (put.status !== 200) return `put answered ${put.status}: ${JSON.stringify(put.json)}`;
    const got = await post(port, '/v1/kv/range', { key: 'fuzz/after' });
    const kvs = got.json['kvs'] as { value?: string }[] | undefined;
    if (got.status !== 200 || kvs?.[0]?.value !== value)
      return `get answered ${got.status}: ${JSON.stringify(got.json).slice(0, 300)}`;
    return null;
  } catch (err) {
    return `put/get over HTTP failed: ${String(err)}`;
  }
}

const packr = new Packr({ useRecords: false, moreTypes: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

function frame(value: unknown): Buffer {
  const p = packr.pack(value);
  const h = Buffer.allocUnsafe(4);
  h.writeUInt32BE(p.length, 0);
  return Buffer.concat([h, p]);
}

/** A handshake, a put and a get on one connection, each answer awaited (10 s in all). */
function wirePutGet(port: number): Promise<string | null> {
  const value = `alive-${Date.now()}`;
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const timer = setTimeout(() => finish('no answers within 10 s'), 10_000);
    let got = Buffer.alloc(0);
    let step = 0;
    const finish = (r: string | null): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(r);
    };
    socket.on('error', (err) => finish(`binary connection failed: ${String(err)}`));
    socket.on('connect', () =>
      socket.write(
        Buffer.concat([
          frame({ magic: 'flotilla', version: 1 }),
          frame([1, 'put', { key: 'fuzz/after-wire', value }]),
        ]),
      ),
    );
    socket.on('data', (c: Buffer) => {
      got = Buffer.concat([got, c]);
      while (got.length >= 4 && got.length >= 4 + got.readUInt32BE(0)) {
        const n = got.readUInt32BE(0);
        const v = unpackr.unpack(got.subarray(4, 4 + n)) as unknown;
        got = got.subarray(4 + n);
        step++;
        if (step === 1) continue; // the handshake's answer
        const [id, status, payload] = v as [number, number, Record<string, unknown>];
        if (status !== 0) return finish(`request ${id} failed: ${JSON.stringify(payload)}`);
        if (id === 1) socket.write(frame([2, 'range', { key: 'fuzz/after-wire' }]));
        else {
          const kvs = payload['kvs'] as { value?: string }[] | undefined;
          return finish(kvs?.[0]?.value === value ? null : `get saw ${JSON.stringify(payload)}`);
        }
      }
    });
  });
}
