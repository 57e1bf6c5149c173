// In-process Flotilla nodes for tests of what a node does over HTTP with its peers (forwarding,
// leadership transfer): real storage, transport and HTTP on 127.0.0.1, one process. Each
// member's advertised client URL can be replaced, e.g. by a server that never answers, to
// stand for a leader whose HTTP side hangs.

import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveNodeConfig, type NodeConfig } from '../../src/server/config.js';
import { FlotillaNode } from '../../src/server/node.js';
import type { NodeTestHooks } from '../../src/server/node-ranges.js';
import type { Logger } from 'pino';
import { freePorts } from '../e2e/harness.js';
import { joinHostPort } from '../../src/base/host-port.js';

export interface TestNodesOptions {
  readonly nodes: number;
  /** The address every listener binds (default 127.0.0.1; `::1` for IPv6). */
  readonly host?: string;
  /** The client URL the others use to reach node `id` (default: where it listens). */
  readonly advertise?: (id: number, listening: string) => string;
  readonly requestTimeoutMs?: number;
  /** Serve the binary client protocol too, each node on a port of its own. */
  readonly clientProtocol?: boolean;
  /** More configuration for every node. */
  readonly config?: Record<string, unknown>;
  /** More configuration for node `id` (its TLS files, say). */
  readonly configOf?: (id: number) => Record<string, unknown>;
  /** Client URLs are https:// (the nodes serve TLS: `configOf` gives their files). */
  readonly https?: boolean;
  /** Node `id`'s logger (default: none). */
  readonly logger?: (id: number) => Logger;
  /** The feature level node `id` runs (default: this release's), to play an older release. */
  readonly featureLevelOf?: (id: number) => number | undefined;
  /** Faults planted in node `id` (default: none). */
  readonly hooksOf?: (id: number) => NodeTestHooks | undefined;
}

export class TestNodes {
  private constructor(
    readonly nodes: FlotillaNode[],
    /** Where each node's HTTP server listens, by id - 1. */
    readonly urls: string[],
    private readonly dir: string,
    /** Each node's binary client protocol port, by id - 1 (empty when not served). */
    readonly binaryPorts: number[],
    /** Each node's configuration, by id - 1, to start it again on the same data directory. */
    private readonly configs: NodeConfig[],
    private readonly logger?: (id: number) => Logger,
    private featureLevelOf?: (id: number) => number | undefined,
    private readonly hooksOf?: (id: number) => NodeTestHooks | undefined,
  ) {}

  static async start(o: TestNodesOptions): Promise<TestNodes> {
    const ports = await freePorts(o.nodes * (o.clientProtocol === true ? 3 : 2));
    const binaryPorts = o.clientProtocol === true ? ports.slice(o.nodes * 2) : [];
    const dir = mkdtempSync(join(tmpdir(), 'flotilla-nodes-'));
    leftBehind.add(dir);
    const ids = Array.from({ length: o.nodes }, (_, i) => i + 1);
    const host = o.host ?? '127.0.0.1';
    const listening = ids.map((id) => joinHostPort(host, ports[o.nodes + id - 1] as number));
    const scheme = o.https === true ? 'https' : 'http';
    const spec = ids
      .map((id) => {
        const url = `${scheme}://${listening[id - 1] as string}`;
        const peer = joinHostPort(host, ports[id - 1] as number);
        return `${id}=${peer}@${o.advertise?.(id, url) ?? url}`;
      })
      .join(',');
    const configs = ids.map((id) =>
      resolveNodeConfig({
        id,
        dataDir: join(dir, `node${id}`),
        initialCluster: spec,
        listenClient: listening[id - 1],
        logLevel: 'silent',
        // The placement loop moves ranges by itself: off unless a test of it turns it on, so
        // that a test placing ranges by hand finds them where it put them.
        placement: 'off',
        // A one-member cluster of a test is new: no member of it can have been lost.
        ...(o.nodes === 1 ? { emptyStartWaitMs: 0 } : {}),
        ...o.config,
        ...o.configOf?.(id),
        ...(binaryPorts.length > 0 ? { clientProtocolPort: binaryPorts[id - 1] } : {}),
        ...(o.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: o.requestTimeoutMs }),
      }),
    );
    let nodes: FlotillaNode[];
    try {
      nodes = await startAll(configs, o.logger, o.featureLevelOf, o.hooksOf);
    } catch (err) {
      removeDir(dir);
      throw err;
    }
    return new TestNodes(
      nodes,
      listening.map((l) => `${scheme}://${l}`),
      dir,
      binaryPorts,
      configs,
      o.logger,
      o.featureLevelOf,
      o.hooksOf,
    );
  }

  /** Closes every node, then starts every one again on its data directory and ports. */
  async restartAll(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.close()));
    const nodes = await startAll(this.configs, this.logger, this.featureLevelOf, this.hooksOf);
    this.nodes.splice(0, this.nodes.length, ...nodes);
  }

  /**
   * Closes node `id` and starts it again on its data directory, running feature level `level`
   * (undefined: this release's), as a rolling upgrade replaces one member's release; later
   * restarts keep that level.
   */
  async restartAt(id: number, level: number | undefined): Promise<void> {
    await this.node(id).close();
    const before = this.featureLevelOf;
    this.featureLevelOf = (n) => (n === id ? level : before?.(n));
    const [started] = await startAll([this.configs[id - 1] as NodeConfig], this.logger, (n) =>
      n === id ? level : undefined,
    );
    this.nodes[id - 1] = started as FlotillaNode;
  }

  /** Closes every node and keeps their data directories, for a look at what they left. */
  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.close()));
    this.nodes.splice(0, this.nodes.length);
  }

  /** Node `id`'s configuration, to start it by hand (with options of a test's own). */
  config(id: number): NodeConfig {
    const c = this.configs[id - 1];
    if (c === undefined) throw new Error(`No node ${id}`);
    return c;
  }

  /** Node `id`'s data directory. */
  dataDir(id: number): string {
    const c = this.configs[id - 1];
    if (c === undefined) throw new Error(`No node ${id}`);
    return c.dataDir;
  }

  node(id: number): FlotillaNode {
    const n = this.nodes[id - 1];
    if (n === undefined) throw new Error(`No node ${id}`);
    return n;
  }

  binaryPort(id: number): number {
    const p = this.binaryPorts[id - 1];
    if (p === undefined) throw new Error(`Node ${id} serves no binary client protocol`);
    return p;
  }

  url(id: number): string {
    return this.urls[id - 1] as string;
  }

  /** Waits until every node agrees on the key-value group's leader; returns its id. */
  waitForLeader(timeoutMs = 10_000): Promise<number> {
    return this.waitForGroupLeader((n) => n.runtime, 'leader', timeoutMs);
  }

  /** Waits until every node agrees on the queue group's leader; returns its id. */
  waitForQueueLeader(timeoutMs = 10_000): Promise<number> {
    return this.waitForGroupLeader((n) => n.queueService.runtime, 'queue leader', timeoutMs);
  }

  private async waitForGroupLeader(
    group: (n: FlotillaNode) => { leaderId(): number; isLeader(): boolean },
    what: string,
    timeoutMs: number,
  ): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    let seen = '';
    while (Date.now() < deadline) {
      const leaders = this.nodes.map((n) => group(n).leaderId());
      seen = leaders.join(',');
      const l = leaders[0] ?? 0;
      if (l !== 0 && leaders.every((x) => x === l) && group(this.node(l)).isLeader()) return l;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`No agreed ${what} within ${timeoutMs} ms (leaders seen: ${seen})`);
  }

  async close(): Promise<void> {
    try {
      await Promise.all(this.nodes.map((n) => n.close()));
    } finally {
      removeDir(this.dir);
    }
  }
}

/**
 * The data directories of clusters not closed yet, removed when the test process exits: a
 * test that failed, or closed its nodes another way, left one in the temporary directory
 * on every run.
 */
const leftBehind = new Set<string>();
process.once('exit', () => {
  for (const dir of leftBehind) rmSync(dir, { recursive: true, force: true });
});

function removeDir(dir: string): void {
  leftBehind.delete(dir);
  rmSync(dir, { recursive: true, force: true });
}

/**
 * Starts every node at once, as a new cluster's processes start: a node with an empty data
 * directory waits to hear from a majority of its peers before it starts (DESIGN.md). If any
 * fails, those that started are closed and the first failure is thrown.
 */
async function startAll(
  configs: readonly NodeConfig[],
  logger?: (id: number) => Logger,
  featureLevelOf?: (id: number) => number | undefined,
  hooksOf?: (id: number) => NodeTestHooks | undefined,
): Promise<FlotillaNode[]> {
  const started = await Promise.allSettled(
    configs.map((c) => {
      const level = featureLevelOf?.(c.id);
      const hooks = hooksOf?.(c.id);
      return FlotillaNode.start(c, {
        ...(logger === undefined ? {} : { logger: logger(c.id) }),
        ...(level === undefined ? {} : { featureLevel: level }),
        ...(hooks === undefined ? {} : { testHooks: hooks }),
      });
    }),
  );
  const nodes = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = started.find((r) => r.status === 'rejected');
  if (failed !== undefined) {
    await Promise.all(nodes.map((n) => n.close()));
    throw failed.reason;
  }
  return nodes;
}

/** An HTTP server that reads requests and never answers them, until closed. */
export class BlackHole {
  private readonly held: ServerResponse[] = [];
  requests = 0;

  private constructor(private readonly server: Server) {}

  static async start(): Promise<BlackHole> {
    const server = createServer();
    const hole = new BlackHole(server);
    server.on('request', (_req, res) => {
      hole.requests++;
      hole.held.push(res);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return hole;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }
}

/** A POST with its own strongly held timer (not AbortSignal.timeout, which GC may lose). */
export async function postJson(
  url: string,
  body: unknown,
  o: { timeoutMs: number; headers?: Record<string, string> },
): Promise<{ status: number; json: Record<string, unknown>; ms: number }> {
  const ac = new AbortController();
  const timer = setTimeout(
    () => ac.abort(new Error(`no answer within ${o.timeoutMs} ms`)),
    o.timeoutMs,
  );
  const started = performance.now();
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...o.headers },
      body: JSON.stringify(body),
      signal: ac.signal,
    });
    const json = (await res.json()) as Record<string, unknown>;
    return { status: res.status, json, ms: performance.now() - started };
  } finally {
    clearTimeout(timer);
  }
}

export { until } from '../support/until.js';
