// TLS on the client ports (docs/SECURITY.md, "TLS"): the HTTP API and the binary protocol
// serve the node's certificate, and with `requestCert` take only clients whose certificate the
// cluster's CA signed. Given as PEM by the node, which reads the files and reloads them.

import type { TLSSocket, TlsOptions } from 'node:tls';
import { unverifiedCertificate } from '../base/certificate-verdict.js';
import { FlotillaError } from '../base/errors.js';
import { looksLikeHttp, plainHttpRefusal, requestedUrl } from '../transport/plain-text.js';
import { CONNECTION_ID, encodeError, tlsOnlyHeader } from './wire-codec.js';

export interface ServerTlsOptions {
  readonly cert: string | Uint8Array;
  readonly key: string | Uint8Array;
  /** The CA that client certificates (and members' ones) must chain to. */
  readonly ca: string | Uint8Array;
  /** Whether a client must present a certificate the CA signed (mutual TLS). */
  readonly requestCert: boolean;
  /**
   * Told of each connection refused for its certificate, once, with the remote address and
   * why (for the node's log, which limits how often it says so).
   */
  readonly onRefused?: (remote: { address: string; port: number }, reason: string) => void;
}

/** The PEM material alone: what a reload replaces. */
export type TlsMaterial = Pick<ServerTlsOptions, 'cert' | 'key' | 'ca'>;

function pem(v: string | Uint8Array): string | Buffer {
  return typeof v === 'string' ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

export function secureContextOptions(m: TlsMaterial): TlsOptions {
  return { cert: pem(m.cert), key: pem(m.key), ca: pem(m.ca) };
}

/** Options of a node:tls or node:https server with these settings. */
export function tlsServerOptions(o: ServerTlsOptions): TlsOptions {
  return {
    ...secureContextOptions(o),
    // Without a client certificate requirement, none is asked for and none judged.
    requestCert: o.requestCert,
    // With one, the certificate is judged after the handshake (clientCertRefusal), so that a
    // refused client is told why. Refused by OpenSSL during the handshake, it only saw its
    // connection close, as on any network failure, and could not tell that retrying is useless
    // (a joining node with another CA's certificate retried for a minute).
    rejectUnauthorized: false,
  };
}

/**
 * Why a client on a port that requires a certificate is refused (null: none is required, or
 * its cluster's CA signed the one presented). Every request on such a connection is refused
 * with it, before anything is read or done.
 */
export function clientCertRefusal(
  socket: unknown,
  o: ServerTlsOptions | undefined,
): FlotillaError | null {
  if (o?.requestCert !== true) return null;
  // Judged once per connection, as its handshake is: a keep-alive connection's requests ask
  // again, and reading a resumed session's certificate builds an object each time.
  const known = verdicts.get(socket as object);
  if (known !== undefined) return known;
  const refused = refusalOf(socket as TLSSocket, o.onRefused);
  verdicts.set(socket as object, refused);
  return refused;
}

const verdicts = new WeakMap<object, FlotillaError | null>();

function refusalOf(
  socket: TLSSocket,
  onRefused: ServerTlsOptions['onRefused'],
): FlotillaError | null {
  const why = unverifiedCertificate(socket, 'client', Date.now());
  if (why === null) return null;
  onRefused?.({ address: socket.remoteAddress ?? '?', port: socket.remotePort ?? 0 }, why);
  const hint = why.startsWith('client presented no certificate')
    ? ' (give the client one: tls.cert and tls.key, or --cert and --key with the flotilla command)'
    : '';
  return new FlotillaError(
    'UNAUTHENTICATED',
    `This node requires a client certificate its cluster's CA signed: ${why}${hint}. Nothing was done`,
    false,
  );
}

/**
 * What the HTTPS client port answers a connection that sent plain HTTP: a 400 in plain text
 * that says to use https:// (null: not HTTP, left to TLS).
 */
export function plainToHttpsPort(first: Buffer): Buffer | null {
  if (!looksLikeHttp(first)) return null;
  const asked = requestedUrl(first);
  const url = asked === null ? 'https://' : `https://${asked.host}${asked.path}`;
  return plainHttpRefusal(
    `400 Bad Request: the plain HTTP request was sent to an HTTPS port. This port speaks TLS only: use ${url} (trusting the cluster's CA, e.g. curl --cacert ca.crt).`,
    { [tlsOnlyHeader]: '1' },
  );
}

/**
 * What the binary protocol's TLS port answers a connection that does not speak TLS: a plain
 * client's handshake (a frame, whose length starts with a zero byte) gets the protocol's
 * error frame, plain HTTP a 400 in plain text (null: neither, left to TLS).
 */
export function plainToWireTlsPort(first: Buffer): Buffer | null {
  if (looksLikeHttp(first))
    return plainHttpRefusal(
      "400 Bad Request: this is a Flotilla node's binary client protocol port, over TLS: it does not serve HTTP. The HTTP API is on the node's client port, at an https:// URL.",
    );
  if (first[0] !== 0) return null;
  return encodeError(
    CONNECTION_ID,
    new FlotillaError(
      'BAD_FRAME',
      "This port speaks the binary protocol over TLS only, and the connection did not begin with a TLS handshake: connect with TLS (the node's endpoint is https://)",
      false,
    ),
  );
}
