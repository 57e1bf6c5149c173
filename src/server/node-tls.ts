// A node's TLS material (docs/SECURITY.md, "TLS"): the certificate, key and CA files read and
// checked at start, handed to every listener and to the node's own outbound calls, and read
// again when they change on disk, so that a rotated certificate is used without a restart.
//
// A reload is all or nothing: the three files are read and checked together (the key must be
// the certificate's, the certificate signed by one of the CA file's certificates), and only a
// set that passes replaces the one in use. A rotation that writes the files one by one is
// therefore seen as a refused set, then (at the next check) as the new one.

import { X509Certificate, createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import type { Logger } from 'pino';
import { buildConnector } from 'undici';
import type { TlsMaterial } from '../api/tls.js';
import type { Clock } from '../host/contracts.js';
import { Periodic } from './periodic.js';
import type { TlsConfig } from './tls-config.js';

/** Larger TLS files are refused: a certificate chain is a few KiB. */
const maxFileBytes = 1024 * 1024;

export interface LoadedTls extends TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca: Buffer;
  /** Subject, issuer, expiry and fingerprint of the certificate, for the log. */
  readonly summary: {
    subject: string;
    issuer: string;
    validTo: string;
    fingerprint: string;
  };
  /** When the certificate expires, in milliseconds since the epoch. */
  readonly validToMs: number;
}

/** The TLS files are unusable: unreadable, not PEM, or not fitting together. */
export class TlsFilesError extends Error {
  override readonly name = 'TlsFilesError';
  readonly code = 'TLS_FILES_INVALID';
}

function readPem(path: string, what: string): Buffer {
  let bytes: Buffer;
  try {
    if (statSync(path).size > maxFileBytes)
      throw new Error(`larger than ${maxFileBytes} bytes: not a PEM certificate or key`);
    bytes = readFileSync(path);
  } catch (err) {
    throw new TlsFilesError(`Cannot read ${what} ${path}: ${(err as Error).message}`);
  }
  return bytes;
}

/** Every certificate of a PEM bundle. */
function certificatesIn(pem: Buffer, what: string): X509Certificate[] {
  const blocks = pem
    .toString('latin1')
    .match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
  if (blocks === null) throw new TlsFilesError(`${what} holds no PEM certificate`);
  return blocks.map((b) => {
    try {
      return new X509Certificate(b);
    } catch (err) {
      throw new TlsFilesError(`${what} holds a malformed certificate: ${(err as Error).message}`);
    }
  });
}

/** Extended key usages a member's certificate needs: it serves and it dials peers. */
const usages = [
  ['1.3.6.1.5.5.7.3.1', 'serverAuth'],
  ['1.3.6.1.5.5.7.3.2', 'clientAuth'],
] as const;

/**
 * Reads and checks the three files; throws TlsFilesError naming the one at fault. `nowMs` is
 * the time the certificate must be valid at: an expired one, one not valid yet, or one
 * without a usage a member needs would be refused by every peer and client.
 */
export function loadTls(config: TlsConfig, nowMs: number): LoadedTls {
  const cert = readPem(config.certFile, 'tlsCertFile');
  const key = readPem(config.keyFile, 'tlsKeyFile');
  const ca = readPem(config.caFile, 'tlsCaFile');
  const [leaf] = certificatesIn(cert, `tlsCertFile ${config.certFile}`);
  const cas = certificatesIn(ca, `tlsCaFile ${config.caFile}`);
  if (leaf === undefined) throw new TlsFilesError(`tlsCertFile ${config.certFile} is empty`);
  if (!cas.some((c) => leaf.checkIssued(c) && leaf.verify(c.publicKey)))
    throw new TlsFilesError(
      `tlsCertFile ${config.certFile} (${leaf.subject.replace(/\n/g, ', ')}, issued by ${leaf.issuer.replace(/\n/g, ', ')}) is not signed by a CA of tlsCaFile ${config.caFile}: peers would refuse it`,
    );
  const validFromMs = Date.parse(leaf.validFrom);
  const validToMs = Date.parse(leaf.validTo);
  if (nowMs > validToMs)
    throw new TlsFilesError(
      `tlsCertFile ${config.certFile} expired on ${leaf.validTo}: peers and clients would refuse it; issue a new one (flotilla certs issue --force, SECURITY.md)`,
    );
  if (nowMs < validFromMs)
    throw new TlsFilesError(
      `tlsCertFile ${config.certFile} is not valid before ${leaf.validFrom}: peers and clients would refuse it (is this machine's clock behind?)`,
    );
  // No extended key usage at all allows every usage.
  const missing = usages.filter(
    ([oid]) => leaf.keyUsage !== undefined && !leaf.keyUsage.includes(oid),
  );
  if (missing.length > 0)
    throw new TlsFilesError(
      `tlsCertFile ${config.certFile} lacks the ${missing.map(([, name]) => name).join(' and ')} usage: a member serves and dials its peers with it (flotilla certs issue makes one with both, SECURITY.md)`,
    );
  try {
    // Checks the key is the certificate's, as the listeners will.
    createSecureContext({ cert, key, ca });
  } catch (err) {
    throw new TlsFilesError(
      `tlsKeyFile ${config.keyFile} does not fit tlsCertFile ${config.certFile}: ${(err as Error).message}`,
    );
  }
  return {
    cert,
    key,
    ca,
    summary: {
      subject: leaf.subject.replace(/\n/g, ', '),
      issuer: leaf.issuer.replace(/\n/g, ', '),
      validTo: leaf.validTo,
      fingerprint: leaf.fingerprint256,
    },
    validToMs,
  };
}

/**
 * What the files hold now: a change of any of them changes it. Their contents, not their
 * times: a file rewritten within the file system's time granularity is still seen, and a
 * file touched but unchanged is not reloaded. Three files of a few KiB each, read once a
 * period, bounded by maxFileBytes.
 */
function fingerprintOf(config: TlsConfig): string {
  const h = createHash('sha256');
  for (const f of [config.certFile, config.keyFile, config.caFile]) {
    try {
      if (statSync(f).size > maxFileBytes) throw new Error('too large');
      h.update(createHash('sha256').update(readFileSync(f)).digest());
    } catch (err) {
      h.update(`${f}:${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  return h.digest('hex');
}

export interface NodeTlsOptions {
  readonly config: TlsConfig;
  readonly clock: Clock;
  readonly log: Logger;
}

/**
 * The material in use and who uses it. Listeners and the transport register with `onChange`;
 * outbound HTTP calls to members go through `connector`, which dials with the material in use
 * when the connection is made.
 */
export class NodeTls {
  private loaded: LoadedTls;
  private onDisk: string;
  private readonly users: ((m: LoadedTls) => void)[] = [];
  private readonly periodic: Periodic | null;
  private dial: ReturnType<typeof buildConnector>;

  constructor(private readonly o: NodeTlsOptions) {
    this.onDisk = fingerprintOf(o.config);
    this.loaded = loadTls(o.config, o.clock.nowMs());
    this.dial = this.connectorFor(this.loaded);
    this.periodic =
      o.config.reloadMs === 0 ? null : new Periodic(o.clock, o.config.reloadMs, () => this.check());
  }

  get material(): LoadedTls {
    return this.loaded;
  }

  /** Calls `fn` with every set of material loaded from now on. */
  onChange(fn: (m: LoadedTls) => void): void {
    this.users.push(fn);
  }

  start(): void {
    this.periodic?.start();
  }

  stop(): void {
    this.periodic?.stop();
  }

  /**
   * Reads the files again if they changed since last looked at; returns what happened. A set
   * that fails to load is logged once (until the files change again) and the old one kept.
   */
  check(): 'unchanged' | 'reloaded' | 'refused' {
    const now = fingerprintOf(this.o.config);
    if (now === this.onDisk) return 'unchanged';
    this.onDisk = now;
    let next: LoadedTls;
    try {
      next = loadTls(this.o.config, this.o.clock.nowMs());
    } catch (err) {
      this.o.log.error(
        { err: (err as Error).message, inUse: this.loaded.summary },
        'TLS files changed but cannot be used: keeping the certificate in use',
      );
      return 'refused';
    }
    try {
      for (const use of this.users) use(next);
    } catch (err) {
      // Each user checks before it changes anything; one that refuses leaves the rest as set.
      this.o.log.error(
        { err: (err as Error).message },
        'TLS files changed but a listener refused them: keeping the certificate in use',
      );
      return 'refused';
    }
    this.loaded = next;
    this.dial = this.connectorFor(next);
    this.o.log.info(
      { certificate: next.summary },
      'TLS certificate reloaded: new connections use it',
    );
    return 'reloaded';
  }

  /**
   * Dials for undici with the material in use: it trusts the cluster CA (only) and presents
   * the node's certificate, which a client port that asks for one (tlsClientCertAuth) checks.
   */
  readonly connector: ReturnType<typeof buildConnector> = (options, callback) =>
    this.dial(options, callback);

  private connectorFor(m: LoadedTls): ReturnType<typeof buildConnector> {
    return buildConnector({ cert: m.cert, key: m.key, ca: m.ca, rejectUnauthorized: true });
  }
}

/** The common name of a distinguished name as a summary shows it (`CN=node1, O=Acme`). */
export function commonNameOf(dn: string): string {
  const cn = /(?:^|, )CN=([^,]*)/.exec(dn);
  return cn?.[1] ?? dn;
}

/** A TLS port a node listens on, for the start-up log. */
export interface TlsPort {
  readonly kind: 'peer' | 'HTTP client' | 'binary protocol';
  readonly address: string;
  /** Whether the other end must present a certificate of the cluster's CA. */
  readonly certificateRequired: boolean;
}

/**
 * One info line per TLS port at start-up: that TLS is on, whether the other end must present
 * a certificate, and the certificate served (subject and issuer CN, expiry). Nothing said
 * before this told an operator that TLS was on, or with which certificate.
 */
export function logTlsPorts(log: Pick<Logger, 'info'>, m: LoadedTls, ports: TlsPort[]): void {
  const subject = commonNameOf(m.summary.subject);
  const issuer = commonNameOf(m.summary.issuer);
  const expires = new Date(m.validToMs).toISOString();
  for (const p of ports) {
    const who = p.kind === 'peer' ? 'peer' : 'client';
    const asked = p.certificateRequired
      ? `${who} certificates of the cluster's CA required`
      : 'client certificates not required (tlsClientCertAuth off)';
    log.info(
      {
        port: p.kind,
        address: p.address,
        tls: true,
        certificateRequired: p.certificateRequired,
        subjectCN: subject,
        issuerCN: issuer,
        validTo: expires,
      },
      `TLS on for the ${p.kind} port ${p.address}: ${asked}; certificate CN=${subject}, issuer CN=${issuer}, expires ${expires}`,
    );
  }
}
