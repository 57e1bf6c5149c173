// The binary client protocol's server (docs/CLIENT-PROTOCOL.md): length-prefixed msgpack
// frames over TCP, many requests in flight per connection, answered in any order by request id.
//
// Why beside HTTP: HTTP/1.1 costs a request object, header parsing and one request per
// connection turn; here a client keeps many requests in flight on one connection, and what
// arrives in one read from the socket is handled as one batch: validated together, then
// started in one turn inside `KvBackend.batch`, so its writes leave the leader as one append
// per follower and its linearizable reads share one heartbeat round.
//
// The same backend serves both fronts (routes.ts's KvBackend, requests.ts's validation): a
// request is refused with the same code and message over either, a follower forwards writes
// to the leader the way HTTP does, and node admission counts these requests too. What is the
// protocol's own: a malformed frame (a length over the limit, bad msgpack, not [id, type, body],
// an id in flight, an unknown type, a body that is not JSON-shaped) is answered with an error
// frame and the connection is closed, for the framing is broken and what follows it cannot be
// trusted; nothing from that read starts. Other connections are not disturbed. A well-framed
// request whose body its type refuses (a field missing, unknown or out of range, a key too
// large), or OVERLOADED, is answered alone, as HTTP answers it 400 and keeps the connection: a
// client shares its connections between callers, and one caller's bad argument must not fail
// the others' requests in flight.
//
// A watch is a request whose answer is a stream: each line of the HTTP watch stream (watch.ts)
// is one frame under the watch's id, and the stream ends with one answer (the client cancelled
// it) or one error (the node ended it, saying where to resume). Many watches share a
// connection; it is one reader, so its watches' unread-byte budgets add up.

import { getEventListeners, setMaxListeners } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { FEATURE_LEVEL } from '../base/features.js';
import { FlotillaError, type ErrorCode } from '../base/errors.js';
import { toFlotillaError } from './errors.js';
import { bearerHeader, permit, wireNeed, type Principal, type TokenBook } from './auth.js';
import type { AdmissionGate, AdmissionTicket } from './http.js';
import {
  parseRead,
  parseWrite,
  writePaths,
  type ReadRequest,
  type WriteKind,
  type WriteRequest,
} from './requests.js';
import type { KvBackend } from './routes.js';
import type { TraceHook } from '../host/trace.js';
import {
  clientCertRefusal,
  plainToWireTlsPort,
  secureContextOptions,
  tlsServerOptions,
  type ServerTlsOptions,
  type TlsMaterial,
} from './tls.js';
import { TurnQueue } from './turns.js';
import { answerPlainText } from '../transport/plain-text.js';
import { asObject, onlyFields, optInt, type Json } from './validate.js';
import {
  checkWatchRoom,
  parseWatchRequest,
  runWatch,
  type WatchBackend,
  type WatchRequest,
} from './watch.js';
import {
  ANSWER_ERROR,
  CONNECTION_ID,
  FrameReader,
  WIRE_VERSION_MAX,
  decodePayload,
  encodeAnswer,
  encodeError,
  encodeFrame,
  encodeStreamItem,
  errorFromWire,
  parseHandshake,
  parseRequest,
  type WireRequest,
} from './wire-codec.js';

export interface WireServerOptions {
  readonly nodeId: number;
  /** The largest frame payload; a longer length closes the connection (BODY_TOO_LARGE). */
  readonly maxFrameBytes: number;
  /** Requests in flight on one connection; one more is answered OVERLOADED at once. */
  readonly maxInFlightPerConnection: number;
  /** A connection must complete its handshake within this. */
  readonly handshakeTimeoutMs: number;
  /** A connection with nothing in flight for this long is closed. */
  readonly idleTimeoutMs: number;
  /** Connections open at once; one more is closed on arrival. */
  readonly maxConnections: number;
  readonly admission?: AdmissionGate;
  /** Batches (one socket read each) that start per turn of the event loop. Default 32. */
  readonly batchesPerTurn?: number;
  readonly onRequest?: (op: string, code: ErrorCode | 'OK') => void;
  readonly onError?: (err: unknown) => void;
  /**
   * The tokens in force (auth.ts): a handshake must present one of them, and each request is
   * checked against the role its type needs. None: no authentication.
   */
  readonly tokens?: () => TokenBook;
  /** Serve the protocol over TLS (docs/SECURITY.md, "TLS"); omitted: plain TCP. */
  readonly tls?: ServerTlsOptions;
  /**
   * Called for each request read ('wire-received') and each write of answers ('wire-answered'),
   * for bench/trace (host/trace.ts); absent: one comparison per point.
   */
  readonly trace?: TraceHook;
}

/**
 * Request types served beside the key-value store's, by another Raft group of the node (the
 * job queue's, queue-routes.ts): each checks its body as its HTTP route does, and a write is
 * forwarded to that group's leader, which may be another node than the key-value leader.
 */
export interface WireService {
  /** Whether this node leads the service's group, so its writes are proposed here. */
  leads(): boolean;
  /** As KvBackend.forward, to the service group's leader. */
  forward: KvBackend['forward'];
  /** As KvBackend.batch, for the service group's loop. */
  batch<T>(fn: () => T): T;
  /** By request type (wire-codec.ts, queueWireOps). */
  readonly ops: ReadonlyMap<string, WireServiceOp>;
}

export interface WireServiceOp {
  readonly kind: 'read' | 'write';
  /** Its HTTP path: where a follower forwards the body. */
  readonly path: string;
  /** Counted against admission (a long poll is not). */
  readonly admitted: boolean;
  /** Checks a body; returns what runs it here. */
  parse(body: unknown): (signal: AbortSignal) => Promise<object>;
}

/** What a `cancel` request takes: the id of a watch or a long poll of the same connection. */
function parseCancel(body: Json): number {
  const o = asObject(body);
  onlyFields(o, ['id']);
  const id = optInt(o, 'id', 1, Number.MAX_SAFE_INTEGER);
  if (id === undefined)
    throw new FlotillaError('BAD_REQUEST', 'cancel needs the "id" of a watch or a long poll');
  return id;
}

type Ticket = AdmissionTicket;

/** The refusal of a request the node's admission did not take. */
function overloaded(gate: AdmissionGate): FlotillaError {
  return new FlotillaError(
    'OVERLOADED',
    `Node is overloaded: ${gate.describe()}. Nothing was done; retry later`,
    false,
    0,
    gate.retryAfterSeconds() * 1_000,
  );
}

/** A validated request of one batch, waiting for its turn. */
interface Work {
  readonly req: WireRequest;
  readonly parsed:
    | {
        readonly kind: 'write';
        readonly write: WriteRequest;
        readonly path: string;
        /** The body with the connection's client id filled in: what a follower forwards. */
        readonly body: Json;
      }
    | { readonly kind: 'read'; readonly read: ReadRequest }
    | {
        readonly kind: 'service';
        readonly op: WireServiceOp;
        readonly run: (signal: AbortSignal) => Promise<object>;
        readonly body: Json;
      }
    | { readonly kind: 'watch'; readonly watch: WatchRequest };
  readonly ticket: Ticket | null;
  /**
   * A watch's or a long poll's own (it can be cancelled alone); for any other request, its
   * connection's.
   */
  readonly controller: AbortController;
}

export class WireServer {
  private readonly server: Server;
  private readonly connections = new Set<Connection>();
  private readonly raw = new Set<Socket>();
  readonly turns: TurnQueue;

  constructor(
    readonly backend: KvBackend,
    readonly watch: WatchBackend,
    readonly opts: WireServerOptions,
    readonly service: WireService | null = null,
  ) {
    this.turns = new TurnQueue(opts.batchesPerTurn ?? 32);
    const onSocket = (socket: Socket): void => {
      const c = new Connection(socket, this);
      this.connections.add(c);
      socket.on('close', () => this.connections.delete(c));
    };
    this.server =
      opts.tls === undefined
        ? createServer({ noDelay: true }, onSocket)
        : createTlsServer(
            // The TLS handshake counts against the protocol's own handshake time.
            {
              ...tlsServerOptions(opts.tls),
              noDelay: true,
              handshakeTimeout: opts.handshakeTimeoutMs,
            },
            onSocket,
          );
    // A plain client, or plain HTTP, is told that the port speaks TLS rather than dropped.
    if (opts.tls !== undefined)
      answerPlainText(this.server as TlsServer, {
        timeoutMs: opts.handshakeTimeoutMs,
        answer: plainToWireTlsPort,
      });
    this.server.maxConnections = opts.maxConnections;
    // Connections still in their TLS handshake are not in `connections`: close() ends them too.
    this.server.on('connection', (raw: Socket) => {
      this.raw.add(raw);
      raw.on('close', () => this.raw.delete(raw));
    });
  }

  /**
   * A new certificate, key or CA for the connections from now on (a certificate rotated on
   * disk); open connections keep theirs. Only on a server started with TLS.
   */
  setTls(material: TlsMaterial): void {
    if (this.opts.tls === undefined)
      throw new Error('this protocol server was started without TLS');
    (this.server as TlsServer).setSecureContext(secureContextOptions(material));
  }

  async listen(host: string, port: number): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    return this.server.address() as AddressInfo;
  }

  /** Connections open now (for tests). */
  connectionCount(): number {
    return this.connections.size;
  }

  /**
   * Listeners on the open connections' aborts: the waits of requests in flight (watches apart)
   * that stop when their connection closes. A count that grows while no request is in flight
   * is a wait that did not remove its listener.
   */
  abortListeners(): number {
    let n = 0;
    for (const c of this.connections) n += c.abortListeners();
    return n;
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const c of this.connections) c.destroy();
    for (const r of this.raw) r.destroy();
    await closed;
  }
}

class Connection {
  private readonly reader: FrameReader;
  private handshaken = false;
  private clientId: string | null = null;
  /** The handshake's token: what every request is checked with, and forwarded with. */
  private token: string | null = null;
  /** The token's holder in a book (the one in force when last looked up). */
  private holder: { readonly book: TokenBook; readonly principal: Principal | null } | null = null;
  private closed = false;
  /** Ids of the requests in flight (watches apart). */
  private readonly inFlight = new Set<number>();
  /**
   * What the requests in flight wait on stops when the connection closes: one abort for them
   * all, as an HTTP connection has (DESIGN.md, "The HTTP API"), rather than an AbortController
   * made for each request. Every wait removes its listener when it ends, so it gathers none.
   */
  private readonly requestsAbort = new AbortController();
  /** Open watches by request id; they end with the connection. */
  private readonly watches = new Map<number, AbortController>();
  /**
   * Long polls in flight (a queue claim that waits for a job) by request id: a client whose
   * caller gave up cancels one alone, so that a job arriving later is not claimed for no one.
   * They end with the connection too.
   */
  private readonly polls = new Map<number, AbortController>();
  private out: Buffer[] = [];
  /** Bytes of `out`, not yet handed to the socket. */
  private outBytes = 0;
  private flushScheduled = false;
  private handshakeTimer: ReturnType<typeof setTimeout> | null;

  constructor(
    private readonly socket: Socket,
    private readonly s: WireServer,
  ) {
    this.reader = new FrameReader(s.opts.maxFrameBytes);
    // Every request in flight may listen (up to maxInFlightPerConnection of them): more than
    // Node's 10 listeners is no leak here (abortListeners would show one), and its warning
    // would only alarm an operator.
    setMaxListeners(0, this.requestsAbort.signal);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => undefined); // 'close' follows; nothing to answer on a broken socket
    socket.on('close', () => this.abortAll('the connection closed'));
    this.handshakeTimer = setTimeout(
      () =>
        this.fatal(
          new FlotillaError(
            'REQUEST_TIMEOUT',
            `No handshake within ${s.opts.handshakeTimeoutMs} ms`,
          ),
        ),
      s.opts.handshakeTimeoutMs,
    );
    // Idle: nothing in flight, no watch open, and nothing waiting for the client to read. A
    // client that stopped reading is slow, not idle (nothing moves on its socket either way):
    // closing would drop what is buffered for it, such as a watch's WATCH_TOO_SLOW and where
    // to resume. What it leaves unread is bounded (maxWatchBufferBytes, and reading stops while
    // the buffer is full); the timer runs again from its next read.
    // A listener of its own: `setTimeout`'s callback is a once-listener, and a connection found
    // busy at its first timeout would never have been closed as idle afterwards.
    socket.setTimeout(s.opts.idleTimeoutMs);
    socket.on('timeout', () => {
      if (!this.handshaken || this.inFlight.size > 0 || this.watches.size > 0) return;
      if (this.outBytes + this.socket.writableLength === 0) this.destroy();
      // Writes completing are not activity to the timer: start it again once the reader took all.
      else this.socket.once('drain', () => this.socket.setTimeout(s.opts.idleTimeoutMs));
    });
  }

  /** Listeners on the connection's abort and on its long polls' own (a leak shows here). */
  abortListeners(): number {
    let n = getEventListeners(this.requestsAbort.signal, 'abort').length;
    for (const c of this.polls.values()) n += getEventListeners(c.signal, 'abort').length;
    return n;
  }

  destroy(): void {
    this.closed = true;
    this.clearHandshakeTimer();
    this.socket.destroy();
    this.abortAll('the node closed the connection');
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    let payloads: Buffer[];
    try {
      payloads = this.reader.push(chunk);
    } catch (err) {
      this.fatal(toFlotillaError(err));
      return;
    }
    let i = 0;
    if (!this.handshaken && payloads.length > 0) {
      try {
        this.handshake(payloads[0] as Buffer);
      } catch (err) {
        this.fatal(toFlotillaError(err));
        return;
      }
      i = 1;
    }
    const batch: Work[] = [];
    for (; i < payloads.length; i++) {
      const payload = payloads[i] as Buffer;
      try {
        this.s.opts.trace?.('wire-received', 0, 0);
        const w = this.prepare(
          parseRequest(decodePayload(payload), payload),
          payload.length,
          batch,
        );
        if (w !== null) batch.push(w);
      } catch (err) {
        for (const w of batch) {
          w.ticket?.release();
          this.inFlight.delete(w.req.id);
        }
        this.fatal(toFlotillaError(err));
        return;
      }
    }
    const requests = batch.filter((w) => w.parsed.kind !== 'watch');
    for (const w of batch) if (w.parsed.kind === 'watch') this.openWatch(w, w.parsed.watch);
    if (requests.length > 0) void this.start(requests);
  }

  private handshake(payload: Buffer): void {
    const refused = clientCertRefusal(this.socket, this.s.opts.tls);
    if (refused !== null) throw refused;
    const h = parseHandshake(decodePayload(payload), payload);
    const tokens = this.s.opts.tokens;
    // A connection without a token the node accepts is refused whole: it could do nothing.
    if (tokens !== undefined) {
      const book = tokens();
      const principal = h.token === null ? null : book.find(h.token);
      if (principal === null)
        throw new FlotillaError(
          'UNAUTHENTICATED',
          h.token === null
            ? 'This node requires a bearer token: the handshake must carry "token"'
            : "The handshake's token is not one this node accepts",
          false,
        );
      this.holder = { book, principal };
    }
    this.token = h.token;
    this.clearHandshakeTimer();
    this.handshaken = true;
    this.clientId = h.clientId;
    const status = this.s.backend.status();
    // featureLevel: the release's, so a client knows which request types it may send here
    // (queue.reportBulk from level 6); a release before the field sends none.
    this.send(
      encodeFrame({
        version: WIRE_VERSION_MAX,
        nodeId: this.s.opts.nodeId,
        leader: status.leader,
        featureLevel: FEATURE_LEVEL,
      }),
    );
  }

  /**
   * Checks one request: answers it at once when it is refused or needs no turn (status), or
   * returns the work to start with its batch. Throws when the frame is malformed (an id already
   * in flight); a body its type refuses is answered alone.
   */
  private prepare(req: WireRequest, bytes: number, batch: readonly Work[]): Work | null {
    if (
      this.inFlight.has(req.id) ||
      this.watches.has(req.id) ||
      batch.some((w) => w.req.id === req.id)
    )
      throw new FlotillaError('BAD_FRAME', `Request id ${req.id} is already in flight`);
    if (req.invalid !== undefined) {
      this.refuse(req, req.invalid);
      return null;
    }
    const denied = this.denied(req.op);
    if (denied !== null) {
      this.refuse(req, denied);
      return null;
    }
    if (req.op === 'status') {
      this.answer(req, this.s.backend.status() as unknown as Json);
      return null;
    }
    if (req.op === 'cancel') {
      let id: number;
      try {
        id = parseCancel(req.body);
      } catch (err) {
        this.refuse(req, toFlotillaError(err));
        return null;
      }
      const target = this.watches.get(id) ?? this.polls.get(id);
      target?.abort(
        new FlotillaError('ABORTED', `Request ${id} was cancelled by the client`, true),
      );
      this.answer(req, { canceled: target !== undefined });
      return null;
    }
    if (req.op === 'watch') {
      let watch: WatchRequest;
      try {
        watch = parseWatchRequest(req.body, this.s.watch);
      } catch (err) {
        this.refuse(req, toFlotillaError(err));
        return null;
      }
      // Not client work for admission: a watch lives long; the node bounds their number.
      const controller = new AbortController();
      this.watches.set(req.id, controller);
      return { req, parsed: { kind: 'watch', watch }, ticket: null, controller };
    }
    if (this.inFlight.size >= this.s.opts.maxInFlightPerConnection) {
      this.refuse(
        req,
        new FlotillaError(
          'OVERLOADED',
          `Connection has ${this.inFlight.size} requests in flight, its limit ` +
            `(${this.s.opts.maxInFlightPerConnection}); nothing was done`,
          false,
          0,
          1_000,
        ),
      );
      return null;
    }
    // A request not counted against admission is a long poll.
    const admitted = this.s.service?.ops.get(req.op)?.admitted ?? true;
    const gate = admitted ? this.s.opts.admission : undefined;
    const controller = admitted ? this.requestsAbort : new AbortController();
    // A slot now, or a wait for one (the node's limits say how long), or a refusal.
    const got =
      gate === undefined
        ? null
        : gate.acquire === undefined
          ? gate.tryAcquire(bytes)
          : gate.acquire(bytes, controller.signal);
    if (gate !== undefined && got === null) {
      this.refuse(req, overloaded(gate));
      return null;
    }
    let parsed: Work['parsed'];
    try {
      parsed = this.parse(req);
    } catch (err) {
      // A slot it was to wait for is given back as soon as it comes.
      if (got instanceof Promise) void got.then((t) => t?.release());
      else got?.release();
      this.refuse(req, toFlotillaError(err));
      return null;
    }
    this.inFlight.add(req.id);
    if (!admitted) this.polls.set(req.id, controller);
    if (got instanceof Promise) {
      void this.admitLater(req, parsed, got, gate as AdmissionGate);
      return null;
    }
    return { req, parsed, ticket: got, controller };
  }

  /**
   * A request that waited for a slot: started alone once it has one (its batch has long
   * started), refused OVERLOADED when the wait ended without one; nothing when the connection
   * closed meanwhile.
   */
  private async admitLater(
    req: WireRequest,
    parsed: Work['parsed'],
    wait: Promise<Ticket | null>,
    gate: AdmissionGate,
  ): Promise<void> {
    const ticket = await wait;
    // The connection's abort fires only once it is closed.
    if (ticket === null || this.closed) {
      ticket?.release(true);
      this.inFlight.delete(req.id);
      if (!this.closed) this.refuse(req, overloaded(gate));
      if (this.inFlight.size === 0) this.flush();
      return;
    }
    await this.start([{ req, parsed, ticket, controller: this.requestsAbort }]);
  }

  /**
   * Why a request of `type` is refused to this connection's token (auth.ts), or null. The
   * holder is looked up again when the tokens file was reloaded, so a revoked token stops
   * working on connections already open.
   */
  private denied(type: string): FlotillaError | null {
    const tokens = this.s.opts.tokens;
    if (tokens === undefined) return null;
    const book = tokens();
    if (this.holder?.book !== book)
      this.holder = { book, principal: this.token === null ? null : book.find(this.token) };
    try {
      permit(this.holder.principal, this.token !== null, wireNeed(type), type);
    } catch (err) {
      return toFlotillaError(err);
    }
    return null;
  }

  private parse(req: WireRequest): Work['parsed'] {
    const limits = this.s.backend.limits;
    if (req.op === 'range') return { kind: 'read', read: parseRead(req.body, limits) };
    if (req.op.startsWith('queue.')) {
      const op = this.s.service?.ops.get(req.op);
      if (op === undefined)
        throw new FlotillaError('NOT_FOUND', `This node does not serve ${req.op} requests`);
      const body = op.kind === 'write' ? this.bodyOf(req.body) : req.body;
      return { kind: 'service', op, run: op.parse(body), body };
    }
    const kind = req.op as WriteKind;
    const body = this.bodyOf(req.body);
    return { kind: 'write', write: parseWrite(kind, body, limits), path: writePaths[kind], body };
  }

  /** Starts a batch in one turn, every request before any answer is awaited. */
  private async start(batch: readonly Work[]): Promise<void> {
    if (!this.s.turns.pass()) await this.s.turns.turn();
    const b = this.s.backend;
    const svc = this.s.service;
    const both = <T>(fn: () => T): T => b.batch(() => (svc === null ? fn() : svc.batch(fn)));
    both(() => {
      for (const w of batch) {
        w.ticket?.begin();
        const done = this.closed
          ? Promise.reject(new FlotillaError('ABORTED', 'The connection closed', false))
          : this.run(w);
        done.then(
          (json) => this.finish(w, json, null),
          (err: unknown) => this.finish(w, null, toFlotillaError(err)),
        );
      }
    });
  }

  private run(w: Work): Promise<Json> {
    const b = this.s.backend;
    const signal = w.controller.signal;
    const p = w.parsed;
    if (p.kind === 'watch') throw new Error('a watch is opened, not run');
    if (p.kind === 'service') {
      const svc = this.s.service as WireService;
      const here = (): Promise<Json> => p.run(signal) as Promise<Json>;
      if (p.op.kind === 'read' || svc.leads()) return here();
      return this.forward(svc.forward, p.op.path, p.body, signal, here);
    }
    if (p.kind === 'read') {
      const r = p.read;
      // The connection's token goes with a read forwarded to a replica of a range not run here.
      const via = this.token === null ? {} : { authorization: bearerHeader(this.token) };
      return b.read(r.op, r.consistency, signal, via).then((x) => r.render(x));
    }
    const wr = p.write;
    const here = (): Promise<Json> => b.write(wr.txn, wr.session, signal).then((x) => wr.render(x));
    const target = b.routeWrite(wr.txn);
    if (target.leads()) return here();
    return this.forward((...a) => target.forward(...a), p.path, p.body, signal, here);
  }

  /**
   * A follower's write goes to the leader as the HTTP body it stands for (forward.ts); `here`
   * runs it on this node when there is nowhere to forward it (it leads now, or no leader is
   * known and it will say so).
   */
  private async forward(
    forward: KvBackend['forward'],
    path: string,
    body: Json,
    signal: AbortSignal,
    here: () => Promise<Json>,
  ): Promise<Json> {
    const authorization = this.token === null ? undefined : bearerHeader(this.token);
    const fwd = await forward(path, JSON.stringify(body), signal, authorization);
    if (fwd === null) return here();
    if (fwd.status === 200) return fwd.json as Json;
    const e = errorFromWire((fwd.json as { error?: unknown } | null)?.error, true);
    if (e.code === 'BAD_RESPONSE')
      throw new FlotillaError('INTERNAL', `The leader answered ${fwd.status}: ${e.message}`, true);
    // A 429 passed on from the leader carries its Retry-After in a header forward.ts drops.
    if (e.code === 'OVERLOADED')
      throw new FlotillaError(e.code, e.message, e.indefinite, e.leader, 1_000);
    throw e;
  }

  /** The body as the leader must see it: the connection's client id filled in for a session. */
  private bodyOf(body: Json): Json {
    if (this.clientId === null || body === null || typeof body !== 'object' || Array.isArray(body))
      return body;
    if (body['seq'] === undefined || body['clientId'] !== undefined) return body;
    return { ...body, clientId: this.clientId };
  }

  private finish(w: Work, json: Json | null, err: FlotillaError | null): void {
    this.inFlight.delete(w.req.id);
    this.polls.delete(w.req.id);
    w.ticket?.release(err?.code === 'OVERLOADED');
    if (err !== null) {
      if (err.code === 'INTERNAL') this.s.opts.onError?.(err);
      this.refuse(w.req, err);
    } else this.answer(w.req, json);
    // The last answer the connection owes goes at once: no other can join its write, and
    // waiting for the turn would only delay it (for a lone client, by a loop iteration).
    if (this.inFlight.size === 0) this.flush();
  }

  private answer(req: WireRequest, json: Json | null): void {
    this.s.opts.onRequest?.(req.op, 'OK');
    this.send(encodeAnswer(req.id, json));
  }

  private refuse(req: WireRequest, err: FlotillaError): void {
    this.s.opts.onRequest?.(req.op, err.code);
    this.send(encodeError(req.id, err));
  }

  /**
   * Streams a watch's lines as frames under its id until the client cancels it, the
   * connection closes, or the node ends it (the error frame with `resumeRevision` is last).
   */
  private openWatch(w: Work, watch: WatchRequest): void {
    const id = w.req.id;
    try {
      // Checked again now: the watches of one batch were parsed before any of them opened.
      checkWatchRoom(this.s.watch);
    } catch (err) {
      this.watches.delete(id);
      this.refuse(w.req, toFlotillaError(err));
      return;
    }
    let ended = false;
    const out = {
      write: (line: unknown): void => {
        if (ended || this.closed) return;
        const l = line as { canceled?: boolean; error?: object; resumeRevision?: number };
        if (l.canceled !== true) {
          this.send(encodeStreamItem(id, line));
          return;
        }
        ended = true;
        const e = l.error as { code?: string } | undefined;
        this.s.opts.onRequest?.('watch', (e?.code ?? 'INTERNAL') as ErrorCode);
        const resume = l.resumeRevision === undefined ? {} : { resumeRevision: l.resumeRevision };
        this.send(encodeFrame([id, ANSWER_ERROR, { ...e, ...resume }]));
      },
      // The connection is one reader for all its watches: each may leave its budget unread.
      buffered: (): number => (this.outBytes + this.socket.writableLength) / this.watches.size,
      signal: w.controller.signal,
    };
    const finish = (err: unknown): void => {
      this.watches.delete(id);
      if (ended || this.closed) return;
      ended = true;
      if (err === null) this.answer(w.req, { canceled: true });
      else this.refuse(w.req, toFlotillaError(err));
    };
    // The connection's token goes with a watch relayed from a replica of a range not run here.
    const via = this.token === null ? {} : { authorization: bearerHeader(this.token) };
    runWatch(this.s.watch, watch, out, via).then(
      () => finish(null),
      (err: unknown) => finish(err),
    );
  }

  /** Answers leave together once per turn of the loop: one write for a batch's answers. */
  private send(frame: Buffer): void {
    if (this.closed) return;
    this.out.push(frame);
    this.outBytes += frame.length;
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.out.length === 0 || this.socket.destroyed) return;
    const frames = this.out;
    this.out = [];
    this.outBytes = 0;
    this.s.opts.trace?.('wire-answered', 0, 0);
    const ok = this.socket.write(
      frames.length === 1 ? (frames[0] as Buffer) : Buffer.concat(frames),
    );
    // A client that sends without reading its answers (even refusals take a frame) would make
    // us buffer without limit: stop reading from it until it has taken what was written.
    if (!ok && !this.closed) {
      this.socket.pause();
      this.socket.once('drain', () => {
        if (!this.closed) this.socket.resume();
      });
    }
  }

  /**
   * The connection is unusable (a malformed frame, a refused handshake): answers already made
   * go out, then the error frame, then the connection closes. Requests in flight are aborted:
   * their answers could not be delivered.
   */
  private fatal(err: FlotillaError): void {
    if (this.closed) return;
    this.s.opts.onRequest?.('connection', err.code);
    this.clearHandshakeTimer();
    this.flush();
    this.closed = true;
    this.abortAll(`the connection was closed: ${err.code}`);
    this.socket.end(encodeError(CONNECTION_ID, err));
    // A client that never closes its side is cut off after a while.
    setTimeout(() => this.socket.destroy(), 1_000).unref();
  }

  private abortAll(why: string): void {
    this.closed = true;
    this.clearHandshakeTimer();
    this.requestsAbort.abort(new FlotillaError('ABORTED', `Aborted: ${why}`, true));
    for (const c of this.watches.values()) c.abort();
    for (const c of this.polls.values())
      c.abort(new FlotillaError('ABORTED', `Aborted: ${why}`, true));
  }

  private clearHandshakeTimer(): void {
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
  }
}
