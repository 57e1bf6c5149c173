// Options of the TCP transport, their defaults, and the start-up check of their relations
// (a limit that contradicts another is a configuration error, caught before any socket opens).

import type { LookupFunction } from 'node:net';
import { defaultLimits } from '../base/limits.js';
import type { Rng } from '../raft/rng.js';
import type { NodeId } from '../raft/types.js';
import type { BackoffOptions } from './backoff.js';
import { TransportError } from './errors.js';
import { HEADER_BYTES } from './frame.js';
import {
  CHUNK_HEADER_BYTES,
  LIVENESS_LANE_VERSION,
  PROTOCOL_VERSION_MAX,
  PROTOCOL_VERSION_MIN,
} from './codec.js';
import type { PeerTlsOptions } from './tls.js';
import type { PeerAddress, TransportClock } from './types.js';
import type { ValidationLimits } from './validate.js';
import { defaultValidationLimits } from './validate.js';

export type { PeerAddress } from './types.js';

export interface TcpTransportOptions {
  readonly nodeId: NodeId;
  /** Nodes with a different cluster id are refused at the handshake. At most 256 characters. */
  readonly clusterId: string;
  /**
   * Whether this node holds any Raft log, said in every handshake: a node that starts with an
   * empty data directory asks its peers this to tell a new cluster from an existing one
   * (DESIGN.md, "A node that lost its data"). Omitted: not said.
   */
  readonly hasLog?: () => boolean;
  /**
   * Where peers reach this node (host:port) and where its clients do (URL), said in every
   * handshake: a node that does not know this one yet (its member directory is behind) may
   * learn it from there (TcpTransport.setAdmission). Omitted: not said.
   */
  readonly advertise?: { readonly peer: string; readonly client: string };
  /**
   * The client URL this node has for peer `id` (where it forwards client requests to it), said
   * in the ACCEPT it answers that peer with (`yourClient`), so a peer restarted at another
   * client URL learns that its requests are forwarded elsewhere. Omitted: not said.
   */
  readonly clientUrlOf?: (id: NodeId) => string | null;
  /**
   * The feature level this node runs (src/base/features.ts), said in every handshake so each
   * peer knows which release every member runs (DESIGN.md, "Upgrades"). Omitted: not said.
   */
  readonly featureLevel?: number;
  /**
   * This process's own random id, said in every handshake: two processes started with one node
   * id are told apart by it (the `peer-id-conflict` event). Omitted: not said.
   */
  readonly incarnation?: string;
  /** Where the peer port listens; port 0 lets the OS choose (see TcpTransport.address). */
  readonly listen: PeerAddress;
  readonly peers?: ReadonlyMap<NodeId, PeerAddress>;
  readonly clock?: TransportClock;
  /** Drives the reconnect jitter; pass a seeded one for reproducible tests. */
  readonly rng?: Rng;
  /** Largest frame payload accepted after the handshake. Default 16 MiB. */
  readonly maxFrameBytes?: number;
  /** Largest frame accepted before the handshake completes. Default 4 KiB. */
  readonly maxHandshakeFrameBytes?: number;
  /** Snapshot attachments travel in chunks of this many bytes. Default 1 MiB. */
  readonly chunkBytes?: number;
  /** Largest snapshot attachment sent or reassembled. Default 1 GiB. */
  readonly maxAttachmentBytes?: number;
  /** Most messages waiting per lane per peer. Default 4,096. */
  readonly maxQueuedMessages?: number;
  /** Most entry/attachment bytes waiting in a peer's bulk lane. Default 64 MiB. */
  readonly maxQueuedBytes?: number;
  /** Bulk frames are written only while the socket buffers less than this. Default 256 KiB. */
  readonly bulkWatermarkBytes?: number;
  readonly backoff?: BackoffOptions;
  /** A connection that has not completed its handshake by then is closed. Default 5 s. */
  readonly handshakeTimeoutMs?: number;
  /** Most simultaneous inbound connections on the peer port. Default 64. */
  readonly maxInboundConnections?: number;
  readonly validation?: ValidationLimits;
  /**
   * Resolves a peer's host name, asked again on every dial (net.connect's `lookup`). Default:
   * the system's resolver (dns.lookup), which Node does not cache, so a peer named by DNS
   * that comes back at a new address is found at the next reconnect. Tests pass their own.
   */
  readonly lookup?: LookupFunction;
  /**
   * Mutual TLS on the peer port (PROTOCOL.md, "TLS"): this node's certificate and key and the
   * cluster CA, as PEM. Omitted: plain TCP. Every member of a cluster must agree.
   */
  readonly tls?: PeerTlsOptions;
  /**
   * The liveness lane (liveness.ts): a thread that sends a leader's heartbeats while its main
   * thread is silent. Omitted, or a grace of 0: no lane.
   */
  readonly liveness?: LivenessOptions;
  /**
   * The highest peer protocol version this node offers and accepts (codec.ts). Default: the
   * highest this build speaks. A lower one keeps a node talking as an older build would
   * (a rolling upgrade that must not use a new version's frames yet; tests of mixed versions).
   */
  readonly protocolVersionMax?: number;
}

/** The liveness lane (liveness.ts). */
export interface LivenessOptions {
  /** The Raft heartbeat interval in milliseconds: the lane speaks after a silence this long. */
  readonly heartbeatMs: number;
  /** How long a silent main thread is covered; past it the lane stops. 0: no lane. */
  readonly graceMs: number;
}

export interface ResolvedTcpOptions {
  readonly nodeId: NodeId;
  readonly clusterId: string;
  readonly hasLog: (() => boolean) | null;
  readonly advertise: { readonly peer: string; readonly client: string } | null;
  readonly clientUrlOf: ((id: NodeId) => string | null) | null;
  readonly featureLevel: number | null;
  readonly incarnation: string | null;
  readonly listen: PeerAddress;
  readonly maxFrameBytes: number;
  readonly maxHandshakeFrameBytes: number;
  readonly chunkBytes: number;
  readonly maxAttachmentBytes: number;
  readonly maxQueuedMessages: number;
  readonly maxQueuedBytes: number;
  readonly bulkWatermarkBytes: number;
  readonly backoff: BackoffOptions;
  readonly handshakeTimeoutMs: number;
  readonly maxInboundConnections: number;
  readonly validation: ValidationLimits;
  readonly lookup: LookupFunction | null;
  readonly protocolVersionMax: number;
}

const MiB = 1024 * 1024;

/** The largest frame a peer accepts unless maxFrameBytes says otherwise. */
export const DEFAULT_MAX_FRAME_BYTES = defaultLimits.maxFrameBytes;

export function resolveTcpOptions(o: TcpTransportOptions): ResolvedTcpOptions {
  const r: ResolvedTcpOptions = {
    nodeId: o.nodeId,
    clusterId: o.clusterId,
    hasLog: o.hasLog ?? null,
    advertise: o.advertise ?? null,
    clientUrlOf: o.clientUrlOf ?? null,
    featureLevel: o.featureLevel ?? null,
    incarnation: o.incarnation ?? null,
    listen: o.listen,
    maxFrameBytes: o.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
    maxHandshakeFrameBytes: o.maxHandshakeFrameBytes ?? 4096,
    chunkBytes: o.chunkBytes ?? MiB,
    maxAttachmentBytes: o.maxAttachmentBytes ?? defaultLimits.maxAttachmentBytes,
    maxQueuedMessages: o.maxQueuedMessages ?? 4096,
    maxQueuedBytes: o.maxQueuedBytes ?? 64 * MiB,
    bulkWatermarkBytes: o.bulkWatermarkBytes ?? 256 * 1024,
    backoff: o.backoff ?? { baseMs: 50, maxMs: 5000 },
    handshakeTimeoutMs: o.handshakeTimeoutMs ?? 5000,
    maxInboundConnections: o.maxInboundConnections ?? 64,
    validation: o.validation ?? defaultValidationLimits,
    lookup: o.lookup ?? null,
    protocolVersionMax: o.protocolVersionMax ?? PROTOCOL_VERSION_MAX,
  };
  checkRelations(r);
  need(
    o.liveness === undefined ||
      o.liveness.graceMs <= 0 ||
      r.protocolVersionMax >= LIVENESS_LANE_VERSION,
    `the liveness lane needs protocol version ${LIVENESS_LANE_VERSION}, but protocolVersionMax is ${r.protocolVersionMax}`,
  );
  return r;
}

function need(cond: boolean, message: string): void {
  if (!cond) throw new TransportError('TRANSPORT_INVALID_CONFIG', message);
}

function checkRelations(r: ResolvedTcpOptions): void {
  need(
    Number.isSafeInteger(r.nodeId) && r.nodeId > 0,
    `nodeId must be a positive integer, got ${r.nodeId}`,
  );
  need(
    r.clusterId.length > 0 && r.clusterId.length <= 256,
    `clusterId must be 1..256 characters, got ${r.clusterId.length}`,
  );
  need(
    r.maxFrameBytes >= 1024 && r.maxFrameBytes <= 2 ** 32 - 1,
    `maxFrameBytes must be in [1 KiB, 4 GiB), got ${r.maxFrameBytes}`,
  );
  need(
    r.maxHandshakeFrameBytes >= 512 && r.maxHandshakeFrameBytes <= r.maxFrameBytes,
    `maxHandshakeFrameBytes must be in [512, maxFrameBytes], got ${r.maxHandshakeFrameBytes}`,
  );
  need(
    r.chunkBytes >= 1 && r.chunkBytes + CHUNK_HEADER_BYTES + HEADER_BYTES <= r.maxFrameBytes,
    `chunkBytes plus headers must fit in maxFrameBytes ${r.maxFrameBytes}, got ${r.chunkBytes}`,
  );
  need(
    r.maxAttachmentBytes >= 0 && r.maxAttachmentBytes <= 2 ** 32 - 1,
    `maxAttachmentBytes must be below 4 GiB (u32 offsets), got ${r.maxAttachmentBytes}`,
  );
  need(r.maxQueuedMessages >= 1, `maxQueuedMessages must be >= 1, got ${r.maxQueuedMessages}`);
  need(r.maxQueuedBytes >= 1, `maxQueuedBytes must be >= 1, got ${r.maxQueuedBytes}`);
  need(r.bulkWatermarkBytes >= 1, `bulkWatermarkBytes must be >= 1, got ${r.bulkWatermarkBytes}`);
  need(
    r.backoff.baseMs >= 1 && r.backoff.maxMs >= r.backoff.baseMs,
    `backoff needs 1 <= baseMs <= maxMs, got ${r.backoff.baseMs}..${r.backoff.maxMs}`,
  );
  need(r.handshakeTimeoutMs >= 1, `handshakeTimeoutMs must be >= 1, got ${r.handshakeTimeoutMs}`);
  need(
    Number.isSafeInteger(r.protocolVersionMax) &&
      r.protocolVersionMax >= PROTOCOL_VERSION_MIN &&
      r.protocolVersionMax <= PROTOCOL_VERSION_MAX,
    `protocolVersionMax must be ${PROTOCOL_VERSION_MIN}..${PROTOCOL_VERSION_MAX}, got ${r.protocolVersionMax}`,
  );
  need(
    r.maxInboundConnections >= 1,
    `maxInboundConnections must be >= 1, got ${r.maxInboundConnections}`,
  );
}
