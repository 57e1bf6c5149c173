// The binary client protocol's place in a node (docs/CLIENT-PROTOCOL.md): where it listens and
// the limits it takes from the node's configuration. The server itself is src/api/wire-server.ts;
// it serves through the same backend and admission as the HTTP routes.

import type { Logger } from 'pino';
import type { TokenBook } from '../api/auth.js';
import type { AdmissionGate } from '../api/http.js';
import type { ServerTlsOptions } from '../api/tls.js';
import type { KvBackend } from '../api/routes.js';
import type { TraceHook } from '../host/trace.js';
import type { WatchBackend } from '../api/watch.js';
import { WireServer, type WireService } from '../api/wire-server.js';
import type { NodeConfig } from './config.js';
import type { NodeMetrics } from './metrics.js';
import { joinHostPort, splitHostPort } from '../base/host-port.js';
import { listenError } from './startup.js';

/** Where the binary client protocol listens: the client listener's host, its own port. */
export function clientProtocolAddress(config: NodeConfig): string | null {
  if (config.clientProtocolPort === 0) return null;
  return joinHostPort(splitHostPort(config.listenClient).host, config.clientProtocolPort);
}

/**
 * The binary protocol's server with the node's limits: frames up to the HTTP body limit, the
 * HTTP handshake, idle and connection limits, and the admission HTTP requests count against.
 */
export function createClientProtocolServer(
  config: NodeConfig,
  o: {
    readonly backend: KvBackend;
    readonly watch: WatchBackend;
    /** The job queue's request types. */
    readonly service: WireService;
    readonly admission: AdmissionGate;
    readonly metrics: NodeMetrics;
    readonly log: Logger;
    /** The tokens a connection's handshake must present; none: no authentication. */
    readonly tokens?: () => TokenBook;
    /** Serve over TLS (docs/SECURITY.md, "TLS"). */
    readonly tls?: ServerTlsOptions;
    /** Called as requests arrive and answers leave (host/trace.ts), for bench/trace. */
    readonly trace?: TraceHook;
  },
): WireServer {
  return new WireServer(
    o.backend,
    o.watch,
    {
      nodeId: config.id,
      admission: o.admission,
      maxFrameBytes: config.maxBodyBytes,
      maxInFlightPerConnection: config.clientProtocolMaxInflight,
      handshakeTimeoutMs: config.httpHeadersTimeoutMs,
      idleTimeoutMs: config.httpIdleTimeoutMs,
      maxConnections: config.httpMaxConnections,
      // Counted beside the HTTP routes, as "binary:<type>", with the error code as the status.
      onRequest: (op, code) =>
        o.metrics.httpRequests.inc({ route: `binary:${op}`, status: code === 'OK' ? '200' : code }),
      onError: (err) => o.log.error({ err }, 'request failed with an internal error'),
      ...(o.tokens === undefined ? {} : { tokens: o.tokens }),
      ...(o.tls === undefined ? {} : { tls: o.tls }),
      ...(o.trace === undefined ? {} : { trace: o.trace }),
    },
    o.service,
  );
}

/** Opens the binary protocol's port; a failure names the address and what it was for. */
export async function listenClientProtocol(wire: WireServer, address: string): Promise<void> {
  try {
    const { host, port } = splitHostPort(address);
    await wire.listen(host, port);
  } catch (err) {
    throw listenError(address, 'clients (clientProtocolPort)', err);
  }
}
