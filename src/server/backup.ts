// `GET /v1/snapshot`: a backup of this node's groups, streamed as it is encoded (the format is
// backup-format.ts; DESIGN.md, "Backups"). The node asked serves it itself, follower or leader:
// a read barrier on each group first makes its state at least as new as every write
// acknowledged before the request arrived, then both groups are captured in one synchronous
// step (copy-on-write, as for a Raft snapshot) and streamed, one chunk per turn of the event
// loop, at the pace the reader takes them.

import type { Logger } from 'pino';
import { FlotillaError } from '../base/errors.js';
import { toFlotillaError } from '../api/errors.js';
import type { ByteSink, JsonHttpServer } from '../api/http.js';
import type { RaftRuntime } from '../host/runtime.js';
import { BackupWriter, type BackupGroupHeader } from './backup-format.js';

export const backupPath = '/v1/snapshot';

export interface BackupSource {
  readonly clusterId: string;
  readonly memberId: number;
  /** The groups saved, in the order the file holds them. */
  readonly groups: readonly { readonly group: number; readonly runtime: RaftRuntime }[];
  readonly nowMs: () => number;
  readonly log: Logger;
  /** Throws when the node cannot back up its whole store (it holds more than one range). */
  readonly checkWhole?: () => void;
}

interface Captured extends BackupGroupHeader {
  readonly chunks: AsyncIterable<Uint8Array>;
}

/**
 * A reader that takes nothing for this long is given up (the connection is cut): the capture it
 * holds open keeps the pre-image of every key changed meanwhile, and blocks other backups.
 */
const stalledReaderMs = 60_000;

/** Writes `bytes`, or fails once the reader has taken nothing for stalledReaderMs. */
async function writeWithin(out: ByteSink, bytes: Uint8Array): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      out.write(bytes),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new FlotillaError(
                'TIMEOUT',
                `The backup's reader took nothing for ${stalledReaderMs} ms; given up`,
              ),
            ),
          stalledReaderMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Lets timers, peer messages and other requests run between two chunks. */
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export function installBackupRoute(http: JsonHttpServer, src: BackupSource): void {
  // One backup at a time per node: each holds a capture open while it streams, and a state
  // machine keeps only a few (an older one fails when read).
  let busy = false;
  http.route('GET', backupPath, async ({ signal }) => {
    src.checkWhole?.();
    if (busy)
      throw new FlotillaError(
        'SNAPSHOT_BUSY',
        `A backup is already streaming from member ${src.memberId}; retry once it finished, or ask another member`,
      );
    busy = true;
    let captured: Captured[];
    try {
      // Both barriers before either capture, so both states include every write acknowledged
      // before this request: a linearizable read of each group.
      await Promise.all(src.groups.map((g) => g.runtime.linearizableRead({ signal })));
      // No await between the captures: both groups as of one moment on this node.
      captured = src.groups.map((g) => ({ group: g.group, ...g.runtime.captureApplied() }));
    } catch (err) {
      busy = false;
      throw toFlotillaError(err);
    }
    src.log.info(
      { groups: captured.map((c) => ({ group: c.group, index: c.index, term: c.term })) },
      'backup captured; streaming',
    );
    return {
      bytes: async (out: ByteSink) => {
        try {
          await stream(src, captured, out);
        } finally {
          busy = false;
        }
      },
    };
  });
}

async function stream(
  src: BackupSource,
  captured: readonly Captured[],
  out: ByteSink,
): Promise<void> {
  const started = src.nowMs();
  const w = new BackupWriter();
  await writeWithin(
    out,
    w.header({
      clusterId: src.clusterId,
      savedBy: src.memberId,
      savedAt: new Date(src.nowMs()).toISOString(),
      groups: captured.map(({ group, index, term, voters }) => ({ group, index, term, voters })),
    }),
  );
  for (const c of captured) {
    for await (const chunk of c.chunks) {
      if (out.signal.aborted) throw new FlotillaError('ABORTED', 'The reader went away');
      await writeWithin(out, w.chunk(c.group, chunk));
      await nextTurn();
    }
  }
  const end = w.end();
  await writeWithin(out, end.bytes);
  src.log.info(
    { groups: end.summary.groups, sha256: end.sha256, ms: src.nowMs() - started },
    'backup streamed',
  );
}
