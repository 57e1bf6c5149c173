// `flotilla certs init|issue`: what they make is what Node's TLS accepts (a node certificate as
// server and as client, a client certificate as client), names the hosts asked for, keeps keys
// private, and nothing is overwritten unless asked.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { connect, createServer, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import {
  type CertsError,
  caFiles,
  certFiles,
  initCa,
  issueCert,
  parseHosts,
} from '../../src/server/certs.js';
import { repoRoot } from '../support/root.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'flotilla-certs-test-'));
  dirs.push(d);
  return d;
}
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const read = (p: string): Buffer => readFileSync(p);

/**
 * One TLS connection from a client to a server on 127.0.0.1 with these files; resolves with
 * what each side made of the other (or the error that ended it).
 */
async function handshake(o: {
  server: { cert: Buffer; key: Buffer; ca?: Buffer; requestCert?: boolean };
  client: { ca: Buffer; cert?: Buffer; key?: Buffer; servername?: string };
}): Promise<{ clientAuthorized: boolean; serverSawClient: boolean | null; error: string | null }> {
  let serverSawClient: boolean | null = null;
  const server = createServer(
    {
      cert: o.server.cert,
      key: o.server.key,
      ...(o.server.ca === undefined ? {} : { ca: o.server.ca }),
      requestCert: o.server.requestCert === true,
      rejectUnauthorized: o.server.requestCert === true,
    },
    (s: TLSSocket) => {
      serverSawClient = s.authorized;
      s.on('error', () => undefined);
      s.end();
    },
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  try {
    return await new Promise((resolve) => {
      const s = connect({
        host: '127.0.0.1',
        ...(o.client.servername === undefined ? {} : { servername: o.client.servername }),
        port,
        ca: o.client.ca,
        ...(o.client.cert === undefined ? {} : { cert: o.client.cert, key: o.client.key }),
      });
      s.on('secureConnect', () => {
        const clientAuthorized = s.authorized;
        // Wait for the server's verdict on us (it ends the connection once it has one).
        s.on('close', () => resolve({ clientAuthorized, serverSawClient, error: null }));
        s.resume();
      });
      s.on('error', (e: Error) =>
        resolve({ clientAuthorized: false, serverSawClient, error: e.message }),
      );
    });
  } finally {
    await new Promise((r) => server.close(r));
  }
}

void test('a node certificate serves TLS to a client trusting the CA, and is a client certificate too', async () => {
  const dir = tempDir();
  await initCa(dir);
  await issueCert(dir, { name: 'node1', hosts: '127.0.0.1,node1.example,localhost' });
  await issueCert(dir, { name: 'node2', hosts: '127.0.0.1' });
  const ca = read(caFiles(dir).certFile);
  const n1 = certFiles(dir, 'node1');
  const n2 = certFiles(dir, 'node2');
  // node2 dials node1, which requires a client certificate: both verify, as peers do.
  const r = await handshake({
    server: { cert: read(n1.certFile), key: read(n1.keyFile), ca, requestCert: true },
    client: { ca, cert: read(n2.certFile), key: read(n2.keyFile) },
  });
  assert.deepEqual(r, { clientAuthorized: true, serverSawClient: true, error: null });
  // By a DNS name it carries as well.
  const byName = await handshake({
    server: { cert: read(n1.certFile), key: read(n1.keyFile) },
    client: { ca, servername: 'localhost' },
  });
  assert.equal(byName.clientAuthorized, true, String(byName.error));

  const cert = new X509Certificate(read(n1.certFile));
  const caCert = new X509Certificate(ca);
  assert.ok(cert.checkIssued(caCert) && cert.verify(caCert.publicKey));
  assert.equal(cert.checkIP('127.0.0.1'), '127.0.0.1');
  assert.equal(cert.checkHost('node1.example'), 'node1.example');
  assert.equal(cert.checkHost('node2.example'), undefined);
  assert.deepEqual(cert.keyUsage?.sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
  assert.equal(cert.ca, false);
  assert.equal(caCert.ca, true);
  assert.match(cert.subject, /CN=node1/);
});

void test('a certificate of another CA is refused by a client that trusts only this one', async () => {
  const dir = tempDir();
  const other = tempDir();
  await initCa(dir);
  await initCa(other);
  await issueCert(other, { name: 'node1', hosts: '127.0.0.1' });
  const n1 = certFiles(other, 'node1');
  const r = await handshake({
    server: { cert: read(n1.certFile), key: read(n1.keyFile) },
    client: { ca: read(caFiles(dir).certFile) },
  });
  assert.equal(r.clientAuthorized, false);
  assert.match(r.error ?? '', /unable to verify|self.signed|issuer/i);
});

void test('a client certificate is accepted by a server requiring one, and serves no TLS itself', async () => {
  const dir = tempDir();
  await initCa(dir);
  await issueCert(dir, { name: 'node1', hosts: '127.0.0.1' });
  await issueCert(dir, { name: 'alice', hosts: '', client: true });
  const ca = read(caFiles(dir).certFile);
  const n1 = certFiles(dir, 'node1');
  const alice = certFiles(dir, 'alice');
  const r = await handshake({
    server: { cert: read(n1.certFile), key: read(n1.keyFile), ca, requestCert: true },
    client: { ca, cert: read(alice.certFile), key: read(alice.keyFile) },
  });
  assert.deepEqual(r, { clientAuthorized: true, serverSawClient: true, error: null });
  assert.deepEqual(new X509Certificate(read(alice.certFile)).keyUsage, ['1.3.6.1.5.5.7.3.2']);
  // As a server certificate it fails: it names no host and is not for serverAuth.
  const asServer = await handshake({
    server: { cert: read(alice.certFile), key: read(alice.keyFile) },
    client: { ca },
  });
  assert.equal(asServer.clientAuthorized, false);
});

void test('keys are readable by their owner only; certificates by all', async () => {
  const dir = tempDir();
  await initCa(dir);
  await issueCert(dir, { name: 'node1', hosts: '127.0.0.1' });
  for (const f of [caFiles(dir), certFiles(dir, 'node1')]) {
    assert.equal(statSync(f.keyFile).mode & 0o777, 0o600, f.keyFile);
    assert.equal(statSync(f.certFile).mode & 0o777, 0o644, f.certFile);
  }
});

void test('nothing is overwritten without force, and force replaces (a key stays private)', async () => {
  const dir = tempDir();
  await initCa(dir);
  const ca = read(caFiles(dir).certFile);
  await assert.rejects(
    initCa(dir),
    (e: CertsError) => e.code === 'CERTS_EXIST' && /--force/.test(e.message),
  );
  assert.deepEqual(read(caFiles(dir).certFile), ca, 'the CA is unchanged');
  await issueCert(dir, { name: 'node1', hosts: '127.0.0.1' });
  const n1 = read(certFiles(dir, 'node1').certFile);
  await assert.rejects(
    issueCert(dir, { name: 'node1', hosts: '127.0.0.1' }),
    (e: CertsError) => e.code === 'CERTS_EXIST',
  );
  assert.deepEqual(read(certFiles(dir, 'node1').certFile), n1);
  // A key file someone made readable is private again once replaced.
  writeFileSync(certFiles(dir, 'node1').keyFile, 'x', { mode: 0o644 });
  await issueCert(dir, { name: 'node1', hosts: '127.0.0.1', force: true });
  assert.notDeepEqual(read(certFiles(dir, 'node1').certFile), n1);
  assert.equal(statSync(certFiles(dir, 'node1').keyFile).mode & 0o777, 0o600);
});

void test('bad input is refused with a clear error and writes nothing', async () => {
  const dir = tempDir();
  await assert.rejects(
    issueCert(dir, { name: 'node1', hosts: '127.0.0.1' }),
    (e: CertsError) => e.code === 'CERTS_NO_CA' && /flotilla certs init/.test(e.message),
  );
  await initCa(dir);
  await assert.rejects(
    issueCert(dir, { name: 'node1', hosts: '' }),
    (e: CertsError) => e.code === 'CERTS_INVALID_INPUT' && /needs --host/.test(e.message),
  );
  await assert.rejects(
    issueCert(dir, { name: 'node1', hosts: 'bad host!' }),
    (e: CertsError) => e.code === 'CERTS_INVALID_INPUT' && /"bad host!"/.test(e.message),
  );
  await assert.rejects(
    issueCert(dir, { name: '../escape', hosts: '127.0.0.1' }),
    (e: CertsError) => e.code === 'CERTS_INVALID_INPUT',
  );
  await assert.rejects(
    issueCert(dir, { name: 'ca', hosts: '127.0.0.1' }),
    (e: CertsError) => e.code === 'CERTS_INVALID_INPUT',
  );
  assert.deepEqual(parseHosts('10.0.0.1, [::1],Node.Example'), [
    { type: 'ip', value: '10.0.0.1' },
    { type: 'ip', value: '::1' },
    { type: 'dns', value: 'node.example' },
  ]);
});

void test('the command makes a CA and a node certificate, and refuses to overwrite them', () => {
  const dir = tempDir();
  const cli = join(repoRoot(), 'dist', 'src', 'cli', 'main.js');
  const run = (...args: string[]) =>
    spawnSync(process.execPath, [cli, 'certs', ...args], { encoding: 'utf8', timeout: 30_000 });
  const init = run('init', '--dir', dir);
  assert.equal(init.status, 0, init.stderr);
  assert.match(init.stdout, /ca\.crt/);
  const issue = run('issue', '--dir', dir, '--name', 'node1', '--host', '127.0.0.1,localhost');
  assert.equal(issue.status, 0, issue.stderr);
  assert.equal(
    new X509Certificate(read(certFiles(dir, 'node1').certFile)).checkIP('127.0.0.1'),
    '127.0.0.1',
  );
  const again = run('init', '--dir', dir);
  assert.equal(again.status, 1);
  assert.match(again.stderr, /CERTS_EXIST: .*ca\.crt exists; not overwriting it/);
  const missing = run('issue', '--dir', dir);
  assert.equal(missing.status, 2, 'a missing --name is a usage error');
});

void test('each CA has a name of its own, or the one given, so refusals naming an issuer tell CAs apart', () => {
  const cli = join(repoRoot(), 'dist', 'src', 'cli', 'main.js');
  const subjectOf = (dir: string) =>
    new X509Certificate(readFileSync(join(dir, 'ca.crt'))).subject.replace(/\n/g, ', ');
  const [a, b, named] = [tempDir(), tempDir(), tempDir()];
  for (const [dir, extra] of [
    [a, []],
    [b, []],
    [named, ['--name', 'Acme staging CA']],
  ] as const) {
    const r = spawnSync(process.execPath, [cli, 'certs', 'init', '--dir', dir, ...extra], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(r.status, 0, r.stderr);
  }
  assert.match(subjectOf(a), /^CN=Flotilla development CA [0-9a-f]{8}$/);
  assert.match(subjectOf(b), /^CN=Flotilla development CA [0-9a-f]{8}$/);
  assert.notEqual(subjectOf(a), subjectOf(b));
  assert.equal(subjectOf(named), 'CN=Acme staging CA');
});

void test(
  'certs init with a directory two levels under /proc fails at once, naming it',
  { skip: process.platform !== 'linux' },
  () => {
    // It hung: Node's recursive mkdir loops for ever on /proc/a/b. A process of its own,
    // bounded, so that a hang fails here.
    const cli = join(repoRoot(), 'dist', 'src', 'cli', 'main.js');
    const r = spawnSync(
      process.execPath,
      [cli, 'certs', 'init', '--dir', '/proc/flotilla-certs-test/ca'],
      { encoding: 'utf8', timeout: 20_000, killSignal: 'SIGKILL' },
    );
    assert.equal(r.error, undefined, `the command did not exit: ${String(r.error)}`);
    assert.equal(r.status, 1, r.stderr);
    assert.match(
      r.stderr,
      /CERTS_INVALID_INPUT: Cannot create directory \/proc\/flotilla-certs-test\/ca: ENOENT/,
    );
  },
);
