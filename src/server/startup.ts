// Checks a node (or `flotilla cluster up`) makes before it opens storage or starts anything, so
// that an unusable data directory or a taken port is reported at once, with the path or the
// address and the cause, rather than after the log was replayed and an election won.

import { accessSync, constants, rmdirSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, resolve } from 'node:path';
import type { Logger } from 'pino';
import { FlotillaError } from '../base/errors.js';
import { splitHostPort } from '../base/host-port.js';
import type { Recovery } from '../raft/index.js';
import type { NodeConfig } from './config.js';
import { makeDirs, NotADirectoryError } from '../storage/make-dirs.js';

export type StartupErrorCode = 'DATA_DIR_UNUSABLE' | 'ADDRESS_IN_USE' | 'ADDRESS_UNAVAILABLE';

/** An operating error found before start-up: the node did not start and changed nothing. */
export class StartupError extends Error {
  override readonly name = 'StartupError';
  constructor(
    readonly code: StartupErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

function errnoOf(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return typeof code === 'string' ? code : 'UNKNOWN';
}

/**
 * The data directory's mode, as octal, when users other than its owner may enter or read it
 * (etcd warns of the same); null when it is its owner's alone or cannot be looked at.
 */
export function othersMayRead(dir: string): string | null {
  let mode: number;
  try {
    mode = statSync(resolve(dir)).mode & 0o777;
  } catch {
    return null;
  }
  return (mode & 0o077) === 0 ? null : `0${mode.toString(8)}`;
}

/**
 * Creates the data directory (and its missing parents) and checks this process can write it.
 * The data directory itself is created 0700, as etcd makes its own: it holds every key and
 * value, the keys of the node's certificates when it makes them, and its backups.
 *
 * Why not `mkdirSync(dir, { recursive: true })`: on Linux it never returns for a path under
 * /proc (mkdir answers ENOENT although the parent exists, and Node retries forever). Here each
 * missing component is created once, from the top down, so the walk is bounded by the path's
 * depth and the first failure is reported with the component that failed.
 *
 * Returns the directories it created, parents first, for `removeIfEmpty` to take back when the
 * start fails before anything was written (a refused join, a port taken meanwhile).
 */
export function prepareDataDir(dir: string): string[] {
  const target = resolve(dir);
  const fail = (what: string, err: unknown): StartupError =>
    new StartupError(
      'DATA_DIR_UNUSABLE',
      `Cannot use data directory ${target}: ${what} (${(err as Error).message})`,
      { cause: err },
    );
  let created: string[];
  try {
    created = makeDirs(target, { leafMode: 0o700 });
  } catch (err) {
    if (err instanceof NotADirectoryError)
      throw new StartupError(
        'DATA_DIR_UNUSABLE',
        `Cannot use data directory ${target}: ${err.path} exists and is not a directory`,
      );
    const e = err as NodeJS.ErrnoException;
    const p = e.path ?? target;
    if (e.syscall === 'mkdir') throw fail(`cannot create ${p}`, err);
    const rootMissing = dirname(p) === p && (e.code === 'ENOENT' || e.code === 'ENOTDIR');
    throw fail(rootMissing ? `the root ${p} does not exist` : `cannot inspect ${p}`, err);
  }
  try {
    accessSync(target, constants.R_OK | constants.W_OK | constants.X_OK);
  } catch (err) {
    throw fail('this process cannot read and write it', err);
  }
  return created;
}

/**
 * Removes the data directory `prepareDataDir` created, if it is still empty: a start that failed
 * before writing leaves no directory a later start would take for a new node's, and one that
 * wrote anything keeps it. Parents it created stay: another node starting beside it under the
 * same new parent may be about to create its own directory there.
 */
export function removeIfEmpty(created: readonly string[]): void {
  const dir = created[created.length - 1];
  if (dir === undefined) return;
  try {
    rmdirSync(dir);
  } catch {
    // Not empty (or gone, or not ours to remove): it stays.
  }
}

/** Turns a listen failure into one line naming the address and what it was for. */
export function listenError(address: string, purpose: string, err: unknown): StartupError {
  const errno = errnoOf(err);
  const why =
    errno === 'EADDRINUSE'
      ? 'the address is already in use (another process listens there)'
      : errno === 'EADDRNOTAVAIL'
        ? 'no local interface has that address'
        : errno === 'EACCES'
          ? 'permission denied (ports below 1024 need privileges)'
          : `${errno}: ${(err as Error).message}`;
  return new StartupError(
    errno === 'EADDRINUSE' ? 'ADDRESS_IN_USE' : 'ADDRESS_UNAVAILABLE',
    `Cannot listen for ${purpose} on ${address}: ${why}`,
    { cause: err },
  );
}

/**
 * Binds `address` and releases it at once: whether a listener could be opened there now. A
 * check, not a reservation: another process may take the port before the real listener binds.
 */
export async function checkListenable(address: string, purpose: string): Promise<void> {
  const { host, port } = splitHostPort(address);
  const probe = createServer();
  try {
    await new Promise<void>((ok, fail) => {
      probe.once('error', fail);
      probe.listen({ host, port, exclusive: true }, () => ok());
    });
  } catch (err) {
    throw listenError(address, purpose, err);
  }
  await new Promise<void>((ok) => probe.close(() => ok()));
}

/**
 * A node whose data directory holds nothing asks its peers, in the transport handshake,
 * whether they hold a Raft log (DESIGN.md, "A node that lost its data"). If any does (a peer
 * recovering lost data says it does too: it knows the cluster exists), the cluster exists and
 * this node lost its data: it recovers, neither voting nor counting toward a quorum until a
 * current leader has caught it up. Only once every other member on its command line has
 * answered that it holds nothing is the cluster new, and it starts as a member: a majority
 * would do for a first start, but two wiped members of three would then start a second
 * cluster under the same id while the third, holding the acknowledged writes, was down or
 * slow to answer. Until one of the two is known it waits, saying every few seconds whom it
 * has not heard from.
 */
export async function decideEmptyStart(
  config: NodeConfig,
  peerLogs: ReadonlyMap<number, boolean | null>,
  log: Logger,
  /** Aborted when the process is asked to stop: the wait ends with SHUTTING_DOWN. */
  signal?: AbortSignal,
  /** How often the wait is said (tests shorten it). */
  reportEveryMs = 3_000,
): Promise<Recovery> {
  const others = config.members.filter((m) => m.id !== config.id).map((m) => m.id);
  const startedMs = Date.now();
  let reportedMs = startedMs;
  // Alone on its command line, every member holding nothing is this node alone: a first
  // member bootstrapped alone, whose data was lost after others joined it, would start a
  // second cluster under the same id, whose first entries match the real cluster's indexes
  // and terms and so are never replaced. The members it has dial it: give them the time to.
  const lone = others.length === 0;
  if (lone && config.emptyStartWaitMs > 0)
    log.info(
      { waitMs: config.emptyStartWaitMs },
      'data directory is empty and the command line names no other member: waiting for members that may hold a log to dial in before starting a new cluster',
    );
  for (;;) {
    throwIfStopping(signal, log);
    const withLog = [...peerLogs].filter(([, has]) => has === true).map(([id]) => id);
    if (withLog.length > 0) {
      log.warn(
        { dataDir: config.dataDir, peersWithLog: withLog },
        `data directory is empty but peers ${withLog.join(',')} hold a log: this node lost its data`,
      );
      return 'recovering';
    }
    // Only the members on the command line count toward a new cluster: a dialler let in
    // without a log proves nothing about them.
    const unheard = others.filter((id) => peerLogs.get(id) !== false);
    // `new` (said for a first start with members missing): a majority, itself included.
    const enough =
      config.initialClusterState === 'new'
        ? others.length - unheard.length + 1 >= Math.floor(config.members.length / 2) + 1
        : unheard.length === 0;
    if (enough && (!lone || Date.now() - startedMs >= config.emptyStartWaitMs)) {
      log.info(
        { peersEmpty: others.filter((id) => !unheard.includes(id)) },
        lone
          ? 'no member holding a log dialled in: starting a new cluster'
          : unheard.length === 0
            ? 'every member holds no log: starting a new cluster'
            : `a majority of members hold no log (initialClusterState new; not heard from ${unheard.join(',')}): starting a new cluster`,
      );
      return 'none';
    }
    const now = Date.now();
    if (!lone && now - reportedMs >= reportEveryMs) {
      reportedMs = now;
      log.warn(
        { heardFrom: [...peerLogs.keys()], waitingFor: unheard, waitedMs: now - startedMs },
        `data directory is empty: waiting for member(s) ${unheard.join(',')} to say whether this cluster is new or this node lost its data ` +
          '(a new cluster starts only once every member on the command line has answered that it holds nothing). ' +
          'If a member that held the log is lost for good, restore the cluster from a backup (PRODUCTION.md, "Backups"); ' +
          'if the members on the command line have all been replaced since this node started and no member dials it, ' +
          'remove this member (flotilla member remove ID) and start it empty with --join under a new id',
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * A start that waits (for peers, for a join) ends when the process is asked to stop: the error
 * is SHUTTING_DOWN, and `runNode` then exits as a stopped node does.
 */
export function throwIfStopping(signal: AbortSignal | undefined, log: Logger): void {
  if (signal?.aborted !== true) return;
  const reason: unknown = signal.reason;
  const name = typeof reason === 'string' ? reason : 'a signal';
  log.info({ signal: name }, `stopped by ${name} while starting`);
  throw new FlotillaError('SHUTTING_DOWN', `Stopped by ${name} while starting`);
}
