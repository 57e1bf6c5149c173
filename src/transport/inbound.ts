// The accepting side of one connection on the peer port: checks the preface and handshake,
// then decodes, validates and delivers messages, reassembling snapshot attachments from their
// chunks. Any protocol error closes this connection only; the server keeps serving the rest.

import type { Socket } from 'node:net';
import type { Message, NodeId } from '../raft/types.js';
import {
  CHUNK_HEADER_BYTES,
  COALESCED_HEARTBEATS_VERSION,
  GOODBYE_VERSION,
  LIVENESS_LANE_VERSION,
  PROTOCOL_VERSION_MIN,
  decodeHello,
  decodeMessage,
  type GroupMessage,
  pack,
  type Hello,
  type Lane,
} from './codec.js';
import { TransportError, hexPreview } from './errors.js';
import { COUNT_BYTES, RECORD_BYTES, decodeHeartbeats } from './coalesced.js';
import {
  FrameDecoder,
  FrameType,
  PREFACE,
  encodeSmallFrame,
  HEADER_BYTES,
  type Frame,
} from './frame.js';
import { sayGoodbye } from './goodbye.js';
import type { ResolvedTcpOptions } from './options.js';
import type { HandshakeRefusalCategory, TransportClock } from './types.js';

export interface InboundContext {
  readonly opts: ResolvedTcpOptions;
  readonly clock: TransportClock;
  isPeer(id: NodeId): boolean;
  /** Where this node sends to peer `id` (host:port), or null when it is not a peer. */
  dialsAt(id: NodeId): string | null;
  /** Why a dialler's process must be refused although its id is a peer's (tcp.ts), or null. */
  heldElsewhere(id: NodeId, incarnation: string | null): string | null;
  /** Whether a dialler this node does not know is let in, given where it says it is. */
  admit(id: NodeId, peerAddress: string, clientUrl: string | null): boolean;
  /** Called once the handshake named a valid peer. */
  accepted(conn: InboundConnection): void;
  /**
   * Runs `run`, which delivers the frames of one socket read; the transport writes what the
   * handlers answered once it returns (TcpTransport.flush), so the answers leave together.
   */
  delivering(run: () => void): void;
  /** Counts one frame read after the handshake. */
  countFrame(conn: InboundConnection): void;
  refused(
    conn: InboundConnection,
    claimed: NodeId,
    reason: string,
    category: HandshakeRefusalCategory,
  ): void;
  error(conn: InboundConnection, e: TransportError): void;
  deliver(
    conn: InboundConnection,
    msg: Message,
    attachment: Uint8Array | null,
    frameBytes: number,
    group: number,
  ): void;
  closed(conn: InboundConnection): void;
}

interface Assembly {
  readonly id: number;
  readonly total: number;
  readonly parts: Buffer[];
  received: number;
  frameBytes: number;
}

export class InboundConnection {
  peer: NodeId = 0;
  /** closing: GOODBYE said, waiting for the dialler to close its end (nothing is delivered). */
  private state: 'preface' | 'hello' | 'open' | 'closing' | 'closed' = 'preface';
  /** What the dialler's HELLO said of its log (null: not said). */
  peerHasLog: boolean | null = null;
  /** The feature level its HELLO said (null: not said). */
  peerFeatureLevel: number | null = null;
  /** The process id its HELLO said (null: not said). */
  peerIncarnation: string | null = null;
  /** Which of the dialler's connections this is (codec.ts, Lane); known after the handshake. */
  lane: Lane = 'main';
  /** The protocol version negotiated (known after the handshake). */
  version = 0;
  /** Whether the dialler said GOODBYE (goodbye.ts): its close is a planned stop. */
  peerLeaving = false;
  private readonly decoder: FrameDecoder;
  private timer: unknown;
  private assembly: Assembly | null = null;
  readonly remote: string;

  constructor(
    readonly socket: Socket,
    private readonly ctx: InboundContext,
  ) {
    this.remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`;
    this.decoder = new FrameDecoder(ctx.opts.maxHandshakeFrameBytes);
    this.timer = ctx.clock.setTimeout(() => {
      this.timer = null;
      this.fail(
        new TransportError(
          'TRANSPORT_HANDSHAKE_TIMEOUT',
          `no handshake within ${ctx.opts.handshakeTimeoutMs} ms`,
        ),
      );
    }, ctx.opts.handshakeTimeoutMs);
    socket.setNoDelay(true);
    // As the dialer's side has: a peer whose host vanished without a FIN (power lost, a
    // partition) leaves a connection that only the keepalive probes find dead.
    socket.setKeepAlive(true, 10_000);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => undefined); // 'close' follows
    socket.on('close', () => {
      this.state = 'closed';
      this.clearTimer();
      this.assembly = null;
      ctx.closed(this);
    });
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  /**
   * Closes the connection. With `goodbye`, an open main connection that takes it is ended with
   * a GOODBYE frame (goodbye.ts) and the promise waits for the dialler to close its end,
   * bounded; what arrives meanwhile is not delivered.
   */
  close(goodbye = false): Promise<void> {
    this.clearTimer();
    if (
      goodbye &&
      this.state === 'open' &&
      this.lane === 'main' &&
      this.version >= GOODBYE_VERSION
    ) {
      this.state = 'closing';
      return sayGoodbye(this.socket, this.ctx.clock);
    }
    this.socket.destroy();
    return Promise.resolve();
  }

  private clearTimer(): void {
    if (this.timer !== null) this.ctx.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  private onData(chunk: Buffer): void {
    if (this.state === 'closed' || this.state === 'closing') return;
    this.decoder.push(chunk);
    if (this.state === 'open') return this.ctx.delivering(() => this.readFrames());
    this.readFrames();
  }

  private readFrames(): void {
    try {
      if (this.state === 'preface') this.readPreface();
      // Bounded by the bytes received: each iteration consumes one whole frame.
      while (this.state === 'hello' || this.state === 'open') {
        const frame = this.decoder.next();
        if (frame === null) break;
        if (frame instanceof TransportError) throw frame;
        if (this.state === 'hello') this.onHello(frame);
        else this.onFrame(frame);
      }
    } catch (e) {
      if (e instanceof TransportError) this.fail(e);
      else throw e;
    }
  }

  private readPreface(): void {
    const got = this.decoder.take(PREFACE.length);
    if (got === null) return;
    if (!got.equals(PREFACE))
      return this.refuse(
        0,
        'bad-magic',
        `bad magic: expected ${hexPreview(PREFACE)} ("FLOT"), saw ${hexPreview(got)}` +
          // A TLS record header (handshake, version 3.x): the dialler speaks TLS, we do not.
          (got[0] === 0x16 && got[1] === 0x03
            ? ' (a TLS handshake: the dialler uses TLS, this peer port does not)'
            : ''),
      );
    this.state = 'hello';
  }

  private onHello(frame: Frame): void {
    if (frame.type !== FrameType.hello)
      throw new TransportError(
        'TRANSPORT_BAD_FRAME',
        `expected hello, saw frame type ${frame.type}`,
      );
    const h = decodeHello(frame.payload);
    const version = Math.min(h.maxVersion, this.ctx.opts.protocolVersionMax);
    const refusal = this.checkHello(h, version);
    if (refusal !== null) return this.refuse(h.from, refusal.category, refusal.reason);
    this.clearTimer();
    this.peer = h.from;
    this.lane = h.lane;
    this.version = version;
    this.state = 'open';
    this.decoder.maxFrameBytes = this.ctx.opts.maxFrameBytes;
    this.peerHasLog = h.hasLog;
    this.peerFeatureLevel = h.featureLevel;
    this.peerIncarnation = h.incarnation;
    const o = this.ctx.opts;
    const yourPeer = this.ctx.dialsAt(h.from);
    const yourClient = this.ctx.opts.clientUrlOf?.(h.from) ?? null;
    const accept = {
      version,
      clusterId: o.clusterId,
      nodeId: o.nodeId,
      ...(o.hasLog === null ? {} : { hasLog: o.hasLog() }),
      ...(o.featureLevel === null ? {} : { featureLevel: o.featureLevel }),
      ...(o.incarnation === null ? {} : { inc: o.incarnation }),
      ...(yourPeer === null ? {} : { yourPeer }),
      ...(yourClient === null ? {} : { yourClient }),
    };
    this.socket.write(encodeSmallFrame(FrameType.accept, pack(accept)));
    this.ctx.accepted(this);
  }

  private checkHello(
    h: Hello,
    version: number,
  ): { category: HandshakeRefusalCategory; reason: string } | null {
    const o = this.ctx.opts;
    const no = (category: HandshakeRefusalCategory, reason: string) => ({ category, reason });
    if (h.clusterId !== o.clusterId)
      return no(
        'cluster-id',
        `cluster id mismatch: ours ${JSON.stringify(o.clusterId)}, node ${h.from} sent ${JSON.stringify(h.clusterId)}`,
      );
    if (version < Math.max(h.minVersion, PROTOCOL_VERSION_MIN))
      return no(
        'protocol-version',
        `no common protocol version: ours ${PROTOCOL_VERSION_MIN}..${o.protocolVersionMax}, node ${h.from} speaks ${h.minVersion}..${h.maxVersion}`,
      );
    if (h.to !== o.nodeId)
      return no('wrong-node', `node ${h.from} dialled node ${h.to}, this is node ${o.nodeId}`);
    if (h.lane === 'liveness' && version < LIVENESS_LANE_VERSION)
      return no(
        'liveness-version',
        `node ${h.from} opened a liveness lane in protocol version ${version}; it needs ${LIVENESS_LANE_VERSION}`,
      );
    if (
      !this.ctx.isPeer(h.from) &&
      (h.peerAddress === null || !this.ctx.admit(h.from, h.peerAddress, h.clientUrl))
    )
      return no(
        'unknown-node',
        `unknown node id ${h.from}: not a configured peer of node ${o.nodeId}`,
      );
    const held = this.ctx.heldElsewhere(h.from, h.incarnation);
    return held === null ? null : no('id-in-use', held);
  }

  private refuse(claimed: NodeId, category: HandshakeRefusalCategory, reason: string): void {
    this.clearTimer();
    this.state = 'closed';
    this.ctx.refused(this, claimed, reason, category);
    // Say why before closing, so the dialler can log it; then drop the socket once flushed.
    this.socket.end(encodeSmallFrame(FrameType.refuse, pack({ reason })), () =>
      this.socket.destroy(),
    );
  }

  private fail(e: TransportError): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.ctx.error(this, e);
    void this.close();
  }

  private onFrame(frame: Frame): void {
    const bytes = frame.payload.byteLength + HEADER_BYTES;
    this.ctx.countFrame(this);
    if (frame.type === FrameType.heartbeats) return this.onHeartbeats(frame.payload);
    if (frame.type === FrameType.goodbye) return this.onGoodbye();
    // A transfer's CHUNK frames may have MESSAGE and HEARTBEATS frames between them: the
    // sender writes its control lane first at every write opportunity, a transfer waiting for
    // 'drain' included, so that heartbeats never wait behind a snapshot (PROTOCOL.md). They
    // are delivered at once and leave the transfer as it was.
    if (frame.type === FrameType.message)
      return this.deliver(decodeMessage(frame.payload, this.ctx.opts.validation), null, bytes);
    if (frame.type === FrameType.chunk) return this.onChunk(frame.payload);
    if (frame.type === FrameType.messageWithAttachment)
      return this.onAttachedMessage(frame.payload, bytes);
    throw new TransportError(
      'TRANSPORT_BAD_FRAME',
      `unexpected frame type ${frame.type} after handshake`,
    );
  }

  /** A GOODBYE frame (goodbye.ts): the dialler stops cleanly and closes the connection next. */
  private onGoodbye(): void {
    if (this.version < GOODBYE_VERSION)
      throw new TransportError(
        'TRANSPORT_BAD_FRAME',
        `goodbye frame on a connection of protocol version ${this.version}; it needs ${GOODBYE_VERSION}`,
      );
    this.peerLeaving = true;
  }

  /** A HEARTBEATS frame (coalesced.ts): each record is delivered as its own message. */
  private onHeartbeats(payload: Buffer): void {
    if (this.version < COALESCED_HEARTBEATS_VERSION)
      throw new TransportError(
        'TRANSPORT_BAD_FRAME',
        `heartbeats frame on a connection of protocol version ${this.version}; it needs ${COALESCED_HEARTBEATS_VERSION}`,
      );
    const messages = decodeHeartbeats(payload, this.peer, this.ctx.opts.nodeId);
    // The frame's bytes, shared out as the sender counted them.
    let bytes = HEADER_BYTES + COUNT_BYTES + RECORD_BYTES;
    for (const m of messages) {
      this.deliver(m, null, bytes);
      bytes = RECORD_BYTES;
    }
  }

  private deliver(
    decoded: GroupMessage | TransportError,
    attachment: Uint8Array | null,
    bytes: number,
  ): void {
    if (decoded instanceof TransportError) throw decoded;
    const { msg, group } = decoded;
    // The liveness lane exists so a stalled leader's heartbeats still leave (liveness.ts);
    // nothing else may ride it, or it would become a second, unordered main connection.
    if (this.lane === 'liveness' && msg.type !== 'heartbeat')
      throw new TransportError(
        'TRANSPORT_BAD_MESSAGE',
        `${msg.type} message on node ${this.peer}'s liveness lane, which carries only heartbeats`,
      );
    // The handshake authenticated the sender; a message claiming otherwise is malformed.
    if (msg.from !== this.peer || msg.to !== this.ctx.opts.nodeId)
      throw new TransportError(
        'TRANSPORT_BAD_MESSAGE',
        `message ${msg.from}->${msg.to} on the connection from node ${this.peer} to node ${this.ctx.opts.nodeId}`,
      );
    this.ctx.deliver(this, msg, attachment, bytes, group);
  }

  private onChunk(payload: Buffer): void {
    if (payload.byteLength < CHUNK_HEADER_BYTES)
      throw new TransportError(
        'TRANSPORT_BAD_FRAME',
        `chunk frame of ${payload.byteLength} bytes has no header`,
      );
    const id = payload.readUInt32BE(0);
    const offset = payload.readUInt32BE(4);
    const total = payload.readUInt32BE(8);
    const data = payload.subarray(CHUNK_HEADER_BYTES);
    if (total > this.ctx.opts.maxAttachmentBytes)
      throw new TransportError(
        'TRANSPORT_ATTACHMENT_TOO_LARGE',
        `attachment of ${total} bytes exceeds limit ${this.ctx.opts.maxAttachmentBytes}`,
      );
    if (this.assembly === null)
      this.assembly = { id, total, parts: [], received: 0, frameBytes: 0 };
    const a = this.assembly;
    if (
      a.id !== id ||
      a.total !== total ||
      a.received !== offset ||
      offset + data.byteLength > total
    )
      throw new TransportError(
        'TRANSPORT_BAD_FRAME',
        `chunk (transfer ${id}, offset ${offset}, total ${total}) does not continue transfer ${a.id} at ${a.received} of ${a.total}`,
      );
    a.parts.push(data);
    a.received += data.byteLength;
    a.frameBytes += payload.byteLength + HEADER_BYTES;
  }

  private onAttachedMessage(payload: Buffer, bytes: number): void {
    const a = this.assembly;
    if (payload.byteLength < 4)
      throw new TransportError('TRANSPORT_BAD_FRAME', 'attached message frame has no transfer id');
    const id = payload.readUInt32BE(0);
    if (a === null || a.id !== id || a.received !== a.total)
      throw new TransportError(
        'TRANSPORT_BAD_FRAME',
        `message for transfer ${id} but ${a === null ? 'no transfer is open' : `transfer ${a.id} has ${a.received} of ${a.total} bytes`}`,
      );
    this.assembly = null;
    const msg = decodeMessage(payload.subarray(4), this.ctx.opts.validation);
    if (!(msg instanceof TransportError) && msg.msg.type !== 'snapshot')
      throw new TransportError(
        'TRANSPORT_BAD_MESSAGE',
        `attachment sent with a ${msg.msg.type} message, only snapshot may carry one`,
      );
    const joined = Buffer.concat(a.parts, a.total);
    this.deliver(
      msg,
      new Uint8Array(joined.buffer, joined.byteOffset, joined.byteLength),
      bytes + a.frameBytes,
    );
  }
}
