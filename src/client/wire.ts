// One connection of the binary client protocol (docs/CLIENT-PROTOCOL.md), the client's side:
// a handshake, then requests sent with ids and answered in any order. Requests issued in one
// turn of the event loop leave in one write, so the node reads them as one batch.
//
// A request in flight when the connection drops fails with CONNECTION: indefinite for a write
// (it may have been applied), definite for a read (it changed nothing, so the caller may just
// send it again).

import { connect, type Socket } from 'node:net';
import { FlotillaError } from '../base/errors.js';
import {
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
  /** The protocol version to ask for (tests ask for others). Default: the newest this build speaks. */
  readonly version?: number;
  /** Connecting and the handshake must finish within this. */
  readonly timeoutMs: number;
}

interface Pending {
  readonly resolve: (v: unknown) => void;
  readonly reject: (e: FlotillaError) => void;
  readonly read: boolean;
}

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
      const socket = connect({ host: o.host, port: o.port, noDelay: true });
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
      socket.on('connect', () => {
        socket.write(
          encodeFrame({
            magic: WIRE_MAGIC,
            version: o.version ?? WIRE_VERSION_MAX,
            ...(o.clientId === undefined ? {} : { clientId: o.clientId }),
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
          });
          resolve(conn);
        }
      });
      socket.on('error', (err: Error & { code?: string }) => {
        if (conn !== null) return; // 'close' follows
        // Refused: nothing listened, so nothing was sent.
        fail(
          new FlotillaError(
            'CONNECTION',
            `Cannot connect to ${where}: ${err.message}`,
            err.code !== 'ECONNREFUSED',
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
   * answer is then ignored).
   */
  request(
    op: WireOp,
    body: unknown,
    o: { readonly read: boolean; readonly signal?: AbortSignal },
  ): Promise<unknown> {
    if (this.dropped)
      return Promise.reject(
        new FlotillaError('CONNECTION', `Connection to ${this.where} is closed`, false),
      );
    const id = this.nextId++;
    return new Promise<unknown>((resolve, reject) => {
      const onAbort = (): void => {
        if (!this.pending.delete(id)) return;
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
