// The fuzzer catches planted bugs: a write path that throws an exception that is not a
// FlotillaError (HTTP answers 500 INTERNAL, the binary protocol an INTERNAL error), a binary
// frame reader that waits for a frame of any length (the connection hangs), and a peer frame
// decoder that lets a frame past the 4 KiB handshake limit, and a peer connection that takes
// a GOODBYE frame on a connection negotiated before the version that has it. Each plant is
// undone after its test.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FrameReader } from '../../src/api/wire-codec.js';
import { FrameDecoder } from '../../src/transport/frame.js';
import { InboundConnection } from '../../src/transport/inbound.js';
import { startClientNode, type ClientNode } from './client-node.js';
import { httpTarget } from './http-target.js';
import { runFuzz, type FuzzReport, type FuzzTarget } from './run.js';
import { startTarget } from './targets.js';
import { wireTarget } from './wire-target.js';

const options = { inputs: 5_000, timeMs: 60_000, inputTimeoutMs: 5_000, maxFailures: 1 };

/** A write whose log entry is over 1 KiB throws a TypeError where the API expects a FlotillaError. */
function plantThrowingWrite(n: ClientNode): void {
  const service = n.node.service;
  const encode = service.encode.bind(service);
  service.encode = (txn, session) => {
    const data = encode(txn, session);
    if (data.length > 1024) throw new TypeError(`planted: cannot encode ${data.length} bytes`);
    return data;
  };
}

async function run(target: FuzzTarget, seed: number, concurrency: number): Promise<FuzzReport> {
  try {
    return await runFuzz(target, { ...options, seed, concurrency });
  } finally {
    await target.close();
  }
}

void test('the HTTP fuzzer catches a route that throws a non-FlotillaError', async () => {
  const n = await startClientNode();
  plantThrowingWrite(n);
  const target = httpTarget({
    port: n.httpPort,
    internalErrors: n.internalErrors,
    stillServes: () => n.httpStillServes(),
    close: () => n.close(),
  });
  const r = await run(target, 21, 16);
  const f = r.failures[0];
  assert.ok(f !== undefined, `no failure in ${r.inputs} inputs`);
  // The INTERNAL answer, or the error the node logged for it (maybe during another input).
  assert.match(f.failure, /(INTERNAL|internal error).*planted: cannot encode/);
  assert.ok(f.inputHex.length > 0 && f.index >= 0, 'the failure names its input');
});

void test('the binary protocol fuzzer catches a request that throws a non-FlotillaError', async () => {
  const n = await startClientNode();
  plantThrowingWrite(n);
  const target = wireTarget({
    port: n.wirePort,
    internalErrors: n.internalErrors,
    maxFrameBytes: n.maxBodyBytes,
    stillServes: () => n.wireStillServes(),
    close: () => n.close(),
  });
  const r = await run(target, 22, 16);
  const f = r.failures[0];
  assert.ok(f !== undefined, `no failure in ${r.inputs} inputs`);
  // The INTERNAL answer, or the error the node logged for it (maybe during another input).
  assert.match(f.failure, /(INTERNAL|internal error).*planted: cannot encode/);
});

void test('the binary protocol fuzzer catches a frame reader that waits for any length (a hang)', async (t) => {
  const proto = FrameReader.prototype as unknown as { checkLength(length: number): number };
  const checkLength = Object.getOwnPropertyDescriptor(proto, 'checkLength');
  assert.ok(checkLength !== undefined);
  // Planted: the length is not checked against maxBodyBytes, so the node waits for the bytes.
  proto.checkLength = (length) => length;
  t.after(() => Object.defineProperty(proto, 'checkLength', checkLength));
  const n = await startClientNode();
  const target = wireTarget({
    port: n.wirePort,
    maxFrameBytes: n.maxBodyBytes,
    internalErrors: n.internalErrors,
    stillServes: () => n.wireStillServes(),
    close: () => n.close(),
  });
  const r = await run(target, 24, 16);
  const f = r.failures[0];
  assert.ok(f !== undefined, `no failure in ${r.inputs} inputs`);
  assert.match(f.failure, /hang: neither answered nor closed within 5000 ms/);
});

void test('the peer protocol fuzzer catches a decoder that takes a frame past the handshake limit', async (t) => {
  const next = Object.getOwnPropertyDescriptor(FrameDecoder.prototype, 'next');
  assert.ok(next !== undefined && typeof next.value === 'function');
  const original = next.value as (this: FrameDecoder) => ReturnType<FrameDecoder['next']>;
  // Planted: the limit in force before the handshake is raised to the one after it.
  FrameDecoder.prototype.next = function (this: FrameDecoder) {
    if (this.maxFrameBytes === 4 * 1024) this.maxFrameBytes = 16 * 1024 * 1024;
    return original.call(this);
  };
  t.after(() => Object.defineProperty(FrameDecoder.prototype, 'next', next));
  const r = await run(await startTarget('peer'), 23, 8);
  const f = r.failures[0];
  assert.ok(f !== undefined, `no failure in ${r.inputs} inputs`);
  assert.match(f.failure, /expected TRANSPORT_FRAME_TOO_LARGE/);
});

void test('the peer protocol fuzzer catches a GOODBYE taken on a connection of a version before it', async (t) => {
  const proto = InboundConnection.prototype as unknown as Record<string, unknown>;
  const onGoodbye = Object.getOwnPropertyDescriptor(proto, 'onGoodbye');
  assert.ok(onGoodbye !== undefined && typeof onGoodbye.value === 'function');
  // Planted: the frame's version check is gone.
  proto['onGoodbye'] = function (this: { peerLeaving: boolean }) {
    this.peerLeaving = true;
  };
  t.after(() => Object.defineProperty(proto, 'onGoodbye', onGoodbye));
  const r = await run(await startTarget('peer'), 23, 8);
  const f = r.failures[0];
  assert.ok(f !== undefined, `no failure in ${r.inputs} inputs`);
  assert.match(f.what, /goodbye/);
  assert.match(f.failure, /^expected TRANSPORT_BAD_FRAME; saw ACCEPT/);
});
