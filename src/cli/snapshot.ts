// `flotilla snapshot save FILE` and `flotilla snapshot restore FILE`: backups of a running
// cluster, and new clusters started from them (DESIGN.md, "Backups"; the file format is
// server/backup-format.ts).

import { constants, rmSync } from 'node:fs';
import { access, open, rename, rm, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { Agent, request } from 'undici';
import type { ClientTlsOptions } from '../client/index.js';
import { failureText, schemeHint } from '../client/util.js';
import { FlotillaError, isErrorCode } from '../base/errors.js';
import {
  BackupError,
  partFile,
  readBackup,
  savedGroups,
  type BackupHeader,
  type BackupSaveReport,
} from '../server/backup-format.js';
import { backupPath } from '../server/backup.js';
import { ConfigError, configDefaults, parseInitialCluster } from '../server/config.js';
import { nodeFs } from '../storage/index.js';
import { endpointList, tokenOption, type ClusterOptions } from './token.js';
import { UsageError } from './usage-error.js';

export type SaveReport = BackupSaveReport;

export interface SaveOptions {
  /** Called with the bytes received so far, at most every `progressEveryMs`. */
  readonly onProgress?: (bytes: number) => void;
  readonly progressEveryMs?: number;
  /** How long to wait for a node to start answering (its read barriers). */
  readonly headersTimeoutMs?: number;
  /** The bearer token, for a cluster that requires one (backups need the admin role). */
  readonly token?: string;
  /** For `https://` endpoints: the cluster's CA, and a client certificate if asked for one. */
  readonly tls?: ClientTlsOptions;
}

/**
 * Saves a backup from the first endpoint that serves one into `file`: received into a temporary
 * file beside it and checked as it arrives (format, counts, checksum), then synced and renamed
 * into place. A stream that breaks off leaves nothing at `file`.
 */
export async function saveBackup(
  endpoints: readonly string[],
  file: string,
  o: SaveOptions = {},
): Promise<SaveReport> {
  const pem = (v: string | Uint8Array | undefined): string | Buffer | undefined =>
    v === undefined || typeof v === 'string' ? v : Buffer.from(v);
  const t = o.tls;
  const dispatcher =
    t === undefined
      ? undefined
      : new Agent({
          connect: Object.fromEntries(
            (['ca', 'cert', 'key'] as const)
              .map((k) => [k, pem(t[k])] as const)
              .filter(([, v]) => v !== undefined),
          ),
        });
  try {
    await checkWritable(resolve(file));
    return await saveFrom(endpoints, file, o, dispatcher);
  } finally {
    await dispatcher?.close();
  }
}

/**
 * Refuses, before any node is asked for a backup, a file that cannot be written: its directory
 * missing or not one, not writable, or the file itself a directory. Otherwise the node would
 * stream the backup only for the first write to fail as a bare ENOENT naming a temporary file.
 */
export async function checkWritable(file: string): Promise<void> {
  const refuse = (why: string) =>
    new BackupError('BACKUP_UNWRITABLE', `Cannot save the backup as ${file}: ${why}`);
  const dir = dirname(file);
  const d = await stat(dir).catch(() => null);
  if (d === null) throw refuse(`its directory ${dir} does not exist`);
  if (!d.isDirectory()) throw refuse(`${dir} is not a directory`);
  try {
    await access(dir, constants.W_OK);
  } catch {
    throw refuse(`its directory ${dir} is not writable`);
  }
  const f = await stat(file).catch(() => null);
  if (f?.isDirectory() === true) throw refuse('it is a directory');
  // access() answers for the mode bits only: root passes it everywhere, and a filesystem may
  // refuse what the bits allow (/proc, an NFS export that squashes root). Creating the
  // temporary file the save writes is the proof.
  const probe = partFile(file);
  try {
    await (await open(probe, 'wx', 0o600)).close();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw refuse(`a file cannot be created in ${dir} (${code})`);
  }
  await rm(probe, { force: true });
}

/** The answers after which the next endpoint is asked. */
const tryNext = new Set([429, 502, 503, 504]);

async function saveFrom(
  endpoints: readonly string[],
  file: string,
  o: SaveOptions,
  dispatcher: Agent | undefined,
): Promise<SaveReport> {
  const failures: string[] = [];
  /** The refusals of the endpoints that answered: the code said when every one refused. */
  const refusals: FlotillaError[] = [];
  /** The endpoints not reached, for no fault of the scheme, port or CA named. */
  let down = 0;
  for (const endpoint of endpoints) {
    let res;
    try {
      res = await request(`${endpoint.replace(/\/$/, '')}${backupPath}`, {
        method: 'GET',
        ...(dispatcher === undefined ? {} : { dispatcher }),
        ...(o.token === undefined ? {} : { headers: { authorization: `Bearer ${o.token}` } }),
        headersTimeout: o.headersTimeoutMs ?? 30_000,
        // Chunks come as fast as the node encodes them; a long pause means it is gone.
        bodyTimeout: 60_000,
      });
    } catch (err) {
      // With the hint of a wrong scheme, port or CA, as the client's calls say it.
      const hint = schemeHint(endpoint, err);
      if (hint === '') down++;
      failures.push(`${endpoint}: ${failureText(err)}${hint}`);
      continue;
    }
    if (res.statusCode !== 200) {
      const e = errorOf(res.statusCode, await res.body.text());
      // Busy, no leader, shutting down, timed out, its leader unreachable: another member may
      // serve it.
      if (tryNext.has(res.statusCode)) {
        failures.push(`${endpoint}: ${e.code}: ${e.message}`);
        refusals.push(e);
        continue;
      }
      throw e;
    }
    return receive(endpoint, res.body, resolve(file), o);
  }
  // Every member that answered knows no leader: the cluster may be unable to elect one (a
  // majority lost its data), which retrying does not mend. NO_LEADER when all answered so;
  // CONNECTION, with the same hint, when the others could not be reached.
  const leaderless = refusals.length > 0 && refusals.every((e) => e.code === 'NO_LEADER');
  throw new FlotillaError(
    leaderless && refusals.length === endpoints.length ? 'NO_LEADER' : 'CONNECTION',
    `No endpoint served a backup: ${failures.join('; ')}` +
      (leaderless
        ? '. No member that answered knows a leader: if that lasts (their /readyz says why), save from the data directory of a stopped member that kept its data: flotilla snapshot save FILE --data-dir DIR'
        : endpoints.length === 1 && down === 1
          ? '. Any member can serve a backup: name several with --endpoints URL,URL,... and the next is asked when one fails'
          : ''),
    false,
  );
}

function errorOf(status: number, text: string): FlotillaError {
  try {
    const j = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    const code = j.error?.code;
    if (typeof code === 'string' && isErrorCode(code))
      return new FlotillaError(
        code,
        typeof j.error?.message === 'string' ? j.error.message : `HTTP ${status}`,
      );
  } catch {
    // Not the API's JSON: said below.
  }
  return new FlotillaError('BAD_RESPONSE', `HTTP ${status}: ${text.slice(0, 200)}`);
}

async function receive(
  endpoint: string,
  body: AsyncIterable<Uint8Array>,
  file: string,
  o: SaveOptions,
): Promise<SaveReport> {
  const tmp = partFile(file);
  const fh = await open(tmp, 'wx', 0o600);
  let received = 0;
  let lastProgress = Date.now();
  const everyMs = o.progressEveryMs ?? 2_000;
  async function* saved(): AsyncGenerator<Uint8Array> {
    try {
      for await (const c of body) {
        try {
          await fh.write(c);
        } catch (err) {
          throw new BackupError(
            'BACKUP_UNWRITABLE',
            `Cannot write the backup to ${file}: ${(err as Error).message}; nothing was saved`,
          );
        }
        received += c.length;
        if (o.onProgress !== undefined && Date.now() - lastProgress >= everyMs) {
          lastProgress = Date.now();
          o.onProgress(received);
        }
        yield c;
      }
    } catch (err) {
      if (err instanceof BackupError) throw err;
      throw new BackupError(
        'BACKUP_INCOMPLETE',
        `The backup stream from ${endpoint} broke off after ${received} bytes (${(err as Error).message}); nothing was saved`,
      );
    }
  }
  let header: BackupHeader | null = null;
  try {
    for await (const r of readBackup(saved())) {
      if (r.kind === 'header') header = r.header;
      else if (r.kind === 'end' && header !== null) {
        await fh.sync();
        await fh.close();
        await rename(tmp, file);
        await nodeFs.syncDir(dirname(file));
        const h = header;
        return {
          file,
          bytes: received,
          sha256: r.sha256,
          from: endpoint,
          clusterId: h.clusterId,
          savedBy: h.savedBy,
          savedAt: h.savedAt,
          groups: savedGroups(h.groups, r.summary),
        };
      }
    }
    throw new BackupError('BACKUP_INCOMPLETE', `The backup from ${endpoint} ended without its end`);
  } catch (err) {
    // A node that cut the stream shows as a truncated file: say what happened instead.
    const e =
      err instanceof BackupError && err.code === 'BACKUP_CORRUPT' && /truncated/.test(err.message)
        ? new BackupError(
            'BACKUP_INCOMPLETE',
            `The backup stream from ${endpoint} ended early, after ${received} bytes (the node stopped, or failed while encoding; its log says which); nothing was saved`,
          )
        : err;
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw e;
  }
}

/** On SIGINT or SIGTERM, removes the partial file of a save of `file` (and `more`), and exits. */
function removeOnSignal(file: string, more: () => void = () => undefined): void {
  const stop = (signal: NodeJS.Signals, code: number) =>
    process.once(signal, () => {
      more();
      rmSync(partFile(resolve(file)), { force: true });
      process.stderr.write(`stopped by ${signal}: nothing was saved\n`);
      process.exit(code);
    });
  stop('SIGINT', 130);
  stop('SIGTERM', 143);
}

const mib = (n: number): string => `${(n / (1 << 20)).toFixed(1)} MiB`;

export function snapshotCommands(
  program: Command,
  defaultEndpoints: string,
  int: (name: string, min?: number, max?: number) => (v: string) => number,
  /** The client's TLS settings (--cacert, --cert, --key or their variables), read when run. */
  tls: () => ClientTlsOptions | undefined = () => undefined,
): void {
  const snapshot = program
    .command('snapshot')
    .description('back up a running cluster, and start a new cluster from a backup');
  snapshot
    .command('save')
    .description(
      'save both groups (key-value and job queue) as of now from a running cluster into FILE, ' +
        "or from a stopped member's data directory (--data-dir) when no cluster can serve one",
    )
    .argument('<file>', 'the backup file to write (replaced atomically)')
    .option('--endpoints <urls>', 'comma-separated node URLs, asked in turn', defaultEndpoints)
    .option(
      '--data-dir <dir>',
      "save from this stopped member's data directory instead of a running cluster (a majority " +
        'lost its data, or the cluster is gone): its state as of the commit index it recorded',
    )
    .option(
      '--include-uncommitted',
      'with --data-dir: apply the entries past that commit index too (acknowledged writes the ' +
        'member had not yet seen committed, and possibly writes that never committed)',
    )
    .addOption(tokenOption())
    .action(
      async (
        file: string,
        o: ClusterOptions & { dataDir?: string; includeUncommitted?: boolean },
        cmd: Command,
      ) => {
        const started = Date.now();
        const progress = (bytes: number) =>
          process.stderr.write(
            `saving: ${mib(bytes)} in ${((Date.now() - started) / 1000).toFixed(0)} s\n`,
          );
        if (o.dataDir !== undefined) {
          if (cmd.getOptionValueSource('endpoints') === 'cli')
            throw new UsageError(
              'Give --data-dir (a stopped member) or --endpoints (a running cluster), not both',
            );
          const { saveFromDataDir } = await import('../server/offline-backup.js');
          const { releaseCopiesSync } = await import('../server/group-copy.js');
          // Stopped midway, it leaves neither its copies of the groups (as large as they are)
          // nor a partial file behind.
          removeOnSignal(file, releaseCopiesSync);
          const r = await saveFromDataDir(
            {
              dataDir: o.dataDir,
              file,
              uncommitted: o.includeUncommitted === true,
              onProgress: progress,
            },
            checkWritable,
          );
          process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
          const left = r.groups.filter((g) => g.uncommitted > 0 && !g.uncommittedApplied);
          if (left.length > 0)
            process.stderr.write(
              `left out: ${left.map((g) => `${g.uncommitted} ${g.uncommitted === 1 ? 'entry' : 'entries'} of group ${g.group}`).join(', ')} ` +
                'past the commit index the member recorded (--include-uncommitted applies them)\n',
            );
          return;
        }
        if (o.includeUncommitted === true)
          throw new UsageError(
            '--include-uncommitted is for a save from a stopped member (--data-dir)',
          );
        const endpoints = endpointList(o.endpoints);
        const clientTls = tls();
        removeOnSignal(file);
        const r = await saveBackup(endpoints, file, {
          ...(o.token === undefined || o.token === '' ? {} : { token: o.token }),
          ...(clientTls === undefined ? {} : { tls: clientTls }),
          onProgress: progress,
        });
        process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
      },
    );
  snapshot
    .command('restore')
    .description(
      'write a fresh data directory for one member of a NEW cluster that starts from FILE; run it for every member, then start each',
    )
    .argument('<file>', 'a backup saved by `flotilla snapshot save`')
    .requiredOption('--data-dir <dir>', "this member's data directory (must be empty or absent)")
    .requiredOption('--id <n>', "this member's id in the new cluster", int('--id', 1))
    .requiredOption(
      '--initial-cluster <spec>',
      'the new cluster: 1=host:peerPort@http://host:clientPort,... (https:// with TLS)',
    )
    .option('--cluster-id <id>', "the new cluster's id", configDefaults.clusterId)
    .addOption(
      new Option('--storage <kind>', 'storage backend')
        .choices(['wal', 'sqlite'])
        .default(configDefaults.storage),
    )
    .action(
      async (
        file: string,
        o: {
          dataDir: string;
          id: number;
          initialCluster: string;
          clusterId: string;
          storage: 'wal' | 'sqlite';
        },
      ) => {
        const members = parseInitialCluster(o.initialCluster).map((m) => m.id);
        if (members.length === 0) throw new ConfigError('--initial-cluster lists no members');
        // The command line contradicts itself: a usage error (exit code 2), said before the
        // file is read.
        if (!members.includes(o.id))
          throw new ConfigError(
            `--id ${o.id} is not in --initial-cluster (${members.join(', ')}): restore writes the directory of one of its members`,
          );
        if (!/^[A-Za-z0-9._-]{1,64}$/.test(o.clusterId))
          throw new ConfigError(`--cluster-id "${o.clusterId}" must be 1-64 of [A-Za-z0-9._-]`);
        const { restoreBackup } = await import('../server/restore.js');
        const r = await restoreBackup({
          file,
          dataDir: o.dataDir,
          id: o.id,
          members,
          clusterId: o.clusterId,
          storage: o.storage,
        });
        process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
        process.stderr.write(
          `restored member ${o.id}; start it with: flotilla start --id ${o.id} --data-dir ${o.dataDir} ` +
            `--initial-cluster ${o.initialCluster} --cluster-id ${o.clusterId} --storage ${o.storage}\n`,
        );
      },
    );
}
