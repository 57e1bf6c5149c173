// Trace points along one write's path, for measuring where its time goes (bench/trace). A node
// built with a trace hook calls it at each point with the log index the point concerns (0 when
// not yet known: the HTTP steps before the proposal) and the peer it concerns (0 for none).
// The hook is optional and every call site checks for it first, so a node without one pays a
// single comparison per point. The core (src/raft) knows nothing of it: the points are where
// the runtime and the HTTP server hand work to the core, the disk and the network.

export type TraceEvent =
  /** The HTTP server began handling a client request. */
  | 'http-received'
  /** Its body was read and parsed (after its turn, turns.ts). */
  | 'http-parsed'
  /** The runtime stepped the proposal into the core: its index is known. */
  | 'proposed'
  /** An append carrying entries up to `index` was handed to the transport for `peer`. */
  | 'append-sent'
  /** A follower received an append carrying entries up to `index` from `peer`. */
  | 'append-received'
  /** This node began (and finished) making its entries up to `index` durable. */
  | 'persist-start'
  | 'persist-end'
  /** A follower handed its acknowledgement of `index` to the transport for `peer`. */
  | 'ack-sent'
  /** The leader received `peer`'s acknowledgement of `index`. */
  | 'ack-received'
  /** The core handed out committed entries up to `index`, and they were applied. */
  | 'committed'
  | 'applied'
  /** The HTTP server wrote the answer to a client request. */
  | 'http-answered'
  /** The binary protocol's server read a request, or wrote a connection's answers. */
  | 'wire-received'
  | 'wire-answered';

export type TraceHook = (event: TraceEvent, index: number, peer: number) => void;
