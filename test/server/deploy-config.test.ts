// Configuration for containers: members named by DNS name rather than address, the id taken
// from a StatefulSet pod's host name, a node's own addresses given without a member list, and
// the bootstrap member's settings; each bad value refused with the field and the value seen.

import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { test } from 'node:test';
import {
  ConfigError,
  configFromEnv,
  idFromHostname,
  resolveNodeConfig,
} from '../../src/server/config.js';

void test('members named by DNS name are accepted, and a node listens where its name says', () => {
  const c = resolveNodeConfig({
    id: 2,
    dataDir: '/d',
    initialCluster:
      '1=node1:7001@http://node1:8001,2=flotilla-1.flotilla.prod.svc.cluster.local:7001@http://flotilla-1.flotilla.prod.svc.cluster.local:8001',
  });
  assert.deepEqual(
    c.members.map((m) => m.peer),
    ['node1:7001', 'flotilla-1.flotilla.prod.svc.cluster.local:7001'],
  );
  assert.equal(c.listenPeer, 'flotilla-1.flotilla.prod.svc.cluster.local:7001');
  assert.equal(c.listenClient, 'flotilla-1.flotilla.prod.svc.cluster.local:8001');
});

void test('the id comes from the trailing ordinal of a host name', () => {
  assert.equal(idFromHostname('flotilla-0'), 1);
  assert.equal(idFromHostname('flotilla-4'), 5);
  assert.equal(idFromHostname('my-db-12'), 13);
  for (const bad of ['flotilla', 'flotilla-', 'node7', 'flotilla-x1'])
    assert.throws(
      () => idFromHostname(bad),
      (e: unknown) =>
        e instanceof ConfigError && e.message.includes(`"${bad}"`) && e.code === 'CONFIG_INVALID',
      bad,
    );
  // The real host name: taken when it ends in -N, refused by name otherwise.
  const base = {
    id: 'host-ordinal',
    dataDir: '/d',
    advertisePeer: 'a:1',
    advertiseClient: 'http://a:2',
  };
  const m = /-(\d+)$/.exec(hostname());
  if (m === null) assert.throws(() => resolveNodeConfig(base), new RegExp(hostname()));
  else assert.equal(resolveNodeConfig(base).id, Number(m[1]) + 1);
});

void test('a node names only itself with advertisePeer and advertiseClient, from the environment', () => {
  const env = configFromEnv({
    FLOTILLA_ID: '3',
    FLOTILLA_DATA_DIR: '/var/lib/flotilla/data',
    FLOTILLA_ADVERTISE_PEER: 'flotilla-2.flotilla:7001',
    FLOTILLA_ADVERTISE_CLIENT: 'http://flotilla-2.flotilla:8001/',
    FLOTILLA_LISTEN_PEER: '0.0.0.0:7001',
    FLOTILLA_LISTEN_CLIENT: '0.0.0.0:8001',
    FLOTILLA_JOIN: 'http://flotilla-0.flotilla:8001,http://flotilla-1.flotilla:8001',
    FLOTILLA_BOOTSTRAP_MEMBER: '1',
    FLOTILLA_BOOTSTRAP_WAIT_MS: '2500',
  });
  const c = resolveNodeConfig(env);
  assert.deepEqual(c.members, [
    { id: 3, peer: 'flotilla-2.flotilla:7001', client: 'http://flotilla-2.flotilla:8001' },
  ]);
  assert.equal(c.listenPeer, '0.0.0.0:7001');
  assert.deepEqual(c.join, ['http://flotilla-0.flotilla:8001', 'http://flotilla-1.flotilla:8001']);
  assert.equal(c.bootstrapMember, 1);
  assert.equal(c.bootstrapWaitMs, 2500);
  const defaults = resolveNodeConfig({
    ...env,
    bootstrapMember: undefined,
    bootstrapWaitMs: undefined,
  });
  assert.equal(defaults.bootstrapMember, 0, 'no bootstrap member unless one is named');
  assert.equal(defaults.bootstrapWaitMs, 10_000);
});

void test('advertised addresses are refused half given, beside a member list, or malformed', () => {
  const base = { id: 1, dataDir: '/d' };
  const bad: [Record<string, unknown>, RegExp][] = [
    [
      { ...base, advertisePeer: 'a:1' },
      /advertisePeer \(host:port\) and advertiseClient \(URL\) go together/,
    ],
    [{ ...base, advertiseClient: 'http://a:2' }, /go together/],
    [
      {
        ...base,
        advertisePeer: 'a:1',
        advertiseClient: 'http://a:2',
        initialCluster: '1=a:1@http://a:2',
      },
      /not both/,
    ],
    [{ ...base, advertisePeer: 'a', advertiseClient: 'http://a:2' }, /peer "a" must be host:port/],
    [
      { ...base, advertisePeer: 'a:1', advertiseClient: 'not a url' },
      /client "not a url" is not a URL/,
    ],
    [
      { ...base, advertisePeer: 'a:1', advertiseClient: 'http://a:2', bootstrapMember: -1 },
      /bootstrapMember must be an integer/,
    ],
    [
      { ...base, advertisePeer: 'a:1', advertiseClient: 'http://a:2', bootstrapWaitMs: 'soon' },
      /bootstrapWaitMs must be an integer.*"soon"/,
    ],
    [{ ...base }, /initialCluster is required \(or advertisePeer and advertiseClient\)/],
  ];
  for (const [raw, message] of bad)
    assert.throws(
      () => resolveNodeConfig(raw),
      (e: unknown) => e instanceof ConfigError && message.test(e.message),
      `${JSON.stringify(raw)} should be refused with ${message}`,
    );
});
