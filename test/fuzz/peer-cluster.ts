// The cluster the peer protocol is fuzzed against: five members configured, three started in
// this process (1, 2, 3: a quorum), on 127.0.0.1 with their real WALs. The fuzzer dials node
// 1's peer port in the name of member 4 or 5, which never start, so its connections replace
// no real peer's, and the three keep committing while node 1 is fuzzed.
//
// Each refused handshake and protocol error on node 1 is reported by its transport as an event
// with the remote address and the code it counted in its stats; the fuzzer taps those events
// (node-setup.ts logs a refused handshake once a minute per address and check that refused, so
// its log no longer names every one) and attributes them to its connections by local port. Node
// 1's log still tells the fuzzer of the messages it failed to handle.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { joinHostPort } from '../../src/base/host-port.js';
import { resolveNodeConfig } from '../../src/server/config.js';
import { createLogger } from '../../src/server/logging.js';
import { FlotillaNode } from '../../src/server/node.js';
import type { TcpTransport } from '../../src/transport/index.js';
import type { TransportEvent, TransportStats } from '../../src/transport/types.js';
import { freePorts } from '../e2e/harness.js';

/** What node 1's transport reported about one inbound connection on its peer port. */
export interface PeerEvent {
  readonly kind: 'refused' | 'error';
  readonly code: string;
  readonly reason: string;
}

export interface PeerCluster {
  /** Node 1's peer port, the one fuzzed. */
  readonly peerPort: number;
  readonly clusterId: string;
  /** Members that never start: the names the fuzzer dials in. */
  readonly absentIds: readonly number[];
  readonly runningIds: readonly number[];
  /** Node 1's events by remote address (`127.0.0.1:port`), taken (removed) by the caller. */
  takeEvents(remote: string): PeerEvent[];
  /** Refusals and protocol errors node 1's transport reported, in either direction. */
  eventsReported(): number;
  /**
   * Events no fuzz connection took: node 1's own connections to its peers (e.g. a handshake
   * of its timing out on a loaded machine), by remote address.
   */
  unattributed(): string[];
  /** Messages node 1 failed to handle (handler errors): each is a bug. */
  readonly handlerErrors: string[];
  /** Node 1's transport stats: the errors it counted. */
  stats(): TransportStats;
  /** A put through node 1 that every running node applies; null when it did. */
  commits(): Promise<string | null>;
  close(): Promise<void>;
}

export async function startPeerCluster(): Promise<PeerCluster> {
  const members = 5;
  const running = [1, 2, 3];
  const ports = await freePorts(members * 2);
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-fuzz-peer-'));
  const peerPort = (id: number): number => ports[id - 1] as number;
  const httpPort = (id: number): number => ports[members + id - 1] as number;
  const spec = Array.from(
    { length: members },
    (_, i) => `${i + 1}=127.0.0.1:${peerPort(i + 1)}@http://127.0.0.1:${httpPort(i + 1)}`,
  ).join(',');
  const events = new Map<string, PeerEvent[]>();
  /** Events of node 1's own links to its peers (above). */
  const ownLinks: string[] = [];
  let reported = 0;
  const handlerErrors: string[] = [];
  const log = createLogger(1, {
    level: 'warn',
    format: 'json',
    out: {
      write: (line: string) => {
        const r = JSON.parse(line) as Record<string, unknown>;
        if (r['msg'] === 'error handling a peer message') handlerErrors.push(String(r['reason']));
      },
    },
  });
  const configs = running.map((id) =>
    resolveNodeConfig({
      id,
      dataDir: join(dir, `node${id}`),
      initialCluster: spec,
      listenClient: `127.0.0.1:${httpPort(id)}`,
      logLevel: 'silent',
      // Members 4 and 5 are named and never run: a majority of empty members starts it.
      initialClusterState: 'new',
    }),
  );
  const started = await Promise.allSettled(
    configs.map((c) => FlotillaNode.start(c, c.id === 1 ? { logger: log } : {})),
  );
  const nodes = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = started.find((r) => r.status === 'rejected');
  const closeAll = async (): Promise<void> => {
    await Promise.all(nodes.map((n) => n.close()));
    rmSync(dir, { recursive: true, force: true });
  };
  if (failed !== undefined) {
    await closeAll();
    throw failed.reason;
  }
  const node1 = nodes[0] as FlotillaNode;
  // The transport is not part of a node's public surface; its stats are what the protocol
  // promises to count, so the fuzzer reads them where the node keeps them.
  const transport = (node1.members as unknown as { o: { transport: TcpTransport } }).o.transport;
  // A HELLO in the name of member 4 or 5 may carry a `peer` address: node 1 then dials that
  // member there, whatever listens (its own HTTP port, another process). Such a link's events
  // are keyed by the address it dials, which a fuzz connection's port can take once the
  // ephemeral ports wrap (after some 28,000 connections): they are node 1's own.
  const links = (
    transport as unknown as { links: Map<number, { dialled(): { host: string; port: number } }> }
  ).links;
  const dialledByNode1 = (remote: string): boolean =>
    [...links.values()].some((l) => joinHostPort(l.dialled().host, l.dialled().port) === remote);
  tapEvents(transport, (e) => {
    if (e.kind === 'handshake-refused') {
      reported++;
      if (e.direction === 'outbound') ownLinks.push(`${e.remote}: refused (${e.reason})`);
      else
        add(events, e.remote, {
          kind: 'refused',
          code: 'TRANSPORT_HANDSHAKE_REFUSED',
          reason: `${e.direction}: ${e.reason}`,
        });
    } else if (e.kind === 'protocol-error') {
      reported++;
      if (dialledByNode1(e.remote)) ownLinks.push(`${e.remote}: ${e.code} (${e.message})`);
      else add(events, e.remote, { kind: 'error', code: e.code, reason: e.message });
    }
  });
  const cluster: PeerCluster = {
    peerPort: peerPort(1),
    clusterId: node1.config.clusterId,
    absentIds: [4, 5],
    runningIds: running,
    takeEvents: (remote) => {
      const e = events.get(remote) ?? [];
      events.delete(remote);
      return e;
    },
    handlerErrors,
    eventsReported: () => reported,
    unattributed: () => [
      ...ownLinks.splice(0),
      ...[...events].map(
        ([remote, list]) => `${remote}: ${list.map((e) => `${e.code} (${e.reason})`).join(', ')}`,
      ),
    ],
    stats: () => transport.stats(),
    commits: () => commitEverywhere(running.map(httpPort)),
    close: closeAll,
  };
  const leader = await commitEverywhere(running.map(httpPort), 20_000);
  if (leader !== null) {
    await closeAll();
    throw new Error(`The fuzzed cluster did not commit at start: ${leader}`);
  }
  return cluster;
}

function add(m: Map<string, PeerEvent[]>, remote: string, e: PeerEvent): void {
  const list = m.get(remote);
  if (list === undefined) m.set(remote, [e]);
  else list.push(e);
}

/** A put sent to the first node (forwarded to the leader), then seen applied on every node. */
async function commitEverywhere(
  httpPorts: readonly number[],
  timeoutMs = 10_000,
): Promise<string | null> {
  const deadline = Date.now() + timeoutMs;
  const value = `committed-${Date.now()}`;
  const post = async (port: number, path: string, body: unknown) => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(Math.max(100, deadline - Date.now())),
    });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  };
  let last = '';
  for (;;) {
    if (Date.now() > deadline)
      return `no commit seen on every node within ${timeoutMs} ms: ${last}`;
    try {
      const put = await post(httpPorts[0] as number, '/v1/kv/put', { key: 'fuzz/commit', value });
      if (put.status === 200) break;
      last = `put answered ${put.status}: ${JSON.stringify(put.json).slice(0, 200)}`;
    } catch (err) {
      last = `put failed: ${String(err)}`;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  for (const port of httpPorts) {
    for (;;) {
      if (Date.now() > deadline) return `the put was not applied on the node at ${port}: ${last}`;
      try {
        const got = await post(port, '/v1/kv/range', { key: 'fuzz/commit', serializable: true });
        const kvs = got.json['kvs'] as { value?: string }[] | undefined;
        if (kvs?.[0]?.value === value) break;
        last = `range on ${port} saw ${JSON.stringify(got.json).slice(0, 200)}`;
      } catch (err) {
        last = `range on ${port} failed: ${String(err)}`;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  return null;
}

/**
 * Has `tap` see every event `transport` emits before the node's own handler (node-setup.ts)
 * does. The transport takes one handler, which the node set: it is wrapped in place.
 */
function tapEvents(transport: TcpTransport, tap: (e: TransportEvent) => void): void {
  const t = transport as unknown as { eventHandler: (e: TransportEvent) => void };
  const node = t.eventHandler;
  t.eventHandler = (e) => {
    tap(e);
    node(e);
  };
}
