// Unknown FLOTILLA_* variables: a misspelt setting is named with what it likely meant, and
// every name the project itself reads (settings, the command line's, its tests') is known.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { closestName, editDistance } from '../../src/base/closest.js';
import { configFromEnv, resolveNodeConfig, unknownEnvVars } from '../../src/server/config.js';
import { repoRoot } from '../support/root.js';

void test('edit distance counts inserts, deletes and substitutions', () => {
  assert.equal(editDistance('', ''), 0);
  assert.equal(editDistance('join', 'join'), 0);
  assert.equal(editDistance('jion', 'join'), 1, 'two neighbours swapped: one edit');
  assert.equal(editDistance('mial', 'mail'), 1);
  assert.equal(editDistance('ab', 'ba'), 1);
  assert.equal(editDistance('abc', 'ca'), 3, 'a swap is of neighbours left as they are after it');
  assert.equal(editDistance('jon', 'join'), 1);
  assert.equal(editDistance('joins', 'join'), 1);
  assert.equal(editDistance('kitten', 'sitting'), 3);
  assert.equal(editDistance('', 'abc'), 3);
});

void test('the closest name is found within a third of the length, case ignored', () => {
  assert.equal(closestName('FLOTILLA_JION', ['FLOTILLA_ID', 'FLOTILLA_JOIN']), 'FLOTILLA_JOIN');
  assert.equal(closestName('dataDIR', ['dataDir', 'join']), 'dataDir');
  assert.equal(closestName('colour', ['dataDir', 'join']), undefined);
  // Short names allow one edit only: "ab" is not "cd".
  assert.equal(closestName('ab', ['cd', 'ac']), 'ac');
  assert.equal(closestName('ab', ['cd']), undefined);
});

void test('unknown FLOTILLA_ variables are named, with what they likely meant', () => {
  const env = {
    FLOTILLA_JION: 'http://127.0.0.1:8001',
    FLOTILLA_DATADIR: '/tmp/x',
    FLOTILLA_COLOUR: 'blue',
    FLOTILLA_ID: '1',
    FLOTILLA_ENDPOINTS: 'http://127.0.0.1:8001',
    FLOTILLA_NETNS_TESTS: '1',
    PATH: '/usr/bin',
    flotilla_id: '2',
  };
  assert.deepEqual(unknownEnvVars(env), [
    { name: 'FLOTILLA_COLOUR' },
    { name: 'FLOTILLA_DATADIR', meant: 'FLOTILLA_DATA_DIR' },
    { name: 'FLOTILLA_JION', meant: 'FLOTILLA_JOIN' },
  ]);
  // Still ignored, as before: only known names become settings.
  assert.deepEqual(configFromEnv(env), { id: '1' });
  assert.deepEqual(unknownEnvVars({ FLOTILLA_ID: '1', HOME: '/root' }), []);
});

void test('a misspelt config file field is refused with what it likely meant', () => {
  assert.throws(
    () => resolveNodeConfig({ id: 1, dataDir: '/tmp/x', initialClustr: '1=a:1@http://a:2' }),
    /Unknown config field "initialClustr" \(did you mean "initialCluster"\?\)/,
  );
});

void test('every FLOTILLA_ name the project reads is known', () => {
  // A name read somewhere but missing here would be warned of by every node a test starts.
  const root = repoRoot();
  const seen = new Set<string>();
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (/\.(ts|mjs|sh|ya?ml)$/.test(name) || name === 'run' || name === 'Dockerfile')
        for (const m of readFileSync(path, 'utf8').matchAll(/FLOTILLA_[A-Z][A-Z0-9_]*/g))
          seen.add(m[0]);
    }
  };
  for (const dir of ['src', 'test', 'bench', 'scripts', '.ci', 'deploy']) walk(join(root, dir));
  for (const name of readdirSync(root))
    if (/^compose.*\.ya?ml$/.test(name) || name === 'Dockerfile')
      for (const m of readFileSync(join(root, name), 'utf8').matchAll(/FLOTILLA_[A-Z][A-Z0-9_]*/g))
        seen.add(m[0]);
  // Names the tests misspell on purpose, and the prefix of a warning code.
  const planted = new Set(['FLOTILLA_JION', 'FLOTILLA_DATADIR', 'FLOTILLA_COLOUR']);
  const env = Object.fromEntries(
    [...seen].filter((n) => !planted.has(n) && n !== 'FLOTILLA_MEMORY_STORAGE').map((n) => [n, '']),
  );
  assert.ok(
    seen.has('FLOTILLA_NETNS_TESTS') && seen.has('FLOTILLA_DATA_DIR') && seen.has('FLOTILLA_IMAGE'),
    [...seen].join(),
  );
  assert.deepEqual(unknownEnvVars(env), []);
});
