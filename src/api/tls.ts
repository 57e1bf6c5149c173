// TLS on the client ports (docs/SECURITY.md, "TLS"): the HTTP API and the binary protocol
// serve the node's certificate, and with `requestCert` take only clients whose certificate the
// cluster's CA signed. Given as PEM by the node, which reads the files and reloads them.

import type { TlsOptions } from 'node:tls';

export interface ServerTlsOptions {
  readonly cert: string | Uint8Array;
  readonly key: string | Uint8Array;
  /** The CA that client certificates (and members' ones) must chain to. */
  readonly ca: string | Uint8Array;
  /** Whether a client must present a certificate the CA signed (mutual TLS). */
  readonly requestCert: boolean;
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
    requestCert: o.requestCert,
    // Without a client certificate requirement, none is asked for and none judged.
    rejectUnauthorized: o.requestCert,
  };
}
