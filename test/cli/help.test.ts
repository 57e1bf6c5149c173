// What `flotilla --help` and `flotilla start --help` show: examples with and without TLS, whose
// flags are the command's own and whose member lists a node accepts, so that an operator can
// copy them (before, only an http:// member list was shown, and nothing of the TLS options).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Command } from 'commander';
import { buildProgram } from '../../src/cli/program.js';
import { runCli } from './run.js';
import { resolveNodeConfig } from '../../src/server/config.js';

function helpOf(cmd: Command): string {
  let out = '';
  cmd.configureOutput({ writeOut: (s) => (out += s), writeErr: (s) => (out += s) });
  cmd.outputHelp();
  return out;
}

/** The commands of an examples section, their continuation lines joined, comments dropped. */
function examples(help: string): string[][] {
  const section = help.slice(help.indexOf('\nExamples:\n'));
  assert.ok(section.length > 0, 'no examples');
  return section
    .replace(/ \\\n\s*/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('flotilla '))
    .map((l) => l.split(/\s+/));
}

void describe('help', () => {
  void it('start shows an https:// example with the TLS options, and one without', () => {
    const program = buildProgram();
    const start = program.commands.find((c) => c.name() === 'start') as Command;
    const help = helpOf(start);
    const runs = examples(help);
    assert.equal(runs.length, 2, help);
    const longs = new Set(start.options.map((o) => o.long));
    for (const argv of runs) {
      // Every flag the example gives is one of start's.
      for (const flag of argv.filter((a) => a.startsWith('--')))
        assert.ok(longs.has(flag), `${flag} is not an option of start`);
    }
    const value = (argv: string[], flag: string): string => argv[argv.indexOf(flag) + 1] ?? '';
    const [plain, tls] = runs as [string[], string[]];
    assert.ok(!plain.includes('--tls-cert-file'));
    assert.match(value(tls, '--initial-cluster'), /^1=\S+@https:\/\/\S+,2=\S+@https:\/\/\S+,3=/);
    for (const flag of ['--tls-cert-file', '--tls-key-file', '--tls-ca-file'])
      assert.ok(tls.includes(flag), `the TLS example gives ${flag}`);
    // A node takes each example's settings (https:// URLs with TLS on, http:// without).
    for (const argv of runs) {
      const config = resolveNodeConfig({
        id: Number(value(argv, '--id')),
        dataDir: value(argv, '--data-dir'),
        initialCluster: value(argv, '--initial-cluster'),
        ...(argv.includes('--tls-cert-file')
          ? {
              tlsCertFile: value(argv, '--tls-cert-file'),
              tlsKeyFile: value(argv, '--tls-key-file'),
              tlsCaFile: value(argv, '--tls-ca-file'),
              tlsClientCertAuth: argv.includes('--tls-client-cert-auth'),
            }
          : {}),
      });
      assert.equal(config.members.length, 3);
      assert.equal(config.tls !== null, argv === tls);
    }
  });

  void it('the program shows how a command talks to a cluster with TLS', () => {
    const help = helpOf(buildProgram());
    const tls = examples(help).find((argv) => argv.includes('--cacert'));
    assert.ok(tls !== undefined, help);
    assert.match(tls[tls.indexOf('--endpoints') + 1] ?? '', /^https:\/\//);
    assert.ok(tls.includes('--cert') && tls.includes('--key'));
  });
});

void describe('an option given where the parser does not take it', () => {
  void it('is refused with the commands that take it and where it goes', async () => {
    // Before: the program's whole help, and nothing saying --endpoints goes after the command.
    const early = await runCli(['--endpoints', 'http://127.0.0.1:1', 'kv', 'get', 'k'], 20_000);
    assert.equal(early.code, 2, early.stderr);
    assert.match(
      early.stderr,
      /flotilla: --endpoints is an option of kv, .*: give it after the command's name \(flotilla kv \.\.\. --endpoints \.\.\.\)\n$/,
    );
    const elsewhere = await runCli(['kv', 'get', 'k', '--max-releases', '3'], 20_000);
    assert.equal(elsewhere.code, 2, elsewhere.stderr);
    assert.match(elsewhere.stderr, /--max-releases is an option of queue config:/);
    // An option no command takes: the parser's own words, and no hint.
    const unknown = await runCli(['kv', 'get', 'k', '--no-such-option'], 20_000);
    assert.equal(unknown.code, 2, unknown.stderr);
    assert.match(unknown.stderr, /unknown option '--no-such-option'/);
    assert.doesNotMatch(unknown.stderr, /is an option of/);
  });
});

void describe('an --endpoints value that is no URL', () => {
  void it('is a usage error (exit code 2) naming it, before any request', async () => {
    for (const [endpoints, said] of [
      ['notaurl', /--endpoints: "notaurl" is not an http:\/\/ or https:\/\/ URL/],
      [',', /--endpoints lists no URL/],
      ['ftp://x:1', /--endpoints: "ftp:\/\/x:1" is not an http:\/\/ or https:\/\/ URL/],
    ] as const) {
      for (const args of [
        ['kv', 'get', 'k', '--endpoints', endpoints],
        ['queue', '--endpoints', endpoints, 'ls'],
      ]) {
        const r = await runCli(args, 20_000);
        assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, said);
        assert.doesNotMatch(r.stderr, /BAD_REQUEST/);
      }
    }
  });
});
