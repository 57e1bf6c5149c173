// Mutual TLS on the peer port (docs/PROTOCOL.md, "TLS"). Both ends present a certificate and
// both verify the other's against the cluster's CA: a dialler checks the acceptor's name (the
// host it dialled) as any TLS client does; the acceptor checks only that the dialler's
// certificate chains to the CA. The handshake that follows (preface, HELLO) is unchanged.
//
// The material arrives as plain PEM from the node, which reads the files and decides when
// they changed; this module only builds contexts from it. A new context applies to
// connections made after it; connections already open keep the one they were made with.

import type { LookupFunction, Socket } from 'node:net';
import {
  connect as tlsConnect,
  createSecureContext,
  createServer as createTlsServer,
  type SecureContext,
  type Server as TlsServer,
  type TLSSocket,
} from 'node:tls';
import {
  describePeerCert,
  unverifiedCertificate,
  verifyMeaning,
} from '../base/certificate-verdict.js';
import { TransportError } from './errors.js';
import { pack } from './codec.js';
import { encodeSmallFrame, FrameType, PREFACE } from './frame.js';
import { answerPlainText, looksLikeHttp, plainHttpRefusal } from './plain-text.js';
import type { PeerAddress } from './types.js';

/** The node's certificate and key, and the cluster CA's certificates (PEM, as in the files). */
export interface PeerTlsOptions {
  readonly cert: string | Uint8Array;
  readonly key: string | Uint8Array;
  /** One or more CA certificates: during a CA rotation, the old and the new. */
  readonly ca: string | Uint8Array;
}

/** The extended key usage a member's certificate carries (RFC 5280, id-kp-serverAuth). */
const serverAuth = '1.3.6.1.5.5.7.3.1';

/** Peers are all Flotilla nodes: no older protocol version need be spoken. */
const minVersion = 'TLSv1.3';

function pem(v: string | Uint8Array): string | Buffer {
  return typeof v === 'string' ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

function contextOptions(m: PeerTlsOptions): {
  cert: string | Buffer;
  key: string | Buffer;
  ca: string | Buffer;
  minVersion: typeof minVersion;
} {
  return { cert: pem(m.cert), key: pem(m.key), ca: pem(m.ca), minVersion };
}

/** Builds a context, turning OpenSSL's complaint into a configuration error. */
function contextOf(m: PeerTlsOptions): SecureContext {
  try {
    return createSecureContext(contextOptions(m));
  } catch (e) {
    throw new TransportError(
      'TRANSPORT_INVALID_CONFIG',
      `peer TLS certificate, key or CA unusable: ${(e as Error).message}`,
    );
  }
}

/**
 * Why a TLS error is one (null: it is not, e.g. a refused or reset connection), as
 * "what it means (CODE: OpenSSL's message)".
 */
export function tlsFailure(e: unknown): string | null {
  const err = e as (Error & { code?: unknown }) | null;
  const code = typeof err?.code === 'string' ? err.code : '';
  const meaning = verifyMeaning[code];
  if (meaning !== undefined) return `peer certificate ${meaning} (${code}: ${err?.message ?? ''})`;
  if (code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_'))
    return `TLS handshake failed (${code}: ${err?.message ?? ''})`;
  return null;
}

/** The TLS side of one transport: the listener's options and the context new dials use. */
export class PeerTls {
  private context: SecureContext;
  private server: TlsServer | null = null;

  constructor(private material: PeerTlsOptions) {
    this.context = contextOf(material);
  }

  /**
   * The peer listener. A dialler's certificate is requested but judged here, after the TLS
   * handshake (`refusal`), rather than by OpenSSL during it: so the refusal can name what was
   * wrong, in the log and to the dialler.
   */
  createServer(
    handshakeTimeoutMs: number,
    onSecure: (socket: TLSSocket) => void,
    onFailure: (remote: string, reason: string) => void,
  ): TlsServer {
    const server = createTlsServer(
      {
        ...contextOptions(this.material),
        requestCert: true,
        rejectUnauthorized: false,
        handshakeTimeout: handshakeTimeoutMs,
        noDelay: true,
      },
      onSecure,
    );
    // A member without TLS, or plain HTTP, is told what the port speaks rather than dropped,
    // and logged as any refused handshake.
    answerPlainText(server, {
      timeoutMs: handshakeTimeoutMs,
      answer: (first, raw) => {
        const plain = plainToTlsPeerPort(first);
        if (plain !== null) onFailure(remoteOf(raw), plain.reason);
        return plain?.answer ?? null;
      },
    });
    // Read now, while the connection is open: node caches it for the failure's log line.
    server.on('connection', (raw: Socket) => void raw.remoteAddress);
    server.on('tlsClientError', (e: Error & { code?: string }, socket) => {
      const reason =
        tlsFailure(e) ??
        (e.code === 'ECONNRESET'
          ? "the dialler closed the connection during the TLS handshake (does it trust this node's certificate?)"
          : `TLS handshake failed (${e.message})`);
      onFailure(remoteOf(socket), reason);
    });
    this.server = server;
    return server;
  }

  /** Why the dialler on `socket` is refused (null: its certificate is the cluster's). */
  refusal(socket: TLSSocket): string | null {
    const unverified = unverifiedCertificate(socket, 'peer', Date.now());
    if (unverified !== null) return unverified;
    // A member's certificate serves both ends (it is dialled too); one for the client end
    // only is a client's, which the same CA may sign (tlsClientCertAuth): not a member.
    const usages = socket.getPeerX509Certificate()?.keyUsage;
    if (usages !== undefined && !usages.includes(serverAuth))
      return `peer certificate is a client certificate, not a member's: it lacks the serverAuth usage (${describePeerCert(socket)})`;
    return null;
  }

  /** Dials a peer over TLS, presenting this node's certificate and checking the peer's. */
  connect(address: PeerAddress, lookup: LookupFunction | null = null): TLSSocket {
    const socket = tlsConnect({
      host: address.host,
      port: address.port,
      secureContext: this.context,
      minVersion,
      ...(lookup === null ? {} : { lookup }),
    });
    socket.setNoDelay(true);
    return socket;
  }

  /**
   * Uses new material for connections from now on: the listener's and the next dials'. Throws
   * TRANSPORT_INVALID_CONFIG, changing nothing, when the material is unusable.
   */
  update(material: PeerTlsOptions): void {
    const context = contextOf(material);
    this.server?.setSecureContext(contextOptions(material));
    this.material = material;
    this.context = context;
  }
}

/**
 * What the TLS peer port says to a connection that does not begin with a TLS handshake: a
 * member without TLS (its preface, "FLOT", in plain) is refused with a REFUSE frame it can read
 * and log, plain HTTP with a 400 in plain text; `reason` is for this node's log. Null: neither,
 * left to TLS.
 */
export function plainToTlsPeerPort(first: Buffer): { answer: Buffer; reason: string } | null {
  const n = Math.min(first.length, PREFACE.length);
  if (n > 0 && first.subarray(0, n).equals(PREFACE.subarray(0, n))) {
    const reason =
      'the dialler does not speak TLS and this peer port does: every member must have TLS on, or none';
    return { answer: encodeSmallFrame(FrameType.refuse, pack({ reason })), reason };
  }
  if (looksLikeHttp(first))
    return {
      answer: plainHttpRefusal(
        "400 Bad Request: this is a Flotilla node's peer port, over TLS: it does not serve HTTP. Clients use the node's client port, at an https:// URL.",
      ),
      reason: 'a plain HTTP request, not a TLS handshake (a client pointed at the peer port?)',
    };
  return null;
}

export function remoteOf(socket: Socket): string {
  // A TLS socket that failed has lost its address; the TCP socket under it (node's `_parent`)
  // remembers it.
  const s =
    socket.remoteAddress === undefined
      ? ((socket as unknown as { _parent?: Socket })._parent ?? socket)
      : socket;
  return `${s.remoteAddress ?? '?'}:${s.remotePort ?? 0}`;
}
