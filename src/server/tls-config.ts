// The TLS settings of a node (docs/SECURITY.md, "TLS"): one certificate and key for both of its
// ports and the cluster's CA. Kept apart from config.ts, which only includes them.
//
// One certificate, not one per port: members call each other's client port (forwarded writes,
// member lists, joins) as well as the peer port, so the client port's certificate must verify
// against the cluster CA anyway; one certificate, one CA and one rotation keep them in step.

import { decimalOrAsIs } from '../base/decimal.js';

export const tlsFields = [
  'tlsCertFile',
  'tlsKeyFile',
  'tlsCaFile',
  'tlsClientCertAuth',
  'tlsReloadMs',
] as const;

export type TlsField = (typeof tlsFields)[number];

export interface TlsConfig {
  /** PEM certificate of this node (server and client use: members dial each other). */
  readonly certFile: string;
  readonly keyFile: string;
  /** PEM certificate(s) of the cluster's CA: peers, members and (optionally) clients. */
  readonly caFile: string;
  /** The client ports take only clients with a certificate the CA signed. */
  readonly clientCertAuth: boolean;
  /** How often the files are checked for a change; 0: never (a restart takes new ones). */
  readonly reloadMs: number;
}

export const tlsDefaults = { clientCertAuth: false, reloadMs: 5_000 } as const;

export class TlsConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly code = 'CONFIG_INVALID';
}

/** What each field means, for docs/CONFIG.md (config-reference.ts renders it). */
export const tlsFieldDocs: {
  readonly [F in TlsField]: { meaning: string; values: string; default: string };
} = {
  tlsCertFile: {
    meaning:
      "This node's certificate (PEM), served on the peer port and both client ports and presented when it dials a peer or calls a member. It must name every address members and clients reach the node by, and be signed by `tlsCaFile`'s CA (`flotilla certs issue`). Setting it (with `tlsKeyFile` and `tlsCaFile`) turns TLS on: peers must present a certificate of the CA (mutual TLS), the client URLs are `https://`. docs/SECURITY.md.",
    values: 'a file path',
    default: 'none (plain TCP and HTTP)',
  },
  tlsKeyFile: {
    meaning: "The private key of `tlsCertFile` (PEM); keep it readable by the node's user only.",
    values: 'a file path',
    default: 'none',
  },
  tlsCaFile: {
    meaning:
      "The cluster's CA certificate (PEM; several while changing CAs): a peer whose certificate it did not sign is refused, and members' client ports are trusted by it.",
    values: 'a file path',
    default: 'none',
  },
  tlsClientCertAuth: {
    meaning:
      "With TLS on, the client ports (HTTP and binary) also take only clients presenting a certificate `tlsCaFile`'s CA signed (`flotilla certs issue --client`). Members present their own.",
    values: '`true`, `false`',
    default: '`false`',
  },
  tlsReloadMs: {
    meaning:
      'How often the three TLS files are checked for a change; a changed set that loads is used for new connections from then on (open ones keep theirs), one that does not is logged and the one in use kept. 0: never, a restart picks them up.',
    values: 'integer in [0, 3600000]',
    default: '5000',
  },
};

function bool(v: unknown, name: string): boolean {
  if (typeof v === 'boolean') return v;
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw new TlsConfigError(`${name} must be true or false, got ${JSON.stringify(v)}`);
}

function file(v: unknown, name: string): string | null {
  if (v === undefined) return null;
  if (typeof v !== 'string' || v === '')
    throw new TlsConfigError(`${name} must be a file path, got ${JSON.stringify(v)}`);
  return v;
}

/**
 * The TLS settings from the merged configuration (null: TLS off), checked against the URLs
 * the node will call: with TLS on, every member's client URL and every join URL is https.
 */
export function resolveTlsConfig(
  merged: Readonly<Record<string, unknown>>,
  urls: readonly { readonly what: string; readonly url: string }[],
): TlsConfig | null {
  const certFile = file(merged['tlsCertFile'], 'tlsCertFile');
  const keyFile = file(merged['tlsKeyFile'], 'tlsKeyFile');
  const caFile = file(merged['tlsCaFile'], 'tlsCaFile');
  const clientCertAuth =
    merged['tlsClientCertAuth'] === undefined
      ? tlsDefaults.clientCertAuth
      : bool(merged['tlsClientCertAuth'], 'tlsClientCertAuth');
  const reloadRaw = merged['tlsReloadMs'] ?? tlsDefaults.reloadMs;
  // Decimal digits only, as every integer setting (config.ts).
  const reloadMs = decimalOrAsIs(reloadRaw);
  if (
    typeof reloadMs !== 'number' ||
    !Number.isInteger(reloadMs) ||
    reloadMs < 0 ||
    reloadMs > 3_600_000
  )
    throw new TlsConfigError(
      `tlsReloadMs must be an integer in [0, 3600000], got ${JSON.stringify(reloadRaw)}`,
    );
  const given = { tlsCertFile: certFile, tlsKeyFile: keyFile, tlsCaFile: caFile };
  const missing = Object.entries(given).filter(([, v]) => v === null);
  if (missing.length === 3) {
    if (clientCertAuth)
      throw new TlsConfigError(
        'tlsClientCertAuth needs TLS: set tlsCertFile, tlsKeyFile and tlsCaFile',
      );
    // Members call one another at these URLs with this node's TLS settings: without TLS, an
    // https:// one is never reached (forwarded writes failed FORWARD_FAILED, "wrong version
    // number", while every member said it was ready).
    for (const { what, url } of urls)
      if (url.startsWith('https://'))
        throw new TlsConfigError(
          `With TLS off, ${what} must be an http:// URL, got "${url}": serve TLS with tlsCertFile, tlsKeyFile and tlsCaFile (SECURITY.md), or name the member's http:// URL`,
        );
    return null;
  }
  if (missing.length > 0)
    throw new TlsConfigError(
      `TLS needs tlsCertFile, tlsKeyFile and tlsCaFile together; ${missing.map(([k]) => k).join(' and ')} ${missing.length === 1 ? 'is' : 'are'} not set`,
    );
  for (const { what, url } of urls)
    if (!url.startsWith('https://'))
      throw new TlsConfigError(
        `With TLS on (tlsCertFile), ${what} must be an https:// URL, got "${url}"`,
      );
  return {
    certFile: certFile as string,
    keyFile: keyFile as string,
    caFile: caFile as string,
    clientCertAuth,
    reloadMs,
  };
}
