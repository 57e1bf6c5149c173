// `flotilla queue ...`: the job queue from the command line. `work` runs a command once per
// job: the job's data (JSON) on its standard input, its id in FLOTILLA_JOB_ID and the claim's
// fencing token in FLOTILLA_JOB_TOKEN; exit 0 completes the job, anything else fails it (with
// the end of its standard error as the reason). The lease is renewed while it runs; if it is
// lost (or the worker closes past its grace), the command is sent SIGTERM, SIGKILL 5 s later.

import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access, readFile, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { delimiter, join } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { FlotillaError, Worker, type FlotillaClient } from '../client/index.js';
import type { JobState, QueueSettings } from '../client/queue.js';
import { MAX_RATE_LIMIT_CLAIMS, defaultQueueLimits } from '../base/limits.js';
import { maxPriority } from '../queue/index.js';
import { closestName } from '../base/closest.js';
import { UsageError } from './usage-error.js';
import { runInspect, type InspectOptions } from './queue-inspect.js';
import { readStdin, utf8Text } from './stdin.js';
import { tokenOption, type ClusterOptions } from './token.js';

const states: readonly JobState[] = [
  'waiting',
  'delayed',
  'active',
  'completed',
  'failed',
  'dead',
  'cancelled',
];

export function queueCommands(
  program: Command,
  withClient: <T>(opts: ClusterOptions, fn: (c: FlotillaClient) => Promise<T>) => Promise<void>,
  defaultEndpoints: string,
  int: (name: string, min?: number, max?: number) => (v: string) => number,
): void {
  const queue = program
    .command('queue')
    .description('the job queue: add jobs, look at them, and run workers')
    .option('--endpoints <urls>', 'comma-separated node URLs', defaultEndpoints)
    .addOption(tokenOption());
  const opts = () => queue.opts<ClusterOptions>();
  const add = queue
    .command('add')
    .description(
      'add a job; DATA is JSON, or plain text taken as a string (text that begins with { [ or " ' +
        'must be JSON); "-" reads it from standard input, as it is',
    )
    .argument('<queue>')
    .argument('[data]', 'the job data, or - for standard input', 'null')
    .option('--name <name>', "the job's name", 'job')
    .option('--id <id>', 'a job id: a second add with it within the dedup window adds nothing')
    .option('--delay <ms>', 'run no sooner than this from now', int('--delay', 0, maxDurationMs));
  jobOptions(add, int, 'the job').action(
    async (
      name: string,
      data: string,
      o: { name: string; id?: string; delay?: number } & JobFlags,
    ) =>
      withClient(opts(), async (c) =>
        c.queue(name).add(o.name, parseData(data === '-' ? await dataFromStdin() : data), {
          ...(o.id === undefined ? {} : { id: o.id }),
          ...(o.delay === undefined ? {} : { delayMs: o.delay }),
          ...jobSettings(o),
        }),
      ),
  );
  const addBulk = queue
    .command('add-bulk')
    .description(
      "add one job per line of a file (or standard input): each line is a job's data as JSON; " +
        'every line is checked before anything is added, then jobs go in bulk adds',
    )
    .argument('<queue>')
    .option('--file <path>', 'read the lines from this file instead of standard input')
    .option('--name <name>', "each job's name", 'job')
    .option(
      '--batch <n>',
      'jobs per bulk add',
      int('--batch', 1, defaultQueueLimits.maxAddBatch),
      defaultQueueLimits.maxAddBatch,
    );
  jobOptions(addBulk, int, 'each job').action(
    async (name: string, o: { file?: string; name: string; batch: number } & JobFlags) => {
      const lines = await readLines(o.file);
      const settings = jobSettings(o);
      const jobs = lines.map(({ n, text }) => {
        let data: unknown;
        try {
          data = JSON.parse(text) as unknown;
        } catch (err) {
          throw new FlotillaError(
            'BAD_REQUEST',
            `line ${n} is not JSON (${(err as Error).message}); nothing was added`,
          );
        }
        // As the node measures it (the data's JSON text in UTF-8), so that a line it would
        // refuse stops the command before the lines ahead of it are added.
        const bytes = Buffer.byteLength(JSON.stringify(data));
        if (bytes > defaultQueueLimits.maxPayloadBytes)
          throw new FlotillaError(
            'VALUE_TOO_LARGE',
            `line ${n}: the job's data is ${bytes} bytes as JSON; the limit is ` +
              `${defaultQueueLimits.maxPayloadBytes}; nothing was added`,
          );
        return { name: o.name, data, ...settings };
      });
      return withClient(opts(), async (c) => {
        const q = c.queue(name);
        let added = 0;
        let duplicates = 0;
        for (let from = 0; from < jobs.length;) {
          let size = batchSize(lines, from, o.batch);
          let r: Awaited<ReturnType<typeof q.addBulk>> | undefined;
          while (r === undefined) {
            try {
              r = await q.addBulk(jobs.slice(from, from + size));
            } catch (err) {
              // A batch too big for one log entry (or one request) is refused whole, definitely:
              // it is split in two and sent again. Anything else stops the command.
              if (err instanceof FlotillaError && tooLarge.has(err.code) && size > 1) {
                size = Math.ceil(size / 2);
                continue;
              }
              // Batches before this one are in; say where to start again.
              const e =
                err instanceof FlotillaError ? err : new FlotillaError('INTERNAL', String(err));
              throw new FlotillaError(
                e.code,
                `${e.message} (the batch from line ${(lines[from] as { n: number }).n}; ` +
                  `the ${from} jobs before it were added)`,
                e.indefinite,
              );
            }
          }
          for (const j of r.jobs) if (j.duplicate) duplicates++;
          added += r.jobs.length;
          from += r.jobs.length;
          if (Math.floor(added / 50_000) > Math.floor((added - r.jobs.length) / 50_000))
            process.stderr.write(`added ${added} of ${jobs.length}\n`);
        }
        return { queue: name, jobs: added, duplicates };
      });
    },
  );
  queue
    .command('stats')
    .description('counts per state, and the settings')
    .argument('<queue>')
    .action(async (name: string) =>
      withClient(opts(), async (c) => {
        const r = await c.queue(name).stats();
        // `"stats": null` alone read like an empty queue: a mistyped name went unnoticed.
        if (r.stats === null) {
          const meant = await nearestQueue(c, name);
          process.stderr.write(
            `no queue "${name}" on this cluster${meant === undefined ? '' : ` (did you mean "${meant}"?)`}; ` +
              `a queue exists once a job is added to it, or it is paused, resumed or configured ` +
              `with --create (\`queue ls\` lists them)\n`,
          );
        }
        return r;
      }),
    );
  queue
    .command('ls')
    .description('the queues, in name order, with their counts per state')
    .option('--limit <n>', 'at most n queues', int('--limit', 1, maxPageSize), 100)
    .option('--after <name>', 'the page after this one: the "next" ls printed')
    .action(async (o: { limit: number; after?: string }) =>
      withClient(opts(), (c) =>
        c.queues({ limit: o.limit, ...(o.after === undefined ? {} : { after: o.after }) }),
      ),
    );
  queue
    .command('list')
    .description(`jobs in one state (${states.join(', ')})`)
    .argument('<queue>')
    .argument('<state>')
    .option('--limit <n>', 'at most n jobs', int('--limit', 1, maxPageSize), 100)
    .option(
      '--after <cursor>',
      'the page after this one: the "next" a list printed',
      int('--after', 0),
    )
    .action(async (name: string, state: string, o: { limit: number; after?: number }) => {
      if (!(states as readonly string[]).includes(state))
        throw new FlotillaError(
          'BAD_REQUEST',
          `state must be one of ${states.join(', ')}, got ${JSON.stringify(state)}`,
        );
      return withClient(opts(), (c) =>
        c.queue(name).list(state as JobState, {
          limit: o.limit,
          ...(o.after === undefined ? {} : { after: o.after }),
        }),
      );
    });
  queue
    .command('retry')
    .description('put a dead or cancelled job back to waiting')
    .argument('<queue>')
    .argument('<id>')
    .action(async (name: string, id: string) => withClient(opts(), (c) => c.queue(name).retry(id)));
  for (const verb of ['pause', 'resume'] as const)
    queue
      .command(verb)
      .description(verb === 'pause' ? 'stop claims from a queue' : 'let claims go on')
      .argument('<queue>')
      .option('--create', createHelp)
      .action(async (name: string, o: { create?: boolean }) =>
        withClient(opts(), async (c) => {
          if (o.create !== true) await mustExist(c, name, verb);
          return c.queue(name)[verb]();
        }),
      );
  queue
    .command('config')
    .description("change a queue's settings; `queue stats` shows them")
    .argument('<queue>')
    .option('--rate <max/ms>', 'at most MAX claims per MS milliseconds, or "none"', (v) =>
      rateOf(v, int),
    )
    .option('--concurrency <n>', 'at most N jobs active at once, or "none"', (v) =>
      limitOf(v, int('--concurrency', 1, defaultQueueLimits.maxJobs)),
    )
    .option('--keep-completed <count[:ms]>', 'completed jobs kept, and for how long', (v) =>
      retentionOf(v, '--keep-completed', int),
    )
    .option('--keep-dead <count[:ms]>', 'dead and cancelled jobs kept, and for how long', (v) =>
      retentionOf(v, '--keep-dead', int),
    )
    .option(
      '--max-releases <n>',
      "a job's releases that count no attempt; past them a release is a failed attempt",
      int('--max-releases', 0, defaultQueueLimits.maxAttempts),
    )
    .option('--create', createHelp)
    .action(
      async (
        name: string,
        o: Pick<QueueSettings, 'keepCompleted' | 'keepDead' | 'maxReleases'> & {
          rate?: RateLimit | 'none';
          concurrency?: number | 'none';
          create?: boolean;
        },
      ) => {
        // `create` is this command's, not a setting: it must not reach the request.
        const { rate, concurrency, create, ...rest } = o;
        // Commander turns a parser's null into '', so "none" stays a word until here.
        const settings: QueueSettings = {
          ...rest,
          ...(rate === undefined ? {} : { rateLimit: rate === 'none' ? null : rate }),
          ...(concurrency === undefined
            ? {}
            : { concurrency: concurrency === 'none' ? null : concurrency }),
        };
        if (Object.keys(settings).length === 0)
          throw new FlotillaError(
            'BAD_REQUEST',
            'name a setting: --rate, --concurrency, --keep-completed, --keep-dead or --max-releases',
          );
        return withClient(opts(), async (c) => {
          if (create !== true) await mustExist(c, name, 'config');
          return c.queue(name).configure(settings);
        });
      },
    );
  const repeat = queue.command('repeat').description('jobs added on a schedule');
  const repeatAdd = repeat
    .command('add')
    .description('create a repeatable job, or replace the one with the same id')
    .argument('<queue>')
    .argument('<id>', "the repeatable job's id; each job it adds is ID@TIME")
    .argument(
      '[data]',
      'the data of each job: JSON, or plain text taken as a string (text that begins with { [ or " must be JSON); "-" reads it from standard input, as queue add does',
      'null',
    )
    .option('--every <ms>', 'every this many milliseconds', int('--every', 1, maxDurationMs))
    .option('--cron <pattern>', 'a 5-field cron pattern, in UTC')
    .option('--name <name>', "each job's name", 'job');
  jobOptions(repeatAdd, int, 'each job').action(
    async (
      name: string,
      id: string,
      data: string,
      o: { every?: number; cron?: string; name: string } & JobFlags,
    ) => {
      if ((o.every === undefined) === (o.cron === undefined))
        throw new FlotillaError('BAD_REQUEST', 'give exactly one of --every and --cron');
      // "-" reads standard input, as `queue add` does: taken as the text "-", every job the
      // schedule added carried that instead of the data piped in, without a word.
      const value = parseData(data === '-' ? await dataFromStdin('queue repeat add') : data);
      return withClient(opts(), (c) =>
        c.queue(name).repeat(id, value, {
          name: o.name,
          ...(o.every === undefined ? {} : { everyMs: o.every }),
          ...(o.cron === undefined ? {} : { cron: o.cron }),
          ...jobSettings(o),
        }),
      );
    },
  );
  repeat
    .command('remove')
    .description('remove a repeatable job (the jobs it added stay)')
    .argument('<queue>')
    .argument('<id>')
    .action(async (name: string, id: string) =>
      withClient(opts(), (c) => c.queue(name).unrepeat(id)),
    );
  repeat
    .command('list')
    .description("a queue's repeatable jobs, by id")
    .argument('<queue>')
    .option('--limit <n>', 'at most n', int('--limit', 1, maxPageSize), 100)
    .option('--after <id>', 'the page after this one: the "next" a list printed')
    .action(async (name: string, o: { limit: number; after?: string }) =>
      withClient(opts(), (c) =>
        c.queue(name).repeatables({
          limit: o.limit,
          ...(o.after === undefined ? {} : { after: o.after }),
        }),
      ),
    );
  queue
    .command('inspect')
    .description(
      "a STOPPED node's queue, read from its data directory: per-queue counts and the jobs",
    )
    .requiredOption('--data-dir <dir>', "the node's data directory")
    .option('--queue <name>', 'only this queue')
    .option('--state <state>', `only jobs in this state (${states.join(', ')})`)
    .option('--json', 'print JSON')
    .action(async (o: InspectOptions) => runInspect(o, (s) => process.stdout.write(`${s}\n`)));
  queue
    .command('work')
    .description(
      "run a command once per job until interrupted, the job's data as JSON on its standard " +
        'input, its id and claim token in FLOTILLA_JOB_ID and FLOTILLA_JOB_TOKEN; exit 0 ' +
        'completes the job (Ctrl-C finishes the jobs running)',
    )
    .argument('<queue>')
    .argument('<command...>', 'the command and its arguments (after --)')
    .option('--concurrency <n>', 'jobs at once', int('--concurrency', 1, 1024), 1)
    .option(
      '--name <name>',
      "the worker's name, recorded on each job it claims (default: HOST:PID)",
      `${hostname()}:${process.pid}`,
    )
    .action(async (name: string, argv: string[], o: { concurrency: number; name: string }) => {
      // A command that cannot run would fail every job it is given until each is dead: a typo
      // in its name must stop the worker before it claims anything.
      await checkRunnable(argv[0] ?? '');
      return withClient(opts(), async (c) => {
        // Each job's outcome is a line on standard error, so that a command failing every job
        // is seen at once rather than in the counts printed at the end.
        const worker = new Worker(
          c.queue(name),
          async (job, ctx) => {
            try {
              return await runJob(argv, job, ctx);
            } catch (err) {
              // Stopped because the job is no longer this worker's (its lease lost, or released
              // at Ctrl-C past the grace period): not a failure of the command.
              const reason: unknown = ctx.signal.aborted ? ctx.signal.reason : null;
              process.stderr.write(
                reason === null
                  ? `job ${job.id}: failed: ${(err as Error).message}\n`
                  : `job ${job.id}: stopped: ${reason instanceof Error ? reason.message : 'aborted'}\n`,
              );
              throw err;
            }
          },
          {
            concurrency: o.concurrency,
            // Where the job runs, for `queue list QUEUE active`: the Worker's default name is
            // random, which told nobody which host or process held a job that seemed stuck.
            name: o.name,
            // Once the cluster has the completion, not merely when the command exited 0.
            onCompleted: (job) => process.stderr.write(`job ${job.id}: completed\n`),
            // Its outcome discarded: the job is another worker's now, or deleted.
            onLost: (job, reason) =>
              process.stderr.write(`job ${job.id}: lost: ${reason.message}\n`),
            onError: (err) => process.stderr.write(`${errorLine(err)}\n`),
          },
        );
        // The first signal (a closed terminal's SIGHUP too) finishes gracefully; a second one
        // stops at once, and the commands' groups with the worker: they run in groups of their
        // own, which the terminal's signals no longer reach.
        const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
        await new Promise<void>((resolve) => {
          let received = 0;
          const onSignal = (s: NodeJS.Signals) => {
            if (++received === 1) return resolve();
            process.stderr.write(
              `stopped by a second signal (${s}): the running commands are killed\n`,
            );
            process.exit(130);
          };
          for (const s of signals) process.on(s, onSignal);
        });
        process.stderr.write('finishing the jobs running...\n');
        await worker.close();
        return worker.counts;
      });
    });
}

/** Queues read for a suggestion: the default limit of queues a cluster may have. */
const maxQueuesRead = defaultQueueLimits.maxQueues;

const createHelp = 'make the queue if it does not exist (without, an unknown queue is refused)';

/**
 * Refuses `queue pause|resume|config` of a queue that does not exist (the `stats` read: null for
 * an unknown queue). Each of them creates the queue it names, and no call removes a queue: a
 * typo (`queue pause emials`) made a queue that counted against the cluster's `maxQueues` for
 * good. Checked here rather than in the state machine, which keeps its commands as they are;
 * between the read and the write another client may make the queue, which is no harm. The
 * nearest existing name is suggested, from the list of queues where the cluster serves it.
 */
async function mustExist(c: FlotillaClient, name: string, verb: string): Promise<void> {
  const { stats } = await c.queue(name).stats();
  if (stats !== null) return;
  const meant = await nearestQueue(c, name);
  throw new UsageError(
    `no queue "${name}" on this cluster${meant === undefined ? '' : ` (did you mean "${meant}"?)`}; ` +
      `nothing was changed. \`queue ${verb}\` would create it, ` +
      `and a queue is never removed (each counts against the cluster's limit of ` +
      `${defaultQueueLimits.maxQueues} queues by default). Check the name (\`queue ls\` lists ` +
      `them), or add --create to make "${name}" on purpose`,
  );
}

/**
 * The existing queue nearest `name`, if one is near: the queues are read a page at a time, at
 * most the cluster's limit of them. Undefined as well when the cluster cannot list them (a
 * release before the read): the refusal stands without it.
 */
async function nearestQueue(c: FlotillaClient, name: string): Promise<string | undefined> {
  const names: string[] = [];
  try {
    for (let after: string | null | undefined; after !== null && names.length < maxQueuesRead;) {
      const page = await c.queues({
        limit: maxPageSize,
        ...(after === undefined ? {} : { after }),
      });
      names.push(...page.queues.map((q) => q.queue));
      after = page.next;
    }
  } catch (err) {
    if (
      err instanceof FlotillaError &&
      (err.code === 'FEATURE_NOT_ENABLED' || err.code === 'NOT_FOUND')
    )
      return undefined;
    throw err;
  }
  return closestName(name, names);
}

/** A worker's error as a line: its stable code first, when it has one. */
function errorLine(err: unknown): string {
  if (err instanceof FlotillaError) return `${err.code}: ${err.message}`;
  return err instanceof Error ? err.message : String(err);
}

/**
 * Refuses a command that names no executable file: a path that is not one, or a bare name
 * found in no directory of PATH (as the shell and spawn would look for it).
 */
async function checkRunnable(cmd: string): Promise<void> {
  const candidates = cmd.includes('/')
    ? [cmd]
    : (process.env['PATH'] ?? '')
        .split(delimiter)
        .filter((dir) => dir !== '')
        .map((dir) => join(dir, cmd));
  for (const file of candidates) {
    const ok = await stat(file)
      .then((st) => (st.isFile() ? access(file, constants.X_OK) : Promise.reject(new Error())))
      .then(
        () => true,
        () => false,
      );
    if (ok) return;
  }
  throw new FlotillaError(
    'BAD_REQUEST',
    cmd.includes('/')
      ? `cannot run "${cmd}": not an executable file; nothing was claimed`
      : `cannot run "${cmd}": no executable of that name in PATH; nothing was claimed`,
  );
}

/**
 * Bytes of job data a bulk add starts with: half of the default log entry limit (1 MiB), so a
 * batch of large jobs goes in a few writes rather than one refused. A cluster with a smaller
 * limit refuses the batch whole (PROPOSAL_TOO_LARGE), and it is split again.
 */
const batchBytesMax = 512 * 1024;

const tooLarge: ReadonlySet<string> = new Set(['PROPOSAL_TOO_LARGE', 'BODY_TOO_LARGE']);

/** How many jobs from `from` on go in one bulk add: at most `max`, and about batchBytesMax. */
function batchSize(lines: readonly { text: string }[], from: number, max: number): number {
  let bytes = 0;
  let n = 0;
  while (n < max && from + n < lines.length) {
    bytes += Buffer.byteLength((lines[from + n] as { text: string }).text);
    if (n > 0 && bytes > batchBytesMax) break;
    n++;
  }
  return n;
}

/** The options that say how a job runs, as `add`, `add-bulk` and `repeat add` take them. */
interface JobFlags {
  readonly priority?: number;
  readonly attempts?: number;
  readonly lease?: number;
  readonly backoff?: Backoff;
}

/** Adds --priority, --attempts, --lease and --backoff to `cmd`, about `whose` job. */
function jobOptions(
  cmd: Command,
  int: (name: string, min?: number, max?: number) => (v: string) => number,
  whose: string,
): Command {
  return cmd
    .option('--priority <n>', 'lower runs first', int('--priority', 0, maxPriority))
    .option(
      '--attempts <n>',
      `attempts before ${whose} is dead`,
      int('--attempts', 1, defaultQueueLimits.maxAttempts),
    )
    .option(
      '--lease <ms>',
      "each run's lease: the job is run again by another worker if not renewed within it (default 30000)",
      int('--lease', 1, maxDurationMs),
    )
    .option(
      '--backoff <kind:ms[:maxms]>',
      'wait between failed runs: fixed:MS, or exponential:MS (doubling, at most MAXMS, default ' +
        'the larger of MS and 60000); default exponential:1000:60000',
      backoffOf,
    );
}

/** The job settings the flags given name (none for a flag left out: the server's default). */
function jobSettings(o: JobFlags): {
  priority?: number;
  maxAttempts?: number;
  leaseMs?: number;
  backoff?: Backoff;
} {
  return {
    ...(o.priority === undefined ? {} : { priority: o.priority }),
    ...(o.attempts === undefined ? {} : { maxAttempts: o.attempts }),
    ...(o.lease === undefined ? {} : { leaseMs: o.lease }),
    ...(o.backoff === undefined ? {} : { backoff: o.backoff }),
  };
}

/** The longest duration a job may name (its lease, a backoff's delays): the API's limit. */
const maxDurationMs = defaultQueueLimits.maxDurationMs;
/** The most jobs, events or repeatables one list answers: the server refuses a larger limit. */
const maxPageSize = defaultQueueLimits.maxPageSize;

interface Backoff {
  readonly kind: 'fixed' | 'exponential';
  readonly delayMs: number;
  readonly maxDelayMs?: number;
}

/**
 * `--backoff fixed:5000`, `exponential:1000` or `exponential:1000:60000`: the kind, the delay
 * and (optional) the longest delay, each delay 0 to the API's longest duration.
 */
function backoffOf(v: string): Backoff {
  const m = /^(fixed|exponential):(\d+)(?::(\d+))?$/.exec(v);
  // A fixed backoff has no longest delay: one given would be stored and never used.
  if (m === null || (m[1] === 'fixed' && m[3] !== undefined))
    throw new InvalidArgumentError(
      `--backoff must be fixed:MS, exponential:MS or exponential:MS:MAXMS (e.g. exponential:1000:60000), got "${v}"`,
    );
  const ms = (text: string, what: string): number => {
    const n = Number(text);
    if (!Number.isSafeInteger(n) || n > maxDurationMs)
      throw new InvalidArgumentError(
        `--backoff ${what} must be at most ${maxDurationMs} ms (366 days), got ${text}`,
      );
    return n;
  };
  const delayMs = ms(m[2] as string, 'delay');
  const maxDelayMs = m[3] === undefined ? undefined : ms(m[3], 'longest delay');
  if (maxDelayMs !== undefined && maxDelayMs < delayMs)
    throw new InvalidArgumentError(
      `--backoff longest delay (${maxDelayMs} ms) must not be below the delay (${delayMs} ms), got "${v}"`,
    );
  return {
    kind: m[1] as Backoff['kind'],
    delayMs,
    ...(maxDelayMs === undefined ? {} : { maxDelayMs }),
  };
}

/** `--rate 100/1000`: 100 claims per 1000 ms; "none" lifts the limit. */
function rateOf(v: string, int: IntOption): RateLimit | 'none' {
  if (v === 'none') return v;
  const m = /^(\d+)\/(\d+)$/.exec(v);
  if (m === null)
    throw new InvalidArgumentError(`--rate must be MAX/MS (e.g. 100/1000) or "none", got "${v}"`);
  // The server's bounds, so that a rate it would refuse is a usage error here.
  return {
    max: int('--rate MAX', 1, MAX_RATE_LIMIT_CLAIMS)(m[1] as string),
    intervalMs: int('--rate MS', 1, maxDurationMs)(m[2] as string),
  };
}

/** A count, checked by `count` (the bounds the server applies), or "none". */
function limitOf(v: string, count: (v: string) => number): number | 'none' {
  if (v === 'none') return v;
  if (!/^\d+$/.test(v)) throw new InvalidArgumentError(`must be a count or "none", got "${v}"`);
  return count(v);
}

/** `COUNT` or `COUNT:MS`: keep the newest COUNT, none older than MS (no age limit without). */
function retentionOf(v: string, name: string, int: IntOption): { count: number; ageMs: number } {
  const m = /^(\d+)(?::(\d+))?$/.exec(v);
  if (m === null) throw new InvalidArgumentError(`must be COUNT or COUNT:MS, got "${v}"`);
  // The server's bounds, so that a retention it would refuse is a usage error here.
  return {
    count: int(`${name} COUNT`, 0, defaultQueueLimits.maxJobs)(m[1] as string),
    ageMs: int(`${name} MS`, 0, maxDurationMs)(m[2] ?? '0'),
  };
}

/** The integer option parser (int-option.ts), as queueCommands is given it. */
type IntOption = (name: string, min?: number, max?: number) => (v: string) => number;

interface RateLimit {
  readonly max: number;
  readonly intervalMs: number;
}

/**
 * The non-empty lines of a file, or of standard input, with their line numbers. UTF-8 only, as
 * `queue add -` takes: decoded leniently, a stray byte became U+FFFD in the job's data, which
 * was added changed and without a word. A byte-order mark at the start is no part of line 1.
 */
async function readLines(file: string | undefined): Promise<{ n: number; text: string }[]> {
  const bytes =
    file === undefined
      ? await new Promise<Buffer>((resolve, reject) => {
          const parts: Buffer[] = [];
          process.stdin.on('data', (d: Buffer) => parts.push(d));
          process.stdin.on('end', () => resolve(Buffer.concat(parts)));
          process.stdin.on('error', reject);
        })
      : await readFile(file).catch((err: unknown) => {
          throw new FlotillaError('BAD_REQUEST', `cannot read ${file}: ${(err as Error).message}`);
        });
  const decoded = utf8Text(bytes);
  if (decoded === null)
    throw new FlotillaError(
      'BAD_REQUEST',
      `${file ?? 'standard input'} is not UTF-8 text: each line is a job's data as JSON; nothing was added`,
    );
  const text = withoutBom(decoded);
  return text
    .split('\n')
    .map((line, i) => ({ n: i + 1, text: line }))
    .filter((l) => l.text.trim() !== '');
}

/**
 * `queue add QUEUE -`: the data from standard input, as it is (a trailing newline included),
 * then read as DATA is. Text in UTF-8 only: a job's data is JSON or text. Bounded well above
 * what a node accepts (`maxPayloadBytes` as JSON, where one character can take six bytes), so
 * the node's own refusal names the limit.
 */
async function dataFromStdin(command = 'queue add'): Promise<string> {
  const bytes = await readStdin(command, 'DATA', 6 * defaultQueueLimits.maxPayloadBytes + 1024);
  const text = utf8Text(bytes);
  if (text === null)
    throw new FlotillaError(
      'BAD_REQUEST',
      "standard input is not UTF-8 text: a job's data is JSON or text; nothing was added",
    );
  return text;
}

/**
 * DATA as JSON, or as a string when it is not JSON. Text that begins as a JSON object, array or
 * string does but fails to parse is a mistake (a lost brace, a shell quoting slip), not a string
 * to queue: it is refused, so the job does not go out with its data mangled.
 */
function parseData(s: string): unknown {
  // JSON after a byte-order mark (a file saved by an editor that writes one) is that JSON: the
  // mark is no part of it (RFC 8259 lets a parser ignore it). It was refused, the message
  // quoting an invisible character. Text that is not JSON is kept as it is, mark and all.
  const json = withoutBom(s);
  try {
    return JSON.parse(json) as unknown;
  } catch (err) {
    if (/^\s*[[{"]/.test(json))
      throw new FlotillaError(
        'BAD_REQUEST',
        `DATA begins as JSON but is not JSON (${(err as Error).message}); nothing was added. ` +
          'To send it as text, give it as a JSON string',
      );
    return s;
  }
}

/** `s` without the byte-order mark (U+FEFF) it may begin with. */
function withoutBom(s: string): string {
  return s.startsWith('\uFEFF') ? s.slice(1) : s;
}

/** How long a command sent SIGTERM (its job lost or released) has before SIGKILL. */
const killAfterMs = 5_000;

/** The process groups of the commands running now (each command leads its own). */
const commandGroups = new Set<number>();

/**
 * However this process ends (a second signal, an error, a normal exit), the commands still
 * running end with it: in groups of their own they would run on, orphaned, beside the jobs'
 * next workers. SIGKILL of this process alone cannot be passed on.
 */
function killCommandsAtExit(): void {
  if (killCommandsAtExit.installed) return;
  killCommandsAtExit.installed = true;
  process.on('exit', () => {
    for (const pid of commandGroups) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
  });
}
killCommandsAtExit.installed = false;

async function runJob(
  argv: readonly string[],
  job: { id: string; data: unknown },
  ctx: { signal: AbortSignal; token: number },
): Promise<null> {
  const [cmd, ...args] = argv;
  if (cmd === undefined) throw new Error('no command to run');
  // In a process group of its own, so that stopping the job stops what the command started
  // too: a script's `sleep` outlived the killed shell, ran on beside the job's next worker and,
  // holding the standard error, kept this worker from exiting until it ended.
  const child = spawn(cmd, args, {
    stdio: ['pipe', 'inherit', 'pipe'],
    env: { ...process.env, FLOTILLA_JOB_ID: job.id, FLOTILLA_JOB_TOKEN: String(ctx.token) },
    detached: true,
  });
  killCommandsAtExit();
  const pid = child.pid;
  if (pid !== undefined) commandGroups.add(pid);
  // 'close': what the command started may hold its pipes, and live, after it exited.
  child.once('close', () => {
    if (pid !== undefined) commandGroups.delete(pid);
  });
  const signalGroup = (sig: NodeJS.Signals): void => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, sig);
    } catch {
      // The group is gone already (ESRCH): nothing left to stop.
    }
  };
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    process.stderr.write(d);
    stderr = (stderr + d).slice(-1000);
  });
  // A command may exit, or close its standard input, without reading the data: the write then
  // fails (EPIPE), which says nothing about the job. Its exit status decides the outcome.
  child.stdin.on('error', () => undefined);
  child.stdin.end(JSON.stringify(job.data));
  // The job is no longer ours (lease lost, or released by a close past its grace): the command
  // is asked to stop, then made to. One that ignored SIGTERM would run on beside the job's next
  // worker, and its open standard error would keep this process from exiting.
  let killer: NodeJS.Timeout | undefined;
  const onAbort = () => {
    signalGroup('SIGTERM');
    killer = setTimeout(() => signalGroup('SIGKILL'), killAfterMs);
  };
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  try {
    const code = await new Promise<number | string>((resolve, reject) => {
      child.once('error', reject);
      // 'close', not 'exit': the standard error is read to its end before it is quoted.
      child.once('close', (c, sig) => resolve(c ?? sig ?? 'unknown'));
    });
    if (code !== 0) {
      const last = stderr.trim().split('\n').at(-1) ?? '';
      throw new Error(last === '' ? `exit ${code}` : `exit ${code}: ${last}`);
    }
    return null;
  } finally {
    clearTimeout(killer);
    ctx.signal.removeEventListener('abort', onAbort);
  }
}
