// Public entry point of the peer transport.

export { TcpTransport } from './tcp.js';
export { MemoryNetwork, MemoryTransport, type MemoryNetworkOptions } from './memory.js';
export type { TcpTransportOptions, PeerAddress } from './options.js';
export type { PeerTlsOptions } from './tls.js';
export { DEFAULT_MAX_FRAME_BYTES } from './options.js';
export { TransportError, type TransportErrorCode } from './errors.js';
export { validateMessage, type ValidationLimits } from './validate.js';
export { backoffDelayMs, type BackoffOptions } from './backoff.js';
export {
  systemTransportClock,
  type Transport,
  type TransportClock,
  type TransportEvent,
  type TransportStats,
  type PeerStats,
} from './types.js';
