// What a group's leader does on a clock: the queue's ticks, the expiry of range 0's leases and
// the automatic compaction of each range's history. Each runs on every node and acts only
// while its node leads the group.

import type { Logger } from 'pino';
import { systemClock } from '../host/contracts.js';
import type { RaftRuntime } from '../host/runtime.js';
import type { KvStateMachine } from '../kv/machine.js';
import type { RangeId } from '../ranges/types.js';
import { AutoCompactor } from './compactor.js';
import type { NodeConfig } from './config.js';
import type { KvService } from './kv-service.js';
import { LeaseKeeper } from './lease-keeper.js';
import type { QueueService } from './queue-service.js';
import { QueueTicker } from './queue-ticker.js';

/** A range's group, its machine and service, and where a duty's lines go. */
export interface RangeServing {
  readonly config: NodeConfig;
  readonly log: Logger;
  readonly runtime: RaftRuntime;
  readonly kv: KvStateMachine;
  readonly service: KvService;
}

/** How often the queue group's leader moves the queue's clock on (DESIGN.md, "The job queue"). */
export const queueTickMs = 1_000;

/** The queue's clock, moved on by the queue group's leader. */
export function newQueueTicker(queueService: QueueService, log: Logger): QueueTicker {
  return new QueueTicker({
    clock: systemClock,
    everyMs: queueTickMs,
    isLeader: () => queueService.runtime.isLeader(),
    tick: () => queueService.tick(),
    onError: (err) =>
      log.debug({ err: (err as Error).message }, 'queue tick failed; will tick again'),
    nextDueMs: () => queueService.queue.nextDueMs(),
    machineNowMs: () => queueService.queue.timeMs(),
    onApplied: (listener) => queueService.runtime.onApplied(listener),
  });
}

/** The expiry of range 0's leases, run by its leader. */
export function newLeaseKeeper(o: RangeServing): LeaseKeeper {
  const { config, log, runtime, kv, service } = o;
  return new LeaseKeeper({
    clock: systemClock,
    isLeader: () => runtime.isLeader(),
    leases: () => kv.leases(),
    lease: (id) => kv.lease(id)?.lease,
    // The longest election timeout: how long keep-alives may have found no leader.
    extendMs: 2 * config.electionTicks * config.tickMs,
    checkEveryMs: 100,
    applied: () => service.readBarrier(),
    revoke: async (id) => {
      await service.leaseRevoke(id);
      log.info({ lease: id }, 'lease expired: revoked, its keys deleted');
    },
    onError: (id, err) =>
      log.warn(
        { lease: id, err: (err as Error).message },
        'revoking an expired lease failed; will try again',
      ),
  });
}

/** The automatic compaction of one range's history, run by that range's leader. */
export function newCompactor(range: RangeId, o: RangeServing): AutoCompactor {
  const { config, log, runtime, kv, service } = o;
  return new AutoCompactor({
    clock: systemClock,
    keepRevisions: config.compactionKeepRevisions,
    keepMs: config.compactionKeepMs,
    keepBytes: config.compactionKeepBytes,
    revisionToFit: (bytes) => kv.historyRevisionToFit(bytes),
    checkEveryMs: 1_000,
    isLeader: () => runtime.status().role === 'leader',
    revision: () => kv.revision(),
    compacted: () => kv.compacted(),
    compact: async (revision) => {
      await service.compact(revision);
      log.debug({ range, revision }, 'compacted the key-value history');
    },
    onError: (err) =>
      log.warn(
        { range, err: (err as Error).message },
        'automatic compaction failed; will try again',
      ),
  });
}
