// Certificates for TLS tests, made by `flotilla certs`' own code: a cluster CA with a
// certificate per node (127.0.0.1 and localhost), and a second CA that is no cluster's.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { caFiles, initCa, issueCert, type CertFiles } from '../../src/server/certs.js';

export interface Pem {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca: Buffer;
}

export interface TestCerts {
  readonly dir: string;
  /** The cluster CA's directory (ca.crt, ca.key, node<N>.crt/.key, client.crt/.key). */
  readonly clusterDir: string;
  /** Another CA's directory, with a node certificate `rogue` of its own. */
  readonly otherDir: string;
  /** Node `id`'s files, issued by the cluster CA. */
  node(id: number): CertFiles & { readonly caFile: string };
  /** Node `id`'s material as PEM, for a transport. */
  pem(id: number): Pem;
  /** A node certificate of the other CA, that trusts the cluster CA (so only its own is bad). */
  roguePem(): Pem;
  /** The cluster CA's client certificate (clientAuth only). */
  clientPem(): Pem;
  close(): void;
}

export async function makeTestCerts(nodes: number): Promise<TestCerts> {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-certs-'));
  const clusterDir = join(dir, 'cluster');
  const otherDir = join(dir, 'other');
  await initCa(clusterDir);
  await initCa(otherDir, { commonName: 'Some other CA' });
  for (let id = 1; id <= nodes; id++)
    await issueCert(clusterDir, { name: `node${id}`, hosts: '127.0.0.1,localhost' });
  await issueCert(clusterDir, { name: 'client', hosts: '', client: true });
  await issueCert(otherDir, { name: 'rogue', hosts: '127.0.0.1,localhost' });
  const caFile = caFiles(clusterDir).certFile;
  const read = (p: string): Buffer => readFileSync(p);
  return {
    dir,
    clusterDir,
    otherDir,
    node: (id) => ({
      certFile: join(clusterDir, `node${id}.crt`),
      keyFile: join(clusterDir, `node${id}.key`),
      caFile,
    }),
    pem: (id) => ({
      cert: read(join(clusterDir, `node${id}.crt`)),
      key: read(join(clusterDir, `node${id}.key`)),
      ca: read(caFile),
    }),
    roguePem: () => ({
      cert: read(join(otherDir, 'rogue.crt')),
      key: read(join(otherDir, 'rogue.key')),
      ca: read(caFile),
    }),
    clientPem: () => ({
      cert: read(join(clusterDir, 'client.crt')),
      key: read(join(clusterDir, 'client.key')),
      ca: read(caFile),
    }),
    close: () => rmSync(dir, { recursive: true, force: true }),
  };
}
