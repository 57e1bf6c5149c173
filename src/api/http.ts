// A small JSON-over-HTTP/1.1 server on node:http: keep-alive, a body limit enforced while
// reading (an oversized body is refused without being buffered), strict JSON (json-body.ts),
// and every error answered as JSON with a stable code. Routes are exact paths; handlers get the
// parsed body. Every connection is bounded in time and number: a client that sends its request
// slowly, or sends nothing, or idles between requests, is disconnected, and connections past
// the limit are closed on arrival, so a crowd of half-open connections cannot pin the server.

import { getEventListeners, setMaxListeners } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { RequestListener, ServerOptions } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { FlotillaError } from '../base/errors.js';
import { splitHostPort } from '../base/host-port.js';
import { errorJson, httpStatus, toFlotillaError } from './errors.js';
import { bodyText, parseJsonText } from './json-body.js';
import type { CorsPolicy } from './cors.js';
import { TurnQueue, type Schedule } from './turns.js';
import type { TraceHook } from '../host/trace.js';
import {
  clientCertRefusal,
  plainToHttpsPort,
  secureContextOptions,
  tlsServerOptions,
  type ServerTlsOptions,
  type TlsMaterial,
} from './tls.js';
import { answerPlainText } from '../transport/plain-text.js';

export interface RouteContext {
  readonly body: unknown;
  /** The body as received, for forwarding a write to the leader unchanged. */
  readonly rawBody: string;
  readonly query: URLSearchParams;
  readonly signal: AbortSignal;
  readonly headers: IncomingMessage['headers'];
}

export type RouteResult = {
  readonly status?: number;
  readonly json?: unknown;
  readonly text?: string;
  readonly contentType?: string;
  /**
   * A streamed answer: newline-delimited JSON written by `stream` until its promise settles
   * (then the answer ends) or the client goes away (`out.signal` aborts).
   */
  readonly stream?: (out: JsonLines) => Promise<void>;
  /**
   * A streamed binary answer (`application/octet-stream`, a backup) written by `bytes` until its
   * promise settles. An error once it began cannot be answered as JSON: the connection is cut
   * instead, so the reader sees the answer end short of its own end marker.
   */
  readonly bytes?: (out: ByteSink) => Promise<void>;
  /**
   * A server-sent event stream (`text/event-stream`) written by `events` until its promise
   * settles or the client goes away (`out.signal` aborts).
   */
  readonly events?: (out: EventSink) => Promise<void>;
  /** Headers of this answer besides the server's own (caching, content security policy). */
  readonly headers?: Readonly<Record<string, string>>;
};

/** The writer of a server-sent event stream: one named event with a JSON payload at a time. */
export interface EventSink {
  send(event: string, data: unknown): void;
  /** Bytes written but not yet taken by the connection: how far the reader lags. */
  buffered(): number;
  readonly signal: AbortSignal;
}

/** The writer of a streamed binary answer. */
export interface ByteSink {
  /** Resolves once the connection can take more (it waits while the reader lags). */
  write(chunk: Uint8Array): Promise<void>;
  readonly signal: AbortSignal;
}

/** The writer of a streamed answer, one JSON value per line. */
export interface JsonLines {
  write(value: unknown): void;
  /** Bytes written but not yet taken by the connection: how far the reader lags. */
  buffered(): number;
  readonly signal: AbortSignal;
}
export type Handler = (ctx: RouteContext) => Promise<RouteResult> | RouteResult;

export interface HttpServerOptions {
  readonly maxBodyBytes: number;
  /**
   * A connection must send a request's headers within this (from the request's first byte, or
   * from connecting for the first request), else it is answered 408 and closed.
   */
  readonly headersTimeoutMs: number;
  /** A connection must send a whole request within this. At least headersTimeoutMs. */
  readonly requestTimeoutMs: number;
  /** A keep-alive connection idle this long between requests is closed. */
  readonly idleTimeoutMs: number;
  /** Connections open at once; one past the limit is closed before anything is read from it. */
  readonly maxConnections: number;
  /**
   * Bounds the client requests in flight (paths given to countAgainstAdmission): one refused
   * here is answered 429 OVERLOADED at once, its body unread.
   */
  readonly admission?: AdmissionGate;
  /**
   * Admitted requests that start, or render their answer, per turn of the event loop
   * (turns.ts): the most client work done between two chances for Raft's. Default 32.
   */
  readonly requestsPerTurn?: number;
  /** How a turn is scheduled (turns.ts); setImmediate unless a test drives the turns itself. */
  readonly turnSchedule?: Schedule;
  /**
   * Checks a request's credentials (auth.ts, `httpAuthorizer`) before anything else is done
   * with it, its body unread: throws UNAUTHENTICATED or PERMISSION_DENIED. None: every request
   * is served.
   */
  readonly authorize?: (path: string, authorization: string | string[] | undefined) => void;
  /** Headers every answer carries (e.g. the binary client protocol's port, for clients). */
  readonly answerHeaders?: Readonly<Record<string, string>>;
  readonly onRequest?: (route: string, status: number) => void;
  readonly onError?: (err: unknown) => void;
  /** Called when client work (an admitted path) arrives, is parsed and is answered. */
  readonly trace?: TraceHook;
  /**
   * Which cross-origin requests a browser may make (cors.ts): the dashboard of another member
   * following this one. None: no Access-Control headers, and OPTIONS is refused 405.
   */
  readonly cors?: CorsPolicy;
  /** Serve HTTPS with this certificate (docs/SECURITY.md, "TLS"); omitted: plain HTTP. */
  readonly tls?: ServerTlsOptions;
}

type Method = 'GET' | 'POST';

/** An admitted request's slot. */
export interface AdmissionTicket {
  begin(): void;
  release(refused?: boolean): void;
}

/** What the server needs of an admission policy (src/server/admission.ts is one). */
export interface AdmissionGate {
  /**
   * A slot for a request of `bodyBytes`, or null to refuse it. `begin` is called once its
   * body has arrived, `release` once it was answered.
   */
  tryAcquire(bodyBytes: number): AdmissionTicket | null;
  /**
   * As tryAcquire, but a request the limits refuse now may wait for a slot (a promise), for a
   * bounded time; null once refused, or when `signal` aborts first.
   */
  acquire?(
    bodyBytes: number,
    signal?: AbortSignal,
  ): AdmissionTicket | null | Promise<AdmissionTicket | null>;
  /** Why requests are refused now, for the error message. */
  describe(): string;
  /** The Retry-After of a refusal now, in seconds. */
  retryAfterSeconds(): number;
}

export class JsonHttpServer {
  /** path -> method -> handler. */
  private readonly routes = new Map<string, Map<string, Handler>>();
  /** Paths whose requests count against the admission limit. */
  private readonly admittedPaths = new Set<string>();
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  /**
   * One abort per client connection, made at its first request and fired when it closes: what a
   * request waits on stops when its client leaves. HTTP/1.1 answers a connection's requests in
   * order, so a close can only find unfinished the requests it cuts off. One per request cost
   * an AbortController and a listener on its response each time (BENCHMARKS.md, "The HTTP
   * front: what a request costs without Raft"); a wait that ends must therefore remove its
   * listener, or a long-lived connection collects them (abortListeners counts them).
   */
  private readonly connectionAborts = new Map<Duplex, AbortController>();
  private readonly turns: TurnQueue;

  constructor(private readonly opts: HttpServerOptions) {
    this.turns = new TurnQueue(opts.requestsPerTurn ?? 32, opts.turnSchedule);
    if (opts.headersTimeoutMs > opts.requestTimeoutMs)
      throw new RangeError(
        `headersTimeoutMs (${opts.headersTimeoutMs}) must not exceed requestTimeoutMs (${opts.requestTimeoutMs})`,
      );
    this.server = serverFactory(opts)(
      {
        keepAliveTimeout: opts.idleTimeoutMs,
        // An answer leaves at once, not after the client's acknowledgement of the last one
        // (Nagle). Node's default, stated: a client's write waits on nothing but the network.
        noDelay: true,
        requestTimeout: opts.requestTimeoutMs,
        headersTimeout: opts.headersTimeoutMs,
        // Node checks the two request timeouts on this period (30 s by default, which let
        // half-open connections live for 40 s). A quarter of the header timeout closes them
        // within 1.25 times it, while checking at most 100 times a second.
        connectionsCheckingInterval: Math.min(1_000, Math.max(10, opts.headersTimeoutMs / 4)),
        // node:http answers an HTTP/1.1 request without a Host header itself, with an empty
        // 400 that carries no error code; handle() refuses it as every other bad request.
        requireHostHeader: false,
      },
      (req, res) => {
        void this.handle(req, res);
      },
    );
    this.server.maxConnections = opts.maxConnections;
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    this.server.on('clientError', (err, socket) => this.onClientError(err, socket));
  }

  route(method: Method, path: string, handler: Handler): void {
    let byMethod = this.routes.get(path);
    if (byMethod === undefined) {
      byMethod = new Map();
      this.routes.set(path, byMethod);
    }
    byMethod.set(method, handler);
  }

  /**
   * Requests to these paths are client work: they count against the admission limit and take
   * turns. Others (status, health, metrics) stay answerable under overload.
   */
  countAgainstAdmission(...paths: string[]): void {
    for (const p of paths) this.admittedPaths.add(p);
  }

  /**
   * A new certificate, key or CA for the connections from now on (a certificate rotated on
   * disk); open connections keep theirs. Only on a server started with TLS.
   */
  setTls(material: TlsMaterial): void {
    if (this.opts.tls === undefined) throw new Error('this HTTP server was started without TLS');
    (this.server as HttpsServer).setSecureContext(secureContextOptions(material));
  }

  /** Connections open now (for tests and metrics). */
  connections(): number {
    return this.sockets.size;
  }

  /** Requests waiting for a turn now (for tests and metrics). */
  waitingForTurn(): number {
    return this.turns.length;
  }

  async listen(hostPort: string): Promise<AddressInfo> {
    const { host, port } = splitHostPort(hostPort);
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    return this.server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = requestTarget(req.url ?? '/');
    const controller = this.connectionAbort(req.socket);
    let status = 500;
    const byMethod = this.routes.get(url.pathname);
    const handler = byMethod?.get(req.method ?? '');
    const admitted = this.admittedPaths.has(url.pathname);
    let ticket: AdmissionTicket | null = null;
    const trace = admitted ? this.opts.trace : undefined;
    let certRefused: FlotillaError | null = null;
    trace?.('http-received', 0, 0);
    const cors = this.opts.cors;
    // Set before anything can fail, so that the page of a member can read the error too.
    if (cors !== undefined)
      for (const [k, v] of Object.entries(cors.answerHeaders(url.pathname, req.headers.origin)))
        res.setHeader(k, v);
    try {
      certRefused = clientCertRefusal(req.socket, this.opts.tls);
      if (certRefused !== null) {
        res.setHeader('Connection', 'close');
        throw certRefused;
      }
      // RFC 9112 3.2: a server must refuse an HTTP/1.1 request without a Host header.
      if (req.httpVersion === '1.1' && req.headers.host === undefined)
        throw new FlotillaError('BAD_REQUEST', 'An HTTP/1.1 request needs a Host header');
      // A preflight carries no token (the browser asks whether it may send one): answered
      // before authorization and admission, with no body.
      if (req.method === 'OPTIONS' && cors?.covers(url.pathname) === true) {
        const headers = cors.preflight(url.pathname, req.headers);
        status = 204;
        if (!res.headersSent && !res.destroyed) res.writeHead(status, headers).end();
        trace?.('http-answered', 0, 0);
        this.opts.onRequest?.(url.pathname, status);
        return;
      }
      if (byMethod === undefined)
        throw new FlotillaError('NOT_FOUND', `No route ${req.method ?? ''} ${url.pathname}`);
      if (handler === undefined) {
        const allowed = [...byMethod.keys()].join(', ');
        res.setHeader('Allow', allowed);
        throw new FlotillaError(
          'METHOD_NOT_ALLOWED',
          `${req.method ?? ''} is not allowed on ${url.pathname} (allowed: ${allowed})`,
        );
      }
      // Before admission: a request without a valid token must not take a slot, or a flood of
      // them would refuse the clients that have one.
      this.opts.authorize?.(url.pathname, req.headers.authorization);
      if (admitted && this.opts.admission !== undefined) {
        // Before the body is read or parsed: a refusal must cost next to nothing, and a request
        // that waits for a slot holds nothing but its connection.
        const gate = this.opts.admission;
        const bytes = Number(req.headers['content-length'] ?? '0');
        const got =
          gate.acquire === undefined
            ? gate.tryAcquire(bytes)
            : gate.acquire(bytes, controller.signal);
        ticket = got instanceof Promise ? await got : got;
        if (ticket !== null && controller.signal.aborted) {
          // The client left while it waited: its slot goes to the next.
          ticket.release(true);
          ticket = null;
        }
        // A refusal takes a turn too. Clients refused together come back together when their
        // Retry-After runs out, and a leader answering a thousand of them in one poll phase
        // (a response and a system call each) held its loop for over 100 ms while its
        // heartbeats waited (BENCHMARKS.md, "Overload", run 6's profile).
        if (ticket === null && !this.turns.pass()) await this.turns.turn();
        if (ticket === null)
          throw new FlotillaError(
            'OVERLOADED',
            `Node is overloaded: ${this.opts.admission.describe()}. Nothing was done; retry ` +
              `after the Retry-After`,
          );
      }
      const bytes = req.method === 'POST' ? await this.readBody(req) : Buffer.alloc(0);
      ticket?.begin();
      if (admitted && !this.turns.pass()) await this.turns.turn();
      // The text is decoded once, for the parse and for forwarding (rawBody).
      const rawBody = req.method === 'POST' ? bodyText(bytes) : '';
      const body = req.method === 'POST' ? parseJsonText(rawBody) : undefined;
      trace?.('http-parsed', 0, 0);
      const result = await handler({
        body,
        rawBody,
        query: url.query,
        signal: controller.signal,
        headers: req.headers,
      });
      if (admitted && !this.turns.pass()) await this.turns.turn();
      status = result.status ?? 200;
      if (result.stream !== undefined) await this.stream(res, result.stream, controller.signal);
      else if (result.bytes !== undefined)
        await this.streamBytes(res, result.bytes, controller.signal);
      else if (result.events !== undefined)
        await this.streamEvents(res, result.events, controller.signal);
      else if (result.text !== undefined)
        this.send(
          res,
          status,
          result.text,
          result.contentType ?? 'text/plain; charset=utf-8',
          result.headers,
        );
      else this.send(res, status, JSON.stringify(result.json ?? {}), 'application/json');
    } catch (err) {
      const e = toFlotillaError(err);
      if (!(err instanceof FlotillaError) || e.code === 'INTERNAL') this.opts.onError?.(err);
      status = httpStatus(e);
      // A body we refused to read may still be arriving: close the connection after answering.
      if (e.code === 'BODY_TOO_LARGE') res.setHeader('Connection', 'close');
      // RFC 9110 11.6.1: a 401 names the scheme that would be accepted (RFC 6750 3).
      // (A refused client certificate is not a token's matter.)
      if (e.code === 'UNAUTHENTICATED' && err !== certRefused)
        res.setHeader('WWW-Authenticate', 'Bearer realm="flotilla"');
      this.send(res, status, JSON.stringify(errorJson(e)), 'application/json');
    } finally {
      // A 429 passed on from the leader counts as this node's refusal for the Retry-After.
      ticket?.release(status === 429);
    }
    trace?.('http-answered', 0, 0);
    this.opts.onRequest?.(handler !== undefined ? url.pathname : 'unmatched', status);
  }

  /** The abort of the connection `socket` (the TLS socket under https), made at first use. */
  private connectionAbort(socket: Duplex): AbortController {
    let c = this.connectionAborts.get(socket);
    if (c === undefined) {
      const made = new AbortController();
      c = made;
      // Closed already (its 'close' will not come again): its requests cannot be answered.
      if (socket.closed) {
        made.abort();
        return made;
      }
      // One listener per wait of a request in progress: more than Node's 10 is no leak (the
      // gauge would show one), and its warning would only alarm an operator.
      setMaxListeners(0, made.signal);
      this.connectionAborts.set(socket, made);
      socket.once('close', () => {
        this.connectionAborts.delete(socket);
        made.abort();
      });
    }
    return c;
  }

  /**
   * Listeners on the open client connections' aborts: the waits of requests in progress that
   * stop when their client leaves. It falls back to zero when the requests end; a count that
   * grows on idle connections is a wait that did not remove its listener.
   */
  abortListeners(): number {
    let n = 0;
    for (const c of this.connectionAborts.values())
      n += getEventListeners(c.signal, 'abort').length;
    return n;
  }

  /**
   * A connection that broke HTTP: garbage instead of a request (400), or too slow to send one
   * (408, the header or request timeout). It is answered if nothing was written to it yet,
   * then closed; the server lives on.
   */
  private onClientError(err: Error & { code?: string }, socket: Duplex): void {
    if (!socket.writable || (socket as Socket).bytesWritten > 0) {
      socket.destroy();
      return;
    }
    const e =
      err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? new FlotillaError(
            'REQUEST_TIMEOUT',
            `The request did not arrive in time (headers within ${this.opts.headersTimeoutMs} ms, ` +
              `all of it within ${this.opts.requestTimeoutMs} ms)`,
          )
        : new FlotillaError('BAD_REQUEST', `Not an HTTP/1.1 request: ${err.code ?? err.message}`);
    const body = JSON.stringify(errorJson(e));
    const status = httpStatus(e);
    socket.end(
      `HTTP/1.1 ${status} ${status === 408 ? 'Request Timeout' : 'Bad Request'}\r\n` +
        `Connection: close\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  }

  private async stream(
    res: ServerResponse,
    body: (out: JsonLines) => Promise<void>,
    signal: AbortSignal,
  ): Promise<void> {
    res.writeHead(200, { 'Content-Type': 'application/x-ndjson', 'Cache-Control': 'no-store' });
    // The head goes out at once, so the client knows the stream is open before any line.
    res.flushHeaders();
    try {
      await body({
        write: (value) => {
          if (!res.destroyed) res.write(`${JSON.stringify(value)}\n`);
        },
        buffered: () => res.writableLength,
        signal,
      });
    } finally {
      if (!res.destroyed) res.end();
    }
  }

  private async streamEvents(
    res: ServerResponse,
    body: (out: EventSink) => Promise<void>,
    signal: AbortSignal,
  ): Promise<void> {
    res.writeHead(200, {
      ...this.opts.answerHeaders,
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-store',
      // Proxies that buffer answers would hold the events back.
      'X-Accel-Buffering': 'no',
    });
    res.flushHeaders();
    try {
      await body({
        send: (event, data) => {
          // JSON holds no raw newline, so one data line carries the whole payload.
          if (!res.destroyed) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
        },
        buffered: () => res.writableLength,
        signal,
      });
    } finally {
      if (!res.destroyed) res.end();
    }
  }

  private async streamBytes(
    res: ServerResponse,
    body: (out: ByteSink) => Promise<void>,
    signal: AbortSignal,
  ): Promise<void> {
    res.writeHead(200, {
      ...this.opts.answerHeaders,
      'Content-Type': 'application/octet-stream',
      'Cache-Control': 'no-store',
    });
    try {
      await body({
        write: async (chunk) => {
          if (res.destroyed) throw new FlotillaError('ABORTED', 'The reader went away');
          if (res.write(chunk)) return;
          await new Promise<void>((resolve) => {
            const done = (): void => {
              res.off('drain', done);
              res.off('close', done);
              resolve();
            };
            res.on('drain', done);
            res.on('close', done);
          });
        },
        signal,
      });
    } catch (err) {
      // Headers are out: the only honest answer left is a cut connection.
      if (!(err instanceof FlotillaError && err.code === 'ABORTED')) this.opts.onError?.(err);
      res.destroy();
      return;
    }
    if (!res.destroyed) res.end();
  }

  private send(
    res: ServerResponse,
    status: number,
    body: string,
    contentType: string,
    headers?: Readonly<Record<string, string>>,
  ): void {
    if (res.headersSent || res.destroyed) return;
    res.writeHead(status, {
      ...this.opts.answerHeaders,
      ...headers,
      'Content-Type': contentType,
      'Content-Length': Buffer.byteLength(body),
      // Every 429 (this node's refusal, or the leader's passed on by forwarding) says when
      // to come back, so that clients back off rather than retry at once.
      ...(status === 429
        ? { 'Retry-After': String(this.opts.admission?.retryAfterSeconds() ?? 1) }
        : {}),
    });
    res.end(body);
  }

  private async readBody(req: IncomingMessage): Promise<Buffer> {
    const type = req.headers['content-type'];
    if (type !== undefined) checkJsonContentType(type);
    // A compressed body would be read as its bytes (a gzip one refused INVALID_UTF8, a plain
    // one labelled gzip taken as if it were not): no encoding but identity is taken.
    const encoding = req.headers['content-encoding'];
    if (encoding !== undefined && encoding.trim().toLowerCase() !== 'identity')
      throw new FlotillaError(
        'UNSUPPORTED_MEDIA_TYPE',
        `Content-Encoding ${JSON.stringify(encoding)} is not supported: send the body uncompressed, without Content-Encoding`,
      );
    const declared = Number(req.headers['content-length'] ?? '0');
    if (declared > this.opts.maxBodyBytes) {
      throw new FlotillaError(
        'BODY_TOO_LARGE',
        `Body of ${declared} bytes exceeds the limit of ${this.opts.maxBodyBytes}`,
      );
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const max = this.opts.maxBodyBytes;
    // Read by events rather than `for await`: an async iterator per request was a few percent
    // of a node's CPU (BENCHMARKS.md, "The HTTP front: what a request costs without Raft").
    await new Promise<void>((resolve, reject) => {
      const done = (err?: FlotillaError): void => {
        req.off('data', onData);
        req.off('end', onEnd);
        req.off('error', onError);
        req.off('close', onClose);
        if (err === undefined) resolve();
        else reject(err);
      };
      const onData = (chunk: Buffer): void => {
        size += chunk.length;
        if (size <= max) chunks.push(chunk);
        else {
          // The rest is not read: the answer (413) closes the connection.
          req.pause();
          done(new FlotillaError('BODY_TOO_LARGE', `Body exceeds the limit of ${max} bytes`));
        }
      };
      const onEnd = (): void => done();
      // The client closed its side before the body was whole (node:http has answered 400 if
      // it could, onClientError). Its doing, not an internal error of ours to log.
      const cut = (why: string): void =>
        done(
          new FlotillaError(
            'BAD_REQUEST',
            `The body ended after ${size} of ${declared} bytes: the client closed the connection (${why})`,
          ),
        );
      const onError = (err: Error): void => cut(err.message);
      const onClose = (): void => cut('closed');
      // The client may have left while the request waited for a slot.
      if (req.destroyed) {
        cut('closed');
        return;
      }
      req.on('data', onData);
      req.on('end', onEnd);
      req.on('error', onError);
      req.on('close', onClose);
    });
    // A body must say it is JSON. Refusing other types (curl -d sends form-urlencoded) also
    // keeps web pages out: a browser sends a cross-origin POST without asking first only with
    // a form or text type, or none, so such a request can never write to a node.
    if (size > 0 && type === undefined) {
      throw new FlotillaError(
        'UNSUPPORTED_MEDIA_TYPE',
        'A body needs Content-Type: application/json (with curl: -H "content-type: application/json")',
      );
    }
    return Buffer.concat(chunks);
  }
}

/**
 * A request target's path and query. The origin form every client sends (`/v1/kv/put?x=1`) is
 * split by hand: a WHATWG URL per request was a few percent of a node's CPU. The absolute form
 * (RFC 9112 3.2.2, `http://host/path`) goes through URL.
 */
function requestTarget(target: string): { pathname: string; query: URLSearchParams } {
  if (!target.startsWith('/')) {
    const url = new URL(target, 'http://localhost');
    return { pathname: url.pathname, query: url.searchParams };
  }
  const q = target.indexOf('?');
  return q < 0
    ? { pathname: target, query: new URLSearchParams() }
    : { pathname: target.slice(0, q), query: new URLSearchParams(target.slice(q + 1)) };
}

/**
 * node:http's createServer, or with `tls` node:https's with the certificate added (a TLS
 * handshake then counts against the header timeout, as the first bytes of a request would).
 */
function serverFactory(
  opts: HttpServerOptions,
): (options: ServerOptions, listener: RequestListener) => Server {
  const tls = opts.tls;
  if (tls === undefined) return createServer;
  return (options, listener) => {
    const server = createHttpsServer(
      { ...options, ...tlsServerOptions(tls), handshakeTimeout: opts.headersTimeoutMs },
      listener,
    );
    // Plain HTTP is answered a 400 that says to use https://, not an empty reply.
    answerPlainText(server, { timeoutMs: opts.headersTimeoutMs, answer: plainToHttpsPort });
    return server;
  };
}

/** Accepts `application/json`, with no charset or with UTF-8, in any letter case. */
function checkJsonContentType(header: string): void {
  // What every client sends, without splitting it.
  if (header === 'application/json') return;
  const [mediaType = '', ...params] = header.split(';').map((p) => p.trim().toLowerCase());
  const charset = params.find((p) => p.startsWith('charset='))?.slice('charset='.length);
  const utf8 = charset === undefined || ['utf-8', 'utf8', '"utf-8"'].includes(charset);
  if (mediaType !== 'application/json' || !utf8) {
    throw new FlotillaError(
      'UNSUPPORTED_MEDIA_TYPE',
      `Content-Type must be application/json (UTF-8), got "${header}" ` +
        '(with curl: -H "content-type: application/json")',
    );
  }
}
