// A group's state machine rebuilt from its storage alone, as a runtime does when it starts:
// the latest snapshot restored, then the committed entries after it applied in log order. For
// looking at a stopped node's data (`flotilla queue inspect`); nothing is proposed, nothing is
// written. The runtime and this share `commandsOf`, so an entry means the same to both.

import type { Entry } from '../raft/index.js';
import type { Command, GroupStorage, StateMachine } from './contracts.js';
import { snapshotChunks } from './snapshot-stream.js';

/** Entries applied in one call: bounds the commands and results held at once. */
const REPLAY_BATCH = 1_024;

/**
 * The commands a state machine applies for these committed entries: the normal entries with a
 * payload (an empty one is a new leader's no-op; a membership change is the core's). `timeMs`
 * is 0: the envelope in the payload carries the proposer's time, read by the session layer.
 */
export function commandsOf(entries: readonly Entry[]): Command[] {
  const commands: Command[] = [];
  for (const e of entries)
    if (e.type === 'normal' && e.data.length > 0)
      commands.push({ index: e.index, term: e.term, timeMs: 0, payload: e.data });
  return commands;
}

export interface Replayed {
  /** The snapshot restored (0: none). */
  readonly snapshotIndex: number;
  /** The last entry applied: the commit index the storage recorded (or the last entry). */
  readonly appliedIndex: number;
  /**
   * Entries on disk past the commit index the storage recorded: not applied (they may never
   * commit), or applied all the same when asked (`uncommitted: true`).
   */
  readonly uncommitted: number;
}

/**
 * Restores `machine` from `storage`'s snapshot and applies every entry after it up to the
 * stored commit index. The commit index is a restart hint (it may lag what the cluster
 * committed), so this is the state the node itself would restart with, before it hears
 * from its peers. With `uncommitted`, every entry on disk is applied, past the commit index
 * too: the most a lone survivor can give of a cluster that lost its majority (it may include
 * writes the cluster never committed).
 */
export async function replayStorage(
  storage: Pick<GroupStorage, 'initialState' | 'loadSnapshot'>,
  machine: StateMachine,
  o: { readonly uncommitted?: boolean } = {},
): Promise<Replayed> {
  const snapshot = await storage.loadSnapshot();
  if (snapshot !== null) await machine.restore(snapshotChunks(snapshot.data));
  const snapshotIndex = snapshot?.meta.index ?? 0;
  const initial = storage.initialState();
  const commit = initial.hardState.commit;
  const entries = initial.entries.filter((e) => e.index > snapshotIndex);
  const first = entries[0];
  if (first !== undefined && first.index !== snapshotIndex + 1)
    throw new Error(
      `Cannot replay: the log starts at entry ${first.index}, past the snapshot at ${snapshotIndex}`,
    );
  const committed = o.uncommitted === true ? entries : entries.filter((e) => e.index <= commit);
  let applied = snapshotIndex;
  for (let i = 0; i < committed.length; i += REPLAY_BATCH) {
    const batch = committed.slice(i, i + REPLAY_BATCH);
    const commands = commandsOf(batch);
    if (commands.length > 0) {
      const results = machine.apply(commands);
      if (results.length !== commands.length)
        throw new Error(
          `The state machine returned ${results.length} results for ${commands.length} commands`,
        );
    }
    applied = batch[batch.length - 1]?.index ?? applied;
  }
  const uncommitted = entries.filter((e) => e.index > commit).length;
  return { snapshotIndex, appliedIndex: applied, uncommitted };
}
