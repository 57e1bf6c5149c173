// A node's TLS settings and files: off unless all three files are given, https client URLs
// when on, and files checked together (at start and at every reload), a bad set refused with
// the file at fault named while the set in use stays.

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import type { Clock } from '../../src/host/contracts.js';
import { issueCert } from '../../src/server/certs.js';
import { ConfigError, configFromEnv, resolveNodeConfig } from '../../src/server/config.js';
import {
  NodeTls,
  type TlsFilesError,
  commonNameOf,
  loadTls,
  logTlsPorts,
} from '../../src/server/node-tls.js';
import type { TlsConfig } from '../../src/server/tls-config.js';
import { makeTestCerts, type TestCerts } from '../support/certs.js';

const https =
  '1=127.0.0.1:7001@https://127.0.0.1:8001,2=127.0.0.1:7002@https://127.0.0.1:8002,3=127.0.0.1:7003@https://127.0.0.1:8003';
const base = { id: 1, dataDir: '/tmp/x', initialCluster: https };
const files = { tlsCertFile: 'n.crt', tlsKeyFile: 'n.key', tlsCaFile: 'ca.crt' };

let certs: TestCerts;
before(async () => {
  certs = await makeTestCerts(2);
});
after(() => certs.close());

function tlsConfig(id: number, over: Partial<TlsConfig> = {}): TlsConfig {
  return { ...certs.node(id), clientCertAuth: false, reloadMs: 1_000, ...over };
}

void test('TLS is off unless its files are given, and on with all three', () => {
  const plain = { ...base, initialCluster: https.replaceAll('https://', 'http://') };
  assert.equal(resolveNodeConfig(plain).tls, null);
  assert.deepEqual(resolveNodeConfig({ ...base, ...files }).tls, {
    certFile: 'n.crt',
    keyFile: 'n.key',
    caFile: 'ca.crt',
    clientCertAuth: false,
    reloadMs: 5_000,
  });
  const env = configFromEnv({
    FLOTILLA_TLS_CERT_FILE: 'e.crt',
    FLOTILLA_TLS_KEY_FILE: 'e.key',
    FLOTILLA_TLS_CA_FILE: 'eca.crt',
    FLOTILLA_TLS_CLIENT_CERT_AUTH: 'true',
    FLOTILLA_TLS_RELOAD_MS: '0',
  });
  assert.deepEqual(resolveNodeConfig(base, env).tls, {
    certFile: 'e.crt',
    keyFile: 'e.key',
    caFile: 'eca.crt',
    clientCertAuth: true,
    reloadMs: 0,
  });
});

void test('a partial or contradictory TLS configuration is refused, naming what is wrong', () => {
  const refused = (raw: Record<string, unknown>, message: RegExp) =>
    assert.throws(
      () => resolveNodeConfig(raw),
      (e: Error) => e instanceof ConfigError && message.test(e.message),
    );
  refused({ ...base, tlsCertFile: 'n.crt' }, /together; tlsKeyFile and tlsCaFile are not set/);
  refused({ ...base, tlsCertFile: 'n.crt', tlsKeyFile: 'n.key' }, /tlsCaFile is not set/);
  refused({ ...base, tlsClientCertAuth: true }, /tlsClientCertAuth needs TLS/);
  // Without TLS an https:// member is never reached: members' forwards failed while each
  // said it was ready (an operator's pass).
  refused(base, /With TLS off, member 1's client URL must be an http:\/\/ URL, got "https:/);
  refused({ ...base, ...files, tlsClientCertAuth: 'yes' }, /true or false, got "yes"/);
  refused({ ...base, ...files, tlsReloadMs: -1 }, /tlsReloadMs must be an integer/);
  refused({ ...base, ...files, tlsReloadMs: '0x10' }, /tlsReloadMs must be an integer/);
  refused({ ...base, ...files, tlsReloadMs: '1e3' }, /tlsReloadMs must be an integer/);
  refused(
    {
      ...base,
      ...files,
      initialCluster: https.replace('https://127.0.0.1:8002', 'http://127.0.0.1:8002'),
    },
    /member 2's client URL must be an https:\/\/ URL, got "http:\/\/127\.0\.0\.1:8002"/,
  );
  refused(
    { ...base, ...files, join: 'http://127.0.0.1:8009' },
    /a join URL must be an https:\/\/ URL/,
  );
});

void test("the files are checked together: the key the certificate's, the certificate the CA's", () => {
  assert.match(loadTls(tlsConfig(1), Date.now()).summary.subject, /CN=node1/);
  assert.throws(
    () => loadTls({ ...tlsConfig(1), keyFile: certs.node(2).keyFile }, Date.now()),
    (e: TlsFilesError) =>
      e.code === 'TLS_FILES_INVALID' && /does not fit tlsCertFile/.test(e.message),
  );
  assert.throws(
    () => loadTls({ ...tlsConfig(1), caFile: join(certs.otherDir, 'ca.crt') }, Date.now()),
    (e: TlsFilesError) => /is not signed by a CA of tlsCaFile/.test(e.message),
  );
  assert.throws(
    () => loadTls({ ...tlsConfig(1), certFile: join(certs.dir, 'missing.crt') }, Date.now()),
    (e: TlsFilesError) => /Cannot read tlsCertFile .*missing\.crt/.test(e.message),
  );
  // A CA file holding two CAs (a rotation under way) accepts certificates of either.
  const bundle = join(certs.dir, 'bundle.crt');
  writeFileSync(
    bundle,
    Buffer.concat([
      readFileSync(join(certs.otherDir, 'ca.crt')),
      readFileSync(certs.node(1).caFile),
    ]),
  );
  assert.match(
    loadTls({ ...tlsConfig(1), caFile: bundle }, Date.now()).summary.subject,
    /CN=node1/,
  );
  // Out of its validity window it is refused, saying when: before, an expired certificate was
  // loaded (and reloaded) without a word, and every peer and client then refused it.
  const loaded = loadTls(tlsConfig(1), Date.now());
  assert.throws(
    () => loadTls(tlsConfig(1), loaded.validToMs + 1_000),
    (e: TlsFilesError) =>
      e.code === 'TLS_FILES_INVALID' && /expired on .*certs issue --force/.test(e.message),
  );
  assert.throws(
    () => loadTls(tlsConfig(1), Date.now() - 2 * 86_400_000),
    (e: TlsFilesError) => /is not valid before .*clock behind/.test(e.message),
  );
  // A client's certificate (clientAuth only) cannot serve a member's ports.
  const client = {
    certFile: join(certs.clusterDir, 'client.crt'),
    keyFile: join(certs.clusterDir, 'client.key'),
  };
  assert.throws(
    () => loadTls({ ...tlsConfig(1), ...client }, Date.now()),
    (e: TlsFilesError) => /lacks the serverAuth usage/.test(e.message),
  );
});

/** A clock whose timers the test fires. */
class StepClock implements Clock {
  private timers: (() => void)[] = [];
  private readonly at = Date.now();
  nowMs(): number {
    return this.at;
  }
  setTimeout(fn: () => void): unknown {
    this.timers.push(fn);
    return fn;
  }
  clearTimeout(h: unknown): void {
    this.timers = this.timers.filter((t) => t !== h);
  }
  fire(): void {
    const due = this.timers;
    this.timers = [];
    for (const t of due) t();
  }
}

void test('a changed set of files is loaded at the next check; a bad one is logged and the old kept', async () => {
  // Node 2's files are rewritten here: they are this test's.
  const config = tlsConfig(2);
  const clock = new StepClock();
  const lines: string[] = [];
  const log = pino({ level: 'info' }, { write: (l: string) => void lines.push(l) });
  const tls = new NodeTls({ config, clock, log });
  const seen: string[] = [];
  tls.onChange((m) => seen.push(m.summary.fingerprint));
  const first = tls.material.summary.fingerprint;
  tls.start();
  clock.fire();
  assert.deepEqual(seen, [], 'unchanged files: nothing reloaded');

  await issueCert(certs.clusterDir, { name: 'node2', hosts: '127.0.0.1', force: true });
  clock.fire();
  assert.equal(seen.length, 1);
  assert.notEqual(seen[0], first);
  assert.equal(tls.material.summary.fingerprint, seen[0]);
  assert.match(lines.join(''), /TLS certificate reloaded/);

  const goodKey = readFileSync(config.keyFile);
  writeFileSync(config.keyFile, readFileSync(certs.node(1).keyFile));
  clock.fire();
  assert.equal(seen.length, 1, 'a key of another certificate is not taken');
  assert.equal(tls.material.summary.fingerprint, seen[0], 'the set in use stays');
  const refusal = JSON.parse(lines.at(-1) ?? '{}') as { msg?: string; err?: string };
  assert.equal(refusal.msg, 'TLS files changed but cannot be used: keeping the certificate in use');
  assert.match(refusal.err ?? '', /tlsKeyFile .* does not fit tlsCertFile/);
  const logged = lines.length;
  clock.fire();
  assert.equal(lines.length, logged, 'a bad set is logged once, not at every check');

  writeFileSync(config.keyFile, goodKey);
  clock.fire();
  assert.equal(seen.length, 2, 'the set is taken once it fits again');
  tls.stop();
  clock.fire();
  assert.equal(tls.check(), 'unchanged');
});

void test('the start-up lines say TLS is on, whether certificates are asked, and which is served', () => {
  const m = loadTls(tlsConfig(1), Date.now());
  const said: { fields: Record<string, unknown>; msg: string }[] = [];
  logTlsPorts(
    {
      info: ((fields: Record<string, unknown>, msg: string) => said.push({ fields, msg })) as never,
    },
    m,
    [
      { kind: 'peer', address: '127.0.0.1:7001', certificateRequired: true },
      { kind: 'HTTP client', address: '127.0.0.1:8001', certificateRequired: false },
    ],
  );
  const issuer = commonNameOf(m.summary.issuer);
  assert.match(issuer, /^Flotilla development CA [0-9a-f]{8}$/);
  const expires = new Date(m.validToMs).toISOString();
  assert.deepEqual(
    said.map((s) => s.msg),
    [
      `TLS on for the peer port 127.0.0.1:7001: peer certificates of the cluster's CA required; certificate CN=node1, issuer CN=${issuer}, expires ${expires}`,
      `TLS on for the HTTP client port 127.0.0.1:8001: client certificates not required (tlsClientCertAuth off); certificate CN=node1, issuer CN=${issuer}, expires ${expires}`,
    ],
  );
  assert.equal(said[1]?.fields['certificateRequired'], false);
  assert.equal(commonNameOf('CN=a, O=b'), 'a');
  assert.equal(commonNameOf('O=b, CN=c'), 'c');
});
