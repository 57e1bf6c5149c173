// The command's TLS settings for talking to a cluster that serves HTTPS (docs/SECURITY.md,
// "TLS"): the CA to trust, and a client certificate for a cluster that asks for one. Flags win
// over the environment variables a node's TLS settings are given in, so that on a node's host
// the command trusts what the node trusts without being told.

import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import type { ClientTlsOptions } from '../client/index.js';
import { UsageError } from './usage-error.js';

export interface ClientTlsFlags {
  readonly cacert?: string;
  readonly cert?: string;
  readonly key?: string;
}

/** The client's TLS options from flags and environment; undefined when none is given. */
export function clientTls(
  flags: ClientTlsFlags,
  env: NodeJS.ProcessEnv,
): ClientTlsOptions | undefined {
  const pick = (flag: string | undefined, name: string): string | undefined =>
    flag ?? (env[name] === '' ? undefined : env[name]);
  const files = {
    ca: pick(flags.cacert, 'FLOTILLA_TLS_CA_FILE'),
    cert: pick(flags.cert, 'FLOTILLA_TLS_CERT_FILE'),
    key: pick(flags.key, 'FLOTILLA_TLS_KEY_FILE'),
  };
  if ((files.cert === undefined) !== (files.key === undefined))
    throw new UsageError(
      `--cert and --key go together (or FLOTILLA_TLS_CERT_FILE and FLOTILLA_TLS_KEY_FILE); only ${files.cert === undefined ? '--key' : '--cert'} was given`,
    );
  const read = (path: string, what: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new UsageError(`Cannot read the ${what} file ${path}: ${(err as Error).message}`);
    }
  };
  const out: { ca?: Buffer; cert?: Buffer; key?: Buffer } = {};
  if (files.ca !== undefined) out.ca = read(files.ca, 'CA certificate (--cacert)');
  if (files.cert !== undefined) out.cert = read(files.cert, 'client certificate (--cert)');
  if (files.key !== undefined) out.key = read(files.key, 'client key (--key)');
  checkFiles(out, files);
  return Object.keys(out).length === 0 ? undefined : out;
}

/**
 * The files checked here, before any connection: a certificate file that holds no certificate,
 * or a key that is not the certificate's, failed every connection the client then tried (8
 * attempts, 2 s) with OpenSSL's words and no file named; a key given as the CA was taken for an
 * untrusted server.
 */
function checkFiles(
  out: { ca?: Buffer; cert?: Buffer; key?: Buffer },
  files: { ca?: string | undefined; cert?: string | undefined; key?: string | undefined },
): void {
  const certificate = (pem: Buffer, path: string, flag: string): void => {
    try {
      new X509Certificate(pem);
    } catch {
      throw new UsageError(`${flag} ${path} holds no PEM certificate (is it a key?)`);
    }
  };
  if (out.ca !== undefined) certificate(out.ca, files.ca as string, '--cacert');
  if (out.cert === undefined || out.key === undefined) return;
  certificate(out.cert, files.cert as string, '--cert');
  try {
    createSecureContext({ cert: out.cert, key: out.key });
  } catch (err) {
    throw new UsageError(
      `--key ${files.key as string} does not go with --cert ${files.cert as string}: ${(err as Error).message}`,
    );
  }
}
