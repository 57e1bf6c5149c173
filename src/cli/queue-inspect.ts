// `flotilla queue inspect --data-dir DIR`: a stopped node's job queue, from its data directory
// (src/server/queue-inspect.ts rebuilds it). Text for a person, or --json for a program: the
// jobs with their data as JSON, as the API shows them. The text's columns fit their content as
// a terminal shows it, and a job's data and last error are previews, cut with an ellipsis.

import { FlotillaError } from '../client/index.js';
import { defaultQueueLimits, isQueueName } from '../base/limits.js';
import { renderJob } from '../api/queue-routes.js';
import { jobStates, type JobState, type JobView } from '../queue/index.js';
import type { QueueInspection } from '../server/queue-inspect.js';
import { table } from './text-table.js';

export interface InspectOptions {
  readonly dataDir: string;
  readonly queue?: string;
  readonly state?: string;
  readonly json?: boolean;
}

export async function runInspect(o: InspectOptions, out: (s: string) => void): Promise<void> {
  if (o.state !== undefined && !(jobStates as readonly string[]).includes(o.state))
    throw new FlotillaError(
      'BAD_REQUEST',
      `--state must be one of ${jobStates.join(', ')}, got "${o.state}"`,
    );
  const max = defaultQueueLimits.maxNameChars;
  if (o.queue !== undefined && !isQueueName(o.queue, defaultQueueLimits))
    throw new FlotillaError(
      'BAD_REQUEST',
      `--queue must be 1 to ${max} letters, digits or ._:-, got ${JSON.stringify(o.queue)}`,
    );
  // Loaded here, not with the CLI: it brings the node's storage along.
  const { inspectQueue } = await import('../server/queue-inspect.js');
  const r = await inspectQueue(o.dataDir, {
    ...(o.queue === undefined ? {} : { queue: o.queue }),
    ...(o.state === undefined ? {} : { state: o.state as JobState }),
  });
  out(
    o.json === true
      ? JSON.stringify({ ...r, jobs: r.jobs.map(renderJob) }, null, 2)
      : inspectionText(r, o),
  );
}

/** The inspection as text for a person: the queues, then their jobs, in aligned columns. */
export function inspectionText(r: QueueInspection, o: Pick<InspectOptions, 'queue'>): string {
  const lines = [
    `${r.dataDir}: ${r.storage} storage, queue group applied through entry ${r.appliedIndex}` +
      (r.snapshotIndex > 0 ? ` (snapshot at ${r.snapshotIndex})` : '') +
      (r.uncommitted > 0 ? `, ${r.uncommitted} entries past it not known committed` : '') +
      `; queue clock ${iso(r.timeMs)}`,
    '',
  ];
  lines.push(
    ...table([
      ['QUEUE', 'PAUSED', ...jobStates.map((s) => s.toUpperCase())],
      ...r.queues.map((q) => [
        q.queue,
        q.paused ? 'yes' : 'no',
        ...jobStates.map((s) => String(q.counts[s])),
      ]),
    ]),
  );
  if (r.queues.length === 0)
    lines.push(o.queue === undefined ? '(no queues)' : `(no queue named "${o.queue}" here)`);
  lines.push('');
  lines.push(
    ...table(
      [
        ['ID', 'QUEUE', 'STATE', 'ATTEMPTS', 'RELEASES', 'RUN AT', 'DATA', 'LAST ERROR'],
        ...r.jobs.map((j: JobView) => [
          j.id,
          j.queue,
          j.state,
          `${j.attempts}/${j.maxAttempts}`,
          String(j.releases),
          iso(j.runAtMs),
          utf8.decode(j.payload),
          j.error ?? '',
        ]),
      ],
      // Previews: the whole of a job's data and error is in --json.
      [
        undefined,
        undefined,
        undefined,
        undefined,
        undefined,
        undefined,
        maxDataColumns,
        maxErrorColumns,
      ],
    ),
  );
  if (r.jobs.length === 0) lines.push('(no jobs)');
  return lines.join('\n');
}

function iso(ms: number): string {
  return ms > 0 ? new Date(ms).toISOString() : '-';
}

const utf8 = new TextDecoder();

/** Terminal columns of a job's data (its JSON text) shown; past them it is cut with an ellipsis. */
export const maxDataColumns = 40;
/** Terminal columns of a job's last error shown. */
export const maxErrorColumns = 80;
