// The `flotilla` command: run a node, run a local cluster, and talk to a cluster. Its entry is
// main.ts, which takes the stop signals before this module's imports load.

import { Command, CommanderError, Option } from 'commander';
import {
  FlotillaClient,
  FlotillaError,
  type KeyValue,
  type ReadConsistency,
} from '../client/index.js';
import {
  ConfigError,
  configFromEnv,
  unknownEnvVars,
  hostOrdinal,
  readConfigFile,
  resolveNodeConfig,
} from '../server/config.js';
import { packageVersion } from '../server/version.js';
import { defaultLimits } from '../base/limits.js';
import { maxLeaseTtlSeconds } from '../api/lease-routes.js';
import { StorageError } from '../storage/index.js';
import { clusterUp, maxLocalNodes } from './cluster.js';
import { exactKv, keyBytes, lossyText } from './key-arg.js';
import { UsageError } from './usage-error.js';
import { readStdin, utf8Text } from './stdin.js';
import { runElection, runLocked } from './concurrency.js';
import { queueCommands } from './queue.js';
import { memberCommands } from './member.js';
import { rangeCommands } from './ranges.js';
import { placementCommands } from './placement.js';
import { snapshotCommands } from './snapshot.js';
import { endpointList, tokenCommand, tokenOption, type ClusterOptions } from './token.js';
import { certsCommands } from './certs.js';
import { clientTls, type ClientTlsFlags } from './client-tls.js';
import { int } from './int-option.js';
import { optionHint } from './option-hint.js';
import { table } from './text-table.js';

/** The nodes a command talks to without --endpoints: FLOTILLA_ENDPOINTS, else `npm start`'s. */
const defaultEndpoints =
  process.env['FLOTILLA_ENDPOINTS'] ||
  'http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003';

const port = (name: string) => int(name, 1, 65_535);

/** The program's --cacert, --cert and --key, whichever subcommand they were given with. */
let tlsFlags: ClientTlsFlags = {};

function client(opts: ClusterOptions): FlotillaClient {
  const tls = clientTls(tlsFlags, process.env);
  const endpoints = endpointList(opts.endpoints);
  try {
    return new FlotillaClient({
      endpoints,
      deadlineMs: 10_000,
      // A command makes a request or two: fetching the range map first would cost more than
      // the hop it saves.
      rangeRouting: false,
      ...(opts.token === undefined || opts.token === '' ? {} : { token: opts.token }),
      ...(tls === undefined ? {} : { tls }),
    });
  } catch (err) {
    // Every option the client is made with comes from this command line: a refusal of one
    // (an endpoint that is not a URL, a token it cannot send) is a usage error.
    if (err instanceof FlotillaError && err.code === 'BAD_REQUEST')
      throw new UsageError(err.message);
    throw err;
  }
}

async function withClient<T>(
  opts: ClusterOptions,
  fn: (c: FlotillaClient) => Promise<T>,
): Promise<void> {
  const c = client(opts);
  try {
    const r = await fn(c);
    if (r !== undefined) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
  } finally {
    await c.close();
  }
}

/** How `start` is run, shown after its options: one node of three, without and with TLS. */
export const startExamples = `
Examples:
  # Node 1 of three, plain HTTP (every member is started alike, with its own --id)
  flotilla start --id 1 --data-dir /var/lib/flotilla \\
    --initial-cluster 1=10.0.0.1:7001@http://10.0.0.1:8001,2=10.0.0.2:7001@http://10.0.0.2:8001,3=10.0.0.3:7001@http://10.0.0.3:8001

  # The same with TLS on every port: https:// client URLs and the node's files from
  # \`flotilla certs init\` and \`flotilla certs issue\` (--tls-client-cert-auth: clients too
  # must present a certificate of the CA; docs/SECURITY.md)
  flotilla start --id 1 --data-dir /var/lib/flotilla \\
    --initial-cluster 1=10.0.0.1:7001@https://10.0.0.1:8001,2=10.0.0.2:7001@https://10.0.0.2:8001,3=10.0.0.3:7001@https://10.0.0.3:8001 \\
    --tls-cert-file certs/node1.crt --tls-key-file certs/node1.key --tls-ca-file certs/ca.crt \\
    --tls-client-cert-auth
`;

/** How a command talks to a cluster, shown after the program's commands. */
export const clientExamples = `
Examples:
  flotilla kv put greeting hello --endpoints http://127.0.0.1:8001
  # A cluster with TLS: https:// endpoints and its CA; --cert and --key when it requires a
  # client certificate (tlsClientCertAuth)
  flotilla kv get greeting --endpoints https://10.0.0.1:8001 --cacert certs/ca.crt \\
    --cert certs/ops.crt --key certs/ops.key
`;

export function buildProgram(): Command {
  const program = new Command('flotilla')
    .description('Raft-replicated key-value store')
    .version(packageVersion(), '-V, --version', 'print the version and exit')
    .showHelpAfterError()
    // Usage errors throw (exit code 2, see main) rather than exit inside the parser; the
    // subcommands defined below inherit this.
    .exitOverride()
    // For a cluster serving HTTPS (docs/SECURITY.md, "TLS"); accepted after any subcommand.
    .option('--cacert <file>', "the cluster's CA certificate (default: $FLOTILLA_TLS_CA_FILE)")
    .option(
      '--cert <file>',
      'client certificate, for a cluster that requires one (default: $FLOTILLA_TLS_CERT_FILE)',
    )
    .option('--key <file>', 'key of --cert (default: $FLOTILLA_TLS_KEY_FILE)');
  program.hook('preAction', () => {
    tlsFlags = program.opts<ClientTlsFlags>();
  });
  program.addHelpText('after', clientExamples);

  program
    .command('start')
    .description(
      'run one node (flags override FLOTILLA_* environment variables, which override the config file)',
    )
    .option('--config <file>', 'YAML or JSON config file')
    .option('--id <n>', 'this node id, or host-ordinal (flotilla-0 is 1)', (v: string) =>
      v === hostOrdinal ? v : int('--id')(v),
    )
    .option('--data-dir <dir>', 'data directory')
    .option(
      '--initial-cluster <spec>',
      'members: 1=host:peerPort@http://host:clientPort,... (https:// with TLS)',
    )
    .option('--cluster-id <id>', 'cluster id; peers from another cluster are refused')
    .option('--listen-peer <host:port>', 'peer listen address (default: from the member entry)')
    .option('--listen-client <host:port>', 'HTTP listen address (default: from the member entry)')
    .option('--storage <kind>', 'wal or sqlite')
    .option('--tick-ms <ms>', 'milliseconds per Raft tick', int('--tick-ms'))
    .option('--election-ticks <n>', 'election timeout in ticks', int('--election-ticks'))
    .option('--heartbeat-ticks <n>', 'heartbeat interval in ticks', int('--heartbeat-ticks'))
    .option(
      '--snapshot-every-entries <n>',
      'snapshot at every index that is a multiple of n',
      int('--snapshot-every-entries'),
    )
    .option(
      '--snapshot-chunk-bytes <n>',
      'bytes of one snapshot chunk sent to a follower',
      int('--snapshot-chunk-bytes'),
    )
    .option(
      '--max-inflight-requests <n>',
      'client requests held at once; more are refused 429 OVERLOADED',
      int('--max-inflight-requests'),
    )
    .option(
      '--client-protocol-port <port>',
      'port of the binary client protocol (0: off)',
      int('--client-protocol-port'),
    )
    .option(
      '--join <urls>',
      'join a running cluster through these member URLs (empty data directory; --initial-cluster names only this node)',
    )
    .option(
      '--learner-promote-lag-entries <n>',
      'promote a joined learner once its log is this close to the leader',
      int('--learner-promote-lag-entries'),
    )
    .option(
      '--auth-tokens-file <file>',
      'turn client authentication on: the tokens clients may present, with their roles',
    )
    .option(
      '--auth-node-token-file <file>',
      'the admin token this node presents to the other members',
    )
    .option(
      '--initial-cluster-state <state>',
      'auto (a new cluster once every member answered empty) or new (once a majority did: a first start with members missing)',
    )
    .option('--advertise-peer <host:port>', 'this node alone, instead of --initial-cluster')
    .option('--advertise-client <url>', 'with --advertise-peer: its client URL')
    .option(
      '--bootstrap-member <id>',
      'with --join: the member that starts the cluster when no one answers',
      int('--bootstrap-member'),
    )
    .option(
      '--bootstrap-wait-ms <ms>',
      'how long the bootstrap member waits for an answer',
      int('--bootstrap-wait-ms'),
    )
    .option('--log-level <level>', 'pino log level')
    .option('--log-format <format>', 'auto (pretty on a terminal, else json), json or pretty')
    .option('--tls-cert-file <file>', "this node's certificate: turns TLS on (docs/SECURITY.md)")
    .option('--tls-key-file <file>', "this node's private key")
    .option('--tls-ca-file <file>', "the cluster's CA certificate")
    .option('--tls-client-cert-auth', 'clients must present a certificate of the CA too')
    .addHelpText('after', startExamples)
    .action(async (o: Record<string, unknown>) => {
      const file = typeof o['config'] === 'string' ? readConfigFile(o['config']) : {};
      const flags = {
        id: o['id'],
        dataDir: o['dataDir'],
        initialCluster: o['initialCluster'],
        clusterId: o['clusterId'],
        listenPeer: o['listenPeer'],
        listenClient: o['listenClient'],
        storage: o['storage'],
        tickMs: o['tickMs'],
        electionTicks: o['electionTicks'],
        heartbeatTicks: o['heartbeatTicks'],
        snapshotEveryEntries: o['snapshotEveryEntries'],
        snapshotChunkBytes: o['snapshotChunkBytes'],
        maxInflightRequests: o['maxInflightRequests'],
        clientProtocolPort: o['clientProtocolPort'],
        join: o['join'],
        learnerPromoteLagEntries: o['learnerPromoteLagEntries'],
        authTokensFile: o['authTokensFile'],
        authNodeTokenFile: o['authNodeTokenFile'],
        initialClusterState: o['initialClusterState'],
        advertisePeer: o['advertisePeer'],
        advertiseClient: o['advertiseClient'],
        bootstrapMember: o['bootstrapMember'],
        bootstrapWaitMs: o['bootstrapWaitMs'],
        logLevel: o['logLevel'],
        logFormat: o['logFormat'],
        tlsCertFile: o['tlsCertFile'],
        tlsKeyFile: o['tlsKeyFile'],
        tlsCaFile: o['tlsCaFile'],
        tlsClientCertAuth: o['tlsClientCertAuth'],
      };
      const config = resolveNodeConfig(file, configFromEnv(process.env), flags);
      const { runNode } = await import('../server/run-node.js');
      try {
        const servingFile = process.env['FLOTILLA_SERVING_FILE'];
        await runNode(config, {
          unknownEnv: unknownEnvVars(process.env),
          ...(servingFile === undefined || servingFile === '' ? {} : { servingFile }),
        });
      } catch (err) {
        const shown =
          err instanceof StorageError && err.code === 'STORAGE_CORRUPT'
            ? withRecoveryHint(err, config.dataDir)
            : err;
        // A log pipeline reading JSON gets the reason the node stopped too, not only stderr.
        const { createLogger, resolveLogFormat } = await import('../server/logging.js');
        if (resolveLogFormat(config.logFormat, process.stdout.isTTY === true) === 'json')
          createLogger(config.id, { level: 'fatal', format: 'json' }).fatal(
            { code: (shown as { code?: unknown }).code ?? null },
            `Node did not start: ${(shown as Error).message}`,
          );
        throw shown;
      }
    });

  const cluster = program.command('cluster').description('local clusters');
  cluster
    .command('up')
    .description('start a local cluster as child processes on 127.0.0.1; Ctrl-C stops it')
    .option('--nodes <n>', 'number of nodes', int('--nodes', 1, maxLocalNodes), 3)
    .option('--data-dir <dir>', 'data directory (one subdirectory per node)', './data')
    .option('--peer-port <port>', 'first peer port', port('--peer-port'), 7001)
    .option('--client-port <port>', 'first client (HTTP) port', port('--client-port'), 8001)
    .option(
      '--binary-port <port>',
      'first binary client protocol port (0: none)',
      int('--binary-port', 0, 65_535),
      0,
    )
    .addOption(
      new Option('--storage <kind>', 'storage backend').choices(['wal', 'sqlite']).default('wal'),
    )
    .option('--log-level <level>', 'node log level', 'info')
    .option('--cluster-id <id>', 'cluster id', 'flotilla-local')
    .action(
      async (
        o: {
          nodes: number;
          dataDir: string;
          peerPort: number;
          clientPort: number;
          binaryPort: number;
          storage: 'wal' | 'sqlite';
          logLevel: string;
          clusterId: string;
        },
        cmd: Command,
      ) => {
        const code = await clusterUp({
          portsGiven: ['peerPort', 'clientPort', 'binaryPort'].some(
            (k) => cmd.getOptionValueSource(k) !== 'default',
          ),
          nodes: o.nodes,
          dataDir: o.dataDir,
          host: '127.0.0.1',
          peerPortBase: o.peerPort,
          clientPortBase: o.clientPort,
          binaryPortBase: o.binaryPort,
          storage: o.storage,
          logLevel: o.logLevel,
          clusterId: o.clusterId,
        });
        process.exitCode = code;
      },
    );

  const kv = program
    .command('kv')
    .description('key-value operations')
    .option('--endpoints <urls>', 'comma-separated node URLs', defaultEndpoints)
    .addOption(tokenOption());
  const keyBase64Help =
    'KEY is base64: for a key that is not UTF-8 (a key given as text cannot be: see docs/CLIENT.md)';
  kv.command('put <key> [value]')
    .description('write a key (without a value: the bytes on standard input, as etcdctl does)')
    .option('--lease <id>', 'attach the key to a lease (deleted with it)', int('--lease', 1))
    .option('--key-base64', keyBase64Help)
    .action(
      async (
        key: string,
        value: string | undefined,
        o: { lease?: number; keyBase64?: boolean },
      ) => {
        const k = keyBytes(key, { base64: o.keyBase64 === true, what: 'key' });
        const v =
          value === undefined ? await valueFromStdin() : { value, encoding: 'utf8' as const };
        return withClient(kv.opts<ClusterOptions>(), (c) =>
          // In base64 (a value that is not UTF-8, or a key given so) both go in base64: the
          // encoding is the request's.
          v.encoding === 'base64' || o.keyBase64 === true
            ? c.put(
                k.toString('base64'),
                v.encoding === 'base64' ? v.value : Buffer.from(v.value).toString('base64'),
                { ...leaseOf(o), encoding: 'base64' },
              )
            : c.put(key, v.value, leaseOf(o)),
        );
      },
    );
  kv.command('get <key>')
    .description('read a key (linearizable unless --consistency says otherwise)')
    .addOption(
      new Option(
        '--consistency <level>',
        'lease: no ReadIndex round while the leader holds its lease; serializable: local, possibly stale',
      ).choices(['linearizable', 'lease', 'serializable']),
    )
    .option('--serializable', 'the same as --consistency serializable')
    .option('--rev <n>', 'read the key as it was at revision n', int('--rev'))
    .option('--value-only', "print only the value's bytes, as stored (binary-safe)")
    .option(
      '--key-base64',
      `${keyBase64Help}; a key or value printed that is not UTF-8 is given in base64 too (keyBase64, valueBase64)`,
    )
    .action(
      async (
        key: string,
        o: {
          serializable?: boolean;
          consistency?: string;
          rev?: number;
          valueOnly?: boolean;
          keyBase64?: boolean;
        },
      ) => {
        const k = keyBytes(key, { base64: o.keyBase64 === true, what: 'key' });
        return withClient(kv.opts<ClusterOptions>(), async (c) => {
          const raw = o.valueOnly === true;
          const inBase64 = raw || o.keyBase64 === true;
          // Commander checked the level; the node refuses a contradiction (CONFLICTING_FIELDS).
          const r = await c.get(inBase64 ? k.toString('base64') : key, {
            ...(o.serializable === true ? { serializable: true } : {}),
            ...(o.consistency === undefined
              ? {}
              : { consistency: o.consistency as ReadConsistency }),
            ...(o.rev === undefined ? {} : { revision: o.rev }),
            ...(inBase64 ? { encoding: 'base64' as const } : {}),
          });
          if (r === null) {
            process.exitCode = 1;
            process.stderr.write(`key ${JSON.stringify(key)} not found\n`);
            return undefined;
          }
          if (raw) {
            process.stdout.write(Buffer.from(r.value, 'base64'));
            return undefined;
          }
          return inBase64 ? exactKv(r) : r;
        });
      },
    );
  kv.command('del <key>')
    .description('delete a key (or all keys with a prefix)')
    .option('--prefix', 'treat key as a prefix')
    .option('--key-base64', keyBase64Help)
    .action(async (key: string, o: { prefix?: boolean; keyBase64?: boolean }) => {
      const k = keyBytes(key, { base64: o.keyBase64 === true, what: 'key' });
      return withClient(kv.opts<ClusterOptions>(), (c) =>
        o.keyBase64 === true
          ? c.delete(k.toString('base64'), { prefix: o.prefix === true, encoding: 'base64' })
          : c.delete(key, { prefix: o.prefix === true }),
      );
    });
  watchCommand(kv.command('watch <key>'), () => kv.opts<ClusterOptions>());
  kv.command('compact')
    .description('forget the history before a revision (reads below it are refused from then on)')
    .argument('<revision>', 'the oldest revision to keep readable', int('<revision>', 1))
    .action(async (revision: number) =>
      withClient(kv.opts<ClusterOptions>(), (c) => c.compact(revision)),
    );
  kv.command('ls [prefix]')
    .description(
      'list keys with a prefix (over several ranges: range by range, each at its own revision)',
    )
    .option('--limit <n>', 'at most n keys', int('--limit', 0, defaultLimits.maxRangeLimit), 100)
    .option('--keys-only', 'print the keys alone, one per line')
    .option(
      '--json',
      'print each key as one line of JSON (key, value, revisions): a key or value with a newline or a tab stays on its line, one that is not UTF-8 is given in base64 too (keyBase64, valueBase64)',
    )
    .option('--key-base64', 'the prefix is base64: for one that is not UTF-8')
    .action(
      async (
        prefix: string | undefined,
        o: { limit: number; keysOnly?: boolean; json?: boolean; keyBase64?: boolean },
      ) => {
        if (o.keysOnly === true && o.json === true)
          throw new UsageError('--keys-only and --json choose different outputs: give one');
        const p = keyBytes(prefix ?? '', { base64: o.keyBase64 === true, what: 'prefix' });
        // For a program to read, every line of standard output is a key (or a JSON line).
        const forPrograms = o.keysOnly === true || o.json === true;
        return withClient(kv.opts<ClusterOptions>(), async (c) => {
          // An empty prefix is every key, as no prefix is (a key is never empty: it was refused).
          // Read in base64, so that --json can give the bytes of a key that is not UTF-8.
          const every = p.length === 0;
          const zero = Buffer.from([0]).toString('base64');
          const r = await c.range(
            every ? zero : p.toString('base64'),
            every
              ? { rangeEnd: zero, limit: o.limit, multiRange: true, encoding: 'base64' }
              : { prefix: true, limit: o.limit, multiRange: true, encoding: 'base64' },
          );
          for (const x of r.kvs)
            process.stdout.write(
              o.json === true
                ? `${JSON.stringify(exactKv(x))}\n`
                : o.keysOnly === true
                  ? `${lossyText(x.key)}\n`
                  : `${lossyText(x.key)}\t${lossyText(x.value)}\n`,
            );
          if (r.more)
            (forPrograms ? process.stderr : process.stdout).write(
              `... ${r.count - r.kvs.length} more\n`,
            );
          return undefined;
        });
      },
    );

  const watch = program
    .command('watch <key>')
    .option('--endpoints <urls>', 'comma-separated node URLs', defaultEndpoints)
    .addOption(tokenOption());
  watchCommand(watch, () => watch.opts<ClusterOptions>());
  program
    .command('lock')
    .description('run a command while holding a lock; it is stopped if the lock is lost')
    .argument('<name>', 'the lock')
    .argument('<command...>', 'the command and its arguments (after --)')
    .option('--endpoints <urls>', 'comma-separated node URLs', defaultEndpoints)
    .addOption(tokenOption())
    .option(
      '--ttl <seconds>',
      "the holder's lease: how long a frozen holder keeps the lock",
      int('--ttl', 1, maxLeaseTtlSeconds),
      10,
    )
    .option('--key-base64', 'NAME is base64: for a lock name that is not UTF-8')
    .action(
      async (
        name: string,
        argv: string[],
        o: ClusterOptions & { ttl: number; keyBase64?: boolean },
      ) => {
        const n = keyBytes(name, { base64: o.keyBase64 === true, what: 'lock name' });
        const c = client(o);
        try {
          process.exitCode = await runLocked(
            c,
            o.keyBase64 === true ? n.toString('base64') : name,
            {
              argv,
              ttl: o.ttl,
              ...(o.keyBase64 === true ? { encoding: 'base64' as const } : {}),
            },
          );
        } finally {
          await c.close();
        }
      },
    );
  program
    .command('elect')
    .description(
      'campaign to lead NAME and print when elected (or, with --watch, print its leaders)',
    )
    .argument('<name>', 'the election')
    .argument('[value]', 'what the leader announces (default: host-pid)')
    .option('--endpoints <urls>', 'comma-separated node URLs', defaultEndpoints)
    .addOption(tokenOption())
    .option('--ttl <seconds>', "the candidate's lease", int('--ttl', 1, maxLeaseTtlSeconds), 10)
    .option('--watch', 'do not campaign: print every change of leader')
    .option(
      '--key-base64',
      'NAME is base64: for an election name that is not UTF-8; a value printed that is not UTF-8 is given in base64 too (valueBase64)',
    )
    .action(
      async (
        name: string,
        value: string | undefined,
        o: ClusterOptions & { ttl: number; watch?: boolean; keyBase64?: boolean },
      ) => {
        const n = keyBytes(name, { base64: o.keyBase64 === true, what: 'election name' });
        const c = client(o);
        try {
          process.exitCode = await runElection(
            c,
            o.keyBase64 === true ? n.toString('base64') : name,
            value,
            {
              ttl: o.ttl,
              watchOnly: o.watch === true,
              ...(o.keyBase64 === true ? { encoding: 'base64' as const } : {}),
            },
          );
        } finally {
          await c.close();
        }
      },
    );

  queueCommands(program, withClient, defaultEndpoints, int);
  memberCommands(program, withClient, defaultEndpoints, int);
  rangeCommands(program, withClient, defaultEndpoints);
  placementCommands(program, withClient, defaultEndpoints, int);
  snapshotCommands(program, defaultEndpoints, int, () => clientTls(tlsFlags, process.env));
  certsCommands(program, int);

  const lease = program
    .command('lease')
    .description('leases: keys attached to one are deleted when it expires or is revoked')
    .option('--endpoints <urls>', 'comma-separated node URLs', defaultEndpoints)
    .addOption(tokenOption());
  const leaseOpts = () => lease.opts<ClusterOptions>();
  lease
    .command('grant')
    .description('grant a lease of TTL seconds; prints its id')
    .argument('<ttl>', 'seconds to live without a keep-alive', int('<ttl>', 1, maxLeaseTtlSeconds))
    .option('--id <id>', 'the id to grant it with (default: chosen)', int('--id', 1))
    .action(async (ttl: number, o: { id?: number }) =>
      withClient(leaseOpts(), (c) => c.leaseGrant(ttl, o.id === undefined ? {} : { id: o.id })),
    );
  lease
    .command('keep-alive')
    .description('keep a lease alive until interrupted (Ctrl-C); exits 1 if it is lost')
    .argument('<id>', 'the lease', int('<id>', 1))
    .action(async (id: number) =>
      withClient(leaseOpts(), async (c) => {
        const stop = new AbortController();
        process.once('SIGINT', () => stop.abort());
        process.once('SIGTERM', () => stop.abort());
        const { grantedTtl } = await c.leaseTimeToLive(id);
        process.stderr.write(`keeping lease ${id} alive (ttl ${grantedTtl} s); Ctrl-C to stop\n`);
        await c.keepLeaseAlive(id, grantedTtl, { signal: stop.signal });
        return undefined;
      }),
    );
  lease
    .command('revoke')
    .description('revoke a lease: its keys are deleted')
    .argument('<id>', 'the lease', int('<id>', 1))
    .action(async (id: number) => withClient(leaseOpts(), (c) => c.leaseRevoke(id)));
  lease
    .command('ttl')
    .description("a lease's seconds left, granted time to live and keys")
    .argument('<id>', 'the lease', int('<id>', 1))
    .action(async (id: number) =>
      withClient(leaseOpts(), (c) => c.leaseTimeToLive(id, { keys: true })),
    );
  lease
    .command('list')
    .description('every lease')
    .action(async () => withClient(leaseOpts(), (c) => c.leases()));

  program
    .command('status')
    .description(
      "a table of the nodes: process id, role (and the job queue group's), term, indices",
    )
    .option('--endpoints <urls>', 'comma-separated node URLs', defaultEndpoints)
    .addOption(tokenOption())
    .action(async (o: ClusterOptions) =>
      withClient(o, async (c) => {
        const s = await c.clusterStatus();
        const rows = [
          [
            'ID',
            'PID',
            'CLIENT',
            'ROLE',
            'QUEUE',
            'TERM',
            'LEADER',
            'COMMIT',
            'APPLIED',
            'LAST',
            'REVISION',
          ],
        ];
        for (const n of s.nodes) {
          if ('status' in n) {
            const st = n.status;
            // A group stopped by a storage failure keeps the role it had: say it stopped.
            const stopped = (st.stoppedGroups ?? []).some((g) => g.group === 0);
            // The core calls a learner a follower (it follows); the member list says learner.
            const role =
              st.role === 'follower' && (st.learners ?? []).includes(st.id) ? 'learner' : st.role;
            rows.push(
              [
                st.id,
                st.pid,
                n.client,
                n.removed === true
                  ? 'removed, still running (it stops once it learns)'
                  : stopped
                    ? `stopped (disk failed as ${role})`
                    : st.recovering
                      ? `${role} (recovering lost data)`
                      : role,
                // The job queue's group elects its own leader, often another member.
                st.queueGroup?.role ?? '',
                st.term,
                st.leader,
                st.commit,
                st.applied,
                st.lastIndex,
                st.revision,
              ].map(String),
            );
          } else if (n.removed !== true)
            rows.push([
              String(n.id),
              '',
              n.client,
              // A member that answers slowly under load is not one that cannot be reached.
              'slow' in n && n.slow === true ? `slow: ${n.error}` : `unreachable: ${n.error}`,
              ...new Array<string>(7).fill(''),
            ]);
          // A removed member that does not answer has stopped, as it should (or its address
          // is no longer known): not a row. Every member ever removed is in the answer, and
          // a cluster that replaced members for years would list them all.
        }
        for (const line of table(rows)) process.stdout.write(line + '\n');
        // Said, not left to a column of zeros: a cluster whose members know no leader.
        // A removed member's answer and silence say nothing of the cluster's health.
        const current = s.nodes.filter((n) => n.removed !== true);
        const answered = current.flatMap((n) => ('status' in n ? [n.status] : []));
        if (answered.length > 0 && answered.every((st) => st.leader === 0))
          process.stderr.write(
            `no member that answered knows a leader${answered.some((st) => st.recovering) ? ', and some are recovering lost data' : ''}: ` +
              "an election that lasts is stuck; each member's /readyz says why once it has lasted 30 s\n",
          );
        // As etcdctl endpoint health: a script sees a member that did not answer.
        const silent = current.filter((n) => !('status' in n)).map((n) => n.id);
        if (silent.length > 0) {
          process.stderr.write(
            `member${silent.length === 1 ? '' : 's'} ${silent.join(', ')} did not answer (exit status 1)\n`,
          );
          process.exitCode = 1;
        }
        return undefined;
      }),
    );
  tokenCommand(program);
  program
    .command('bench')
    .description('the evaluation against etcd (see docs/BENCHMARKS.md); --help lists its options')
    .allowUnknownOption()
    .helpOption(false)
    .argument('[args...]')
    .action(async (args: string[]) => {
      // The evaluation lives under bench/ and is loaded only when asked for.
      const { buildBenchCommand } = await import('../../bench/eval/main.js');
      await buildBenchCommand().parseAsync(['node', 'bench', ...args]);
    });
  return program;
}

/** `watch KEY`: the changes of a key or prefix as JSON lines, until SIGINT or SIGTERM. */
function watchCommand(cmd: Command, endpoints: () => ClusterOptions): void {
  cmd
    .description('print the changes of a key (or prefix) as they happen, one JSON line each')
    .option('--prefix', 'watch every key with this prefix')
    .option('--rev <n>', 'start from revision n (replaying history)', int('--rev', 1))
    .option('--prev-kv', 'print the version each change replaced')
    .addOption(
      new Option(
        '--encoding <enc>',
        'keys and values as UTF-8 text (with keyBase64, valueBase64 beside one that is not UTF-8), or base64 (binary values)',
      )
        .choices(['utf8', 'base64'])
        .default('utf8'),
    )
    .option('--key-base64', 'KEY is base64: for a key or prefix that is not UTF-8')
    .action(
      async (
        key: string,
        o: {
          prefix?: boolean;
          rev?: number;
          prevKv?: boolean;
          encoding: 'utf8' | 'base64';
          keyBase64?: boolean;
        },
      ) => {
        const k = keyBytes(key, { base64: o.keyBase64 === true, what: 'key' });
        return withClient(endpoints(), async (c) => {
          const stop = new AbortController();
          process.once('SIGINT', () => stop.abort());
          process.once('SIGTERM', () => stop.abort());
          // Watched in base64, so that a key or value that is not UTF-8 can be given exactly;
          // printed as text, with its base64 beside it when it is not UTF-8, unless asked in
          // base64.
          const exact = (kv: KeyValue) => (o.encoding === 'base64' ? kv : exactKv(kv));
          for await (const batch of c.watch(k.toString('base64'), {
            prefix: o.prefix === true,
            prevKv: o.prevKv === true,
            ...(o.rev === undefined ? {} : { startRevision: o.rev }),
            encoding: 'base64',
            signal: stop.signal,
          })) {
            for (const e of batch.events)
              process.stdout.write(
                `${JSON.stringify({
                  revision: batch.revision,
                  ...e,
                  kv: exact(e.kv),
                  ...(e.prevKv === undefined ? {} : { prevKv: exact(e.prevKv) }),
                })}\n`,
              );
          }
          return undefined;
        });
      },
    );
}

function leaseOf(o: { lease?: number }): { lease?: number } {
  return o.lease === undefined ? {} : { lease: o.lease };
}

/** The largest value any node accepts (`maxValueBytes` can be raised to this). */
const maxStdinValueBytes = 64 * 1024 * 1024;

/**
 * `kv put KEY` without a value: standard input, read to its end, as the value. Text in UTF-8 is
 * sent as it is; any other bytes in base64, so a binary file is stored byte for byte. A
 * terminal is refused (a forgotten value would otherwise wait for input), and so is more than
 * any node could accept.
 */
async function valueFromStdin(): Promise<{ value: string; encoding: 'utf8' | 'base64' }> {
  const bytes = await readStdin('kv put', 'a value', maxStdinValueBytes);
  const text = utf8Text(bytes);
  return text === null
    ? { value: bytes.toString('base64'), encoding: 'base64' }
    : { value: text, encoding: 'utf8' };
}

/**
 * A damaged data directory, with the way out: the node's copy is lost, and a node started with
 * an empty directory recovers it from its peers. The whole directory, not the file named: the
 * directory is what a node recovers as one (DESIGN.md, "A node that lost its data").
 */
function withRecoveryHint(err: StorageError, dataDir: string): StorageError {
  return new StorageError(
    err.code,
    `${err.message}\n` +
      'This node cannot be trusted with what it holds. If the other members are up and hold the\n' +
      `cluster, move its whole data directory (${dataDir}) aside, not the file named,\n` +
      'and start the node again with the same command: it finds that it lost its data and\n' +
      'recovers everything from its peers (docs/DESIGN.md, "A node that lost its data").\n' +
      'Do that on a minority of the members at most; otherwise restore a backup.',
    { cause: err, ...(err.file === undefined ? {} : { file: err.file }) },
  );
}

/**
 * The reader of the command's output went away (`flotilla watch k | head -1`, or `kv get
 * --value-only | cmp - file` that stops at the first difference): stop as a program killed by
 * SIGPIPE does, quietly with status 141 (128 + SIGPIPE), rather than crash on an unhandled
 * EPIPE with a stack trace. Node ignores SIGPIPE, so the write fails instead.
 */
function stopWhenReaderLeaves(out: NodeJS.WritableStream): void {
  out.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    process.exit(141);
  });
}

export async function main(argv: readonly string[]): Promise<void> {
  stopWhenReaderLeaves(process.stdout);
  const program = buildProgram();
  try {
    await program.parseAsync([...argv]);
  } catch (err) {
    if (err instanceof CommanderError) {
      // The parser has printed the problem (or the help or version asked for).
      const hint = optionHint(program, err);
      if (hint !== null) process.stderr.write(`flotilla: ${hint}\n`);
      process.exitCode = err.exitCode === 0 ? 0 : 2;
    } else if (err instanceof UsageError) {
      process.stderr.write(`flotilla: ${err.message}\n`);
      process.exitCode = 2;
    } else if (err instanceof ConfigError) {
      process.stderr.write(`flotilla: ${err.code}: ${err.message}\n`);
      process.exitCode = 2;
    } else if (err instanceof FlotillaError) {
      process.stderr.write(
        `flotilla: ${err.code}: ${err.message}${err.indefinite ? ' (the operation may have taken effect)' : ''}\n`,
      );
      process.exitCode = 1;
    } else if (err instanceof Error && 'code' in err && typeof err.code === 'string') {
      // Operating errors (a port in use, a locked or damaged data directory): one clear line.
      process.stderr.write(`flotilla: ${err.code}: ${err.message}\n`);
      process.exitCode = 1;
    } else throw err;
  }
}
