// The command that replays a seed: the seed and the command-line options that the seed alone
// does not fix, with --verbose so that the replay prints every event.

import type { ClusterSize } from './profile.js';

/** What the command line can set, and so what a replay command must repeat. */
export interface ReplayOptions {
  readonly nodes?: ClusterSize | undefined;
  readonly ranges?: boolean;
  readonly moves?: boolean;
  /** Moves under way at once (`--concurrent-moves`), when above 1. */
  readonly concurrentMoves?: number | undefined;
  readonly meta?: boolean;
  readonly quiesce?: boolean;
  /** Clients that give up an attempt after one election timeout (`--impatient`). */
  readonly impatient?: boolean;
  /** Only when asked for (`--wipe-every`): a drawn wipe rate is the seed's own. */
  readonly wipeEveryMs?: number | undefined;
  /** Membership churn (`--membership-every`, which turns wipes off); never drawn. */
  readonly membershipEveryMs?: number | undefined;
}

export function replayCommand(seed: number, o: ReplayOptions = {}): string {
  const flags = [
    `--seed ${seed}`,
    ...(o.nodes === undefined ? [] : [`--nodes ${o.nodes}`]),
    ...(o.membershipEveryMs !== undefined && o.membershipEveryMs > 0
      ? [`--membership-every ${o.membershipEveryMs}`]
      : o.wipeEveryMs === undefined || o.wipeEveryMs === 0
        ? []
        : [`--wipe-every ${o.wipeEveryMs}`]),
    ...(o.ranges === true ? ['--ranges'] : []),
    ...(o.moves === true ? ['--moves'] : []),
    ...(o.concurrentMoves !== undefined && o.concurrentMoves > 1
      ? [`--concurrent-moves ${o.concurrentMoves}`]
      : []),
    ...(o.meta === true ? ['--meta'] : []),
    ...(o.quiesce === true ? ['--quiesce'] : []),
    ...(o.impatient === true ? ['--impatient'] : []),
    '--verbose',
  ];
  return `npm run sim -- ${flags.join(' ')}`;
}
