// What a seed's profile sets in every node's runtime: timing, snapshots and the Raft options
// the profile draws, as the product's configuration would set them.

import { leaseDriftTicks, type Profile } from './profile.js';
import type { SimNodeOptions } from './sim-node.js';

/** Bytes of one snapshot chunk in the simulator (the product's default is 1 MiB). */
const SIM_SNAPSHOT_CHUNK_BYTES = 256;

export function runtimeOptions(p: Profile): SimNodeOptions['runtime'] {
  return {
    tickMs: p.tickMs,
    electionTicks: p.electionTicks,
    heartbeatTicks: p.heartbeatTicks,
    snapshotEveryEntries: p.snapshotEvery === 0 ? Number.MAX_SAFE_INTEGER : p.snapshotEvery,
    // Half the profiles snapshot at every multiple, half by the product's size rule:
    // derived from the interval, so no seed's other draws move.
    snapshotLogRatio: p.snapshotEvery % 2 === 0 ? 0 : 0.5,
    raft: {
      preVote: p.preVote,
      checkQuorum: p.checkQuorum,
      ...(p.checkQuorum && p.leaseReadRatio > 0 ? { leaseDriftTicks: leaseDriftTicks(p) } : {}),
      maxEntriesPerMsg: p.maxEntriesPerMsg,
      maxInflightMsgs: p.maxInflightMsgs,
      ...(p.quiesce ? { quiesce: true } : {}),
      commitOnTick: p.commitOnTick,
      readRoundsToQuorum: p.readRoundsToQuorum,
      // Small, so that every snapshot sent travels in many chunks and transfers are
      // cut by crashes, partitions and leader changes: resuming is exercised in every
      // seed that sends one.
      snapshotChunkBytes: SIM_SNAPSHOT_CHUNK_BYTES,
    },
  };
}
