// What to say of a certificate the other end of a TLS connection presented, once the handshake
// is over: the peer port and the client ports ask for one, judge it themselves rather than let
// OpenSSL drop the connection mid-handshake, and tell the other end and the log why they refuse.

/** What a TLS socket (node:tls's TLSSocket) tells of the certificate the other end presented. */
export interface PresentedCertificate {
  readonly authorized: boolean;
  /** OpenSSL's verification code when not authorized (a string at run time). */
  readonly authorizationError?: unknown;
  getPeerCertificate(): {
    readonly subject?: unknown;
    readonly issuer?: unknown;
    readonly valid_from?: string;
    readonly valid_to?: string;
  } | null;
  isSessionReused(): boolean;
}

/** What the verification codes OpenSSL reports mean for a certificate of the cluster. */
export const verifyMeaning: Readonly<Record<string, string>> = {
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: "not issued by this cluster's CA",
  UNABLE_TO_GET_ISSUER_CERT: "not issued by this cluster's CA",
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: "not issued by this cluster's CA",
  SELF_SIGNED_CERT_IN_CHAIN: "not issued by this cluster's CA",
  DEPTH_ZERO_SELF_SIGNED_CERT: "self-signed, not issued by this cluster's CA",
  CERT_SIGNATURE_FAILURE: "its signature does not verify against this cluster's CA",
  CERT_HAS_EXPIRED: 'expired',
  CERT_NOT_YET_VALID: 'not valid yet',
  INVALID_PURPOSE: 'lacks the usage its end needs (clientAuth to connect, serverAuth to accept)',
  ERR_TLS_CERT_ALTNAME_INVALID: 'does not name the address dialled',
};

type Presented = ReturnType<PresentedCertificate['getPeerCertificate']>;

/** The subject and issuer common names of the certificate the other end presented. */
export function describePeerCert(socket: PresentedCertificate): string {
  return describe(socket.getPeerCertificate());
}

function describe(c: Presented): string {
  if (c === null || Object.keys(c).length === 0) return 'no certificate';
  const cn = (n: unknown): string => {
    const v = (n as Record<string, unknown> | undefined)?.['CN'];
    return typeof v === 'string' ? v : Array.isArray(v) ? v.join(',') : '?';
  };
  return `subject CN=${cn(c.subject)}, issuer CN=${cn(c.issuer)}`;
}

/**
 * Why the other end's certificate is not one the CA signed, starting with `who` ("peer",
 * "client"); null when it is. Only for a server that asked for a certificate.
 */
export function unverifiedCertificate(
  socket: PresentedCertificate,
  who: string,
  /** The wall clock now (certificates' validity is wall-clock time). */
  nowMs: number,
): string | null {
  // A full handshake OpenSSL verified had a certificate to verify: nothing more to read.
  if (socket.authorized && !socket.isSessionReused()) return null;
  const presented = socket.getPeerCertificate();
  const cert = describe(presented);
  // Before `authorized`: a TLS 1.3 session resumed from a ticket that was issued to a
  // connection without a certificate (the server refused it only after the handshake) counts
  // as authorized, with no certificate at all. Without this, a dialler with no certificate
  // was refused once and let in on its next connection, on the peer port as on the client
  // ports.
  if (cert === 'no certificate')
    return `${who} presented no certificate${socket.authorized ? ' (a resumed TLS session)' : ''}`;
  if (socket.authorized) return expiredSince(presented, cert, who, nowMs);
  const code = codeOf(socket);
  return `${who} certificate ${verifyMeaning[code] ?? 'refused'} (${code}; ${cert})`;
}

function codeOf(socket: PresentedCertificate): string {
  const e = socket.authorizationError;
  return typeof e === 'string' ? e : e instanceof Error ? e.message : 'UNKNOWN';
}

/**
 * A resumed session carries the verdict of its first handshake, made up to the session's
 * lifetime ago (5 minutes by default): the certificate may have expired since, and was let in
 * until the session itself expired.
 */
function expiredSince(c: Presented, cert: string, who: string, nowMs: number): string | null {
  const from = Date.parse(c?.valid_from ?? '');
  const to = Date.parse(c?.valid_to ?? '');
  if (nowMs >= from && nowMs <= to) return null;
  const what =
    nowMs > to ? `expired on ${c?.valid_to ?? '?'}` : `not valid before ${c?.valid_from ?? '?'}`;
  return `${who} certificate ${what} (a resumed TLS session; ${cert})`;
}
