// The outbound side of one peer: a single persistent TCP connection that this node dials and
// uses only to send. Each node dials every peer, so a pair of nodes has two connections, one per
// direction; no tie-break between simultaneous dials is needed, and each sender owns its own
// backpressure (docs/PROTOCOL.md, "Connections").

import { connect, type Socket } from 'node:net';
import { joinHostPort, parseHostPort } from '../base/host-port.js';
import type { Rng } from '../raft/rng.js';
import type { Heartbeat, HeartbeatResponse, Message, NodeId } from '../raft/types.js';
import { backoffDelayMs } from './backoff.js';
import {
  COALESCED_HEARTBEATS_VERSION,
  GOODBYE_VERSION,
  LIVENESS_LANE_VERSION,
  PROTOCOL_VERSION_MIN,
  chunkHeader,
  decodeAccept,
  type Accept,
  decodeRefuse,
  encodeMessage,
  pack,
} from './codec.js';
import { TransportError } from './errors.js';
import {
  COUNT_BYTES,
  RECORD_BYTES,
  encodeHeartbeats,
  isCoalescable,
  recordsPerFrame,
} from './coalesced.js';
import {
  FrameDecoder,
  FrameType,
  PREFACE,
  encodeFrame,
  encodeSmallFrame,
  HEADER_BYTES,
} from './frame.js';
import { sayGoodbye } from './goodbye.js';
import type { PeerAddress, ResolvedTcpOptions } from './options.js';
import { SendQueue, type QueuedMessage } from './sendqueue.js';
import { PeerCounters } from './stats.js';
import { tlsFailure, type PeerTls } from './tls.js';
import type {
  HandshakeRefusalCategory,
  PeerStats,
  TransportClock,
  TransportEvent,
} from './types.js';

interface Transfer {
  readonly item: QueuedMessage & { readonly attachment: Uint8Array };
  readonly id: number;
  offset: number;
  bytes: number;
}

export interface PeerContext {
  readonly opts: ResolvedTcpOptions;
  readonly clock: TransportClock;
  readonly rng: Rng;
  /** Mutual TLS on the peer port; null: plain TCP. */
  readonly tls?: PeerTls | null;
  /** Which connection to the peer this link is (codec.ts, Lane). Default: the main one. */
  readonly lane?: 'liveness';
  emit(event: TransportEvent): void;
  /**
   * Why the answering process must not be talked to although it is the peer (tcp.ts: another
   * process with its id holds this node's inbound connection), or null. None: never.
   */
  heldElsewhere?(peer: NodeId, incarnation: string | null): string | null;
}

type State = 'connecting' | 'open' | 'backoff' | 'closed';

export class PeerLink {
  readonly counters = new PeerCounters();
  private readonly queue: SendQueue;
  private state: State = 'backoff';
  private socket: Socket | null = null;
  private timer: unknown = null;
  private attempt = 0;
  private everConnected = false;
  private bulkBlocked = false;
  private pumpScheduled = false;
  private transfer: Transfer | null = null;
  private nextTransferId = 1;
  /**
   * Whether the open connection was negotiated at a version that takes HEARTBEATS frames
   * (coalesced.ts); false until the peer's ACCEPT says so.
   */
  private coalesces = false;
  /** Whether the open connection was negotiated at a version that takes GOODBYE (goodbye.ts). */
  private saysGoodbye = false;
  /** Whether the peer said GOODBYE on the current connection: its close is a planned stop. */
  private peerLeaving = false;
  /**
   * The peer dialled in while this link's connection was up or being made: that connection may
   * be to a process now gone, whose close this side has not seen yet. When it closes, the link
   * redials at once instead of waiting out a backoff.
   */
  private dialledIn = false;
  /** The `inc` of the process whose ACCEPT opened the current connection. */
  private answeredInc: string | null = null;
  /** Heartbeats and answers gathered by one pump for one HEARTBEATS frame. */
  private readonly batch: { msg: Heartbeat | HeartbeatResponse; group: number }[] = [];

  constructor(
    readonly peer: NodeId,
    private address: PeerAddress,
    private readonly ctx: PeerContext,
  ) {
    this.queue = new SendQueue(ctx.opts);
    this.dial();
  }

  get connected(): boolean {
    return this.state === 'open';
  }

  stats(): PeerStats {
    return this.counters.snapshot(this.state === 'open', this.queue.length);
  }

  /** Where this link dials the peer. */
  dialled(): PeerAddress {
    return this.address;
  }

  /** The process id (`inc`) that answered this link's dial, while it is open; null when not. */
  answeredBy(): string | null {
    return this.state === 'open' ? this.answeredInc : null;
  }

  /** Points the link at a new address; the current connection is dropped and redialled. */
  setAddress(address: PeerAddress): void {
    if (address.host === this.address.host && address.port === this.address.port) return;
    this.address = address;
    this.socket?.destroy();
  }

  send(msg: Message, attachment: Uint8Array | null, group = 0): void {
    if (this.state === 'closed') return this.counters.countDrop('closed');
    if (!this.queue.offer(msg, attachment, group)) return this.counters.countDrop('queueFull');
    this.schedulePump();
  }

  /**
   * The peer dialled us and its HELLO was accepted: it is up now. A link waiting out a backoff
   * (grown while the peer was down, up to `backoff.maxMs`) redials at once, so what it has
   * queued, a new leader's first heartbeats among it, does not wait for the timer. A link whose
   * connection is still up may not have seen it close yet (a peer restarted within a few
   * milliseconds): it redials when it does.
   */
  peerAlive(): void {
    if (this.state === 'open' || this.state === 'connecting') this.dialledIn = true;
    if (this.state !== 'backoff') return;
    // The backoff's timer goes: left to fire during the handshake, it dropped the handshake
    // timer's handle, which then fired on the open connection and closed it.
    this.clearTimer();
    this.attempt = 0;
    this.dial();
  }

  /** Writes what is queued now, if a write was scheduled (TcpTransport.flush). */
  flush(): void {
    if (!this.pumpScheduled) return;
    this.pumpScheduled = false;
    this.pump();
  }

  /**
   * Stops the link for good. With `goodbye`, an open main connection that takes it is ended
   * with a GOODBYE frame (goodbye.ts) and the promise waits for the peer to close its end,
   * bounded; otherwise the socket is destroyed at once.
   */
  close(goodbye = false): Promise<void> {
    if (this.state === 'closed') return Promise.resolve();
    const farewell =
      goodbye && this.state === 'open' && this.saysGoodbye && this.ctx.lane !== 'liveness';
    this.state = 'closed';
    this.clearTimer();
    this.counters.countDrop('closed', this.queue.clear());
    const socket = this.socket;
    this.socket = null;
    if (socket === null) return Promise.resolve();
    if (farewell) return sayGoodbye(socket, this.ctx.clock);
    socket.destroy();
    return Promise.resolve();
  }

  private dial(): void {
    this.state = 'connecting';
    // A host name is resolved again on every dial (Node keeps no DNS cache): a peer whose name
    // now points elsewhere (a container started again with a new address) is found there.
    const { lookup } = this.ctx.opts;
    const tls = this.ctx.tls ?? null;
    const socket =
      tls === null
        ? connect({
            host: this.address.host,
            port: this.address.port,
            noDelay: true,
            ...(lookup === null ? {} : { lookup }),
          })
        : tls.connect(this.address, lookup);
    this.socket = socket;
    this.peerLeaving = false;
    const decoder = new FrameDecoder(this.ctx.opts.maxHandshakeFrameBytes);
    const handshake = this.ctx.clock.setTimeout(() => {
      if (this.timer === handshake) this.timer = null;
      // Only the handshake of this very connection, still under way, times out.
      if (this.socket !== socket || this.state !== 'connecting') return;
      this.protocolError(
        new TransportError(
          'TRANSPORT_HANDSHAKE_TIMEOUT',
          `no handshake answer within ${this.ctx.opts.handshakeTimeoutMs} ms`,
        ),
      );
    }, this.ctx.opts.handshakeTimeoutMs);
    this.timer = handshake;
    // Over TLS the preface waits for the TLS handshake: nothing is said to an unverified peer.
    socket.on(tls === null ? 'connect' : 'secureConnect', () => {
      socket.setKeepAlive(true, 10_000);
      const liveness = this.ctx.lane === 'liveness';
      const hello = {
        // A liveness lane offers only the version that knows lanes (codec.ts).
        minVersion: liveness ? LIVENESS_LANE_VERSION : PROTOCOL_VERSION_MIN,
        maxVersion: this.ctx.opts.protocolVersionMax,
        clusterId: this.ctx.opts.clusterId,
        from: this.ctx.opts.nodeId,
        to: this.peer,
        ...(this.ctx.opts.hasLog === null ? {} : { hasLog: this.ctx.opts.hasLog() }),
        ...(this.ctx.opts.featureLevel === null
          ? {}
          : { featureLevel: this.ctx.opts.featureLevel }),
        ...(this.ctx.opts.advertise === null ? {} : this.ctx.opts.advertise),
        ...(this.ctx.opts.incarnation === null ? {} : { inc: this.ctx.opts.incarnation }),
        ...(liveness ? { lane: 'liveness' } : {}),
      };
      socket.write(Buffer.concat([PREFACE, encodeSmallFrame(FrameType.hello, pack(hello))]));
    });
    socket.on('data', (chunk: Buffer) => {
      // What arrives on a connection this link no longer uses is not read, as on the inbound
      // side: after close() it lingers for the peer's end (sayGoodbye), and a peer stopping
      // at the same moment sends its own GOODBYE there, which is no answer to a handshake.
      if (this.socket !== socket) return;
      decoder.push(chunk);
      this.onHandshakeData(decoder);
    });
    socket.on('drain', () => {
      this.bulkBlocked = false;
      this.pump();
    });
    socket.on('error', (e) => {
      // 'close' follows and carries the consequence; a TLS failure is said first, with why.
      const reason = tls === null || this.state !== 'connecting' ? null : tlsFailure(e);
      if (reason !== null) this.tlsRefused(reason);
    });
    socket.on('close', () => this.onClose(socket));
  }

  private onHandshakeData(decoder: FrameDecoder): void {
    const frame = decoder.next();
    if (frame === null) return;
    try {
      if (frame instanceof TransportError) throw frame;
      if (this.state === 'open' && frame.type === FrameType.goodbye && this.saysGoodbye) {
        this.peerLeaving = true;
        return;
      }
      if (this.state === 'open')
        throw new TransportError(
          'TRANSPORT_BAD_FRAME',
          `unexpected frame type ${frame.type} on a send-only connection`,
        );
      if (frame.type === FrameType.refuse) {
        const reason = decodeRefuse(frame.payload).reason;
        this.counters.countError('TRANSPORT_HANDSHAKE_REFUSED');
        this.ctx.emit({
          kind: 'handshake-refused',
          direction: 'outbound',
          peer: this.peer,
          remote: this.remote(),
          reason,
          category: 'refused-by-peer',
        });
        this.socket?.destroy();
        return;
      }
      if (frame.type !== FrameType.accept)
        throw new TransportError(
          'TRANSPORT_BAD_FRAME',
          `expected accept or refuse, saw frame type ${frame.type}`,
        );
      this.onAccept(decodeAccept(frame.payload));
    } catch (e) {
      if (e instanceof TransportError) this.protocolError(e);
      else throw e;
    }
  }

  private onAccept(a: Accept): void {
    // The dialled address may hold another node or cluster (stale config): check both ways.
    // Asked last, as it may lift a bar (tcp.ts heldElsewhere).
    const held = (): string | null =>
      heldHere(this.ctx.heldElsewhere?.(this.peer, a.incarnation) ?? null, this.peer);
    const wrong: { category: HandshakeRefusalCategory; reason: string } | null =
      a.clusterId !== this.ctx.opts.clusterId
        ? {
            category: 'cluster-id',
            reason: `peer is in cluster ${JSON.stringify(a.clusterId)}, we are in ${JSON.stringify(this.ctx.opts.clusterId)}`,
          }
        : a.nodeId !== this.peer
          ? {
              category: 'wrong-node',
              reason: `dialled node ${this.peer} but node ${a.nodeId} answered`,
            }
          : a.version < PROTOCOL_VERSION_MIN || a.version > this.ctx.opts.protocolVersionMax
            ? {
                category: 'protocol-version',
                reason: `peer chose protocol version ${a.version}, we speak ${PROTOCOL_VERSION_MIN}..${this.ctx.opts.protocolVersionMax}`,
              }
            : inUse(held());
    if (wrong !== null) {
      this.counters.countError('TRANSPORT_HANDSHAKE_REFUSED');
      this.ctx.emit({
        kind: 'handshake-refused',
        direction: 'outbound',
        peer: this.peer,
        remote: this.remote(),
        reason: wrong.reason,
        category: wrong.category,
      });
      this.socket?.destroy();
      return;
    }
    this.clearTimer();
    this.state = 'open';
    this.dialledIn = false;
    this.answeredInc = a.incarnation;
    // The peer sends to us at another address (or forwards client requests to another URL)
    // than the one we say we have (restarted with a changed address): what it sends is lost.
    // Said, not refused.
    const ours = this.ctx.opts.advertise;
    if (ours !== null && this.ctx.lane !== 'liveness') {
      if (a.yourPeer !== null)
        this.ctx.emit({
          kind: 'peer-address',
          peer: this.peer,
          recorded: a.yourPeer,
          advertised: ours.peer,
          same: samePeerAddress(a.yourPeer, ours.peer),
        });
      if (a.yourClient !== null)
        this.ctx.emit({
          kind: 'client-address',
          peer: this.peer,
          recorded: a.yourClient,
          advertised: ours.client,
          same: sameClientUrl(a.yourClient, ours.client),
        });
    }
    this.coalesces = a.version >= COALESCED_HEARTBEATS_VERSION;
    this.saysGoodbye = a.version >= GOODBYE_VERSION;
    this.attempt = 0;
    if (this.everConnected) this.counters.reconnects += 1;
    this.everConnected = true;
    this.ctx.emit({
      kind: 'peer-connected',
      peer: this.peer,
      direction: 'outbound',
      remote: this.remote(),
      peerHasLog: a.hasLog,
      peerFeatureLevel: a.featureLevel,
    });
    this.pump();
  }

  private tlsRefused(reason: string): void {
    this.counters.countError('TRANSPORT_TLS_REFUSED');
    this.ctx.emit({
      kind: 'tls-refused',
      direction: 'outbound',
      peer: this.peer,
      remote: this.remote(),
      reason,
    });
  }

  private protocolError(e: TransportError): void {
    this.counters.countError(e.code);
    this.ctx.emit({
      kind: 'protocol-error',
      peer: this.peer,
      code: e.code,
      remote: this.remote(),
      message: e.message,
    });
    this.socket?.destroy();
  }

  private onClose(socket: Socket): void {
    if (this.socket !== socket) return;
    const wasOpen = this.state === 'open';
    this.socket = null;
    this.clearTimer();
    this.bulkBlocked = false;
    if (this.transfer !== null) this.counters.countDrop('disconnected');
    this.transfer = null;
    if (this.state === 'closed') return;
    // What was queued while the connection was up was meant for the process at its other end,
    // which may be gone: a restarted peer must not receive what was written for its previous
    // life (a node recovering lost data judges votes by what its peers tell it after it
    // started; DESIGN.md, "A node that lost its data"). Raft retries whatever matters.
    if (wasOpen) this.counters.countDrop('disconnected', this.queue.clear());
    if (wasOpen)
      this.ctx.emit({
        kind: 'peer-disconnected',
        peer: this.peer,
        direction: 'outbound',
        reason: this.peerLeaving ? 'peer shutting down' : 'connection closed',
        goodbye: this.peerLeaving,
      });
    if (this.dialledIn) {
      this.dialledIn = false;
      this.attempt = 0;
      this.ctx.emit({ kind: 'reconnect-scheduled', peer: this.peer, delayMs: 0 });
      return this.dial();
    }
    const delayMs = backoffDelayMs(this.attempt, this.ctx.opts.backoff, this.ctx.rng);
    this.attempt += 1;
    this.state = 'backoff';
    this.ctx.emit({ kind: 'reconnect-scheduled', peer: this.peer, delayMs });
    const backoff = this.ctx.clock.setTimeout(() => {
      if (this.timer !== backoff) return;
      this.timer = null;
      if (this.state === 'backoff') this.dial();
    }, delayMs);
    this.timer = backoff;
  }

  private clearTimer(): void {
    if (this.timer !== null) this.ctx.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  private remote(): string {
    return joinHostPort(this.address.host, this.address.port);
  }

  private schedulePump(): void {
    if (this.pumpScheduled || this.state !== 'open') return;
    this.pumpScheduled = true;
    // One pump per turn of the event loop: every message of one Ready leaves in one writev.
    queueMicrotask(() => this.flush());
  }

  /**
   * Writes control frames first, always; then bulk frames while the socket buffers less than
   * bulkWatermarkBytes. Past the mark we wait for 'drain', so at most one watermark plus one
   * frame of bulk data sits in user space ahead of the next heartbeat.
   */
  private pump(): void {
    const socket = this.socket;
    if (this.state !== 'open' || socket === null) return;
    socket.cork();
    this.writeControl(socket);
    while (!this.bulkBlocked) {
      if (this.transfer !== null) this.writeChunk(socket, this.transfer);
      else {
        const item = this.queue.nextBulk();
        if (item === undefined) break;
        this.writeMessage(socket, item);
      }
      if (socket.writableLength >= this.ctx.opts.bulkWatermarkBytes) this.bulkBlocked = true;
    }
    socket.uncork();
  }

  /**
   * Writes the control lane. On a connection that takes them, heartbeats and their answers
   * (of any group) are gathered into HEARTBEATS frames; the order of everything else is kept,
   * and a gathered batch is written before the next message that is not one.
   */
  private writeControl(socket: Socket): void {
    const perFrame = recordsPerFrame(this.ctx.opts.maxFrameBytes);
    for (let item = this.queue.nextControl(); item !== undefined; item = this.queue.nextControl()) {
      if (this.coalesces && isCoalescable(item.msg)) {
        this.batch.push({ msg: item.msg, group: item.group });
        if (this.batch.length >= perFrame) this.writeBatch(socket);
        continue;
      }
      this.writeBatch(socket);
      this.writeMessage(socket, item);
    }
    this.writeBatch(socket);
  }

  private writeBatch(socket: Socket): void {
    if (this.batch.length === 0) return;
    socket.write(encodeSmallFrame(FrameType.heartbeats, encodeHeartbeats(this.batch)));
    this.counters.framesSent += 1;
    // The frame's bytes, shared out: the header and count go with the first message.
    let bytes = HEADER_BYTES + COUNT_BYTES + RECORD_BYTES;
    for (const { msg } of this.batch) {
      this.counters.countSent(msg.type, bytes);
      bytes = RECORD_BYTES;
    }
    this.batch.length = 0;
  }

  private writeMessage(socket: Socket, item: QueuedMessage): void {
    const { msg, attachment } = item;
    if (attachment !== null) {
      this.startTransfer(item as Transfer['item']);
      return;
    }
    const payload = encodeMessage(msg, item.group);
    if (payload.byteLength > this.ctx.opts.maxFrameBytes)
      return this.tooLarge(item, payload.byteLength);
    socket.write(encodeSmallFrame(FrameType.message, payload));
    this.counters.framesSent += 1;
    this.counters.countSent(msg.type, payload.byteLength + HEADER_BYTES);
  }

  private tooLarge(item: QueuedMessage, sizeBytes: number): void {
    this.counters.countDrop('invalid');
    this.ctx.emit({
      kind: 'protocol-error',
      peer: this.peer,
      code: 'TRANSPORT_FRAME_TOO_LARGE',
      remote: this.remote(),
      message: `not sending ${item.msg.type}: ${sizeBytes} bytes exceed maxFrameBytes ${this.ctx.opts.maxFrameBytes}`,
    });
  }

  private startTransfer(item: Transfer['item']): void {
    if (item.attachment.byteLength > this.ctx.opts.maxAttachmentBytes)
      return this.tooLarge(item, item.attachment.byteLength);
    this.transfer = { item, id: this.nextTransferId++ >>> 0, offset: 0, bytes: 0 };
  }

  /** Writes the next chunk of the snapshot in flight, then its message frame after the last. */
  private writeChunk(socket: Socket, t: Transfer): void {
    const data = t.item.attachment;
    if (t.offset < data.byteLength || (data.byteLength === 0 && t.bytes === 0)) {
      const end = Math.min(t.offset + this.ctx.opts.chunkBytes, data.byteLength);
      const parts = encodeFrame(FrameType.chunk, [
        chunkHeader(t.id, t.offset, data.byteLength),
        data.subarray(t.offset, end),
      ]);
      for (const p of parts) {
        socket.write(p);
        t.bytes += p.byteLength;
      }
      this.counters.framesSent += 1;
      t.offset = end;
      if (data.byteLength > 0) return;
    }
    const id = Buffer.allocUnsafe(4);
    id.writeUInt32BE(t.id, 0);
    const frame = encodeSmallFrame(
      FrameType.messageWithAttachment,
      Buffer.concat([id, encodeMessage(t.item.msg, t.item.group)]),
    );
    socket.write(frame);
    this.counters.framesSent += 1;
    this.counters.countSent(t.item.msg.type, t.bytes + frame.byteLength);
    this.transfer = null;
  }
}

/**
 * Whether two host:port strings name one address: host names compare without case and without
 * a trailing dot, an IPv6 host with or without brackets.
 */
export function samePeerAddress(a: string, b: string): boolean {
  const norm = (x: string): string => {
    const hp = parseHostPort(x);
    return hp === null ? x : `${hp.host.replace(/\.$/, '').toLowerCase()}:${hp.port}`;
  };
  return norm(a) === norm(b);
}

/**
 * This node's own refusal of the process that answered its dial, worded as such: the peer's
 * words ("node id N is in use by another process") would read as the peer refusing this node.
 */
function inUse(reason: string | null): { category: 'id-in-use'; reason: string } | null {
  return reason === null ? null : { category: 'id-in-use', reason };
}

function heldHere(reason: string | null, peer: NodeId): string | null {
  return reason === null
    ? null
    : `the process answering for node ${peer} is refused here, another holds its id: ${reason}`;
}

/** Two client URLs that name the same place (case of the host, a trailing slash). */
export function sameClientUrl(a: string, b: string): boolean {
  const norm = (u: string): string => {
    try {
      const p = new URL(u);
      return `${p.protocol}//${p.host}${p.pathname.replace(/\/+$/, '')}`;
    } catch {
      return u;
    }
  };
  return norm(a) === norm(b);
}
