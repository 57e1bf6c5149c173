// A cluster with TLS everywhere (docs/SECURITY.md, "TLS"): three in-process nodes whose peer
// ports speak mutual TLS and whose client ports (HTTP and binary) serve HTTPS and require a
// client certificate; a follower forwards writes to the leader over HTTPS, presenting its own
// certificate. A peer of another CA is refused with a log line; clients without the CA or a
// certificate cannot connect; a certificate rotated on disk is used without a restart.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { get as httpGet } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { connect, type TLSSocket } from 'node:tls';
import { FlotillaClient, FlotillaError } from '../../src/client/index.js';
import { WireConnection } from '../../src/client/wire.js';
import { issueCert } from '../../src/server/certs.js';
import { createLogger } from '../../src/server/logging.js';
import { splitHostPort } from '../../src/base/host-port.js';
import { TcpTransport } from '../../src/transport/tcp.js';
import type { TransportEvent } from '../../src/transport/types.js';
import { makeTestCerts, type TestCerts } from '../support/certs.js';
import { TestNodes } from './nodes.js';
import { freePorts } from '../e2e/harness.js';
import { resolveNodeConfig } from '../../src/server/config.js';
import { FlotillaNode } from '../../src/server/node.js';
import { repoRoot } from '../support/root.js';
import { until } from '../support/until.js';

let certs: TestCerts;
let nodes: TestNodes;
/** Each node's log records, by id. */
const logs = new Map<number, Record<string, unknown>[]>();

before(async () => {
  certs = await makeTestCerts(3);
  nodes = await TestNodes.start({
    nodes: 3,
    https: true,
    clientProtocol: true,
    configOf: (id) => ({
      tlsCertFile: certs.node(id).certFile,
      tlsKeyFile: certs.node(id).keyFile,
      tlsCaFile: certs.node(id).caFile,
      tlsClientCertAuth: true,
      tlsReloadMs: 50,
    }),
    logger: (id) => {
      const records: Record<string, unknown>[] = [];
      logs.set(id, records);
      return createLogger(id, {
        level: 'info',
        format: 'json',
        out: { write: (line) => records.push(JSON.parse(line) as Record<string, unknown>) },
      });
    },
  });
});

after(async () => {
  await nodes.close();
  certs.close();
});

const ca = (): Buffer => readFileSync(certs.node(1).caFile);
const clientPem = () => ({
  ca: ca(),
  cert: readFileSync(join(certs.clusterDir, 'client.crt')),
  key: readFileSync(join(certs.clusterDir, 'client.key')),
});

function messages(id: number): string[] {
  return (logs.get(id) ?? []).map((r) => String(r['msg']));
}

async function waitFor(cond: () => boolean | Promise<boolean>, what: string, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The serial number of the certificate a TLS port presents to a new connection. */
function servedSerial(address: string): Promise<string> {
  const { host, port } = splitHostPort(address);
  return new Promise((resolve, reject) => {
    const s = connect({ host, port, ...clientPem() });
    s.on('secureConnect', () => {
      resolve(s.getPeerCertificate().serialNumber);
      s.destroy();
    });
    s.on('error', reject);
  });
}

/** A plain HTTP GET of `path` at 127.0.0.1:`port`: its status, content type and body. */
function plainHttp(
  port: number,
  path: string,
): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpGet({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'] ?? '', body }),
      );
    });
    req.on('error', reject);
  });
}

void describe('a cluster with TLS on every port', () => {
  void it('serves writes and reads, and a follower forwards writes to the leader over HTTPS', async () => {
    const leader = await nodes.waitForLeader();
    const follower = leader === 1 ? 2 : 1;
    // Only the follower's endpoint, over HTTP alone: the write reaches the leader only if the
    // follower's forwarding call (HTTPS, presenting its certificate) succeeds.
    const c = new FlotillaClient({
      endpoints: [nodes.url(follower)],
      protocol: 'http',
      tls: clientPem(),
    });
    try {
      assert.match(nodes.url(follower), /^https:\/\//);
      const put = await c.put('tls-key', 'v1');
      assert.ok(put.header.revision > 0);
      const got = await c.get('tls-key');
      assert.equal(got?.value, 'v1');
      const status = await c.clusterStatus();
      assert.equal(status.nodes.filter((n) => 'status' in n).length, 3, JSON.stringify(status));
    } finally {
      await c.close();
    }
    // The binary protocol over TLS, once an HTTP answer named its port.
    const b = new FlotillaClient({ endpoints: [nodes.url(follower)], tls: clientPem() });
    try {
      await b.put('tls-bin', 'x');
      await b.put('tls-bin', 'y');
      assert.equal((await b.get('tls-bin'))?.value, 'y');
      const metrics = await nodes.node(follower).metrics.registry.metrics();
      assert.match(metrics, /route="binary:put"/, 'a write went over the binary protocol');
    } finally {
      await b.close();
    }
  });

  void it('says at start-up that TLS is on, on each port, and with which certificate', () => {
    const cert = new X509Certificate(readFileSync(certs.node(1).certFile));
    const issuer = /CN=([^\n]*)/.exec(cert.issuer)?.[1] ?? '?';
    const expires = new Date(Date.parse(cert.validTo)).toISOString();
    const lines = (logs.get(1) ?? []).filter((r) => /^TLS on for the /.test(String(r['msg'])));
    assert.deepEqual(
      lines.map((r) => [r['level'], r['port'], r['certificateRequired']]),
      [
        [30, 'peer', true],
        [30, 'HTTP client', true],
        [30, 'binary protocol', true],
      ],
    );
    const { port } = splitHostPort(nodes.node(1).config.listenClient);
    assert.equal(
      lines[1]?.['msg'],
      `TLS on for the HTTP client port 127.0.0.1:${port}: client certificates of the cluster's CA required; certificate CN=node1, issuer CN=${issuer}, expires ${expires}`,
    );
    assert.match(String(lines[0]?.['msg']), /: peer certificates of the cluster's CA required;/);
  });

  void it('a client that names the TLS port http:// is told to use https://', async () => {
    const plain = nodes.url(1).replace(/^https:/, 'http:');
    const c = new FlotillaClient({ endpoints: [plain], deadlineMs: 3_000 });
    try {
      // The port's plain-text answer says it speaks TLS: no retry helps, and nothing was done.
      await assert.rejects(
        c.put('tls-key', 'never-done'),
        (e: FlotillaError) =>
          e.code === 'CONNECTION' &&
          e.indefinite === false &&
          /answered that it speaks TLS only .*its endpoint is https:\/\/\)$/.test(e.message),
      );
    } finally {
      await c.close();
    }
  });

  void it('plain HTTP to a TLS port is answered 400 in plain text, and TLS clients are served', async () => {
    const client = splitHostPort(nodes.node(1).config.listenClient);
    const peer = splitHostPort(nodes.node(1).config.listenPeer);
    // Before: no answer at all (curl: "Empty reply from server").
    const http = await plainHttp(client.port, '/v1/status?x=1');
    assert.equal(http.status, 400);
    assert.match(http.type, /^text\/plain/);
    assert.match(
      http.body,
      new RegExp(
        `^400 Bad Request: the plain HTTP request was sent to an HTTPS port\\. This port speaks TLS only: use https://127\\.0\\.0\\.1:${client.port}/v1/status\\?x=1 `,
      ),
    );
    const binary = await plainHttp(nodes.binaryPort(1), '/');
    assert.equal(binary.status, 400);
    assert.match(binary.body, /binary client protocol port, over TLS: it does not serve HTTP/);
    const peerPort = await plainHttp(peer.port, '/');
    assert.equal(peerPort.status, 400);
    assert.match(peerPort.body, /peer port, over TLS: it does not serve HTTP/);
    // A binary client without TLS is told in the protocol's own error frame.
    await assert.rejects(
      WireConnection.connect({ host: '127.0.0.1', port: nodes.binaryPort(1), timeoutMs: 3_000 }),
      (e: FlotillaError) =>
        e.code === 'BAD_FRAME' &&
        /speaks the binary protocol over TLS only/.test(e.message) &&
        e.indefinite === false,
    );
    // TLS clients on the same ports, over HTTP and the binary protocol, are served as before.
    const c = new FlotillaClient({ endpoints: [nodes.url(1)], tls: clientPem() });
    try {
      await c.put('after-plain', 'ok');
      await c.put('after-plain', 'ok2');
      assert.equal((await c.get('after-plain'))?.value, 'ok2');
    } finally {
      await c.close();
    }
    const wire = await WireConnection.connect({
      host: '127.0.0.1',
      port: nodes.binaryPort(1),
      timeoutMs: 3_000,
      tls: clientPem(),
    });
    assert.equal(wire.hello.nodeId, 1);
    wire.close();
  });

  void it('a member without TLS dialling the TLS peer port is told why', async () => {
    const target = nodes.node(1).config.listenPeer;
    const events: TransportEvent[] = [];
    const plain = await TcpTransport.listen({
      nodeId: 2,
      clusterId: nodes.node(1).config.clusterId,
      listen: { host: '127.0.0.1', port: 0 },
      peers: new Map([[1, splitHostPort(target)]]),
    });
    plain.onEvent((e) => events.push(e));
    try {
      plain.send({ from: 2, to: 1, term: 1, type: 'heartbeat', commit: 0, seq: 1 });
      // Before: the connection closed unexplained, on every dial.
      const refused = await until(
        'the plain dialler told why',
        () => events.find((e) => e.kind === 'handshake-refused') ?? null,
      );
      assert.match(
        (refused as { reason: string }).reason,
        /the dialler does not speak TLS and this peer port does: every member must have TLS on, or none/,
      );
      await until("node 1's log line", () =>
        messages(1).some((m) =>
          /^peer connection from 127\.0\.0\.1:\d+ refused: the dialler does not speak TLS/.test(m),
        ),
      );
    } finally {
      await plain.close();
    }
  });

  void it('a client without the CA, or without a certificate, cannot connect', async () => {
    const url = nodes.url(1);
    const noCa = new FlotillaClient({ endpoints: [url], maxAttempts: 1, deadlineMs: 3_000 });
    const noCert = new FlotillaClient({
      endpoints: [url],
      maxAttempts: 1,
      deadlineMs: 3_000,
      tls: { ca: ca() },
    });
    try {
      // Each told what it lacks (before: "self-signed certificate in certificate chain" and
      // "other side closed", with no word of the CA or the certificate to give).
      await assert.rejects(
        noCa.get('tls-key'),
        (e: FlotillaError) =>
          e.code === 'CONNECTION' && /give the cluster's CA, tls\.ca, or --cacert/.test(e.message),
      );
      // A write refused by this client's own handshake was never sent: definite, safe to
      // retry with the CA given.
      await assert.rejects(
        noCa.put('tls-key', 'never-sent'),
        (e: FlotillaError) =>
          e.code === 'CONNECTION' && e.indefinite === false && /tls\.ca/.test(e.message),
      );
      // Told by the node, after the handshake, rather than finding the connection closed
      // (which looks like any network failure): definite, nothing was done.
      await assert.rejects(
        noCert.get('tls-key'),
        (e: FlotillaError) =>
          e.code === 'UNAUTHENTICATED' &&
          /requires a client certificate its cluster's CA signed: client presented no certificate/.test(
            e.message,
          ),
      );
      await assert.rejects(
        noCert.put('tls-key', 'never-done'),
        (e: FlotillaError) => e.code === 'UNAUTHENTICATED' && e.indefinite === false,
      );
    } finally {
      await noCa.close();
      await noCert.close();
    }
    await assert.rejects(
      WireConnection.connect({
        host: '127.0.0.1',
        port: nodes.binaryPort(1),
        timeoutMs: 3_000,
        tls: { ca: ca() },
      }),
      // Refused in the protocol's handshake, saying why; nothing is sent on a connection
      // before its handshake's answer.
      (e: FlotillaError) =>
        e instanceof FlotillaError &&
        e.code === 'UNAUTHENTICATED' &&
        e.indefinite === false &&
        /client presented no certificate/.test(e.message),
    );
    const ok = await WireConnection.connect({
      host: '127.0.0.1',
      port: nodes.binaryPort(1),
      timeoutMs: 3_000,
      tls: clientPem(),
    });
    assert.equal(ok.hello.nodeId, 1);
    ok.close();
  });

  void it('a client refused for its certificate is logged, once a minute per address and reason', async () => {
    const refusedLines = () =>
      (logs.get(1) ?? []).filter((r) =>
        /^client connection from 127\.0\.0\.1:\d+ \((HTTP|binary protocol)\) refused: client certificate not issued by this cluster's CA \(\w+; subject CN=rogue, issuer CN=Some other CA\)$/.test(
          String(r['msg']),
        ),
      );
    const rogue = { ...certs.roguePem(), ca: ca() };
    // Three connections (one per client: each its own pool), each refused.
    for (let i = 0; i < 3; i++) {
      const c = new FlotillaClient({ endpoints: [nodes.url(1)], protocol: 'http', tls: rogue });
      try {
        await assert.rejects(c.get('k'), (e: FlotillaError) => e.code === 'UNAUTHENTICATED');
      } finally {
        await c.close();
      }
    }
    await assert.rejects(
      WireConnection.connect({
        host: '127.0.0.1',
        port: nodes.binaryPort(1),
        timeoutMs: 3_000,
        tls: rogue,
      }),
      (e: FlotillaError) => e.code === 'UNAUTHENTICATED',
    );
    // Before: nothing at the default level. Now one warning, with who and why; the repeats
    // within the minute are counted for the next line, not written.
    const lines = refusedLines();
    assert.equal(lines.length, 1, JSON.stringify(lines));
    assert.equal(lines[0]?.['level'], 40);
    assert.equal(lines[0]?.['port'], 'HTTP');
    assert.match(String(lines[0]?.['remote']), /^127\.0\.0\.1:\d+$/);
  });

  void it('a TLS session resumed without a certificate is refused as its first connection was', async () => {
    // The node issues TLS 1.3 session tickets, and a connection resumed from one counts as
    // authorized whatever the first connection presented: a client without a certificate was
    // refused once, then served from its next connection on (Node's https.Agent and undici
    // resume sessions by themselves). Each connection here is new (Connection: close), and
    // the test asserts that resumption happened, or it would prove nothing.
    const url = new URL(nodes.url(1));
    const get = (
      agent: HttpsAgent,
    ): Promise<{ status: number; reused: boolean; bearer: boolean }> =>
      new Promise((resolve, reject) => {
        let reused = false;
        const req = httpsRequest(
          {
            host: url.hostname,
            port: Number(url.port),
            path: '/v1/status',
            agent,
            headers: { connection: 'close' },
          },
          (res) => {
            res.resume();
            res.on('end', () =>
              resolve({
                status: res.statusCode ?? 0,
                reused,
                bearer: res.headers['www-authenticate'] !== undefined,
              }),
            );
          },
        );
        req.on('socket', (s) =>
          s.once('secureConnect', () => (reused = (s as TLSSocket).isSessionReused())),
        );
        req.on('error', reject);
        req.end();
      });
    const without = new HttpsAgent({ ca: ca(), keepAlive: false });
    const withCert = new HttpsAgent({ ...clientPem(), keepAlive: false });
    try {
      const refused = [await get(without), await get(without), await get(without)];
      assert.deepEqual(
        refused.map((r) => r.status),
        [401, 401, 401],
      );
      // A certificate's refusal asks for no bearer token.
      assert.deepEqual(
        refused.map((r) => r.bearer),
        [false, false, false],
      );
      assert.ok(
        refused.some((r) => r.reused),
        'no connection resumed a session: nothing was tested',
      );
      const served = [await get(withCert), await get(withCert), await get(withCert)];
      assert.deepEqual(
        served.map((r) => r.status),
        [200, 200, 200],
      );
      assert.ok(
        served.some((r) => r.reused),
        'a resumed session with a certificate is served',
      );
    } finally {
      without.destroy();
      withCert.destroy();
    }

    // The binary protocol: a session taken from a first connection, resumed by the next.
    const port = nodes.binaryPort(1);
    const session = await new Promise<Buffer>((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port, ca: ca() });
      s.once('session', (sess: Buffer) => {
        resolve(sess);
        s.destroy();
      });
      s.on('error', reject);
      s.resume();
    });
    await assert.rejects(
      WireConnection.connect({
        host: '127.0.0.1',
        port,
        timeoutMs: 3_000,
        tls: { ca: ca(), session },
      }),
      (e: FlotillaError) =>
        e.code === 'UNAUTHENTICATED' &&
        /client presented no certificate \(a resumed TLS session\)/.test(e.message),
    );
  });
  void it('the command line talks to it with --cacert, --cert and --key, or their variables', async () => {
    const cli = join(repoRoot(), 'dist', 'src', 'cli', 'main.js');
    const files = {
      ca: certs.node(1).caFile,
      cert: join(certs.clusterDir, 'client.crt'),
      key: join(certs.clusterDir, 'client.key'),
    };
    const run = (args: string[], env: Record<string, string> = {}) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          [cli, ...args],
          { timeout: 30_000, env: { ...process.env, ...env } },
          (err, stdout, stderr) =>
            resolve({ code: err === null ? 0 : (err.code as number | null), stdout, stderr }),
        );
      });
    const endpoints = ['--endpoints', nodes.url(2)];
    const put = await run([
      'kv',
      'put',
      'cli-key',
      'cli-value',
      ...endpoints,
      '--cacert',
      files.ca,
      '--cert',
      files.cert,
      '--key',
      files.key,
    ]);
    assert.equal(put.code, 0, put.stderr);
    const get = await run(['kv', 'get', 'cli-key', ...endpoints], {
      FLOTILLA_TLS_CA_FILE: files.ca,
      FLOTILLA_TLS_CERT_FILE: files.cert,
      FLOTILLA_TLS_KEY_FILE: files.key,
    });
    assert.equal(get.code, 0, get.stderr);
    assert.match(get.stdout, /cli-value/);
    const untrusted = await run(['kv', 'get', 'cli-key', ...endpoints]);
    assert.equal(untrusted.code, 1);
    assert.match(untrusted.stderr, /CONNECTION: .*certificate/);
    const halfPair = await run(['kv', 'get', 'cli-key', ...endpoints, '--cert', files.cert]);
    assert.equal(halfPair.code, 2);
    assert.match(halfPair.stderr, /--cert and --key go together/);
    // Files that cannot work are refused before any connection, naming the file (before: 8
    // attempts, 2 s, OpenSSL's words and no file named, or a key taken for an untrusted CA).
    const rogueKey = join(certs.otherDir, 'rogue.key');
    for (const [args, why] of [
      [
        ['--cacert', files.key],
        /--cacert \S+client\.key holds no PEM certificate \(is it a key\?\)/,
      ],
      [
        ['--cacert', files.ca, '--cert', files.key, '--key', files.key],
        /--cert \S+client\.key holds no PEM certificate/,
      ],
      [
        ['--cacert', files.ca, '--cert', files.cert, '--key', rogueKey],
        /--key \S+rogue\.key does not go with --cert \S+client\.crt/,
      ],
    ] as const) {
      const refused = await run(['kv', 'get', 'cli-key', ...endpoints, ...args]);
      assert.equal(refused.code, 2, refused.stderr);
      assert.match(refused.stderr, why);
    }
    // A backup over HTTPS, with the same settings.
    const backup = join(certs.clusterDir, 'cluster.flbk');
    const saved = await run(['snapshot', 'save', backup, ...endpoints], {
      FLOTILLA_TLS_CA_FILE: files.ca,
      FLOTILLA_TLS_CERT_FILE: files.cert,
      FLOTILLA_TLS_KEY_FILE: files.key,
    });
    assert.equal(saved.code, 0, saved.stderr);
    assert.match(saved.stdout, /"sha256": "[0-9a-f]{64}"/);
  });

  void it('refuses a peer whose certificate another CA issued, and logs who and why', async () => {
    const target = nodes.node(1).config.listenPeer;
    const events: TransportEvent[] = [];
    // It claims to be member 2 and trusts the cluster's CA: only its certificate is wrong.
    const rogue = await TcpTransport.listen({
      nodeId: 2,
      clusterId: nodes.node(1).config.clusterId,
      listen: { host: '127.0.0.1', port: 0 },
      peers: new Map([[1, splitHostPort(target)]]),
      tls: certs.roguePem(),
    });
    rogue.onEvent((e) => events.push(e));
    try {
      rogue.send({ from: 2, to: 1, term: 1, type: 'heartbeat', commit: 0, seq: 1 });
      await waitFor(
        () => messages(1).some((m) => /^peer connection from .*CN=rogue/.test(m)),
        "node 1's log line",
      );
      const line = messages(1).find((m) => /^peer connection from .*CN=rogue/.test(m));
      assert.match(
        line ?? '',
        /^peer connection from 127\.0\.0\.1:\d+ refused: peer certificate not issued by this cluster's CA \(\w+; subject CN=rogue, issuer CN=Some other CA\)$/,
      );
      await waitFor(() => events.some((e) => e.kind === 'handshake-refused'), "the rogue's event");
      assert.ok(!events.some((e) => e.kind === 'peer-connected'));
      // It dials again and again (a learner with another CA's certificate does, 4 to 5 times
      // a second): refused each time, said once a minute.
      await waitFor(() => {
        rogue.send({ from: 2, to: 1, term: 1, type: 'heartbeat', commit: 0, seq: 1 });
        return events.filter((e) => e.kind === 'handshake-refused').length >= 4;
      }, 'four refusals of the rogue');
      assert.equal(
        messages(1).filter((m) => /^peer connection from .*CN=rogue/.test(m)).length,
        1,
        messages(1).join('\n'),
      );
    } finally {
      await rogue.close();
    }
  });

  void it('a certificate rotated on disk is used by new connections without a restart', async () => {
    const n1 = nodes.node(1).config;
    const before = await servedSerial(n1.listenClient);
    assert.equal(await servedSerial(n1.listenPeer), before);
    // The expiry gauge follows the certificate in use.
    const expiryOnDisk = (): number =>
      Math.floor(
        Date.parse(new X509Certificate(readFileSync(certs.node(1).certFile)).validTo) / 1000,
      );
    const expiryGauge = async (): Promise<number> => {
      const text = await nodes.node(1).metrics.registry.metrics();
      const line = text
        .split('\n')
        .find((l) => l.startsWith('flotilla_tls_certificate_expiry_timestamp_seconds{'));
      return Number(line?.split(' ')[1]);
    };
    assert.equal(await expiryGauge(), expiryOnDisk());
    const expiryBefore = expiryOnDisk();
    // Same CA, new certificate: written in place, as a renewal does.
    await issueCert(certs.clusterDir, { name: 'node1', hosts: '127.0.0.1,localhost', force: true });
    const renewed = new Set<string>();
    await waitFor(async () => {
      const s = await servedSerial(n1.listenClient);
      if (s !== before) renewed.add(s);
      return s !== before;
    }, 'the client port to serve the new certificate');
    assert.equal(renewed.size, 1);
    const [after] = [...renewed];
    await waitFor(
      async () => (await servedSerial(n1.listenPeer)) === after,
      'the peer port to serve the new certificate',
    );
    assert.ok(messages(1).includes('TLS certificate reloaded: new connections use it'));
    assert.equal(await expiryGauge(), expiryOnDisk());
    assert.notEqual(expiryOnDisk(), expiryBefore, 'the renewed certificate expires later');

    // A broken key is refused: logged, and the certificate in use stays.
    const keyFile = certs.node(1).keyFile;
    const goodKey = readFileSync(keyFile);
    writeFileSync(
      keyFile,
      '-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n',
    );
    await waitFor(
      () =>
        messages(1).includes(
          'TLS files changed but cannot be used: keeping the certificate in use',
        ),
      'the refusal in the log',
    );
    assert.equal(await servedSerial(n1.listenClient), after);
    writeFileSync(keyFile, goodKey);

    // The cluster still serves through node 1, whose members and clients dial it anew.
    const c = new FlotillaClient({ endpoints: [nodes.url(1)], protocol: 'http', tls: clientPem() });
    try {
      await c.put('after-rotation', 'ok');
      assert.equal((await c.get('after-rotation'))?.value, 'ok');
    } finally {
      await c.close();
    }
  });
  void it("a node with another CA's certificate is refused its join, and nothing is added", async () => {
    // It trusts the cluster's CA (so it can ask) and its own CA (its certificate must chain
    // to a CA of its file): only its certificate is wrong. Before, the handshake closed on it
    // as on a network failure, and it asked again for a minute before giving up with no word
    // of its certificate. A refusal that names it is definite: the join stops at once.
    const caFile = join(certs.dir, 'rogue-and-cluster-ca.crt');
    writeFileSync(
      caFile,
      Buffer.concat([
        readFileSync(join(certs.otherDir, 'ca.crt')),
        readFileSync(certs.node(1).caFile),
      ]),
    );
    const [peer, client] = (await freePorts(2)) as [number, number];
    const config = resolveNodeConfig({
      id: 5,
      dataDir: join(certs.dir, 'rogue5'),
      initialCluster: `5=127.0.0.1:${peer}@https://127.0.0.1:${client}`,
      join: nodes.url(1),
      logLevel: 'silent',
      tlsCertFile: join(certs.otherDir, 'rogue.crt'),
      tlsKeyFile: join(certs.otherDir, 'rogue.key'),
      tlsCaFile: caFile,
      tlsClientCertAuth: true,
    });
    await assert.rejects(
      FlotillaNode.start(config),
      (e: FlotillaError) =>
        e.code === 'UNAUTHENTICATED' &&
        /refused: This node requires a client certificate its cluster's CA signed: client certificate not issued by this cluster's CA \(\w+; subject CN=rogue, issuer CN=Some other CA\)/.test(
          e.message,
        ),
    );
    const c = new FlotillaClient({ endpoints: [nodes.url(1)], protocol: 'http', tls: clientPem() });
    try {
      const { members } = await c.members();
      assert.deepEqual(
        members.map((m) => m.id).filter((id) => id === 5),
        [],
      );
    } finally {
      await c.close();
    }
  });
  void it('a node joins through a follower over HTTPS and serves what was written', async () => {
    const leader = await nodes.waitForLeader();
    const follower = leader === 1 ? 2 : 1;
    await issueCert(certs.clusterDir, { name: 'node4', hosts: '127.0.0.1' });
    const [peer, client] = (await freePorts(2)) as [number, number];
    const config = resolveNodeConfig({
      id: 4,
      dataDir: join(certs.dir, 'joiner4'),
      initialCluster: `4=127.0.0.1:${peer}@https://127.0.0.1:${client}`,
      join: nodes.url(follower),
      logLevel: 'silent',
      tlsCertFile: join(certs.clusterDir, 'node4.crt'),
      tlsKeyFile: join(certs.clusterDir, 'node4.key'),
      tlsCaFile: certs.node(1).caFile,
      tlsClientCertAuth: true,
    });
    const joiner = await FlotillaNode.start(config);
    try {
      // It learned the cluster from an HTTPS answer, and catches up over mutual TLS.
      const c = new FlotillaClient({
        endpoints: [`https://127.0.0.1:${client}`],
        protocol: 'http',
        tls: clientPem(),
      });
      try {
        await waitFor(
          async () => (await c.get('tls-key', { serializable: true }))?.value === 'v1',
          'node 4 to hold what was written before it joined',
        );
        assert.equal((await c.get('tls-key'))?.value, 'v1');
      } finally {
        await c.close();
      }
    } finally {
      await joiner.close();
    }
  });
});
