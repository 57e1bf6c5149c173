// The client's connections to each node, and one attempt of a request over them: HTTP from
// a pool per endpoint, or the binary client protocol once the node's HTTP answers name its
// port (docs/CLIENT-PROTOCOL.md). Which endpoint to try, and trying again, is caller.ts.

import { Pool } from 'undici';
import { Deadline } from '../api/deadline.js';
import { queuePaths, queueReads, type QueueOpName } from '../api/queue-paths.js';
import type { ErrorBody } from '../api/types.js';
import { clientProtocolHeader, tlsOnlyHeader, type WireOp } from '../api/wire-codec.js';
import { FlotillaError, isErrorCode } from '../base/errors.js';
import { features } from '../base/features.js';
import { BearerPool } from './bearer-pool.js';
import type { ClientSettings, TlsPem } from './options.js';
import { failureText, markRefusedEndpoint, schemeHint, withRefusalCause } from './util.js';
import { httpWatchLines, wireWatchLines, type WatchBody, type WatchLine } from './watch.js';
import { WireConnection } from './wire.js';

/** The binary protocol's request type of each HTTP path it serves. */
const wireOpOfPath: Readonly<Record<string, WireOp>> = {
  '/v1/kv/put': 'put',
  '/v1/kv/range': 'range',
  '/v1/kv/delete': 'delete',
  '/v1/kv/txn': 'txn',
  ...Object.fromEntries(
    (Object.entries(queuePaths) as [QueueOpName, string][]).map(([name, path]) => [
      path,
      `queue.${name}` as const,
    ]),
  ),
};

/** Request types that change nothing: lost with their connection, they failed definitely. */
const wireReads = new Set<WireOp>([
  'range',
  ...[...queueReads].map((name) => `queue.${name}` as const),
]);

/** Request types a node knows only from a feature level on (the handshake says the node's). */
const wireOpLevels = new Map<WireOp, number>([
  ['queue.reportBulk', features.queueReportBulk.level],
  ['queue.queues', features.queueList.level],
]);

/** After a binary connection could not be made, an endpoint is served over HTTP this long. */
const binaryRetryMs = 5_000;

export class Connections {
  private readonly pools = new Map<string, Pool>();
  /**
   * Endpoint -> the pool its HTTP watches stream over. Apart from `pools`: a watch holds its
   * connection for as long as it lives, and in the request pool `connections` watches would
   * take every connection, leaving the calls (a lease's keep-alives among them) queued behind
   * them for ever. Not bounded here: the node bounds its watches (`maxWatches`).
   */
  private readonly watchPools = new Map<string, Pool>();
  private readonly timeoutMs: number;
  private readonly clientId: string;
  private readonly protocol: 'auto' | 'http';
  private readonly binaryConnections: number;
  /** Endpoint -> the binary protocol port its node advertised. */
  private readonly binaryPorts = new Map<string, number>();
  /** Endpoint -> when to try its binary port again after a failure (ms since the epoch). */
  private readonly binaryRetryAt = new Map<string, number>();
  /** Endpoints that answered over HTTP: their scheme is right, whatever fails later. */
  private readonly answeredOverHttp = new Set<string>();
  /** Endpoint -> its binary connections (or connections being made), used round-robin. */
  private readonly wires = new Map<string, (Promise<WireConnection> | undefined)[]>();
  private nextWire = 0;
  /** Presented by every request (BearerPool) and every binary handshake; null: none. */
  readonly #token: string | null;
  private readonly tls: TlsPem;
  private readonly poolConnections: number;
  /** Set by close(): calls made afterwards are refused CLIENT_CLOSED. */
  private closed = false;

  constructor(s: ClientSettings) {
    this.timeoutMs = s.timeoutMs;
    this.clientId = s.clientId;
    this.protocol = s.protocol;
    this.binaryConnections = s.binaryConnections;
    this.#token = s.token;
    this.tls = s.tls;
    this.poolConnections = s.poolConnections;
    for (const e of s.endpoints) this.pools.set(e, this.newPool(e));
  }

  /** The pool to `url`, made at its first use and closed with the client. */
  private poolFor(url: string): Pool {
    let p = this.pools.get(url);
    if (p === undefined) {
      p = this.newPool(url);
      this.pools.set(url, p);
    }
    return p;
  }

  /** The pool `url`'s HTTP watches stream over, made at the first. */
  private watchPoolFor(url: string): Pool {
    let p = this.watchPools.get(url);
    if (p === undefined) {
      p = this.newPool(url, null);
      this.watchPools.set(url, p);
    }
    return p;
  }

  /**
   * A pool to `endpoint` of `connections` connections (null: as many as are asked for): over
   * TLS with the given CA and certificate, and its requests presenting the token, when there is
   * one.
   */
  private newPool(endpoint: string, connections: number | null = this.poolConnections): Pool {
    const options: Pool.Options = {
      connections,
      pipelining: 1,
      ...(Object.keys(this.tls).length === 0 ? {} : { connect: this.tls }),
    };
    return this.#token === null
      ? new Pool(endpoint, options)
      : new BearerPool(endpoint, this.#token, options);
  }

  /** Whether requests to `endpoint` go over the binary protocol now. */
  usesBinary(endpoint: string): boolean {
    return this.binaryPorts.has(endpoint.replace(/\/$/, ''));
  }

  /** Closes every connection; a second close does nothing. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const wires = [...this.wires.values()].flat();
    this.wires.clear();
    for (const w of wires)
      void w?.then(
        (c) => c.close(),
        () => undefined,
      );
    // A watch's stream lasts until it is cancelled: closing would wait for it, so end them.
    const watchPools = [...this.watchPools.values()];
    this.watchPools.clear();
    await Promise.all([
      ...[...this.pools.values()].map((p) => p.close()),
      ...watchPools.map((p) => p.destroy()),
    ]);
  }

  private refuseIfClosed(what: string): void {
    if (this.closed)
      throw new FlotillaError('CLIENT_CLOSED', `${what}: the client is closed`, false);
  }

  /** One watch stream from `endpoint`: over the binary protocol when its node serves it. */
  async *watchLines(
    endpoint: string,
    body: WatchBody,
    signal: AbortSignal,
    idleMs: number,
  ): AsyncGenerator<WatchLine> {
    this.refuseIfClosed('watch');
    if (!this.binaryUsable(endpoint)) {
      yield* httpWatchLines(this.watchPoolFor(endpoint), endpoint, body, signal, idleMs);
      return;
    }
    yield* wireWatchLines(await this.wireOrBackOff(endpoint), body, signal, idleMs);
  }

  /** One attempt at `endpoint`: over the binary protocol when its node serves the request. */
  async callOnce<T>(
    endpoint: string,
    method: 'GET' | 'POST',
    path: string,
    body: unknown,
    signal?: AbortSignal,
    extraMs = 0,
  ): Promise<T> {
    this.refuseIfClosed(`${method} ${path}`);
    const pool = this.poolFor(endpoint);
    const deadline = new Deadline(this.timeoutMs + extraMs, signal);
    try {
      const op = method === 'POST' ? wireOpOfPath[path] : undefined;
      if (op !== undefined && this.binaryUsable(endpoint))
        return (await this.exchangeBinary(endpoint, op, body, deadline)) as T;
      return await this.exchange<T>(pool, endpoint, method, path, body, deadline);
    } finally {
      deadline[Symbol.dispose]();
    }
  }

  /** A node's HTTP answer names its binary protocol port: use it from the next call on. */
  private learnBinaryPort(endpoint: string, header: string | string[] | undefined): void {
    if (this.protocol !== 'auto' || typeof header !== 'string') return;
    const port = Number(header);
    if (!Number.isInteger(port) || port < 1 || port > 65_535) return;
    if (this.binaryPorts.get(endpoint) !== port) this.binaryPorts.set(endpoint, port);
  }

  private binaryUsable(endpoint: string): boolean {
    if (!this.binaryPorts.has(endpoint)) return false;
    const retryAt = this.binaryRetryAt.get(endpoint);
    if (retryAt === undefined) return true;
    if (Date.now() < retryAt) return false;
    this.binaryRetryAt.delete(endpoint);
    return true;
  }

  /** One attempt over the binary protocol; errors as an HTTP attempt's would be. */
  private async exchangeBinary(
    endpoint: string,
    op: WireOp,
    body: unknown,
    deadline: Deadline,
  ): Promise<unknown> {
    const read = wireReads.has(op);
    const conn = await this.wireOrBackOff(endpoint);
    const level = wireOpLevels.get(op);
    if (level !== undefined && conn.hello.featureLevel < level)
      // Nothing sent: a node of an earlier release would close the connection on a request
      // type it does not know, failing every other request on it. The caller (a gatherer)
      // sends the calls one by one instead.
      throw new FlotillaError(
        'FEATURE_NOT_ENABLED',
        `${conn.where} runs a release before ${op} (its feature level is ${conn.hello.featureLevel}, ${op} needs ${level})`,
        false,
      );
    // The connection's handshake carries the session id; a write's body need not repeat it.
    const b = body as Record<string, unknown>;
    const sent = b['clientId'] === this.clientId ? { ...b, clientId: undefined } : b;
    try {
      return await conn.request(op, dropUndefined(sent), {
        read,
        signal: deadline.signal,
        longPoll: op === 'queue.claim',
      });
    } catch (err) {
      if (err instanceof FlotillaError && err.code === 'ABORTED' && deadline.timedOut)
        throw new FlotillaError(
          'TIMEOUT',
          `${op} to ${conn.where}: no answer within ${this.timeoutMs} ms`,
          !read,
        );
      throw err;
    }
  }

  /**
   * A binary connection to `endpoint`'s node; when none can be made, the endpoint is served
   * over HTTP for a while and this attempt fails (definitely: nothing was sent).
   */
  private async wireOrBackOff(endpoint: string): Promise<WireConnection> {
    try {
      return await this.wire(endpoint);
    } catch (err) {
      this.binaryRetryAt.set(endpoint, Date.now() + binaryRetryMs);
      throw err instanceof FlotillaError ? err : new FlotillaError('CONNECTION', String(err));
    }
  }

  /** A binary connection to `endpoint`'s node: the next of its few, made when missing or closed. */
  private wire(endpoint: string): Promise<WireConnection> {
    let slots = this.wires.get(endpoint);
    if (slots === undefined) {
      slots = new Array<Promise<WireConnection> | undefined>(this.binaryConnections);
      this.wires.set(endpoint, slots);
    }
    const i = this.nextWire++ % this.binaryConnections;
    const have = slots[i];
    if (have !== undefined) {
      // A connection that closed is replaced; one still connecting is shared.
      return have.then(
        (c) => (c.closed ? this.connectWire(endpoint, slots, i) : c),
        () => this.connectWire(endpoint, slots, i),
      );
    }
    return this.connectWire(endpoint, slots, i);
  }

  private connectWire(
    endpoint: string,
    slots: (Promise<WireConnection> | undefined)[],
    i: number,
  ): Promise<WireConnection> {
    const port = this.binaryPorts.get(endpoint) as number;
    const url = new URL(endpoint);
    const p = WireConnection.connect({
      host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
      port,
      clientId: this.clientId,
      ...(this.#token === null ? {} : { token: this.#token }),
      timeoutMs: this.timeoutMs,
      // A node that serves HTTPS serves its binary protocol over TLS as well.
      ...(url.protocol === 'https:' ? { tls: this.tls } : {}),
    });
    slots[i] = p;
    p.catch(() => {
      if (slots[i] === p) slots[i] = undefined;
    });
    return p;
  }

  private async exchange<T>(
    pool: Pool,
    endpoint: string,
    method: 'GET' | 'POST',
    path: string,
    body: unknown,
    deadline: Deadline,
  ): Promise<T> {
    let res;
    let text: string;
    try {
      res = await pool.request({
        method,
        path,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: deadline.signal,
      });
      text = await res.body.text();
    } catch (err) {
      // The request may have reached the server: whether it applied is unknown, unless the
      // connection was never made (nothing was sent).
      const code = deadline.timedOut ? 'TIMEOUT' : 'CONNECTION';
      throw withRefusalCause(
        new FlotillaError(
          code,
          `${method} ${endpoint}${path} failed: ${failureText(err)}${this.answeredOverHttp.has(endpoint) ? '' : schemeHint(endpoint, err)}`,
          method === 'POST' && !connectFailed(err),
        ),
        err,
      );
    }
    if (res.headers[tlsOnlyHeader] !== undefined)
      // An HTTPS port's plain-text answer to a plain request: nothing was done.
      throw markRefusedEndpoint(
        new FlotillaError(
          'CONNECTION',
          `${method} ${endpoint}${path} failed: the port answered that it speaks TLS only (the node serves its clients over TLS: its endpoint is https://)`,
          false,
        ),
        'TLS only',
      );
    this.answeredOverHttp.add(endpoint);
    this.learnBinaryPort(endpoint, res.headers[clientProtocolHeader]);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new FlotillaError(
        'BAD_RESPONSE',
        `Non-JSON answer (${res.statusCode}) from ${endpoint}${path}: ${text.slice(0, 200)}`,
        method === 'POST',
      );
    }
    if (res.statusCode >= 400) {
      const e = (json as ErrorBody).error;
      // A newer node may send a code this client does not know: say so rather than pass on a
      // code outside the vocabulary its callers switch on.
      if (typeof e?.code !== 'string' || !isErrorCode(e.code))
        throw new FlotillaError(
          'BAD_RESPONSE',
          `Unknown error (${res.statusCode}) from ${endpoint}${path}: ${text.slice(0, 200)}`,
          e?.indefinite ?? method === 'POST',
        );
      const after = Number(res.headers['retry-after']);
      const retryAfterMs = Number.isFinite(after) && after > 0 ? Math.min(after, 60) * 1000 : 0;
      throw new FlotillaError(
        e.code,
        e.message,
        e.indefinite,
        e.leader ?? 0,
        retryAfterMs,
        typeof e.compactRevision === 'number' ? e.compactRevision : 0,
      );
    }
    return json as T;
  }
}

/**
 * Failures of making a connection, before any byte of a request is written on it: refused,
 * unreachable, a name not found, a connect timeout, or a TLS handshake this client gave up
 * (the node's certificate not trusted, expired or for another name; a port without TLS). A
 * handshake the node refused (no client certificate) closes the socket like any other drop,
 * and stays indefinite.
 */
const connectFailures = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_SSL_WRONG_VERSION_NUMBER',
]);

function connectFailed(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && connectFailures.has(code);
}

function dropUndefined(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out;
}
