// Structured logs (pino) of the events a person follows when watching a cluster: role
// changes, elections with who voted (or pre-voted) for whom and why a vote was refused,
// leader changes, snapshots, peer connections, storage recovery, and fatal errors.
//
// Two renderings of the same records: JSON lines (one object per line, `time` in epoch
// milliseconds) for log collectors, and a human one (`12:00:01.123 INFO became leader
// term=2`) for a terminal. `auto` picks human on a terminal and JSON otherwise.

import { pino, type Logger } from 'pino';
import type { WalRecoveryReport } from '../storage/index.js';
import type { RuntimeEvent } from '../host/runtime-options.js';

export type LogFormat = 'json' | 'pretty';

export interface LoggerOptions {
  /** A pino level name. */
  readonly level: string;
  /** Default `auto`: `pretty` when `out` is a terminal, `json` otherwise. */
  readonly format?: LogFormat | 'auto';
  /** Where lines go; default standard output. */
  readonly out?: { write(line: string): unknown; readonly isTTY?: boolean };
}

export function resolveLogFormat(format: LogFormat | 'auto', isTTY: boolean): LogFormat {
  if (format !== 'auto') return format;
  return isTTY ? 'pretty' : 'json';
}

export function createLogger(nodeId: number, o: LoggerOptions): Logger {
  const out = o.out ?? process.stdout;
  const format = resolveLogFormat(o.format ?? 'auto', out.isTTY === true);
  const options = { level: o.level, base: { node: nodeId } };
  if (format === 'json' && o.out === undefined) return pino(options);
  const write =
    format === 'json'
      ? (line: string) => out.write(line)
      : (line: string) => out.write(humanize(line.trimEnd()) + '\n');
  return pino(options, { write });
}

const levels: Record<number, string> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
};

function clockTime(ms: number): string {
  const d = new Date(ms);
  const two = (n: number) => String(n).padStart(2, '0');
  const millis = String(d.getMilliseconds()).padStart(3, '0');
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${millis}`;
}

/**
 * Renders a pino JSON line as `12:00:01.123 INFO message key=value ...` (local time) for
 * people; an error's stack follows on indented lines. A line that is not a pino record is
 * returned unchanged.
 */
export function humanize(line: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  if (rec === null || typeof rec !== 'object' || typeof rec['msg'] !== 'string') return line;
  const { level, time, msg, err, pid: _pid, hostname: _host, node: _node, ...rest } = rec;
  const t = typeof time === 'number' ? clockTime(time) : '';
  const fields = Object.entries(rest)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  const head = `${t} ${levels[level as number] ?? String(level)} ${msg}${fields ? ' ' + fields : ''}`;
  const stack = (err as { stack?: unknown } | undefined)?.stack;
  if (typeof stack === 'string') return `${head}\n    ${stack.split('\n').join('\n    ')}`;
  if (err !== undefined) return `${head} err=${JSON.stringify(err)}`;
  return head;
}

/** What WAL recovery repaired: each repair dropped bytes that were never acknowledged. */
export function logWalRecovery(log: Logger, report: WalRecoveryReport): void {
  for (const r of report.repairs) {
    if (r.kind === 'tail-cut')
      log.warn(
        { file: r.file, offset: r.offset, droppedBytes: r.droppedBytes },
        'cut a torn write from the end of the WAL (a crash during a write that was never acknowledged)',
      );
    else
      log.warn(
        { file: r.file, droppedBytes: r.droppedBytes },
        'removed a WAL segment with no valid header (a crash while creating it)',
      );
  }
  if (report.resetTo !== null)
    log.warn(
      { index: report.resetTo.index, term: report.resetTo.term },
      'the snapshot was ahead of the WAL: the log was reset to it',
    );
}

export function logRuntimeEvent(log: Logger, e: RuntimeEvent): void {
  switch (e.kind) {
    case 'raft': {
      const r = e.event;
      const fields = { term: r.term, ...(r.peer ? { peer: r.peer } : {}), reason: r.reason };
      if (r.kind === 'vote-granted') log.info(fields, `voted for ${r.peer}`);
      else if (r.kind === 'vote-refused') log.info(fields, `refused vote to ${r.peer}`);
      else if (r.kind === 'pre-vote-granted') log.info(fields, `granted pre-vote to ${r.peer}`);
      else if (r.kind === 'pre-vote-refused') log.info(fields, `refused pre-vote to ${r.peer}`);
      else if (r.kind === 'become-leader') log.info(fields, 'became leader');
      // Handing leadership over, or meeting a newer term, is ordinary (a shutdown does the
      // first); losing the quorum or being removed is what an operator should look at.
      else if (r.kind === 'step-down')
        log[/^(check-quorum|removed)/.test(r.reason) ? 'warn' : 'info'](fields, 'stepped down');
      else if (r.kind === 'follower-lost-log')
        log.warn(fields, `follower ${r.peer} lost its data: replicating it again from the start`);
      else if (r.kind === 'recovery-started' || r.kind === 'recovery-finished')
        log.warn(fields, r.kind.replace(/-/g, ' '));
      else log.info(fields, r.kind.replace(/-/g, ' '));
      return;
    }
    case 'leader-changed':
      log.info(
        { leader: e.leader, term: e.term },
        e.leader === 0 ? 'no leader' : `leader is ${e.leader}`,
      );
      return;
    case 'snapshot-saved':
      log.info({ index: e.index, bytes: e.bytes }, 'snapshot saved');
      return;
    case 'snapshot-restored':
      log.info({ index: e.index, bytes: e.bytes }, 'snapshot installed from leader');
      return;
    case 'snapshot-chunk-refused':
      log.warn({ from: e.from, offset: e.offset }, 'snapshot chunk refused: bad checksum; resent');
      return;
    case 'snapshot-refused':
      log.warn(
        { id: e.id, index: e.index },
        'snapshot refused: its bytes do not match its id; sent again from byte 0',
      );
      return;
    case 'fatal':
      // The group stops; the process and its other groups run on until restarted.
      log.fatal({ err: e.error }, 'group stopped after a storage failure: restart the node');
      return;
    case 'persisted':
    case 'applied':
      return; // too frequent to log; see the metrics
  }
}

/**
 * Says something at most `burst` times per interval per key (a peer, say), counting the times
 * left unsaid beyond that, so that a flapping peer is a few lines every interval, not thirty a
 * second, while a peer that restarts once is said to go and to come back. With `maxKeys`, at
 * most that many keys are remembered (keys a stranger chooses, such as a remote address): the
 * ones whose interval is over go first, then the oldest, whose count is lost.
 */
export class Throttle<K = number> {
  private readonly keys = new Map<K, { since: number; said: number; unsaid: number }>();

  constructor(
    private readonly intervalMs: number,
    private readonly burst = 3,
    private readonly maxKeys = Number.POSITIVE_INFINITY,
  ) {}

  /** If `key` should be said at `nowMs`: how many times it went unsaid before; else null. */
  take(key: K, nowMs: number): number | null {
    const k = this.keys.get(key);
    if (k === undefined || nowMs - k.since >= this.intervalMs) {
      // Deleted first: the map stays in the order of `since`, oldest first.
      this.keys.delete(key);
      if (this.keys.size >= this.maxKeys) this.forget(nowMs);
      this.keys.set(key, { since: nowMs, said: 1, unsaid: 0 });
      return k?.unsaid ?? 0;
    }
    if (k.said < this.burst) {
      k.said++;
      return 0;
    }
    k.unsaid++;
    return null;
  }

  /** Keys remembered now. */
  get size(): number {
    return this.keys.size;
  }

  /** Makes room for a key: the keys whose interval is over, else the oldest. */
  private forget(nowMs: number): void {
    for (const [key, k] of this.keys) {
      if (nowMs - k.since < this.intervalMs) break;
      this.keys.delete(key);
    }
    if (this.keys.size >= this.maxKeys) {
      const [oldest] = this.keys.keys();
      this.keys.delete(oldest as K);
    }
  }
}

/**
 * A warning said at most once per key per interval (a minute by default), for what a stranger
 * can repeat at will: a client or a peer refused for its certificate on each of its
 * connections, several a second. The first of a key is said at once; the repeats within the
 * interval are counted, and said as a count (`unsaid`) with the next line of the key. Time is
 * the clock given (the node's monotonic clock); at most `maxKeys` keys are remembered.
 */
export class RateLimitedWarning {
  private readonly throttle: Throttle<string>;

  constructor(
    private readonly log: Pick<Logger, 'warn'>,
    private readonly clock: { nowMs(): number },
    o: { intervalMs?: number; maxKeys?: number } = {},
  ) {
    this.throttle = new Throttle<string>(o.intervalMs ?? 60_000, 1, o.maxKeys ?? 1024);
  }

  /** Says `msg` with `fields` unless `key` was said within the interval; true when said. */
  warn(key: string, fields: Record<string, unknown>, msg: string): boolean {
    const unsaid = this.throttle.take(key, this.clock.nowMs());
    if (unsaid === null) return false;
    this.log.warn(
      unsaid === 0 ? fields : { ...fields, unsaid },
      unsaid === 0 ? msg : `${msg} (and ${unsaid} more times since last said)`,
    );
    return true;
  }

  /** Keys remembered now (bounded by maxKeys). */
  get keys(): number {
    return this.throttle.size;
  }
}

/**
 * A refusal's reason without what the other end chose (parenthesised details, quoted values,
 * numbers): what a rate-limited warning of free-text reasons is keyed by, so that one dialler
 * presenting ever different details is still said once per interval. The line says the reason.
 */
export function reasonClass(reason: string): string {
  let s = reason.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  // Innermost parentheses first; bounded by the text's length.
  for (let prev = ''; prev !== s;) {
    prev = s;
    s = s.replace(/\([^()]*\)/g, '');
  }
  return s.replace(/\d+/g, '#');
}

/** The address of a `host:port` (an IPv6 one too), for a key that is the same on every connection. */
export function hostOf(remote: string): string {
  const colon = remote.lastIndexOf(':');
  return colon < 0 ? remote : remote.slice(0, colon);
}
