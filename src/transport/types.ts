// The contract every peer transport honours (TCP and in-memory alike), shaped after
// hashicorp/raft's Transport: the Raft runtime hands messages over and never waits. Raft
// tolerates message loss, duplication of retries and reordering across connections (paper §5.3:
// AppendEntries is idempotent and RPCs are retried), so a transport that drops under pressure
// is correct; one that blocks the runtime's event loop is not.

import type { Message, MessageType, NodeId } from '../raft/types.js';
import type { TransportErrorCode } from './errors.js';

/** Where a peer listens (host name or address, and port). */
export interface PeerAddress {
  readonly host: string;
  readonly port: number;
}

export interface Transport extends AsyncDisposable {
  /**
   * Queues `msg` of Raft group `group` (default 0) for `msg.to` and returns at once. Never throws and never blocks: when the
   * peer is unknown, down, or its bounded queue is full, the message is dropped and counted
   * in the peer's stats. `attachment` carries a snapshot's bytes with a `snapshot` message and
   * is ignored (and counted as a bad send) with any other type. The caller must not mutate
   * `attachment` or the message's entry data after the call.
   */
  send(msg: Message, attachment?: Uint8Array, group?: number): void;
  /**
   * Sets the one handler for incoming messages of every group (a later call replaces it). Messages are
   * structurally validated before the handler sees them; `msg.to` is this node and `msg.from`
   * is the authenticated peer of the connection. `attachment` is non-null only for `snapshot`
   * messages that carried bytes. The handler runs synchronously on the event loop; an
   * exception it throws is reported as an event and does not close the connection.
   */
  onMessage(handler: (msg: Message, attachment: Uint8Array | null, group: number) => void): void;
  /** Sets the one handler for log-worthy events (a later call replaces it). */
  onEvent(handler: (event: TransportEvent) => void): void;
  /** A consistent copy of the counters of every configured peer. */
  stats(): TransportStats;
  /** Stops accepting and dialling, drops queued messages, closes every socket and timer. */
  close(): Promise<void>;
}

/** Time and timers, injected so reconnect backoff is testable (same shape as the server's Clock). */
export interface TransportClock {
  nowMs(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemTransportClock: TransportClock = {
  nowMs: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/**
 * Which handshake check refused. `refused-by-peer`: outbound, the peer sent a REFUSE frame;
 * its reason is its own text (the checks of its release), not classified here.
 */
export type HandshakeRefusalCategory =
  | 'bad-magic'
  | 'cluster-id'
  | 'protocol-version'
  | 'wrong-node'
  | 'liveness-version'
  | 'unknown-node'
  | 'id-in-use'
  | 'refused-by-peer';

export type TransportEvent =
  | {
      readonly kind: 'peer-connected';
      readonly peer: NodeId;
      /** outbound: our sending connection to the peer; inbound: the peer's to us. */
      readonly direction: 'outbound' | 'inbound';
      readonly remote: string;
      /** What the peer's handshake said of its Raft log (TransportOptions.hasLog); null: not said. */
      readonly peerHasLog: boolean | null;
      /** The feature level the peer's handshake said it runs; null: not said (an older release). */
      readonly peerFeatureLevel: number | null;
    }
  | {
      readonly kind: 'peer-disconnected';
      readonly peer: NodeId;
      readonly direction: 'outbound' | 'inbound';
      readonly reason: string;
      /**
       * The peer said GOODBYE before the close (protocol version 5, goodbye.ts): it is
       * stopping cleanly. False for a crash, a lost network, and a peer of an older version.
       */
      readonly goodbye: boolean;
    }
  | {
      readonly kind: 'handshake-refused';
      /** inbound: we refused a dialler; outbound: a peer refused us. */
      readonly direction: 'outbound' | 'inbound';
      /** The peer we dialled, or the node id the dialler claimed (0 if it sent none). */
      readonly peer: NodeId;
      readonly remote: string;
      /** Free text, with the values the dialler (or the peer) sent: for a person to read. */
      readonly reason: string;
      /** Which check refused, without the values: what a log line is rate-limited by. */
      readonly category: HandshakeRefusalCategory;
    }
  | {
      /**
       * Mutual TLS failed (PROTOCOL.md, "TLS"): inbound, a dialler whose certificate is not the
       * cluster's, or that does not speak TLS; outbound, a peer whose certificate is not, or
       * that does not speak TLS. The connection is closed.
       */
      readonly kind: 'tls-refused';
      readonly direction: 'outbound' | 'inbound';
      /** The peer dialled; 0 inbound (a refused dialler has named no one). */
      readonly peer: NodeId;
      readonly remote: string;
      readonly reason: string;
    }
  | {
      readonly kind: 'protocol-error';
      /** 0 when the error came before the handshake named the peer. */
      readonly peer: NodeId;
      readonly code: TransportErrorCode;
      readonly remote: string;
      readonly message: string;
    }
  | {
      /**
       * Two processes dial this node as node `peer`, each replacing the other's connection:
       * its dialers' process ids (the HELLO's `inc`) came back to the one before last within
       * ID_CONFLICT_WINDOW_MS (a restarted node has a new one, and never returns to the old).
       * `remotes` are the two connections' remote addresses. Said at most once per
       * ID_CONFLICT_WINDOW_MS per peer.
       */
      readonly kind: 'peer-id-conflict';
      readonly peer: NodeId;
      readonly remotes: readonly string[];
    }
  | {
      /**
       * A peer's ACCEPT says it sends to this node at `recorded`; `advertised` is the address
       * this node says it listens at. Not `same`: what the peer sends is lost (this node was
       * restarted with a changed address). Said on every outbound connection whose ACCEPT says
       * it; the caller says it once.
       */
      readonly kind: 'peer-address';
      readonly peer: NodeId;
      readonly recorded: string;
      readonly advertised: string;
      readonly same: boolean;
    }
  | {
      /**
       * As `peer-address`, for the client URL: the peer forwards client requests to this node
       * at `recorded` (its address book), and this node serves clients at `advertised`.
       */
      readonly kind: 'client-address';
      readonly peer: NodeId;
      readonly recorded: string;
      readonly advertised: string;
      readonly same: boolean;
    }
  | { readonly kind: 'handler-error'; readonly peer: NodeId; readonly message: string }
  | { readonly kind: 'reconnect-scheduled'; readonly peer: NodeId; readonly delayMs: number };

/** Messages and bytes (frame bytes on TCP, encoded-size estimate in memory) per message type. */
export type TrafficByType = Partial<Record<MessageType, { messages: number; bytes: number }>>;

export interface PeerStats {
  readonly sent: TrafficByType;
  readonly received: TrafficByType;
  /** Messages dropped on the way out, by reason. */
  readonly drops: {
    readonly queueFull: number;
    readonly disconnected: number;
    readonly closed: number;
    readonly invalid: number;
  };
  /** Successful outbound connections after the first one. */
  readonly reconnects: number;
  /**
   * Frames written to and read from the peer (TCP; the in-memory transport frames nothing and
   * counts none). Fewer than messages where heartbeats travel coalesced (PROTOCOL.md).
   */
  readonly framesSent: number;
  readonly framesReceived: number;
  /** Protocol errors seen on connections with this peer, by code. */
  readonly errors: Partial<Record<TransportErrorCode, number>>;
  readonly connected: boolean;
  /** Messages waiting in the send queue now. */
  readonly queuedMessages: number;
}

export interface TransportStats {
  readonly peers: ReadonlyMap<NodeId, PeerStats>;
  /** Errors on connections that never named a valid peer (garbage, refused handshakes). */
  readonly anonymousErrors: Partial<Record<TransportErrorCode, number>>;
}

/** Message types that ride the bulk lane: large, and useless to prioritise over liveness. */
export function isBulk(type: MessageType): boolean {
  return type === 'append' || type === 'snapshot';
}
