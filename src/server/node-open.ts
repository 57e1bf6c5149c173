// The first steps of a node's start (node.ts, FlotillaNode.start), before any Raft group runs:
// whose data directory this is, its groups' storage, the peer port, and whether the node starts
// as it stopped or recovers data it lost.

import type { Logger } from 'pino';
import { FEATURE_LEVEL } from '../base/features.js';
import { systemClock, type GroupStorage } from '../host/contracts.js';
import type { RaftRuntime } from '../host/runtime.js';
import type { Recovery } from '../raft/index.js';
import { FIRST_ALLOCATED_RANGE } from '../ranges/types.js';

import { clientProtocolAddress } from './client-protocol.js';
import { checkResolvedConfig, type NodeConfig } from './config.js';
import { writeIdentity, writeLimits } from './data-dir.js';
import { createLogger } from './logging.js';
import {
  blankGroupDirs,
  holdsState,
  missingIdentity,
  openGroupStorages,
  openPeerTransport,
  resolveIdentity,
  type Identity,
  type PeerTransport,
} from './node-setup.js';
import { NodeTls } from './node-tls.js';
import { RangeDirs } from './range-dirs.js';
import { decideEmptyStart } from './startup.js';

/** What the first steps opened; the rest of the start closes it should it fail. */
export interface OpenedNode {
  readonly log: Logger;
  /** Where the binary client protocol listens; null when it is off. */
  readonly wireListen: string | null;
  readonly tls: NodeTls | null;
  /** The configuration resolved against the data directory (or the cluster joined). */
  readonly config: NodeConfig;
  readonly identity: Identity;
  readonly rangeDirs: RangeDirs;
  readonly storage: GroupStorage;
  readonly queueStorage: GroupStorage;
  readonly metaStorage: GroupStorage;
  readonly peers: PeerTransport;
  readonly recovery: Recovery;
  /** From when range 0 runs: its runtime says whether this node holds a log. */
  readonly bindRuntime: (runtime: RaftRuntime) => void;
}

/** Opens what a node starts on, each step failing before the next touches anything. */
export async function openNode(
  given: NodeConfig,
  o: {
    logger?: Logger;
    /** The feature level this node says it runs (default FEATURE_LEVEL). */
    featureLevel?: number;
    /** Aborted when the process is asked to stop (FlotillaNode.start). */
    signal?: AbortSignal;
  },
): Promise<OpenedNode> {
  checkResolvedConfig(given);
  const log =
    o.logger ?? createLogger(given.id, { level: given.logLevel, format: given.logFormat });
  // Fail before touching storage (node-setup.ts). The peer port is bound for real (messages
  // arriving before the runtime starts are dropped; Raft resends).
  const wireListen = clientProtocolAddress(given);
  // Unusable TLS files are reported before anything else is touched.
  const tls =
    given.tls === null ? null : new NodeTls({ config: given.tls, clock: systemClock, log });
  const { config, identity, recorded, joined, lostData } = await resolveIdentity(
    given,
    wireListen,
    log,
    tls?.connector,
    o.signal,
  );
  // Read before any storage opens: a damaged record stops the start with nothing to close.
  const rangeDirs = new RangeDirs(config.dataDir);
  const blank = blankGroupDirs(config.dataDir);
  const lostRanges = rangeDirs.lost();
  const {
    kv: storage,
    queue: queueStorage,
    meta: metaStorage,
  } = await openGroupStorages(config, log);
  const initial = storage.initialState();
  const holdsLog = initial.entries.length > 0 || initial.snapshot !== null;
  const someHeld =
    holdsLog || initial.hardState.term > 0 || holdsState(queueStorage) || holdsState(metaStorage);
  // The identity file is written on first start, before anything is proposed: a log (or a
  // term) without it means the file was lost, and with it every check of whose log this is.
  if (recorded === null && someHeld) {
    await storage.close();
    await queueStorage.close();
    await metaStorage.close();
    throw missingIdentity(config);
  }
  // Some groups' storage lost while others kept theirs: recovered as a wiped node is.
  const fixedLost = blank.length > 0 && someHeld;
  if (fixedLost)
    log.warn(
      { dataDir: config.dataDir, groups: blank },
      `the storage of group(s) ${blank.join(',')} holds nothing while another group holds a log: part of this node's data was lost`,
    );
  if (lostRanges.length > 0)
    log.warn(
      { dataDir: config.dataDir, ranges: lostRanges },
      `range(s) ${lostRanges.join(',')} held here hold no storage now: part of this node's data was lost`,
    );
  const partLost = fixedLost || lostRanges.length > 0;
  let runtimeHolder: RaftRuntime | null = null;
  let knowsCluster = recorded !== null && recorded.recovery === 'recovering';
  const peers = await openPeerTransport(
    config,
    // A node recovering lost data says it holds a log: it knows the cluster exists, and an
    // empty member asking must not count it toward a new cluster (startup.ts).
    () =>
      knowsCluster || (runtimeHolder === null ? holdsLog : runtimeHolder.status().lastIndex > 0),
    async () => {
      await storage.close();
      await queueStorage.close();
      await metaStorage.close();
    },
    log,
    tls?.material,
    o.featureLevel ?? FEATURE_LEVEL,
  );
  const { transport } = peers;
  let recovery: Recovery;
  try {
    recovery =
      (recorded !== null && recorded.recovery === 'recovering') || lostData || partLost
        ? 'recovering'
        : holdsLog || initial.hardState.term > 0 || joined
          ? 'none'
          : await decideEmptyStart(config, peers.peerLogs, log, o.signal);
    // Written on first start (or after recovery was decided); an unchanged one is left alone.
    if (recorded?.recovery !== recovery) writeIdentity(config.dataDir, { ...identity, recovery });
    // What its groups' commands are applied under, for a look at the directory once stopped.
    writeLimits(config.dataDir, config.limits);
    if (recovery === 'recovering') knowsCluster = true;
    // Which ranges provably never ran here (RangeDirs.neverRan): none once data was lost
    // (until the map is read, node-recovery.ts), every one in a new data directory.
    if (recovery === 'recovering') rangeDirs.setCompleteFrom(null);
    else if (recorded === null) rangeDirs.setCompleteFrom(FIRST_ALLOCATED_RANGE);
    // Once the recovery is durable: the ranges found lost are forgotten (recovering restarts
    // those this node still replicates, which records them again).
    rangeDirs.settle();
  } catch (err) {
    await transport.close();
    await storage.close();
    await queueStorage.close();
    await metaStorage.close();
    throw err;
  }
  if (recovery === 'recovering') {
    log.warn(
      { dataDir: config.dataDir },
      'this node lost its data: recovering from the leader; it neither votes nor counts toward a quorum until caught up',
    );
  }
  return {
    log,
    wireListen,
    tls,
    config,
    identity,
    rangeDirs,
    storage,
    queueStorage,
    metaStorage,
    peers,
    recovery,
    bindRuntime: (runtime) => (runtimeHolder = runtime),
  };
}
