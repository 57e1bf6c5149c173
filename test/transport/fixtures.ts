// Shared fixtures of the transport tests: one message of every type, and helpers that start
// TCP transports on 127.0.0.1 with OS-chosen ports.

import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import type { Entry, Message } from '../../src/raft/types.js';
import { TcpTransport } from '../../src/transport/tcp.js';
import type { TcpTransportOptions } from '../../src/transport/options.js';
import type { TransportEvent } from '../../src/transport/types.js';

export function entries(n: number, sizeBytes: number, firstIndex = 1): Entry[] {
  return Array.from({ length: n }, (_, i) => ({
    term: 3,
    index: firstIndex + i,
    type: i === 0 ? 'noop' : 'normal',
    data: i === 0 ? new Uint8Array(0) : new Uint8Array(sizeBytes).fill(i % 251),
  }));
}

/** One message of every type, from `from` to `to`. */
export function everyMessage(from: number, to: number): Message[] {
  const b = { from, to, term: 3 };
  return [
    { ...b, type: 'vote', lastLogIndex: 9, lastLogTerm: 2, transfer: false },
    { ...b, type: 'pre-vote', lastLogIndex: 9, lastLogTerm: 2, transfer: true },
    { ...b, type: 'vote-resp', granted: true },
    { ...b, type: 'pre-vote-resp', granted: false },
    { ...b, type: 'append', prevIndex: 4, prevTerm: 2, entries: entries(3, 100, 5), commit: 4 },
    {
      ...b,
      type: 'append-resp',
      success: false,
      index: 7,
      hintIndex: 5,
      hintTerm: 2,
      lost: true,
      catchingUp: false,
    },
    { ...b, type: 'heartbeat', commit: 4, seq: 12 },
    { ...b, type: 'heartbeat-resp', seq: 12, catchingUp: true },
    { ...b, type: 'timeout-now' },
    { ...b, type: 'read-index', requestId: 77, lease: true },
    { ...b, type: 'read-index-resp', requestId: 77, ok: true, index: 8 },
    { ...b, type: 'snapshot-resp', id: 'ab12', received: 2 << 20 },
    {
      ...b,
      type: 'snapshot',
      snapshot: { index: 100, term: 3, voters: [1, 2, 3] },
      id: 'ab12',
      offset: 1 << 20,
      length: 1 << 20,
      totalBytes: 3 << 20,
    },
  ];
}

export interface Received {
  readonly msg: Message;
  readonly attachment: Uint8Array | null;
}

export interface Node {
  readonly t: TcpTransport;
  readonly inbox: Received[];
  readonly events: TransportEvent[];
}

export async function startNode(
  nodeId: number,
  extra: Partial<TcpTransportOptions> = {},
): Promise<Node> {
  const t = await TcpTransport.listen({
    nodeId,
    clusterId: 'test-cluster',
    listen: { host: '127.0.0.1', port: 0 },
    backoff: { baseMs: 10, maxMs: 100 },
    ...extra,
  });
  const inbox: Received[] = [];
  const events: TransportEvent[] = [];
  t.onMessage((msg, attachment) => inbox.push({ msg, attachment }));
  t.onEvent((e) => events.push(e));
  return { t, inbox, events };
}

/** Two nodes that know each other. */
export async function startPair(extra: Partial<TcpTransportOptions> = {}): Promise<[Node, Node]> {
  const a = await startNode(1, extra);
  const b = await startNode(2, extra);
  a.t.setPeer(2, b.t.address);
  b.t.setPeer(1, a.t.address);
  return [a, b];
}

/** Polls `cond` every 5 ms; fails after `timeoutMs`. */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A raw client socket to a transport's peer port, for feeding it bad bytes. */
export async function rawSocket(port: number): Promise<Socket> {
  const s = connect({ host: '127.0.0.1', port });
  await once(s, 'connect');
  return s;
}

/** Resolves when the socket is closed by the other side (or errors). */
export async function closedBy(s: Socket): Promise<void> {
  if (s.destroyed) return;
  s.on('error', () => undefined);
  s.resume();
  await once(s, 'close');
}

/** Counts of active handle kinds that a transport could leak. */
export function handleCounts(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of process.getActiveResourcesInfo())
    if (k === 'TCPSocketWrap' || k === 'TCPServerWrap' || k === 'Timeout')
      out[k] = (out[k] ?? 0) + 1;
  return out;
}
