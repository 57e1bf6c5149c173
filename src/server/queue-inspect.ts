// `flotilla queue inspect`: the job queue of a stopped node, read from its data directory. The
// queue is rebuilt as the node would rebuild it on restart (replayStorage: the snapshot, then
// the committed entries through the same SessionMachine wrapper the runtime applies them
// with), so what it shows is what the node holds, not a second reading of the format. The
// node's files are locked and copied, never opened in place (group-copy.ts).

import { defaultLimits } from '../base/limits.js';
import { replayStorage } from '../host/replay.js';
import { defaultSessionLimits, SessionMachine } from '../host/sessions.js';
import {
  jobStates,
  QueueStateMachine,
  type JobState,
  type JobView,
  type QueueStats,
} from '../queue/index.js';
import { existsSync } from 'node:fs';
import { readLimits, type StorageKind } from './data-dir.js';
import { copyGroups } from './group-copy.js';
import { QUEUE_GROUP } from './node-setup.js';

export interface QueueInspection {
  readonly dataDir: string;
  readonly storage: StorageKind;
  /** The snapshot the queue was restored from (0: none). */
  readonly snapshotIndex: number;
  /** The last entry applied: the commit index the node recorded. */
  readonly appliedIndex: number;
  /** Entries past it, not applied: the node did not know them committed when it stopped. */
  readonly uncommitted: number;
  /** The queue machine's clock: the time of the last command applied. */
  readonly timeMs: number;
  readonly queues: readonly QueueStats[];
  /** The jobs of those queues (in `state` only, when given), by queue, state, then age. */
  readonly jobs: readonly JobView[];
}

/**
 * Rebuilds the queue of the stopped node whose data directory is `dataDir`. Throws a
 * DataDirError (DATA_DIR_INVALID) for a directory that holds no queue group, and the
 * storage's STORAGE_LOCKED while a running node holds it.
 */
export async function inspectQueue(
  dataDir: string,
  o: { queue?: string; state?: JobState } = {},
): Promise<QueueInspection> {
  // The node's limits, as its storage and sessions held its log under them (readLimits).
  const limits = existsSync(dataDir) ? readLimits(dataDir) : defaultLimits;
  const copies = await copyGroups(dataDir, [{ group: QUEUE_GROUP, what: 'queue group' }], limits);
  try {
    const queue = new QueueStateMachine();
    const machine = new SessionMachine(queue, {
      ...defaultSessionLimits,
      maxSessions: limits.maxSessions,
      window: limits.sessionWindow,
    });
    const opened = await copies.open(QUEUE_GROUP);
    const replayed = await replayStorage(opened, machine).finally(() => opened.close());
    const names = queue.queueNames().filter((n) => o.queue === undefined || n === o.queue);
    const queues = names.flatMap((n) => queue.stats(n) ?? []);
    const jobs: JobView[] = [];
    for (const name of names)
      for (const state of o.state === undefined ? jobStates : [o.state])
        for (let after: number | null = 0; after !== null;) {
          const page = queue.list(name, state, { after, limit: 1_000 });
          jobs.push(...page.jobs);
          after = page.next;
        }
    const { storage } = copies;
    return { dataDir, storage, ...replayed, timeMs: queue.timeMs(), queues, jobs };
  } finally {
    await copies.release();
  }
}
