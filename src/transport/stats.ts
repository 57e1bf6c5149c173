// Mutable per-peer counters behind the read-only PeerStats snapshot the metrics layer reads.

import type { MessageType, NodeId } from '../raft/types.js';
import type { TransportErrorCode } from './errors.js';
import type { PeerStats, TrafficByType, TransportStats } from './types.js';

type DropReason = keyof PeerStats['drops'];

export class PeerCounters {
  private readonly sent = new Map<MessageType, { messages: number; bytes: number }>();
  private readonly received = new Map<MessageType, { messages: number; bytes: number }>();
  private readonly drops = { queueFull: 0, disconnected: 0, closed: 0, invalid: 0 };
  private readonly errors = new Map<TransportErrorCode, number>();
  reconnects = 0;
  /** Frames written and read (TCP): below the message counts once heartbeats are coalesced. */
  framesSent = 0;
  framesReceived = 0;

  countSent(type: MessageType, bytes: number): void {
    bump(this.sent, type, bytes);
  }

  countReceived(type: MessageType, bytes: number): void {
    bump(this.received, type, bytes);
  }

  countDrop(reason: DropReason, n = 1): void {
    this.drops[reason] += n;
  }

  countError(code: TransportErrorCode): void {
    this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
  }

  snapshot(connected: boolean, queuedMessages: number): PeerStats {
    return {
      sent: traffic(this.sent),
      received: traffic(this.received),
      drops: { ...this.drops },
      reconnects: this.reconnects,
      framesSent: this.framesSent,
      framesReceived: this.framesReceived,
      errors: Object.fromEntries(this.errors),
      connected,
      queuedMessages,
    };
  }
}

export class ErrorCounters {
  private readonly errors = new Map<TransportErrorCode, number>();

  count(code: TransportErrorCode): void {
    this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
  }

  snapshot(): TransportStats['anonymousErrors'] {
    return Object.fromEntries(this.errors);
  }
}

export function buildStats(
  peers: Iterable<[NodeId, PeerStats]>,
  anonymous: ErrorCounters,
): TransportStats {
  return { peers: new Map(peers), anonymousErrors: anonymous.snapshot() };
}

function bump(
  m: Map<MessageType, { messages: number; bytes: number }>,
  type: MessageType,
  bytes: number,
): void {
  const c = m.get(type);
  if (c === undefined) m.set(type, { messages: 1, bytes });
  else {
    c.messages += 1;
    c.bytes += bytes;
  }
}

function traffic(m: Map<MessageType, { messages: number; bytes: number }>): TrafficByType {
  const out: TrafficByType = {};
  for (const [k, v] of m) out[k] = { ...v };
  return out;
}
