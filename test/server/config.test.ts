// Node configuration: file < environment < flags, and every bad value refused with a message
// naming the field and the value seen.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  ConfigError,
  configFromEnv,
  parseInitialCluster,
  readConfigFile,
  resolveNodeConfig,
} from '../../src/server/config.js';
import { maxWriteEnvelopeBytes } from '../../src/kv/machine.js';
import { FlotillaNode } from '../../src/server/node.js';

const cluster =
  '1=127.0.0.1:7001@http://127.0.0.1:8001,2=127.0.0.1:7002@http://127.0.0.1:8002,3=127.0.0.1:7003@http://127.0.0.1:8003';

void test('file, then environment, then flags', () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-config-'));
  try {
    const file = join(dir, 'node.yaml');
    writeFileSync(
      file,
      `id: 1\ndataDir: /var/lib/flotilla\ninitialCluster: "${cluster}"\ntickMs: 20\nelectionTicks: 12\n`,
    );
    const env = configFromEnv({ FLOTILLA_TICK_MS: '30', FLOTILLA_STORAGE: 'sqlite' });
    const c = resolveNodeConfig(readConfigFile(file), env, { electionTicks: 20, id: undefined });
    assert.equal(c.id, 1);
    assert.equal(c.tickMs, 30, 'environment overrides the file');
    assert.equal(c.electionTicks, 20, 'flags override the file');
    assert.equal(c.storage, 'sqlite');
    assert.equal(c.listenPeer, '127.0.0.1:7001', 'listen addresses default to the member entry');
    assert.equal(c.listenClient, '127.0.0.1:8001');
    assert.equal(c.members.length, 3);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

void test('members and initialCluster are one setting: a later layer replaces either', () => {
  const members = [{ id: 1, peer: '127.0.0.1:7101', client: 'http://127.0.0.1:8101' }];
  const fromFile = { id: 1, dataDir: '/d', members };
  const env = configFromEnv({ FLOTILLA_INITIAL_CLUSTER: '1=127.0.0.1:7201@http://127.0.0.1:8201' });
  assert.equal(resolveNodeConfig(fromFile).listenPeer, '127.0.0.1:7101');
  assert.equal(resolveNodeConfig(fromFile, env).listenPeer, '127.0.0.1:7201', 'env over file');
  const flags = { initialCluster: '1=127.0.0.1:7301@http://127.0.0.1:8301' };
  assert.equal(resolveNodeConfig(fromFile, {}, flags).listenPeer, '127.0.0.1:7301');
  // And the other way round: members given later replace an initialCluster given earlier.
  const c = resolveNodeConfig({ id: 1, dataDir: '/d', initialCluster: cluster }, { members });
  assert.deepEqual(
    c.members.map((m) => m.peer),
    ['127.0.0.1:7101'],
  );
});

void test('bad values are refused with the field and the value', () => {
  const base = { id: 1, dataDir: '/d', initialCluster: cluster };
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ ...base, id: 4 }, /id 4 is not among the members/],
    [{ ...base, tickMs: 0 }, /tickMs must be an integer in \[1, 10000\], got 0/],
    [{ ...base, tickMs: 'fast' }, /tickMs must be an integer.*"fast"/],
    [
      { ...base, heartbeatTicks: 20, electionTicks: 10 },
      /heartbeatTicks \(20\) must be below electionTicks \(10\)/,
    ],
    [
      { ...base, leaseDriftTicks: 15 },
      /leaseDriftTicks \(15\) must be below electionTicks \(15\): it would leave no lease/,
    ],
    [{ ...base, leaseDriftTicks: -1 }, /leaseDriftTicks must be an integer in \[0, 10000\]/],
    [{ ...base, storage: 'tape' }, /storage must be "wal" or "sqlite", got "tape"/],
    [{ ...base, colour: 'red' }, /Unknown config field "colour"/],
    [{ ...base, dataDir: 5 }, /dataDir must be a directory path, got 5/],
    [{ ...base, tickMs: '0x10' }, /tickMs must be an integer in \[1, 10000\], got "0x10"/],
    [{ ...base, tickMs: '1e1' }, /tickMs must be an integer/],
    [{ ...base, tickMs: ' 20' }, /tickMs must be an integer/],
    [{ ...base, tickMs: 1e400 }, /tickMs must be an integer in \[1, 10000\], got Infinity/],
    [{ ...base, tickMs: null }, /tickMs has no value; give one, or leave the field out/],
    [{ ...base, initialCluster: ['a'] }, /initialCluster must be a string such as 1=.*got \["a"\]/],
    [
      { ...base, members: [{ id: 1, peer: '127.0.0.1:7001', client: 'http://127.0.0.1:8001' }] },
      /gives both members and initialCluster/,
    ],
    [{ ...base, dataDir: '' }, /dataDir is required/],
    [{ ...base, clusterId: 'has space' }, /clusterId "has space"/],
    [
      { ...base, maxBodyBytes: 2048, maxValueBytes: 4096 },
      /maxBodyBytes \(2048\) must hold a put of a key and a value at their limits in base64: 7856 bytes/,
    ],
    [
      { ...base, maxBodyBytes: 6000, maxValueBytes: 4096 },
      /maxBodyBytes \(6000\) must hold a put .* in base64/,
    ],
    [
      { ...base, maxValueBytes: 16 * 1024 * 1024, maxBodyBytes: 32 * 1024 * 1024 },
      /maxEntryBytes \(16777216\) is below maxProposalBytes \(16778\d\d\d\): storage would refuse/,
    ],
    [
      { ...base, maxValueBytes: 15 * 1024 * 1024, maxBodyBytes: 32 * 1024 * 1024 },
      /maxFrameBytes \(16777216\) must hold an append of maxProposalBytes \(157\d{5}\)/,
    ],
    [
      { ...base, httpHeadersTimeoutMs: 2000, httpRequestTimeoutMs: 1000 },
      /httpHeadersTimeoutMs \(2000\) must not exceed httpRequestTimeoutMs \(1000\)/,
    ],
    [{ ...base, httpMaxConnections: 0 }, /httpMaxConnections must be an integer in \[1, /],
    [{ ...base, httpIdleTimeoutMs: 5 }, /httpIdleTimeoutMs must be an integer in \[10, /],
    [{ ...base, unsafeTestMode: 'yolo' }, /unsafeTestMode must be/],
    [{ ...base, logFormat: 'xml' }, /logFormat must be auto, json or pretty, got "xml"/],
    [{ id: 1, dataDir: '/d' }, /initialCluster is required/],
    [{ dataDir: '/d', initialCluster: cluster }, /id is required: .*--id, FLOTILLA_ID/],
    [{ ...base, initialCluster: '1=nohost' }, /must look like 1=127.0.0.1:7001@http/],
    [
      { ...base, initialCluster: `${cluster},1=127.0.0.1:7009@http://127.0.0.1:8009` },
      /lists member id 1 twice/,
    ],
    // Two members at one address: each node would dial itself for the other and refuse the
    // handshake for ever, with nothing said at start-up.
    [
      {
        ...base,
        initialCluster:
          '1=127.0.0.1:7001@http://127.0.0.1:8001,2=127.0.0.1:7001@http://127.0.0.1:8002',
      },
      /members 1 and 2 both have peer address 127\.0\.0\.1:7001/,
    ],
    [
      { ...base, initialCluster: '1=127.0.0.1:99999@http://127.0.0.1:8001' },
      /Member 1 peer "127\.0\.0\.1:99999" must be host:port \(an IPv6 host in brackets\) with a port in \[1, 65535\]/,
    ],
    [
      { ...base, initialCluster: '1=::1:7001@http://[::1]:8001' },
      /Member 1 peer "::1:7001" must be host:port \(an IPv6 host in brackets\)/,
    ],
    [
      { ...base, initialCluster: '1=[127.0.0.1]:7001@http://127.0.0.1:8001' },
      /Member 1 peer "\[127\.0\.0\.1\]:7001" must be host:port/,
    ],
  ];
  for (const [raw, message] of bad) {
    assert.throws(
      () => resolveNodeConfig(raw),
      (e: unknown) =>
        e instanceof ConfigError && e.code === 'CONFIG_INVALID' && message.test(e.message),
      JSON.stringify(raw),
    );
  }
});

void test("a node's own listeners on one port are refused before anything starts", () => {
  const base = { id: 1, dataDir: '/d' };
  const same = /are the same port: each of a node's listeners needs its own/;
  const bad: [Record<string, unknown>, RegExp][] = [
    [
      { ...base, initialCluster: '1=127.0.0.1:7001@http://127.0.0.1:7001' },
      /listenPeer \(127\.0\.0\.1:7001\) and listenClient \(127\.0\.0\.1:7001\)/,
    ],
    [
      { ...base, initialCluster: cluster, clientProtocolPort: 8001 },
      /listenClient \(127\.0\.0\.1:8001\) and clientProtocolPort \(127\.0\.0\.1:8001\)/,
    ],
    [
      { ...base, initialCluster: cluster, clientProtocolPort: 7001 },
      /listenPeer .* and clientProtocolPort/,
    ],
    // A wildcard address holds the port on every interface.
    [{ ...base, initialCluster: cluster, listenPeer: '0.0.0.0:8001' }, same],
  ];
  for (const [raw, message] of bad)
    assert.throws(
      () => resolveNodeConfig(raw),
      (e: unknown) =>
        e instanceof ConfigError &&
        e.code === 'CONFIG_INVALID' &&
        message.test(e.message) &&
        same.test(e.message),
      JSON.stringify(raw),
    );
  // Different hosts on one port, and port 0 (any free port) twice, are fine.
  resolveNodeConfig({ ...base, initialCluster: cluster, listenPeer: '127.0.0.2:8001' });
  resolveNodeConfig({
    ...base,
    initialCluster: cluster,
    listenPeer: '127.0.0.1:0',
    listenClient: '127.0.0.1:0',
  });
  resolveNodeConfig({ ...base, initialCluster: cluster, clientProtocolPort: 9001 });
});

void test('the lease drift bound follows the election timeout unless set', () => {
  const base = { id: 1, dataDir: '/d', initialCluster: cluster };
  assert.equal(resolveNodeConfig(base).leaseDriftTicks, 5);
  // A short election timeout with the bound unset must still start (a fixed 5 would not).
  assert.equal(
    resolveNodeConfig({ ...base, electionTicks: 4, heartbeatTicks: 1 }).leaseDriftTicks,
    2,
  );
  assert.equal(resolveNodeConfig({ ...base, leaseDriftTicks: 0 }).leaseDriftTicks, 0);
  assert.equal(resolveNodeConfig({ ...base, leaseDriftTicks: 14 }).leaseDriftTicks, 14);
});

void test('config files that are not mappings, or not YAML, are refused', () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-config-'));
  try {
    const list = join(dir, 'list.yaml');
    writeFileSync(list, '- 1\n- 2\n');
    assert.throws(() => readConfigFile(list), /must hold a mapping/);
    const broken = join(dir, 'broken.json');
    writeFileSync(broken, '{"id": 1,');
    assert.throws(() => readConfigFile(broken), /not valid YAML\/JSON/);
    assert.throws(() => readConfigFile(join(dir, 'missing.yaml')), /Cannot read config file/);
    // Numbers as YAML reads them but a setting is not written: refused, naming the line.
    for (const [text, seen] of [
      ['id: 1\ntickMs: 0x10\n', '0x10'],
      ['id: 1\ntickMs: 1e3\n', '1e3'],
      ['id: 1\nelectionTicks: 0o17\n', '0o17'],
      ['id: 1\nelectionTicks: .inf\n', '.inf'],
    ] as const) {
      const odd = join(dir, 'odd.yaml');
      writeFileSync(odd, text);
      assert.throws(
        () => readConfigFile(odd),
        (err: Error) => err.message.includes(`line 2: ${seen} is not a decimal number`),
        text,
      );
    }
    const fine = join(dir, 'fine.yaml');
    writeFileSync(fine, 'id: 1\ntickMs: 16\ndataDir: "0x10"\nlabel: 1e3x\n');
    assert.deepEqual(readConfigFile(fine), { id: 1, tickMs: 16, dataDir: '0x10', label: '1e3x' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

void test('initial cluster parsing', () => {
  assert.deepEqual(parseInitialCluster('7=10.0.0.1:2380@https://10.0.0.1:2379/'), [
    { id: 7, peer: '10.0.0.1:2380', client: 'https://10.0.0.1:2379' },
  ]);
});

void test('the proposal limit is derived from the key and value limits', () => {
  const base = { id: 1, dataDir: '/d', initialCluster: cluster };
  const c = resolveNodeConfig(base);
  assert.equal(c.maxProposalBytes, maxWriteEnvelopeBytes(c));
  assert.ok(c.maxProposalBytes > c.maxKeyBytes + c.maxValueBytes);
  assert.ok(c.maxProposalBytes < c.maxKeyBytes + c.maxValueBytes + 1024, 'the envelope is small');
  assert.throws(() => resolveNodeConfig({ ...base, maxProposalBytes: 5 }), /Unknown config field/);
  const big = resolveNodeConfig({
    ...base,
    maxValueBytes: 8 * 1024 * 1024,
    maxBodyBytes: 12 * 1024 * 1024,
  });
  assert.equal(big.maxProposalBytes, maxWriteEnvelopeBytes(big));
});

void test('the HTTP connection limits have defaults and come from the environment too', () => {
  const base = { id: 1, dataDir: '/d', initialCluster: cluster };
  const c = resolveNodeConfig(base);
  assert.deepEqual(
    [c.httpHeadersTimeoutMs, c.httpRequestTimeoutMs, c.httpIdleTimeoutMs, c.httpMaxConnections],
    [5_000, 30_000, 10_000, 8_192],
  );
  const env = configFromEnv({
    FLOTILLA_HTTP_MAX_CONNECTIONS: '64',
    FLOTILLA_HTTP_IDLE_TIMEOUT_MS: '250',
  });
  const e = resolveNodeConfig(base, env);
  assert.deepEqual([e.httpMaxConnections, e.httpIdleTimeoutMs], [64, 250]);
});

void test('listen addresses: a client URL on its default port, and host:port checked', () => {
  // Before, a client URL that leaves the port to its scheme (http://h, https://h) made
  // listenClient "h" without a port, and the node failed to start with ERR_SOCKET_BAD_PORT
  // ("Received type number (NaN)"); a listen address without a port got the same.
  const at = (client: string, extra: Record<string, unknown> = {}) =>
    resolveNodeConfig({
      id: 1,
      dataDir: '/d',
      initialCluster: `1=127.0.0.1:7001@${client}`,
      ...extra,
    });
  assert.equal(at('http://127.0.0.1').listenClient, '127.0.0.1:80');
  assert.equal(at('http://127.0.0.1:80/').listenClient, '127.0.0.1:80');
  assert.equal(at('http://[::1]:8001').listenClient, '[::1]:8001');
  // A member named by an IPv6 address, in brackets as in a URL (etcd's --initial-cluster too).
  const v6 = resolveNodeConfig({
    id: 1,
    dataDir: '/d',
    initialCluster: '1=[::1]:7001@http://[::1]:8001,2=[fd00::2]:7001@http://[fd00::2]:8001',
  });
  assert.deepEqual(
    v6.members.map((m) => m.peer),
    ['[::1]:7001', '[fd00::2]:7001'],
  );
  assert.equal(v6.listenPeer, '[::1]:7001');
  assert.equal(v6.listenClient, '[::1]:8001');
  assert.equal(
    at('http://127.0.0.1:8001', { listenClient: '[::]:8001' }).listenClient,
    '[::]:8001',
  );
  assert.equal(at('http://127.0.0.1:8001', { listenPeer: '0.0.0.0:0' }).listenPeer, '0.0.0.0:0');
  const refused: [Record<string, unknown>, RegExp][] = [
    [{ listenClient: '0.0.0.0' }, /listenClient must be host:port.*got "0\.0\.0\.0"/],
    [{ listenClient: '0.0.0.0:70000' }, /listenClient must be host:port.*got "0\.0\.0\.0:70000"/],
    [{ listenPeer: ':7001' }, /listenPeer must be host:port/],
    [{ listenPeer: 7001 }, /listenPeer must be host:port.*got number/],
  ];
  for (const [extra, why] of refused)
    assert.throws(
      () => at('http://127.0.0.1:8001', extra),
      (e: unknown) => e instanceof ConfigError && why.test(e.message),
      JSON.stringify(extra),
    );
});

void test('a node refuses a config resolveNodeConfig did not make, and a layer that is not an object', async () => {
  // Before, FlotillaNode.start({ id, dataDir, initialCluster }) from plain JavaScript failed in
  // the logger ("default level:undefined must be included in custom levels"), and
  // start(undefined) or resolveNodeConfig(null) with a TypeError, none with a code.
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-config-'));
  try {
    const raw = { id: 1, dataDir: join(dir, 'n1'), initialCluster: cluster };
    for (const [given, why] of [
      [
        raw,
        /takes the config resolveNodeConfig makes.*has no valid members: it has initialCluster, which resolveNodeConfig turns into members/,
      ],
      [undefined, /this one is not an object/],
      [{ ...resolveNodeConfig(raw), tickMs: '10' }, /has no valid tickMs/],
    ] as const)
      await assert.rejects(
        FlotillaNode.start(given as unknown as Parameters<typeof FlotillaNode.start>[0]),
        (e: unknown) =>
          e instanceof ConfigError && e.code === 'CONFIG_INVALID' && why.test(e.message),
      );
    for (const layer of [null, 'id: 1', [raw]])
      assert.throws(
        () => resolveNodeConfig(raw, layer as unknown as Record<string, unknown>),
        (e: unknown) =>
          e instanceof ConfigError && /Config layer 2 must be an object/.test(e.message),
        JSON.stringify(layer),
      );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
