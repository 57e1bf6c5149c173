// One connection of the binary client protocol (docs/CLIENT-PROTOCOL.md), the client's side:
// a handshake, then requests sent with ids and answered in any order. Requests issued in one
// turn of the event loop leave in one write, so the node reads them as one batch.
//
// A request in flight when the connection drops fails with CONNECTION: indefinite for a write
// (it may have been applied), definite for a read (it changed nothing, so the caller may just
// send it again). A request whose answer is a stream (a watch) is read with `stream`.

import { connect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { FlotillaError } from '../base/errors.js';
import { failureText, schemeHint, withRefusalCause } from './util.js';
import {
  ANSWER_STREAM,
  CONNECTION_ID,
  FrameReader,
  WIRE_MAGIC,
  WIRE_VERSION_MAX,
  decodePayload,
  encodeFrame,
  errorFromWire,
  type HandshakeAnswer,
  type WireOp,
} from '../api/wire-codec.js';

/** The largest answer frame a client accepts (a range of many large values). */
const maxAnswerFrameBytes = 512 * 1024 * 1024;

export interface WireConnectOptions {
  readonly host: string;
  readonly port: number;
  /** Sent in the handshake: writes that carry `seq` without `clientId` use it. */
  readonly clientId?: string;
  /** Sent in the handshake: the bearer token of a node that requires one. */
  readonly token?: string;
  /** The protocol version to ask for (tests ask for others). Default: the newest this build speaks. */
  readonly version?: number;
  /** Connecting and the handshake must finish within this. */
  readonly timeoutMs: number;
  /** Connect over TLS with these options (CA, client certificate); omitted: plain TCP. */
  readonly tls?: ConnectionOptions;
}

interface Pending {
  readonly resolve: (v: unknown) => void;
  readonly reject: (e: FlotillaError) => void;
  readonly read: boolean;
  /** For a stream: every frame under its id, as [status, payload]. */
  readonly frame?: (status: number, payload: unknown) => void;
}

/** One frame of a stream: an item (ANSWER_STREAM), or the closing answer (0) or error (1). */
export type StreamFrame = readonly [status: number, payload: unknown];

export class WireConnection {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private out: Buffer[] = [];
  private flushScheduled = false;
  private dropped = false;
  /** The error frame the node closed the connection with, if it did. */
  closedWith: FlotillaError | null = null;

  private constructor(
    private readonly socket: Socket,
    readonly where: string,
    readonly hello: HandshakeAnswer,
  ) {}

  /** Connects and completes the handshake; rejects with the node's refusal or CONNECTION. */
  static connect(o: WireConnectOptions): Promise<WireConnection> {
    const where = `${o.host}:${o.port}`;
    return new Promise<WireConnection>((resolve, reject) => {
      const socket =
        o.tls === undefined
          ? connect({ host: o.host, port: o.port, noDelay: true })
          : tlsConnect({ ...o.tls, host: o.host, port: o.port });
      if (o.tls !== undefined) socket.setNoDelay(true);
      const reader = new FrameReader(maxAnswerFrameBytes);
      let conn: WireConnection | null = null;
      const timer = setTimeout(() => {
        socket.destroy();
        fail(new FlotillaError('TIMEOUT', `No handshake from ${where} within ${o.timeoutMs} ms`));
      }, o.timeoutMs);
      const fail = (e: FlotillaError): void => {
        clearTimeout(timer);
        reject(e);
      };
      // Over TLS the handshake frame leaves once the server's certificate was verified.
      socket.on(o.tls === undefined ? 'connect' : 'secureConnect', () => {
        socket.write(
          encodeFrame({
            magic: WIRE_MAGIC,
            version: o.version ?? WIRE_VERSION_MAX,
            ...(o.clientId === undefined ? {} : { clientId: o.clientId }),
            ...(o.token === undefined ? {} : { token: o.token }),
          }),
        );
      });
      socket.on('data', (chunk: Buffer) => {
        let frames: unknown[];
        try {
          frames = reader.push(chunk).map(decodePayload);
        } catch (err) {
          socket.destroy();
          if (conn === null) fail(badAnswer(where, err));
          else conn.lost(badAnswer(where, err));
          return;
        }
        for (const f of frames) {
          if (conn !== null) {
            conn.onFrame(f);
            continue;
          }
          if (Array.isArray(f)) {
            // The node refused the handshake: an error frame, then it closes.
            socket.destroy();
            fail(errorFromWire(f[2], false));
            return;
          }
          const h = f as Partial<HandshakeAnswer> | null;
          if (typeof h?.version !== 'number' || typeof h.nodeId !== 'number') {
            socket.destroy();
            fail(badAnswer(where, new Error('not a handshake answer')));
            return;
          }
          clearTimeout(timer);
          conn = new WireConnection(socket, where, {
            version: h.version,
            nodeId: h.nodeId,
            leader: typeof h.leader === 'number' ? h.leader : 0,
            featureLevel: typeof h.featureLevel === 'number' ? h.featureLevel : 0,
          });
          resolve(conn);
        }
      });
      socket.on('error', (err: Error & { code?: string }) => {
        if (conn !== null) return; // 'close' follows
        // Before the handshake's answer no request was sent on it, whatever the failure.
        fail(
          withRefusalCause(
            new FlotillaError(
              'CONNECTION',
              `Cannot connect to ${where}: ${failureText(err)}${schemeHint(o.tls === undefined ? 'http:' : 'https:', err)}`,
              false,
            ),
            err,
          ),
        );
      });
      socket.on('close', () => {
        if (conn === null) {
          fail(new FlotillaError('CONNECTION', `${where} closed the connection`, false));
          return;
        }
        conn.lost(null);
      });
    });
  }

  /** Whether the connection is gone (new requests would fail at once). */
  get closed(): boolean {
    return this.dropped;
  }

  /** Requests sent and not yet answered. */
  get inFlight(): number {
    return this.pending.size;
  }

  /**
   * Sends one request and resolves with its answer; rejects with the node's error, with
   * CONNECTION if the connection drops first, or with ABORTED when `signal` aborts (a late
   * answer is then ignored). A long poll (`longPoll`) that aborts is also cancelled on the
   * node, which otherwise would go on waiting, and act, for no one.
   */
  request(
    op: WireOp,
    body: unknown,
    o: { readonly read: boolean; readonly signal?: AbortSignal; readonly longPoll?: boolean },
  ): Promise<unknown> {
    if (this.dropped)
      return Promise.reject(
        new FlotillaError('CONNECTION', `Connection to ${this.where} is closed`, false),
      );
    const id = this.nextId++;
    return new Promise<unknown>((resolve, reject) => {
      const onAbort = (): void => {
        if (!this.pending.delete(id)) return;
        if (o.longPoll === true && !this.dropped)
          this.send(encodeFrame([this.nextId++, 'cancel', { id }]));
        reject(new FlotillaError('ABORTED', `Request ${id} to ${this.where} aborted`, !o.read));
      };
      if (o.signal?.aborted) {
        reject(new FlotillaError('ABORTED', 'Aborted before it was sent', false));
        return;
      }
      o.signal?.addEventListener('abort', onAbort, { once: true });
      const done = (): void => o.signal?.removeEventListener('abort', onAbort);
      this.pending.set(id, {
        read: o.read,
        resolve: (v) => {
          done();
          resolve(v);
        },
        reject: (e) => {
          done();
          reject(e);
        },
      });
      this.send(encodeFrame([id, op, body]));
    });
  }

  /**
   * Sends a request whose answer is a stream and yields its frames, the closing answer or
   * error last. Throws CONNECTION if the connection drops first, TIMEOUT when nothing arrives
   * for `idleMs`, ABORTED when `signal` aborts. Leaving the iteration before its end cancels
   * the stream on the node.
   */
  async *stream(
    op: WireOp,
    body: unknown,
    o: { readonly signal?: AbortSignal; readonly idleMs: number; readonly maxQueued?: number },
  ): AsyncGenerator<StreamFrame> {
    const maxQueued = o.maxQueued ?? 10_000;
    if (this.dropped)
      throw new FlotillaError('CONNECTION', `Connection to ${this.where} is closed`, false);
    const id = this.nextId++;
    const frames: StreamFrame[] = [];
    // Set from the frame and loss callbacks; an object so the checks below read it afresh.
    const st: { failed: FlotillaError | null } = { failed: null };
    let wake: (() => void) | null = null;
    const notify = (): void => {
      const w = wake;
      wake = null;
      w?.();
    };
    this.pending.set(id, {
      read: true,
      resolve: () => undefined,
      reject: (e) => {
        st.failed = e;
        notify();
      },
      frame: (status, payload) => {
        // The connection is shared, so it cannot stop reading for one slow consumer: past the
        // bound the stream fails, and its consumer reopens it from where it got to.
        if (frames.length >= maxQueued && st.failed === null)
          st.failed = new FlotillaError(
            'WATCH_TOO_SLOW',
            `Stream ${id} from ${this.where}: ${frames.length} frames not taken (limit ${maxQueued})`,
            false,
          );
        if (st.failed === null) frames.push([status, payload]);
        notify();
      },
    });
    this.send(encodeFrame([id, op, body]));
    const onAbort = notify;
    o.signal?.addEventListener('abort', onAbort);
    try {
      for (;;) {
        if (st.failed !== null) throw st.failed;
        while (frames.length > 0) {
          const f = frames.shift() as StreamFrame;
          yield f;
          if (f[0] !== ANSWER_STREAM) return;
        }
        if (o.signal?.aborted ?? false)
          throw new FlotillaError('ABORTED', `Stream ${id} to ${this.where} aborted`, false);
        let timer: ReturnType<typeof setTimeout> | undefined;
        const idle = await new Promise<boolean>((resolve) => {
          wake = () => resolve(false);
          timer = setTimeout(() => resolve(true), o.idleMs);
        });
        clearTimeout(timer);
        if (idle && frames.length === 0 && st.failed === null)
          throw new FlotillaError(
            'TIMEOUT',
            `Stream ${id} from ${this.where}: nothing for ${o.idleMs} ms`,
            false,
          );
      }
    } finally {
      o.signal?.removeEventListener('abort', onAbort);
      // Still open on the node: tell it to stop (its answer is not waited for).
      if (this.pending.delete(id) && !this.dropped)
        this.send(encodeFrame([this.nextId++, 'cancel', { id }]));
    }
  }

  close(): void {
    this.socket.destroy();
  }

  private send(frame: Buffer): void {
    this.out.push(frame);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      const frames = this.out;
      this.out = [];
      if (this.dropped || frames.length === 0) return;
      this.socket.write(frames.length === 1 ? (frames[0] as Buffer) : Buffer.concat(frames));
    });
  }

  private onFrame(f: unknown): void {
    if (!Array.isArray(f) || typeof f[0] !== 'number') {
      this.lost(badAnswer(this.where, new Error('an answer frame is not [id, status, payload]')));
      this.socket.destroy();
      return;
    }
    const [id, status, payload] = f as [number, unknown, unknown];
    if (id === CONNECTION_ID) {
      // The node closes the connection after this: every request in flight is lost with it.
      this.closedWith = errorFromWire(payload, true);
      this.lost(null);
      this.socket.destroy();
      return;
    }
    const p = this.pending.get(id);
    if (p === undefined) return; // aborted here; its answer came late
    if (p.frame !== undefined && typeof status === 'number') {
      if (status !== ANSWER_STREAM) this.pending.delete(id);
      p.frame(status, payload);
      return;
    }
    this.pending.delete(id);
    if (status === 0) p.resolve(payload);
    else p.reject(errorFromWire(payload, !p.read));
  }

  /** Fails every request in flight: writes indefinitely, reads definitely. */
  private lost(cause: FlotillaError | null): void {
    if (this.dropped) return;
    this.dropped = true;
    const why = cause ?? this.closedWith;
    const detail = why === null ? '' : ` (${why.code}: ${why.message})`;
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending)
      p.reject(
        new FlotillaError(
          'CONNECTION',
          `Connection to ${this.where} dropped with the request in flight${detail}` +
            (p.read ? '' : '; the write may have been applied'),
          !p.read,
        ),
      );
  }
}

function badAnswer(where: string, err: unknown): FlotillaError {
  return new FlotillaError(
    'BAD_RESPONSE',
    `${where} sent a frame that is not the protocol's: ${(err as Error).message}`,
  );
}
