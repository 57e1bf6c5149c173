// Development certificates (`flotilla certs init|issue`, docs/SECURITY.md, "TLS"): a cluster CA
// and, signed by it, node certificates that serve both as server and as client certificates
// (members dial each other's peer and client ports), and client certificates. ECDSA P-256
// keys from Node's WebCrypto; @peculiar/x509 writes the certificates, which Node cannot.
//
// These are for development and tests: the CA's key sits in a file next to its certificate.
// A production cluster should take its certificates from the organisation's CA.

import 'reflect-metadata';
import { randomBytes, webcrypto } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { makeDirs } from '../storage/make-dirs.js';

x509.cryptoProvider.set(webcrypto);

export type CertsErrorCode = 'CERTS_EXIST' | 'CERTS_NO_CA' | 'CERTS_INVALID_INPUT' | 'CERTS_BAD_CA';

/** An operating error of `flotilla certs`: nothing was written. */
export class CertsError extends Error {
  override readonly name = 'CertsError';
  constructor(
    readonly code: CertsErrorCode,
    message: string,
  ) {
    super(message);
  }
}

const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const dayMs = 86_400_000;

export interface CertOptions {
  /** Overwrite files that exist (they are refused otherwise). */
  readonly force?: boolean;
  /** Days the certificate is valid from `now`. */
  readonly days?: number;
  /** The start of validity (tests move it); default the current time. */
  readonly now?: Date;
}

/** The files a CA or a certificate is written to. */
export interface CertFiles {
  readonly certFile: string;
  readonly keyFile: string;
}

export function caFiles(dir: string): CertFiles {
  return { certFile: join(dir, 'ca.crt'), keyFile: join(dir, 'ca.key') };
}

export function certFiles(dir: string, name: string): CertFiles {
  return { certFile: join(dir, `${name}.crt`), keyFile: join(dir, `${name}.key`) };
}

/** A positive serial number of 128 random bits, as hex. */
function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0] as number) & 0x7f;
  return b.toString('hex');
}

function validity(o: CertOptions, defaultDays: number): { notBefore: Date; notAfter: Date } {
  const days = o.days ?? defaultDays;
  if (!Number.isInteger(days) || days < 1 || days > 36_500)
    throw new CertsError(
      'CERTS_INVALID_INPUT',
      `days must be an integer from 1 to 36500, got ${days}`,
    );
  const now = o.now ?? new Date();
  // An hour's slack for clocks a little behind the one that issued it.
  return {
    notBefore: new Date(now.getTime() - 3_600_000),
    notAfter: new Date(now.getTime() + days * dayMs),
  };
}

async function keyPair(): Promise<webcrypto.CryptoKeyPair> {
  return webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify']);
}

async function keyPem(key: webcrypto.CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

/** Refuses to replace files unless asked to, before anything is written. */
function checkFree(files: CertFiles, force: boolean): void {
  if (force) return;
  for (const f of [files.certFile, files.keyFile])
    if (existsSync(f))
      throw new CertsError(
        'CERTS_EXIST',
        `${f} exists; not overwriting it (pass --force to replace it)`,
      );
}

/**
 * Writes through a temporary file and a rename, so that a node watching the file never reads
 * half of it; the key readable by its owner only.
 */
function writeAtomically(path: string, text: string, mode: number): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode, flag: 'w' });
  chmodSync(tmp, mode);
  renameSync(tmp, path);
}

function writePair(files: CertFiles, cert: string, key: string): void {
  // Ending in a newline, so that `cat a.crt b.crt > bundle.crt` is a bundle OpenSSL reads.
  const line = (pem: string): string => (pem.endsWith('\n') ? pem : `${pem}\n`);
  writeAtomically(files.keyFile, line(key), 0o600);
  writeAtomically(files.certFile, line(cert), 0o644);
}

function prepareDir(dir: string): void {
  try {
    // One level at a time: Node's recursive mkdir never returns under /proc (make-dirs.ts).
    makeDirs(dir, { mode: 0o700 });
  } catch (err) {
    throw new CertsError(
      'CERTS_INVALID_INPUT',
      `Cannot create directory ${dir}: ${(err as Error).message}`,
    );
  }
}

/** Makes a development CA in `dir` (ca.crt, ca.key); returns its files. */
export async function initCa(
  dir: string,
  o: CertOptions & { readonly commonName?: string } = {},
): Promise<CertFiles> {
  const files = caFiles(dir);
  const { notBefore, notAfter } = validity(o, 3_650);
  prepareDir(dir);
  checkFree(files, o.force === true);
  const keys = await keyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    // A name of its own by default: two CAs made with the defaults (a cluster's and another)
    // read the same in every refusal that names a certificate's issuer.
    name: `CN=${o.commonName ?? `Flotilla development CA ${randomBytes(4).toString('hex')}`}`,
    notBefore,
    notAfter,
    signingAlgorithm: algorithm,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  writePair(files, cert.toString('pem'), await keyPem(keys.privateKey));
  return files;
}

/** A certificate's names: IP addresses and DNS names (a leading `*.` allowed). */
export function parseHosts(spec: string): { type: 'ip' | 'dns'; value: string }[] {
  const hosts = spec
    .split(',')
    .map((h) => h.trim())
    .filter((h) => h !== '');
  return hosts.map((h) => {
    const bare = h.replace(/^\[(.*)\]$/, '$1');
    if (isIP(bare) !== 0) return { type: 'ip', value: bare };
    if (
      h.length <= 253 &&
      /^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/.test(
        h,
      )
    )
      return { type: 'dns', value: h.toLowerCase() };
    throw new CertsError(
      'CERTS_INVALID_INPUT',
      `host "${h}" is neither an IP address nor a DNS name`,
    );
  });
}

async function loadCa(
  dir: string,
): Promise<{ cert: x509.X509Certificate; key: webcrypto.CryptoKey }> {
  const files = caFiles(dir);
  let certPem: string;
  let keyText: string;
  try {
    certPem = readFileSync(files.certFile, 'utf8');
    keyText = readFileSync(files.keyFile, 'utf8');
  } catch (err) {
    throw new CertsError(
      'CERTS_NO_CA',
      `No CA in ${dir} (${(err as Error).message}); make one with: flotilla certs init --dir ${dir}`,
    );
  }
  try {
    const cert = new x509.X509Certificate(certPem);
    const key = await webcrypto.subtle.importKey(
      'pkcs8',
      x509.PemConverter.decodeFirst(keyText),
      algorithm,
      false,
      ['sign'],
    );
    return { cert, key };
  } catch (err) {
    throw new CertsError(
      'CERTS_BAD_CA',
      `The CA in ${dir} is not an ECDSA P-256 certificate and key this command made: ${(err as Error).message}`,
    );
  }
}

/**
 * Issues a certificate signed by the CA in `dir`, written as `<name>.crt` and `<name>.key`. A
 * node certificate (the default) names the hosts members and clients reach it by and serves
 * both ends of a connection (serverAuth and clientAuth); a client certificate (`client`)
 * only the client end.
 */
export async function issueCert(
  dir: string,
  o: CertOptions & { readonly name: string; readonly hosts: string; readonly client?: boolean },
): Promise<CertFiles> {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(o.name) || o.name === 'ca')
    throw new CertsError(
      'CERTS_INVALID_INPUT',
      `name "${o.name}" must be 1-64 of [A-Za-z0-9._-], start with a letter or digit, and not be "ca"`,
    );
  const names = parseHosts(o.hosts);
  if (names.length === 0 && o.client !== true)
    throw new CertsError(
      'CERTS_INVALID_INPUT',
      'a node certificate needs --host: the addresses and names it is reached by (e.g. 127.0.0.1,localhost)',
    );
  const { notBefore, notAfter } = validity(o, 365);
  const files = certFiles(dir, o.name);
  checkFree(files, o.force === true);
  const ca = await loadCa(dir);
  const keys = await keyPair();
  const usages =
    o.client === true
      ? [x509.ExtendedKeyUsage.clientAuth]
      : [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth];
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${o.name}`,
    issuer: ca.cert.subject,
    notBefore,
    notAfter,
    signingAlgorithm: algorithm,
    publicKey: keys.publicKey,
    signingKey: ca.key,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension(usages, false),
      ...(names.length === 0 ? [] : [new x509.SubjectAlternativeNameExtension(names, false)]),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert.publicKey),
    ],
  });
  if (!(await cert.verify({ publicKey: ca.cert.publicKey, signatureOnly: true })))
    throw new CertsError(
      'CERTS_BAD_CA',
      `${caFiles(dir).keyFile} is not the key of ${caFiles(dir).certFile}: the certificate would not verify`,
    );
  writePair(files, cert.toString('pem'), await keyPem(keys.privateKey));
  return files;
}
