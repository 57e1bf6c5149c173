// The container image's HEALTHCHECK script: exit 0 only when /readyz answers 200 where the node
// said it serves (serving.json in FLOTILLA_DATA_DIR, over TLS when its client port speaks it,
// with a client certificate when the port asks for one), else at the address
// FLOTILLA_LISTEN_CLIENT names (a wildcard host asked on loopback); 1 when it answers anything
// else, and when nothing listens.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { repoRoot } from '../support/root.js';
import { freePorts } from '../e2e/harness.js';
import { makeTestCerts } from '../support/certs.js';
import { until } from '../support/until.js';
import { TestNodes } from '../server/nodes.js';
import { exitOf, startCli, stopAll } from './run.js';

const script = join(repoRoot(), 'dist', 'src', 'cli', 'healthcheck.js');
const servers: Server[] = [];
const dir = mkdtempSync(join(tmpdir(), 'flotilla-healthcheck-'));
after(async () => {
  await stopAll();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  rmSync(dir, { recursive: true, force: true });
});

async function serve(status: number): Promise<{ port: number; paths: string[] }> {
  const paths: string[] = [];
  const s = createServer((req, res) => {
    paths.push(req.url ?? '');
    res.statusCode = status;
    res.end(JSON.stringify({ ready: status === 200, reason: 'test' }));
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return { port: (s.address() as AddressInfo).port, paths };
}

function run(
  listenClient: string,
  env: Record<string, string> = {},
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script], {
      env: { ...process.env, FLOTILLA_DATA_DIR: '', FLOTILLA_LISTEN_CLIENT: listenClient, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`healthcheck did not exit within 10 s: ${out}`));
    }, 10_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

void test('healthy when /readyz answers 200 on the listen port, asked on loopback', async () => {
  const ready = await serve(200);
  const r = await run(`0.0.0.0:${ready.port}`);
  assert.equal(r.code, 0, r.out);
  assert.deepEqual(ready.paths, ['/readyz']);
});

void test('unhealthy when /readyz refuses, and when nothing listens', async () => {
  const notReady = await serve(503);
  const r = await run(`0.0.0.0:${notReady.port}`);
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /503/);
  const [closed] = (await freePorts(1)) as [number];
  const none = await run(`127.0.0.1:${closed}`);
  assert.equal(none.code, 1, none.out);
});

void test('a node over TLS that asks clients for a certificate: asked where it said, with its own files', async () => {
  // Before, the check spoke plain HTTP to the port FLOTILLA_LISTEN_CLIENT named: a node with
  // TLS on was unhealthy for ever, and one whose port came from a config file was looked for
  // on 8001 (an operator's find).
  const certs = await makeTestCerts(1);
  const nodes = await TestNodes.start({
    nodes: 1,
    https: true,
    configOf: (id) => ({
      tlsCertFile: certs.node(id).certFile,
      tlsKeyFile: certs.node(id).keyFile,
      tlsCaFile: certs.node(id).caFile,
      tlsClientCertAuth: true,
    }),
  });
  try {
    let last = { code: null as number | null, out: '' };
    await until(
      () => `the health check passes (last: exit ${last.code}, ${last.out.trim()})`,
      async () => {
        // A listen address that is wrong on purpose: the node's own word is taken over it.
        last = await run('127.0.0.1:1', { FLOTILLA_DATA_DIR: nodes.dataDir(1) });
        return last.code === 0;
      },
      20_000,
    );
    assert.match(last.out, /^$/);
  } finally {
    await nodes.close();
    certs.close();
  }
});

void test('a node whose data directory and port come from its config file: found through FLOTILLA_SERVING_FILE', async () => {
  // PRODUCTION.md tells an operator who takes the image's settings from a file to set the
  // image's variables empty. The node then ran in the file's data directory while the check
  // looked in FLOTILLA_DATA_DIR (empty), found nothing, asked port 8001, and called a healthy
  // node unhealthy for ever (an operator's find). The image names a file of its own that the
  // node writes wherever its data directory is.
  const [peer, client] = (await freePorts(2)) as [number, number];
  const config = join(dir, 'node.yaml');
  writeFileSync(
    config,
    [
      'id: 1',
      `dataDir: ${join(dir, 'from-file')}`,
      `initialCluster: 1=127.0.0.1:${peer}@http://127.0.0.1:${client}`,
      'emptyStartWaitMs: 0',
      'logLevel: warn',
      '',
    ].join('\n'),
  );
  const image = {
    FLOTILLA_DATA_DIR: '',
    FLOTILLA_LISTEN_CLIENT: '',
    FLOTILLA_SERVING_FILE: join(dir, 'serving.json'),
  };
  const node = startCli(['start', '--config', config], image);
  let last = { code: null as number | null, out: '' };
  await until(
    () =>
      `the health check passes (last: exit ${last.code}, ${last.out.trim()}; node: ${node.out.stderr}${node.out.stdout})`,
    async () => {
      // The image's own listen address, emptied for the node, is a wrong one here on purpose.
      last = await run('127.0.0.1:1', { ...image, FLOTILLA_LISTEN_CLIENT: '127.0.0.1:1' });
      return last.code === 0;
    },
    20_000,
  );
  node.child.kill('SIGTERM');
  assert.equal(await exitOf(node, 15_000), 0, node.out.stderr);
});
