// The steps of a node's start that come before it serves (node.ts, FlotillaNode.start): who
// the node is (its data directory's identity, or the cluster it joins), its groups' storage,
// its peer transport and what the transport tells of the peers, and each Raft group's
// settings. Each step undoes what it opened when it fails, so start() stays a list of steps.

import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { FEATURE_LEVEL, FEATURE_LEVEL_NONE } from '../base/features.js';
import { splitHostPort } from '../base/host-port.js';
import { createRng, type Recovery } from '../raft/index.js';
import {
  FilePartialSnapshots,
  InlineWrites,
  openNodeJournal,
  openSqliteStorage,
  sqliteHoldsData,
  openWalStorage,
  replayJournal,
  type JournalRecoveryReport,
  type NodeJournal,
} from '../storage/index.js';
import { TcpTransport, type PeerTlsOptions } from '../transport/index.js';
import { monotonicClock, systemClock, type GroupStorage } from '../host/contracts.js';
import type { GroupOptions } from '../host/host.js';
import { META_GROUP } from '../ranges/types.js';
import { join } from 'node:path';
import { ConfigError, configDefaults, type Member, type NodeConfig } from './config.js';
import {
  DataDirError,
  IDENTITY_FILE,
  checkIdentity,
  checkNotRemoved,
  groupDir,
  readIdentity,
  storageFilesIn,
  walFilesHoldData,
  type DataDirIdentity,
} from './data-dir.js';
import { joinCluster } from './join.js';
import { memberAuthHeaders } from './auth-tokens.js';
import { RateLimitedWarning, Throttle, hostOf, logWalRecovery, reasonClass } from './logging.js';
import type { NodeRecovery } from './node-recovery.js';
import { MAX_LEARNED_MEMBERS } from './member-node.js';
import type { NodeTls } from './node-tls.js';
import {
  StartupError,
  checkListenable,
  listenError,
  othersMayRead,
  prepareDataDir,
  removeIfEmpty,
} from './startup.js';

/** How often a peer that keeps connecting and dropping is said to, at most (openPeerTransport). */
const DISCONNECT_LOG_INTERVAL_MS = 10_000;

/** The Raft group that holds the key-value store. */
export const KV_GROUP = 0;
/** The Raft group that holds the job queue: same members, same timing, its own log. */
export const QUEUE_GROUP = 1;

/** The group that holds the range map (src/ranges/meta-machine.ts): same members again. */
export { META_GROUP };

/** A group's settings: everything but its storage and state machine. */
export type GroupSettings = Omit<GroupOptions, 'storage' | 'stateMachine'>;

export type Identity = Omit<DataDirIdentity, 'format' | 'recovery'>;

export interface ResolvedIdentity {
  /** The configuration given, with the cluster id and members a join or the directory said. */
  readonly config: NodeConfig;
  readonly identity: Identity;
  /** What the data directory recorded before this start (null: it was empty). */
  readonly recorded: DataDirIdentity | null;
  /** This node joined a running cluster (now or before). */
  readonly joined: boolean;
  /**
   * It joined just now under the id of a voter that held a log (join.ts, `recover`): it lost
   * its data, and recovers as a wiped member does (DESIGN.md, "A node that lost its data").
   */
  readonly lostData: boolean;
}

/**
 * Who this node is. Fails before touching storage: an unusable data directory or a taken port
 * is reported at once, not after the log was replayed and an election won. The client port
 * is only checked here (the HTTP routes need the runtime); a node joining with an empty data
 * directory asks the cluster to add it and takes the cluster from the answer, one that joined
 * before takes its cluster id and initial members from its directory.
 */
export async function resolveIdentity(
  given: NodeConfig,
  wireListen: string | null,
  log: Logger,
  /** How to dial members' client ports over TLS (node-tls.ts); omitted: plain. */
  connect?: NodeTls['connector'],
  /** Aborted when the process is asked to stop: a join in progress ends (SHUTTING_DOWN). */
  signal?: AbortSignal,
): Promise<ResolvedIdentity> {
  // The ports first: a start refused for a taken port then leaves nothing behind, not even an
  // empty data directory a later start would take for a new node's.
  await checkListenable(given.listenClient, 'clients (listenClient)');
  if (wireListen !== null) await checkListenable(wireListen, 'clients (clientProtocolPort)');
  await checkListenable(given.listenPeer, 'peers (listenPeer)');
  const created = prepareDataDir(given.dataDir);
  try {
    const open = othersMayRead(given.dataDir);
    if (open !== null)
      log.warn(
        { dataDir: given.dataDir, mode: open },
        `data directory ${given.dataDir} is open to other users (mode ${open}): it holds every key ` +
          `and value; chmod 700 it, as a new one is made`,
      );
    const recorded = readIdentity(given.dataDir);
    if (recorded !== null) checkNotRemoved(given.dataDir, recorded);
    // A log without its identity file is refused once storage opens (node-open.ts); before a join it
    // must be refused now, or the cluster would first add this directory's node as a learner.
    // Judged by the WAL's files, or SQLite's rows read without opening the storage.
    if (recorded === null && given.join.length > 0) {
      for (const g of [KV_GROUP, QUEUE_GROUP, META_GROUP]) {
        const dir = groupDir(given.dataDir, g);
        if (walFilesHoldData(dir) || (await sqliteHoldsData(dir))) throw missingIdentity(given);
      }
    }
    // A joined node runs in the cluster its directory records (it was told it when it joined),
    // so one started without a cluster id of its own is fine; one that names another cluster
    // was given the wrong directory.
    if (
      recorded?.joined === true &&
      given.clusterId !== configDefaults.clusterId &&
      recorded.clusterId !== given.clusterId
    )
      checkIdentity(given.dataDir, recorded, { ...recorded, clusterId: given.clusterId });
    const asked =
      recorded === null && given.join.length > 0
        ? await joinCluster(given.members.find((m) => m.id === given.id) as Member, given.join, {
            clock: systemClock,
            // The bootstrap member gives up asking only after its wait.
            timeoutMs: Math.max(60_000, given.bootstrapWaitMs + 10_000),
            log,
            headers: memberAuthHeaders(given.auth),
            ...(given.bootstrapMember === given.id
              ? { bootstrapAfterMs: given.bootstrapWaitMs }
              : {}),
            ...(connect === undefined ? {} : { connect }),
            ...(signal === undefined ? {} : { signal }),
            ...(given.clusterId === configDefaults.clusterId ? {} : { clusterId: given.clusterId }),
          })
        : null;
    // The bootstrap member heard from no one: it starts the cluster of its initialCluster.
    const joined = asked === 'bootstrap' ? null : asked;
    // Join URLs that reach another cluster than the one this node names. A member of this
    // release refused the join (MEMBERSHIP_WRONG_CLUSTER) before adding anything; one of an
    // older release ignored the header and added this node as a learner, to be removed there.
    if (
      joined !== null &&
      given.clusterId !== configDefaults.clusterId &&
      joined.clusterId !== given.clusterId
    )
      throw new ConfigError(
        `The join URLs (${given.join.join(', ')}) reach cluster ${JSON.stringify(joined.clusterId)}, not ${JSON.stringify(given.clusterId)} as clusterId says: nothing was written to ${given.dataDir}. That cluster added member ${given.id}: remove it there (flotilla member remove ${given.id}), then fix join or clusterId.`,
      );
    const isJoined = joined !== null || recorded?.joined === true;
    const config: NodeConfig =
      joined !== null
        ? { ...given, clusterId: joined.clusterId, members: joined.book }
        : recorded?.joined === true
          ? { ...given, clusterId: recorded.clusterId }
          : given;
    if (joined?.recover === true)
      log.warn(
        { clusterId: joined.clusterId, initialMembers: joined.initialMembers },
        'this id is a voter that held a log: this node lost its data and recovers before it votes',
      );
    else if (joined !== null)
      log.info(
        { clusterId: joined.clusterId, initialMembers: joined.initialMembers },
        'joined the cluster as a learner; catching up',
      );
    const identity: Identity = {
      clusterId: config.clusterId,
      memberId: config.id,
      members:
        joined?.initialMembers ??
        (recorded?.joined === true ? recorded.members : config.members.map((m) => m.id)),
      storage: config.storage,
      ...(isJoined ? { joined: true } : {}),
    };
    if (recorded !== null) checkIdentity(config.dataDir, recorded, identity);
    const otherKind = storageFilesIn(groupDir(config.dataDir, KV_GROUP));
    if (otherKind !== null && otherKind !== config.storage)
      throw new DataDirError(
        'DATA_DIR_MISMATCH',
        `Data directory ${config.dataDir} holds ${otherKind} storage files, but this node was started with --storage ${config.storage}: it would start empty and forget its term and vote. Start with --storage ${otherKind}, or give this node an empty data directory.`,
        config.dataDir,
      );
    // Storage opens before the peer port is bound (every handshake says whether this node holds
    // a log, and must not say "no" for want of having looked): check the port again, as a join
    // may have taken a minute since the check above.
    await checkListenable(config.listenPeer, 'peers (listenPeer)');
    return { config, identity, recorded, joined: isJoined, lostData: joined?.recover === true };
  } catch (err) {
    // Nothing was written yet: a refused join or a port taken meanwhile leaves no empty
    // directory behind that a later start would take for a new node's.
    removeIfEmpty(created);
    throw err;
  }
}

/**
 * The node journal of each data directory whose node runs with walSync "shared": opened with
 * the first group's storage, closed with the last (so it outlives every group writing to it).
 */
const journals = new Map<string, { journal: Promise<NodeJournal>; users: number }>();

async function useJournal(config: NodeConfig, log: Logger): Promise<NodeJournal> {
  let entry = journals.get(config.dataDir);
  if (entry === undefined) {
    const journal = openNodeJournal(config.dataDir);
    entry = { journal, users: 0 };
    journals.set(config.dataDir, entry);
    journal.then(
      (j) => logJournalReplay(log, j.recovery),
      () => journals.delete(config.dataDir),
    );
  }
  entry.users++;
  try {
    return await entry.journal;
  } catch (err) {
    entry.users--;
    throw err;
  }
}

async function leaveJournal(dataDir: string): Promise<void> {
  const entry = journals.get(dataDir);
  if (entry === undefined || --entry.users > 0) return;
  journals.delete(dataDir);
  await (await entry.journal).close();
}

function logJournalReplay(log: Logger, r: JournalRecoveryReport): void {
  if (r.journalFiles === 0) return;
  log.warn(
    { ...r },
    'replayed the node journal left by a stop that was not clean: group logs brought up to date',
  );
}

/**
 * One group's storage in its own directory (`group-<id>/`), in the node's storage kind. A
 * system call the operating system refuses (a directory or file this process may not write, a
 * file system gone read-only, a full disk) is `DATA_DIR_UNUSABLE` naming the group, the path
 * and the cause, not a bare errno: nothing was changed, and the fix is the operator's.
 */
export async function openGroupStorage(
  config: NodeConfig,
  group: number,
  log: Logger,
): Promise<GroupStorage> {
  try {
    return await openGroupStorageOf(config, group, log);
  } catch (err) {
    if (typeof (err as NodeJS.ErrnoException | null)?.syscall !== 'string') throw err;
    throw new StartupError(
      'DATA_DIR_UNUSABLE',
      `Cannot open the storage of group ${group} in ${groupDir(config.dataDir, group)}: ${(err as Error).message}; make the directory and its files writable by this process on a writable file system with free space, then start again`,
      { cause: err },
    );
  }
}

/** Each node's inline-write policy, shared by its groups' WALs: they share one disk. */
const inlineWrites = new WeakMap<NodeConfig, InlineWrites>();

function inlineWritesOf(config: NodeConfig): InlineWrites {
  let policy = inlineWrites.get(config);
  if (policy === undefined) {
    policy = new InlineWrites();
    inlineWrites.set(config, policy);
  }
  return policy;
}

async function openGroupStorageOf(
  config: NodeConfig,
  group: number,
  log: Logger,
): Promise<GroupStorage> {
  const limits = {
    maxEntryBytes: config.limits.maxEntryBytes,
    maxSnapshotBytes: config.limits.maxSnapshotBytes,
  };
  const dir = groupDir(config.dataDir, group);
  if (config.storage === 'sqlite') return openSqliteStorage(dir, limits);
  if (config.walSync === 'per-group') {
    const wal = await openWalStorage(dir, {
      ...limits,
      snapshotsCoverCompaction: true,
      inlineWrites: inlineWritesOf(config),
    });
    logWalRecovery(log, wal.recovery);
    return wal;
  }
  const journal = await useJournal(config, log);
  let wal;
  try {
    wal = await openWalStorage(dir, { ...limits, snapshotsCoverCompaction: true, journal });
  } catch (err) {
    await leaveJournal(config.dataDir);
    throw err;
  }
  logWalRecovery(log, wal.recovery);
  const opened = wal;
  return {
    initialState: () => opened.initialState(),
    persist: (entries, hs, opts) => opened.persist(entries, hs, opts),
    saveSnapshot: (meta, data) => opened.saveSnapshot(meta, data),
    saveSnapshotFrom: (meta, data) => opened.saveSnapshotFrom(meta, data),
    readSnapshotRange: (meta, total, offset, length, spare) =>
      opened.readSnapshotRange(meta, total, offset, length, spare),
    loadSnapshot: () => opened.loadSnapshot(),
    openSnapshot: () => opened.openSnapshot(),
    close: async () => {
      try {
        await opened.close();
      } finally {
        await leaveJournal(config.dataDir);
      }
    },
  };
}

/**
 * The fixed groups (key-value, queue, meta) whose directory holds no file of their storage:
 * missing, or emptied. Read before their storage opens, which writes a first file. A group that
 * ever opened here keeps a file, even with nothing in its log, so a blank directory beside a
 * group that holds a log means part of this node's data was lost (a directory or a file moved
 * aside, say after STORAGE_CORRUPT named it): that group must not vote with an empty log.
 */
export function blankGroupDirs(dataDir: string): number[] {
  return [KV_GROUP, QUEUE_GROUP, META_GROUP].filter(
    (group) => storageFilesIn(groupDir(dataDir, group)) === null,
  );
}

/** Whether a group's storage holds anything: a log, a snapshot, or a term it saw. */
export function holdsState(storage: GroupStorage): boolean {
  const initial = storage.initialState();
  return initial.entries.length > 0 || initial.snapshot !== null || initial.hardState.term > 0;
}

/** The key-value, queue and meta groups' storage, each in its own directory. */
export async function openGroupStorages(
  config: NodeConfig,
  log: Logger,
): Promise<{
  readonly kv: GroupStorage;
  readonly queue: GroupStorage;
  readonly meta: GroupStorage;
}> {
  const opened: GroupStorage[] = [];
  // Before any group reads its log: a journal left by a run with walSync "shared" holds
  // writes its segments may lack (with "shared", opening the journal replays it).
  if (config.storage === 'wal' && config.walSync === 'per-group')
    logJournalReplay(log, await replayJournal(config.dataDir));
  try {
    for (const group of [KV_GROUP, QUEUE_GROUP, META_GROUP])
      opened.push(await openGroupStorage(config, group, log));
  } catch (err) {
    for (const s of opened) await s.close();
    throw err;
  }
  const [kv, queue, meta] = opened as [GroupStorage, GroupStorage, GroupStorage];
  return { kv, queue, meta };
}

/** A dialler this node did not know, let in at the addresses its handshake gave. */
export interface HeardPeer {
  readonly id: number;
  readonly peer: string;
  readonly client: string | null;
}

export interface PeerTransport {
  readonly transport: TcpTransport;
  /** What each peer's handshake said of its log (the empty-start decision reads it). */
  readonly peerLogs: ReadonlyMap<number, boolean | null>;
  /**
   * Diallers this node does not know that said where they are (members that joined since its
   * directory was written, or all of them when it lost its data): let in, and kept until the
   * node exists to judge them against its directory (DESIGN.md, "A node that lost its data").
   */
  readonly heard: readonly HeardPeer[];
  /** Sets what a refused handshake does (once the node exists: ask a peer about members). */
  onRefused(fn: () => void): void;
  /** The feature level each peer's latest handshake said; 0 when it said none (feature-gate.ts). */
  readonly peerLevels: ReadonlyMap<number, number>;
  /** Sets what a peer's handshake does once the node exists (the gate may raise the level). */
  onPeerLevel(fn: () => void): void;
  /**
   * What the latest peer whose handshake said it sends to this node elsewhere than this node's
   * own address said (restarted with a changed address), or null.
   */
  addressMismatch(): string | null;
  /** Sets where the client URL this node has for a peer is looked up (its address book). */
  bindClientUrls(fn: (id: number) => string | null): void;
}

/**
 * Binds the peer port and logs what the transport tells of the peers. `hasLog` answers every
 * handshake's question; `release` closes what the caller opened before, should binding fail.
 */
export async function openPeerTransport(
  config: NodeConfig,
  hasLog: () => boolean,
  release: () => Promise<void>,
  log: Logger,
  /** Mutual TLS on the peer port (PROTOCOL.md, "TLS"); omitted: plain TCP. */
  tls?: PeerTlsOptions,
  /** The feature level said in every handshake (src/base/features.ts). */
  featureLevel = FEATURE_LEVEL,
): Promise<PeerTransport> {
  const self = config.members.find((m) => m.id === config.id);
  // The client URL this node has for a peer: the command line's until the node's address book
  // is bound (bindClientUrls).
  let clientUrlOf = (id: number): string | null =>
    config.members.find((m) => m.id === id)?.client ?? null;
  let transport: TcpTransport;
  try {
    transport = await TcpTransport.listen({
      nodeId: config.id,
      clusterId: config.clusterId,
      hasLog,
      featureLevel,
      // Tells this process apart from another started with the same id by mistake.
      incarnation: randomUUID(),
      ...(self === undefined ? {} : { advertise: { peer: self.peer, client: self.client } }),
      clientUrlOf: (id) => clientUrlOf(id),
      listen: splitHostPort(config.listenPeer),
      backoff: { baseMs: 25, maxMs: 1000 },
      peers: new Map(
        config.members
          .filter((m) => m.id !== config.id)
          .map((m) => [m.id, splitHostPort(m.peer)] as const),
      ),
      rng: createRng(config.id * 7919 + Date.now()),
      maxFrameBytes: config.limits.maxFrameBytes,
      maxAttachmentBytes: config.limits.maxAttachmentBytes,
      ...(tls === undefined ? {} : { tls }),
      liveness: {
        heartbeatMs: config.tickMs * config.heartbeatTicks,
        graceMs: config.livenessGraceMs,
      },
    });
  } catch (err) {
    await release();
    throw listenError(config.listenPeer, 'peers (listenPeer)', err);
  }
  const peerLogs = new Map<number, boolean | null>();
  const peerLevels = new Map<number, number>();
  // Monotonic time: a wall clock stepped back would silence them until it caught up.
  const disconnects = new Throttle(DISCONNECT_LOG_INTERVAL_MS);
  const connects = new Throttle(DISCONNECT_LOG_INTERVAL_MS);
  const goodbyes = new Throttle(DISCONNECT_LOG_INTERVAL_MS);
  /** Peers that said GOODBYE since they last connected. */
  const saidGoodbye = new Set<number>();
  // A peer that keeps dropping (two processes with one node id replace each other's
  // connection dozens of times a second) is said once per interval, with a count.
  const sayPeer = (
    throttle: Throttle,
    level: 'info' | 'warn',
    peer: number,
    what: string,
    fields: Record<string, unknown>,
  ): void => {
    const unsaid = throttle.take(peer, performance.now());
    if (unsaid === null) return;
    log[level](
      { peer, ...fields, ...(unsaid === 0 ? {} : { unsaid }) },
      unsaid === 0
        ? `peer ${peer} ${what}`
        : `peer ${peer} ${what} (and ${unsaid} more times since last said)`,
    );
  };
  const tlsRefusals = new RateLimitedWarning(log, monotonicClock);
  const handshakeRefusals = new RateLimitedWarning(log, monotonicClock);
  /** Peers whose refusal for a cluster id mismatch was explained in the log. */
  const toldClusterId = new Set<number>();
  /** Peers whose refusal for another process holding this node's id was explained. */
  const toldIdInUse = new Set<number>();
  /** Per peer: where it said it sends to this node, when that is not this node's address. */
  const sendsElsewhere = new Map<number, string>();
  const forwardsElsewhere = new Map<number, string>();
  /** What a peer's ACCEPT says of where it reaches this node: logged once per peer and place. */
  const noteMismatch = (
    seen: Map<number, string>,
    e: { peer: number; recorded: string; advertised: string; same: boolean },
    text: (peer: number, recorded: string, advertised: string) => string,
  ): void => {
    if (e.same) {
      seen.delete(e.peer);
      return;
    }
    if (seen.get(e.peer) === e.recorded) return;
    seen.set(e.peer, e.recorded);
    log.error(
      { peer: e.peer, recorded: e.recorded, advertised: e.advertised },
      text(e.peer, e.recorded, e.advertised),
    );
  };
  let onPeerLevel: () => void = () => undefined;
  const heard: HeardPeer[] = [];
  const t = transport;
  // Diallers heard before the node is assembled; the same cap as the learned members, the
  // oldest dropped (and no longer a peer) first.
  t.setAdmission((id, a) => {
    const at = heard.findIndex((h) => h.id === id);
    if (at >= 0) heard.splice(at, 1);
    heard.push({ id, ...a });
    if (heard.length > MAX_LEARNED_MEMBERS) t.removePeer((heard.shift() as HeardPeer).id);
    t.setPeer(id, splitHostPort(a.peer));
    return true;
  });
  let onRefused: () => void = () => undefined;
  t.onEvent((e) => {
    switch (e.kind) {
      case 'reconnect-scheduled':
        return;
      case 'peer-connected':
        saidGoodbye.delete(e.peer);
        peerLogs.set(e.peer, e.peerHasLog);
        // A peer that says no level runs a release from before the gate: level 0.
        peerLevels.set(e.peer, e.peerFeatureLevel ?? FEATURE_LEVEL_NONE);
        onPeerLevel();
        sayPeer(connects, 'info', e.peer, 'connected', {
          direction: e.direction,
          remote: e.remote,
        });
        return;
      case 'peer-disconnected':
        // A peer that said GOODBYE stops cleanly (an operator's stop, a rolling restart): said
        // at info, apart from failures, and throttled apart so it never hides a later crash.
        // It says it on both connections, and the second close is the same stop: said once,
        // until the peer connects again.
        if (saidGoodbye.has(e.peer))
          log.debug(
            { peer: e.peer, direction: e.direction, reason: e.reason },
            `peer ${e.peer} closed its other connection`,
          );
        else if (e.goodbye) {
          saidGoodbye.add(e.peer);
          sayPeer(goodbyes, 'info', e.peer, 'is shutting down (it said goodbye)', {
            direction: e.direction,
            reason: e.reason,
          });
        } else
          sayPeer(disconnects, 'warn', e.peer, 'disconnected', {
            direction: e.direction,
            reason: e.reason,
          });
        return;
      case 'handshake-refused': {
        // Once a minute per dialler's address (or peer dialled) and check that refused, as a
        // TLS refusal: a peer of another cluster, or one this node does not know, dials again
        // several times a second, each refusal a line, for as long as it is misconfigured. Not
        // per reason: it holds what the dialler sent (its bytes, its cluster id), and one
        // sending junk would be said once per distinct value.
        handshakeRefusals.warn(
          e.direction === 'inbound'
            ? `from ${hostOf(e.remote)} ${e.category}`
            : `to ${e.peer} ${e.category}`,
          {
            peer: e.peer,
            direction: e.direction,
            remote: e.remote,
            reason: e.reason,
            category: e.category,
          },
          'peer handshake refused',
        );
        // The peer's own words, relayed ("ours" is the peer's id): said once per peer from
        // this side, as what to check, since no waiting ends it.
        const other = /^cluster id mismatch: ours ("[^"]*"), node \d+ sent ("[^"]*")$/.exec(
          e.reason ?? '',
        );
        if (other !== null && e.direction === 'outbound' && !toldClusterId.has(e.peer)) {
          toldClusterId.add(e.peer);
          log.error(
            { peer: e.peer, peerClusterId: other[1], clusterId: other[2] },
            `peer ${e.peer} belongs to cluster ${other[1] ?? ''}, this node to ${other[2] ?? ''}: ` +
              'check its clusterId (--cluster-id); the peers refuse it until they match',
          );
        }
        // A peer that holds our id's connection from another process: said once per peer.
        if (
          e.direction === 'outbound' &&
          /^node id \d+ is in use by another process/.test(e.reason ?? '') &&
          !toldIdInUse.has(e.peer)
        ) {
          toldIdInUse.add(e.peer);
          log.error(
            { peer: e.peer, reason: e.reason },
            `peer ${e.peer} refuses this process: ${e.reason ?? ''}`,
          );
        }
        onRefused();
        return;
      }
      case 'tls-refused':
        // Once a minute per dialler's address (or peer dialled) and kind of reason (without
        // the certificate's details, which the dialler chose): a learner with another CA's
        // certificate dials every member 4 to 5 times a second, for ever.
        tlsRefusals.warn(
          e.direction === 'inbound'
            ? `from ${hostOf(e.remote)} ${reasonClass(e.reason)}`
            : `to ${e.peer} ${reasonClass(e.reason)}`,
          { peer: e.peer, direction: e.direction, remote: e.remote, reason: e.reason },
          e.direction === 'inbound'
            ? `peer connection from ${e.remote} refused: ${e.reason}`
            : `peer ${e.peer} at ${e.remote} refused: ${e.reason}`,
        );
        return;
      case 'protocol-error':
        log.warn(
          { peer: e.peer, code: e.code, remote: e.remote, reason: e.message },
          'peer protocol error',
        );
        return;
      case 'peer-id-conflict':
        log.error(
          { peer: e.peer, remotes: e.remotes },
          `two processes claim node id ${e.peer} (connections from ${e.remotes.join(' and ')}): ` +
            `the one at ${e.remotes[0] ?? ''} is refused while the other's connection is open; ` +
            'stop the one that should not run',
        );
        return;
      case 'peer-address':
        noteMismatch(sendsElsewhere, e, addressMismatchText);
        return;
      case 'client-address':
        noteMismatch(forwardsElsewhere, e, clientMismatchText);
        return;
      case 'handler-error':
        log.error({ peer: e.peer, reason: e.message }, 'error handling a peer message');
        return;
    }
  });
  return {
    transport: t,
    peerLogs,
    heard,
    peerLevels,
    onPeerLevel: (fn) => {
      onPeerLevel = fn;
    },
    onRefused: (fn) => {
      onRefused = fn;
    },
    addressMismatch: () => {
      for (const [peer, recorded] of sendsElsewhere)
        return addressMismatchText(
          peer,
          recorded,
          config.members.find((m) => m.id === config.id)?.peer ?? '',
        );
      return null;
    },
    bindClientUrls: (fn) => {
      clientUrlOf = fn;
    },
  };
}

function clientMismatchText(peer: number, recorded: string, advertised: string): string {
  return (
    `peer ${peer} forwards client requests to this node at ${recorded}, but this node says it ` +
    `serves clients at ${advertised}: unless the two name the same place, the writes it forwards ` +
    'here fail while this node leads. If this node was restarted at another client URL, start ' +
    'it at the one the cluster has for it; to move a member, add a new one and remove this one'
  );
}

function addressMismatchText(peer: number, recorded: string, advertised: string): string {
  return (
    `peer ${peer} sends to this node at ${recorded}, but this node listens for peers at ` +
    `${advertised}: what it sends may never arrive. Start it with the address the cluster has ` +
    'for it; to move a member, add a new one at the new address and remove this one'
  );
}

/**
 * Each group's settings. The data directory is one unit (DESIGN.md, "A node that lost its
 * data"): a group started while the node recovers starts recovering, and the node is a full
 * member again, as its identity file says, only once every group caught up (node-recovery.ts).
 */
export function groupSettings(
  config: NodeConfig,
  identity: Identity,
  recovery: Pick<NodeRecovery, 'recoveryFor' | 'groupStored'>,
): (group: number) => GroupSettings {
  const { limits } = config;
  return (group) => ({
    // The configuration the log starts from; membership changes in the log follow it.
    voters: identity.members,
    // A snapshot being received survives a restart in the group's directory.
    partialSnapshots: new FilePartialSnapshots(groupDir(config.dataDir, group)),
    rng: createRng(config.id * 104729 + group * 31 + Date.now()),
    electionTicks: config.electionTicks,
    heartbeatTicks: config.heartbeatTicks,
    snapshotEveryEntries: config.snapshotEveryEntries,
    snapshotLogRatio: config.snapshotLogPercent / 100,
    snapshotEncodeShare: config.snapshotEncodePercent / 100,
    requestTimeoutMs: config.requestTimeoutMs,
    // The API refuses a write larger than maxProposalBytes before proposing it (TXN_TOO_LARGE).
    raft: {
      ...(config.leaseDriftTicks > 0 ? { leaseDriftTicks: config.leaseDriftTicks } : {}),
      ...(config.quiesce === 'on' ? { quiesce: true } : {}),
      commitOnTick: true,
      readRoundsToQuorum: true,
      maxProposalBytes: limits.maxProposalBytes,
      maxBytesPerMsg: limits.maxBytesPerMsg,
      maxUncommittedBytes: limits.maxUncommittedBytes,
      maxInflightBytes: limits.maxInflightBytes,
      snapshotChunkBytes: limits.maxSnapshotChunkBytes,
      recovery: recovery.recoveryFor(group),
    },
    storeRecovery: (r: Recovery) => recovery.groupStored(group, r),
  });
}

/** A data directory whose storage holds a log, a snapshot or a term, but no identity file. */
export function missingIdentity(config: NodeConfig): DataDirError {
  return new DataDirError(
    'DATA_DIR_INVALID',
    `Data directory ${config.dataDir} holds a Raft log but no ${IDENTITY_FILE}: which ` +
      'cluster and member wrote it can no longer be checked, and it would be taken as ' +
      `cluster ${JSON.stringify(config.clusterId)}'s member ${config.id}. Put the file back ` +
      '(from a backup of the directory), or move the directory aside and start this node ' +
      'empty: with its peers up it recovers from them.',
    join(config.dataDir, IDENTITY_FILE),
  );
}
