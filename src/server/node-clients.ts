// A node's client ports (node.ts, FlotillaNode.start): the HTTP server with its authentication,
// cross-origin policy and TLS, the TLS the binary protocol's port shares, and the listening on
// both once the node is assembled.

import { join, resolve as resolvePath } from 'node:path';
import type { Logger } from 'pino';
import { httpAuthorizer } from '../api/auth.js';
import { CorsPolicy } from '../api/cors.js';
import { dashboardApiPaths, dashboardMemberPath } from '../api/dashboard-routes.js';
import { JsonHttpServer } from '../api/http.js';
import type { ServerTlsOptions } from '../api/tls.js';
import { clientProtocolHeader } from '../api/wire-codec.js';
import type { WireServer } from '../api/wire-server.js';
import { joinHostPort, localUrl } from '../base/host-port.js';
import { monotonicClock } from '../host/contracts.js';
import type { TraceHook } from '../host/trace.js';
import type { Admission } from './admission.js';
import { LiveTokenBook } from './auth-tokens.js';
import { listenClientProtocol } from './client-protocol.js';
import type { NodeConfig } from './config.js';
import { RateLimitedWarning, reasonClass } from './logging.js';
import type { NodeMetrics } from './metrics.js';
import { logTlsPorts, type NodeTls } from './node-tls.js';
import { SERVING_FILE, writeServingFile } from './serving-file.js';
import { listenError } from './startup.js';

/** The HTTP server and what it was made with that the binary protocol's server shares. */
export interface HttpFront {
  readonly http: JsonHttpServer;
  /** The tokens clients must present, following the tokens file; null without authentication. */
  readonly tokens: LiveTokenBook | null;
  readonly cors: CorsPolicy;
  /** Clients refused for their certificate, on either client port. */
  readonly certRefusals: RateLimitedWarning;
  /** Sets where the members' client addresses are read from (the address book). */
  readonly bindClientAddresses: (fn: () => string[]) => void;
}

/** Makes the HTTP server; it listens once the node is assembled (listenClients). */
export function createHttpFront(o: {
  readonly config: NodeConfig;
  readonly log: Logger;
  readonly metrics: NodeMetrics;
  readonly admission: Admission;
  /** Where the binary protocol listens, said in every answer; null when it is off. */
  readonly wireListen: string | null;
  readonly tls: NodeTls | null;
  /** Called at each step of a write's path (host/trace.ts), for bench/trace. */
  readonly trace: TraceHook | undefined;
}): HttpFront {
  const { config, log, metrics, admission, wireListen, tls, trace } = o;
  // Followed for changes from here on; off (null) without authTokensFile.
  const tokens =
    config.auth === null ? null : new LiveTokenBook(config.auth, log, { pollMs: 1_000 });
  const authorize = tokens === null ? undefined : httpAuthorizer(() => tokens.current());
  // The page of one member follows another when its own is down: the members' origins may
  // call the dashboard's paths across origins (src/api/cors.ts).
  // The node (and its address book) is assembled around the server: the book is bound later
  // (bindClientAddresses).
  let clientAddresses = (): string[] => [];
  const cors = new CorsPolicy([...dashboardApiPaths, dashboardMemberPath], () => clientAddresses());
  // Clients refused for their certificate, on either client port: said once a minute each.
  const certRefusals = new RateLimitedWarning(log, monotonicClock);
  const http = new JsonHttpServer({
    ...(authorize === undefined ? {} : { authorize }),
    cors,
    admission,
    maxBodyBytes: config.maxBodyBytes,
    headersTimeoutMs: config.httpHeadersTimeoutMs,
    requestTimeoutMs: config.httpRequestTimeoutMs,
    idleTimeoutMs: config.httpIdleTimeoutMs,
    maxConnections: config.httpMaxConnections,
    ...(wireListen === null
      ? {}
      : { answerHeaders: { [clientProtocolHeader]: String(config.clientProtocolPort) } }),
    onRequest: (route, status) => metrics.httpRequests.inc({ route, status: String(status) }),
    onError: (err) => log.error({ err }, 'request failed with an internal error'),
    ...(trace === undefined ? {} : { trace }),
    ...(tls === null ? {} : { tls: clientPortTls(tls, config, certRefusals, 'HTTP') }),
  });
  return {
    http,
    tokens,
    cors,
    certRefusals,
    bindClientAddresses: (fn) => (clientAddresses = fn),
  };
}

/**
 * Listens on the client ports, says the node started, and writes where it serves. `release`
 * closes what the caller opened before, should listening fail.
 */
export async function listenClients(o: {
  /** The configuration as given: the TLS files are named as given. */
  readonly given: NodeConfig;
  readonly config: NodeConfig;
  readonly log: Logger;
  readonly http: JsonHttpServer;
  /** The binary protocol's server; null when it is off. */
  readonly wire: WireServer | null;
  readonly wireListen: string | null;
  readonly tls: NodeTls | null;
  /** A second place to write where the node serves (FLOTILLA_SERVING_FILE); null: none. */
  readonly servingFile: string | null;
  readonly release: () => Promise<void>;
}): Promise<void> {
  const { given, config, log, http, wire, wireListen, tls, servingFile, release } = o;
  let addr: Awaited<ReturnType<typeof http.listen>>;
  try {
    addr = await http.listen(config.listenClient);
    if (wire !== null && wireListen !== null)
      await listenClientProtocol(wire, wireListen).catch(async (err: unknown) => {
        await http.close();
        throw err;
      });
    if (tls !== null)
      logTlsPorts(log, tls.material, [
        { kind: 'peer', address: config.listenPeer, certificateRequired: true },
        {
          kind: 'HTTP client',
          address: joinHostPort(addr.address, addr.port),
          certificateRequired: config.tls?.clientCertAuth === true,
        },
        ...(wire !== null && wireListen !== null
          ? [
              {
                kind: 'binary protocol' as const,
                address: wireListen,
                certificateRequired: config.tls?.clientCertAuth === true,
              },
            ]
          : []),
      ]);
    log.info(
      {
        client: joinHostPort(addr.address, addr.port),
        peer: config.listenPeer,
        dataDir: config.dataDir,
        storage: config.storage,
        dashboard: localUrl(addr.address, addr.port, tls !== null, '/'),
        pid: process.pid,
      },
      'node started',
    );
  } catch (err) {
    await release();
    throw listenError(config.listenClient, 'clients (listenClient)', err);
  }
  // For the image's health check; best effort: a node that could not write it still runs.
  const serving = {
    readyz: localUrl(addr.address, addr.port, given.tls !== null, '/readyz'),
    tls:
      given.tls === null
        ? null
        : {
            caFile: resolvePath(given.tls.caFile),
            certFile: resolvePath(given.tls.certFile),
            keyFile: resolvePath(given.tls.keyFile),
          },
  };
  const places = [
    join(config.dataDir, SERVING_FILE),
    ...(servingFile === null ? [] : [servingFile]),
  ];
  for (const file of places)
    try {
      writeServingFile(file, serving);
    } catch (err) {
      log.warn(
        { err, file },
        `Cannot write ${file}: the image's health check may not find the client port`,
      );
    }
}

/**
 * The client ports' TLS: the node's certificate, and the CA clients must have, if asked. A
 * client refused for its certificate is logged, at most once a minute per address and kind of
 * reason (`refusals`, shared by both ports; without the certificate's details, which the client
 * chose): a misconfigured client retries at will.
 */
export function clientPortTls(
  tls: NodeTls,
  config: NodeConfig,
  refusals: RateLimitedWarning,
  port: 'HTTP' | 'binary protocol',
): ServerTlsOptions {
  return {
    ...tls.material,
    requestCert: config.tls?.clientCertAuth === true,
    onRefused: (remote, reason) =>
      refusals.warn(
        `${remote.address} ${reasonClass(reason)}`,
        { remote: joinHostPort(remote.address, remote.port), port, reason },
        `client connection from ${joinHostPort(remote.address, remote.port)} (${port}) refused: ${reason}`,
      ),
  };
}
