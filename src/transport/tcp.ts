// The TCP transport: a listener for the peer port plus one outbound PeerLink per peer. Frames,
// handshake and limits are specified in docs/PROTOCOL.md.

import { createServer, type Server, type Socket } from 'node:net';
import { joinHostPort, parseHostPort } from '../base/host-port.js';
import { createRng, type Rng } from '../raft/rng.js';
import type { Message, NodeId } from '../raft/types.js';
import { pack } from './codec.js';
import { TransportError } from './errors.js';
import { FrameType, encodeSmallFrame } from './frame.js';
import { InboundConnection, type InboundContext } from './inbound.js';
import {
  resolveTcpOptions,
  type PeerAddress,
  type ResolvedTcpOptions,
  type TcpTransportOptions,
} from './options.js';
import { LivenessLane } from './liveness.js';
import { PeerLink } from './peer.js';
import { ErrorCounters, PeerCounters, buildStats } from './stats.js';
import { PeerTls, remoteOf, type PeerTlsOptions } from './tls.js';
import {
  systemTransportClock,
  type PeerStats,
  type Transport,
  type TransportClock,
  type TransportEvent,
  type TransportStats,
} from './types.js';

type Handler = (msg: Message, attachment: Uint8Array | null, group: number) => void;

/** Dialers of one id back from an earlier address within this are two processes (noteDialer). */
export const ID_CONFLICT_WINDOW_MS = 10_000;

export class TcpTransport implements Transport {
  private readonly opts: ResolvedTcpOptions;
  private readonly clock: TransportClock;
  private readonly rng: Rng;
  private readonly server: Server;
  private readonly links = new Map<NodeId, PeerLink>();
  /** Receive-side counters of peers, kept apart from links so they survive removePeer. */
  private readonly inboundCounters = new Map<NodeId, PeerCounters>();
  private readonly connections = new Set<InboundConnection>();
  /** Per peer id: its last two dialers (process id, remote address), and when it was warned. */
  private readonly dialers = new Map<
    NodeId,
    {
      now: { inc: string; remote: string };
      before: { inc: string; remote: string } | null;
      changedMs: number;
      warnedMs: number;
      /**
       * The process id refused since the pattern was seen: the one whose connection the other
       * replaced. Refused while the other's connection is open, so that the two stop replacing
       * each other and the refused process is told why.
       */
      barred: string | null;
      /** When the bar lifts by itself (a holder gone without closing its connection). */
      barredUntilMs: number;
    }
  >();
  private readonly inboundByPeer = new Map<NodeId, InboundConnection>();
  /** Peers' liveness lanes (liveness.ts), kept apart: one must not replace the main connection. */
  private readonly livenessByPeer = new Map<NodeId, InboundConnection>();
  private readonly anonymous = new ErrorCounters();
  private droppedUnknownPeer = 0;
  private handler: Handler = () => undefined;
  private admission:
    ((id: NodeId, addresses: { peer: string; client: string | null }) => boolean) | null = null;
  private eventHandler: (e: TransportEvent) => void = () => undefined;
  private closed: Promise<void> | null = null;
  private readonly inboundContext: InboundContext;
  /** Mutual TLS on the peer port; null: plain TCP. */
  private readonly tls: PeerTls | null;
  /**
   * Inbound frames being delivered (InboundContext.delivering): while non-zero, flush() waits
   * for the end of the run, so the answers of a run of heartbeats (one coalesced frame, or
   * the frames of one socket read) leave together, coalesced, rather than one write each.
   */
  private delivering = 0;
  /** With TLS: every TCP connection, those still in their TLS handshake too (close ends them). */
  private readonly tcpSockets = new Set<Socket>();
  /** The liveness lane (liveness.ts), when configured: the host reports ticks and leadership. */
  readonly liveness: LivenessLane | null;

  private constructor(options: TcpTransportOptions) {
    this.opts = resolveTcpOptions(options);
    this.clock = options.clock ?? systemTransportClock;
    this.rng = options.rng ?? createRng(this.opts.nodeId * 2654435761);
    this.inboundContext = this.makeInboundContext();
    this.tls = options.tls === undefined ? null : new PeerTls(options.tls);
    const l = options.liveness;
    this.liveness =
      l === undefined || l.graceMs <= 0
        ? null
        : new LivenessLane(this.opts, options.tls ?? null, l, (e) => this.emit(e));
    this.server =
      this.tls === null
        ? createServer((socket) => this.onConnection(socket))
        : this.listenTls(this.tls);
    this.server.on('error', (e) =>
      this.emit({ kind: 'handler-error', peer: 0, message: `peer listener: ${e.message}` }),
    );
    for (const [id, address] of options.peers ?? []) this.setPeer(id, address);
  }

  /** Creates a transport and starts listening; resolves once the peer port is bound. */
  static async listen(options: TcpTransportOptions): Promise<TcpTransport> {
    const t = new TcpTransport(options);
    await new Promise<void>((resolve, reject) => {
      t.server.once('error', reject);
      t.server.listen(t.opts.listen.port, t.opts.listen.host, () => {
        t.server.off('error', reject);
        resolve();
      });
    }).catch(async (e: unknown) => {
      await t.close();
      throw e;
    });
    return t;
  }

  /** The bound address of the peer port (the OS's choice when listen.port was 0). */
  get address(): PeerAddress {
    const a = this.server.address();
    if (a === null || typeof a === 'string') return this.opts.listen;
    return { host: a.address, port: a.port };
  }

  /** Adds a peer or changes its address (membership changes call this). */
  setPeer(id: NodeId, address: PeerAddress): void {
    if (this.closed !== null || id === this.opts.nodeId) return;
    if (!Number.isSafeInteger(id) || id <= 0)
      throw new TransportError(
        'TRANSPORT_INVALID_CONFIG',
        `peer id must be a positive integer, got ${id}`,
      );
    this.liveness?.setPeer(id, address);
    const link = this.links.get(id);
    if (link !== undefined) return link.setAddress(address);
    const ctx = {
      opts: this.opts,
      clock: this.clock,
      rng: this.rng,
      tls: this.tls,
      emit: (e: TransportEvent) => this.emit(e),
      heldElsewhere: (peer: NodeId, inc: string | null) => this.heldElsewhere(peer, inc),
    };
    this.links.set(id, new PeerLink(id, address, ctx));
  }

  /** Forgets a peer: its queue is dropped and its connections in both directions closed. */
  removePeer(id: NodeId): void {
    this.liveness?.removePeer(id);
    void this.links.get(id)?.close();
    this.links.delete(id);
    void this.inboundByPeer.get(id)?.close();
    void this.livenessByPeer.get(id)?.close();
  }

  send(msg: Message, attachment?: Uint8Array, group = 0): void {
    const link = this.links.get(msg.to);
    if (link === undefined) {
      this.droppedUnknownPeer += 1;
      return;
    }
    if (attachment !== undefined && msg.type !== 'snapshot')
      return link.counters.countDrop('invalid');
    link.send(msg, attachment ?? null, group);
  }

  /**
   * Writes now what `send` queued for every peer, rather than once the current run of the event
   * loop is over: a caller about to do synchronous work (a leader encoding and submitting its
   * own write) lets its appends leave first, so the followers' writes start that much earlier.
   */
  flush(): void {
    if (this.delivering > 0) return;
    for (const link of this.links.values()) link.flush();
  }

  /** Whether the peer port speaks mutual TLS. */
  get secure(): boolean {
    return this.tls !== null;
  }

  /**
   * New certificate, key or CA for the connections made from now on, both ways (a certificate
   * rotated on disk); open connections keep theirs. Throws TRANSPORT_INVALID_CONFIG, changing
   * nothing, when the material is unusable, and when this transport was started without TLS:
   * a cluster cannot switch to TLS one member at a time.
   */
  setTls(material: PeerTlsOptions): void {
    if (this.tls === null)
      throw new TransportError(
        'TRANSPORT_INVALID_CONFIG',
        'this peer port was started without TLS; restart it with TLS to use certificates',
      );
    this.tls.update(material);
    this.liveness?.setTls(material);
  }

  onMessage(handler: Handler): void {
    this.handler = handler;
  }

  onEvent(handler: (event: TransportEvent) => void): void {
    this.eventHandler = handler;
  }

  /**
   * Sets who decides on a dialler this node does not know (no setPeer for its id) that says
   * where it listens (a valid host:port; its client URL is passed unchecked): `admit` returns
   * whether to let it in, and if so has made it a peer (setPeer). Without it (the default)
   * every unknown dialler is refused.
   */
  setAdmission(
    admit: ((id: NodeId, addresses: { peer: string; client: string | null }) => boolean) | null,
  ): void {
    this.admission = admit;
  }

  stats(): TransportStats & { readonly droppedUnknownPeer: number } {
    const ids = new Set([...this.links.keys(), ...this.inboundCounters.keys()]);
    const rows: [NodeId, PeerStats][] = [...ids].map((id) => [id, this.peerStats(id)]);
    return { ...buildStats(rows, this.anonymous), droppedUnknownPeer: this.droppedUnknownPeer };
  }

  private peerStats(id: NodeId): PeerStats {
    const out = this.links.get(id)?.stats();
    const inbound = this.inboundCounters.get(id)?.snapshot(false, 0);
    if (out === undefined) return inbound as PeerStats;
    if (inbound === undefined) return out;
    const errors = { ...out.errors };
    for (const [code, n] of Object.entries(inbound.errors) as [TransportError['code'], number][])
      errors[code] = (errors[code] ?? 0) + n;
    return {
      ...out,
      received: inbound.received,
      framesReceived: inbound.framesReceived,
      errors,
    };
  }

  /**
   * Closes the transport (Transport.close). Unless `goodbye` is false, each peer whose main
   * connection speaks protocol version 5 is told first that this node stops cleanly (a GOODBYE
   * frame, goodbye.ts), so it logs a planned stop rather than a failure; the close then waits
   * at most GOODBYE_LINGER_MS for those peers to close their ends. `goodbye: false` stands
   * for a crash in tests.
   */
  close(options: { readonly goodbye?: boolean } = {}): Promise<void> {
    this.closed ??= this.doClose(options.goodbye ?? true);
    return this.closed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private async doClose(goodbye: boolean): Promise<void> {
    await this.liveness?.close();
    const ending = [
      ...[...this.links.values()].map((link) => link.close(goodbye)),
      ...[...this.connections].map((conn) => conn.close(goodbye)),
    ];
    await Promise.all(ending);
    for (const raw of this.tcpSockets) raw.destroy();
    await new Promise<void>((resolve) => {
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
    });
  }

  private emit(e: TransportEvent): void {
    try {
      this.eventHandler(e);
    } catch {
      // A broken log sink must not break the transport.
    }
  }

  private counters(id: NodeId): PeerCounters {
    let c = this.inboundCounters.get(id);
    if (c === undefined) this.inboundCounters.set(id, (c = new PeerCounters()));
    return c;
  }

  /**
   * The TLS listener. Its connection limit counts connections still in their TLS handshake,
   * which are not in `connections` yet: a crowd of them cannot exhaust the node either.
   */
  private listenTls(tls: PeerTls): Server {
    const server = tls.createServer(
      this.opts.handshakeTimeoutMs,
      (socket) => {
        const reason = tls.refusal(socket);
        if (reason === null) return this.onConnection(socket);
        // The dialler verified this node, so it may be told why: its log then says it too.
        this.tlsRefused(remoteOf(socket), reason);
        socket.on('error', () => undefined); // 'close' follows; nothing more to say
        socket.end(encodeSmallFrame(FrameType.refuse, pack({ reason })), () => socket.destroy());
      },
      (remote, reason) => this.tlsRefused(remote, reason),
    );
    server.maxConnections = this.opts.maxInboundConnections;
    server.on('connection', (raw: Socket) => {
      this.tcpSockets.add(raw);
      raw.on('close', () => this.tcpSockets.delete(raw));
    });
    server.on('drop', (d?: { remoteAddress?: string; remotePort?: number }) => {
      this.anonymous.count('TRANSPORT_TOO_MANY_CONNECTIONS');
      this.emit({
        kind: 'protocol-error',
        peer: 0,
        code: 'TRANSPORT_TOO_MANY_CONNECTIONS',
        remote: `${d?.remoteAddress ?? '?'}:${d?.remotePort ?? 0}`,
        message: `peer port already holds ${this.opts.maxInboundConnections} connections (limit ${this.opts.maxInboundConnections})`,
      });
    });
    return server;
  }

  private tlsRefused(remote: string, reason: string): void {
    this.anonymous.count('TRANSPORT_TLS_REFUSED');
    this.emit({ kind: 'tls-refused', direction: 'inbound', peer: 0, remote, reason });
  }

  private onConnection(socket: Socket): void {
    if (this.closed !== null) return void socket.destroy();
    if (this.connections.size >= this.opts.maxInboundConnections) {
      this.anonymous.count('TRANSPORT_TOO_MANY_CONNECTIONS');
      const remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`;
      const message = `peer port already holds ${this.connections.size} connections (limit ${this.opts.maxInboundConnections})`;
      this.emit({
        kind: 'protocol-error',
        peer: 0,
        code: 'TRANSPORT_TOO_MANY_CONNECTIONS',
        remote,
        message,
      });
      return void socket.destroy();
    }
    this.connections.add(new InboundConnection(socket, this.inboundContext));
  }

  /**
   * Two processes started with one id both dial this node, and each new connection replaces
   * the other's: the id's dialers then alternate between two process ids (the HELLO's `inc`).
   * A dialer with the process id of the one before last, within ID_CONFLICT_WINDOW_MS of the
   * change, is that pattern (a restarted node has a new process id and never returns to the
   * old one), and is reported.
   */
  private noteDialer(peer: NodeId, inc: string | null, remote: string): void {
    if (inc === null) return;
    const at = this.clock.nowMs();
    const d = this.dialers.get(peer);
    if (d === undefined) {
      this.dialers.set(peer, {
        now: { inc, remote },
        before: null,
        changedMs: at,
        warnedMs: -Infinity,
        barred: null,
        barredUntilMs: -Infinity,
      });
      return;
    }
    if (d.now.inc === inc) {
      d.now = { inc, remote };
      return;
    }
    const back = d.before?.inc === inc && at - d.changedMs < ID_CONFLICT_WINDOW_MS;
    if (back && at - d.warnedMs >= ID_CONFLICT_WINDOW_MS) {
      d.warnedMs = at;
      this.emit({ kind: 'peer-id-conflict', peer, remotes: [d.now.remote, remote] });
    }
    if (back) {
      // The one replaced is refused, unless it is the process that answers this node's own
      // dial at the peer's address: the members send to that one, so the other is refused.
      d.barred = this.links.get(peer)?.answeredBy() === d.now.inc ? inc : d.now.inc;
      d.barredUntilMs = at + ID_CONFLICT_WINDOW_MS;
    }
    d.before = d.now;
    d.now = { inc, remote };
    d.changedMs = at;
  }

  /**
   * Why a connection of `peer`'s process `inc` is refused now, or null: it is the process barred
   * by an id conflict (noteDialer) and the other process's connection is still open. Once that
   * one has closed, the bar is lifted: the other process stopped, and this one is node `peer`.
   */
  private heldElsewhere(peer: NodeId, inc: string | null): string | null {
    const d = this.dialers.get(peer);
    if (inc === null || d === undefined || d.barred !== inc) return null;
    const holder = this.inboundByPeer.get(peer);
    // Lifted when the other's connection closed, or ID_CONFLICT_WINDOW_MS after the last
    // alternation: a holder whose host died leaves a connection that never closes here. If
    // both still run, the next alternation bars one again.
    if (
      holder === undefined ||
      holder.peerIncarnation === inc ||
      this.clock.nowMs() >= d.barredUntilMs
    ) {
      d.barred = null;
      return null;
    }
    return (
      `node id ${peer} is in use by another process, connected from ${holder.remote}: ` +
      `two processes were started with id ${peer}; stop the one that should not run`
    );
  }

  private makeInboundContext(): InboundContext {
    return {
      opts: this.opts,
      clock: this.clock,
      isPeer: (id) => this.links.has(id),
      heldElsewhere: (id, inc) => this.heldElsewhere(id, inc),
      dialsAt: (id) => {
        const a = this.links.get(id)?.dialled();
        if (a === undefined) return null;
        return joinHostPort(a.host, a.port);
      },
      admit: (id, peer, client) => {
        if (this.admission === null || parseHostPort(peer, 1) === null) return false;
        if (id === this.opts.nodeId) return false;
        return this.admission(id, { peer, client }) && this.links.has(id);
      },
      accepted: (conn) => {
        // A redial replaces a half-open predecessor from the same peer, on the same lane.
        const byPeer = conn.lane === 'liveness' ? this.livenessByPeer : this.inboundByPeer;
        if (conn.lane === 'main') {
          this.noteDialer(conn.peer, conn.peerIncarnation, conn.remote);
          // The id conflict just seen bars this very process (noteDialer): it does not replace
          // the other's connection, and is refused from its next dial on.
          if (
            conn.peerIncarnation !== null &&
            this.dialers.get(conn.peer)?.barred === conn.peerIncarnation
          ) {
            void conn.close();
            return;
          }
        }
        void byPeer.get(conn.peer)?.close();
        byPeer.set(conn.peer, conn);
        if (conn.lane === 'liveness') return;
        this.links.get(conn.peer)?.peerAlive();
        this.liveness?.peerAlive(conn.peer);
        this.emit({
          kind: 'peer-connected',
          peer: conn.peer,
          direction: 'inbound',
          remote: conn.remote,
          peerHasLog: conn.peerHasLog,
          peerFeatureLevel: conn.peerFeatureLevel,
        });
      },
      refused: (conn, claimed, reason, category) => {
        if (this.links.has(claimed))
          this.counters(claimed).countError('TRANSPORT_HANDSHAKE_REFUSED');
        else this.anonymous.count('TRANSPORT_HANDSHAKE_REFUSED');
        this.emit({
          kind: 'handshake-refused',
          direction: 'inbound',
          peer: claimed,
          remote: conn.remote,
          reason,
          category,
        });
      },
      error: (conn, e) => {
        if (conn.peer !== 0) this.counters(conn.peer).countError(e.code);
        else this.anonymous.count(e.code);
        this.emit({
          kind: 'protocol-error',
          peer: conn.peer,
          code: e.code,
          remote: conn.remote,
          message: e.message,
        });
      },
      delivering: (run) => {
        this.delivering += 1;
        try {
          run();
        } finally {
          this.delivering -= 1;
        }
        this.flush();
      },
      countFrame: (conn) => {
        this.counters(conn.peer).framesReceived += 1;
      },
      deliver: (conn, msg, attachment, frameBytes, group) => {
        this.counters(conn.peer).countReceived(msg.type, frameBytes);
        try {
          this.handler(msg, attachment, group);
        } catch (e) {
          this.emit({
            kind: 'handler-error',
            peer: conn.peer,
            message: e instanceof Error ? e.message : String(e),
          });
        }
      },
      closed: (conn) => {
        this.connections.delete(conn);
        if (this.livenessByPeer.get(conn.peer) === conn) this.livenessByPeer.delete(conn.peer);
        if (this.inboundByPeer.get(conn.peer) !== conn) return;
        this.inboundByPeer.delete(conn.peer);
        // This node's own close ends every connection: not news of the peer.
        if (this.closed !== null) return;
        this.emit({
          kind: 'peer-disconnected',
          peer: conn.peer,
          direction: 'inbound',
          reason: conn.peerLeaving ? 'peer shutting down' : 'connection closed',
          goodbye: conn.peerLeaving,
        });
      },
    };
  }
}
