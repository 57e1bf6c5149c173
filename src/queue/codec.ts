// Queue commands on the log: a msgpack map per command, `op` naming it. Decoding trusts
// nothing it reads back (a command is applied from stored bytes, possibly written by another
// release): every field is checked for type and limit, unknown fields are refused, and the
// first problem is thrown as a FlotillaError (BAD_REQUEST) naming the field and the value seen.
// The machine turns that into a BAD_COMMAND refusal; the API will call the same checks to
// refuse a request before proposing it.

import { Packr } from 'msgpackr';
import { FlotillaError } from '../base/errors.js';
import { MAX_RATE_LIMIT_CLAIMS, isQueueName, type QueueLimits } from '../base/limits.js';
import { parseCron } from './cron.js';
import { maxPriority } from './types.js';
import type {
  Backoff,
  BulkJob,
  BulkReport,
  ClaimSpec,
  JobOptions,
  QueueCommandAny,
  RateLimit,
  Retention,
} from './types.js';

const packr = new Packr({ useRecords: false, moreTypes: false });

export function encodeQueueCommand(c: QueueCommandAny): Uint8Array {
  // Copied only when a field is undefined (msgpack would write it): a command built by the
  // API has none, and copying it cost the leader more than packing it. The bytes are the same
  // either way: the packer walks an object's own keys in the order the copy makes them.
  return packr.pack(hasUndefined(c) ? stripUndefined(c) : c);
}

function isPlainObject(x: unknown): x is object {
  return x !== null && typeof x === 'object' && !(x instanceof Uint8Array) && !Array.isArray(x);
}

function hasUndefined(v: object): boolean {
  for (const k in v) {
    if (!Object.prototype.hasOwnProperty.call(v, k)) continue;
    const x = (v as Record<string, unknown>)[k];
    if (x === undefined || (isPlainObject(x) && hasUndefined(x))) return true;
  }
  return false;
}

function stripUndefined(v: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    if (x === undefined) continue;
    out[k] = isPlainObject(x) ? stripUndefined(x) : x;
  }
  return out;
}

function bad(message: string): never {
  throw new FlotillaError('BAD_REQUEST', message);
}

type Fields = Record<string, unknown>;

function map(v: unknown, what: string, allowed: readonly string[]): Fields {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array)
    bad(`${what} is not a map`);
  for (const k of Object.keys(v)) {
    if (!allowed.includes(k)) bad(`${what} has an unknown field "${k}"`);
  }
  return v as Fields;
}

/** Ids and names: 1 to maxNameChars of letters, digits and `._:-`, so none can be mistaken for
 * one the machine makes (`#seq`, `repeatId@timeMs`). */
export function checkName(v: unknown, field: string, limits: QueueLimits): string {
  if (!isQueueName(v, limits))
    bad(
      `"${field}" must be 1 to ${limits.maxNameChars} letters, digits or ._:-, got ${preview(v)}`,
    );
  return v as string;
}

function preview(v: unknown): string {
  const s = typeof v === 'string' ? JSON.stringify(v) : String(v);
  return s.length > 40 ? `${s.slice(0, 40)}...` : s;
}

function int(v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max)
    bad(`"${field}" must be an integer from ${min} to ${max}, got ${preview(v)}`);
  return v;
}

function optInt(v: unknown, field: string, min: number, max: number): number | undefined {
  return v === undefined ? undefined : int(v, field, min, max);
}

function bytes(v: unknown, field: string, max: number): Uint8Array {
  if (!(v instanceof Uint8Array)) bad(`"${field}" must be bytes`);
  if (v.length > max) bad(`"${field}" is ${v.length} bytes; the limit is ${max}`);
  // A copy: msgpack's bytes are a view of the whole entry, which would stay alive with it.
  return new Uint8Array(v);
}

function text(v: unknown, field: string, max: number): string {
  if (typeof v !== 'string' || v.length > max)
    bad(`"${field}" must be a string of at most ${max} characters, got ${preview(v)}`);
  return v;
}

function decodeBackoff(v: unknown, l: QueueLimits): Backoff {
  const b = map(v, 'backoff', ['kind', 'delayMs', 'maxDelayMs']);
  if (b['kind'] !== 'fixed' && b['kind'] !== 'exponential')
    bad(`"backoff.kind" must be fixed or exponential, got ${preview(b['kind'])}`);
  const delayMs = int(b['delayMs'], 'backoff.delayMs', 0, l.maxDurationMs);
  const maxDelayMs = int(b['maxDelayMs'] ?? delayMs, 'backoff.maxDelayMs', 0, l.maxDurationMs);
  if (maxDelayMs < delayMs)
    bad(`"backoff.maxDelayMs" (${maxDelayMs}) is below delayMs (${delayMs})`);
  return { kind: b['kind'], delayMs, maxDelayMs };
}

const optionFields = ['priority', 'maxAttempts', 'backoff', 'leaseMs'] as const;

/** The options of a job that gives none (most): one object, not one per command. */
const noOptions: JobOptions = Object.freeze({});

function decodeOptions(o: Fields, l: QueueLimits): JobOptions {
  if (
    o['priority'] === undefined &&
    o['maxAttempts'] === undefined &&
    o['leaseMs'] === undefined &&
    o['backoff'] === undefined
  )
    return noOptions;
  const priority = optInt(o['priority'], 'priority', 0, maxPriority);
  const maxAttempts = optInt(o['maxAttempts'], 'maxAttempts', 1, l.maxAttempts);
  const leaseMs = optInt(o['leaseMs'], 'leaseMs', 1, l.maxDurationMs);
  const backoff = o['backoff'] === undefined ? undefined : decodeBackoff(o['backoff'], l);
  return {
    ...(priority !== undefined && { priority }),
    ...(maxAttempts !== undefined && { maxAttempts }),
    ...(leaseMs !== undefined && { leaseMs }),
    ...(backoff !== undefined && { backoff }),
  };
}

function decodeRetention(v: unknown, field: string, l: QueueLimits): Retention {
  const r = map(v, field, ['count', 'ageMs']);
  return {
    count: int(r['count'], `${field}.count`, 0, l.maxJobs),
    ageMs: int(r['ageMs'] ?? 0, `${field}.ageMs`, 0, l.maxDurationMs),
  };
}

function decodeRateLimit(v: unknown, l: QueueLimits): RateLimit | null {
  if (v === null) return null;
  const r = map(v, 'rateLimit', ['max', 'intervalMs']);
  return {
    max: int(r['max'], 'rateLimit.max', 1, MAX_RATE_LIMIT_CLAIMS),
    intervalMs: int(r['intervalMs'], 'rateLimit.intervalMs', 1, l.maxDurationMs),
  };
}

/** A claim's fields, of a claim command or (under `prefix` "next.") of a report's next claim. */
function decodeClaimSpec(o: Fields, prefix: string, l: QueueLimits): ClaimSpec {
  const max = optInt(o['max'], `${prefix}max`, 1, l.maxClaimBatch);
  const leaseMs = optInt(o['leaseMs'], `${prefix}leaseMs`, 1, l.maxDurationMs);
  const maxBytes = optInt(o['maxBytes'], `${prefix}maxBytes`, 1, Number.MAX_SAFE_INTEGER);
  const worker =
    o['worker'] === undefined ? undefined : text(o['worker'], `${prefix}worker`, l.maxMessageChars);
  return {
    ...(max !== undefined && { max }),
    ...(worker !== undefined && { worker }),
    ...(leaseMs !== undefined && { leaseMs }),
    ...(maxBytes !== undefined && { maxBytes }),
  };
}

function decodeNext(o: Fields, l: QueueLimits): { next?: ClaimSpec } {
  if (o['next'] === undefined) return {};
  const n = map(o['next'], '"next"', ['max', 'worker', 'leaseMs', 'maxBytes']);
  return { next: decodeClaimSpec(n, 'next.', l) };
}

function token(v: unknown): number {
  return int(v, 'token', 1, Number.MAX_SAFE_INTEGER);
}

/** A report's fields besides `op` and `queue`. */
const reportFields = {
  complete: ['id', 'token', 'result', 'next'],
  fail: ['id', 'token', 'error', 'final', 'release', 'counted', 'next'],
} as const;

/** A complete or fail without its queue: of the command itself, or one of a bulk's reports. */
function decodeReport(o: Fields, op: 'complete' | 'fail', l: QueueLimits): BulkReport {
  const head = { id: jobId(o['id'], l), token: token(o['token']) };
  if (op === 'complete') {
    const result =
      o['result'] === undefined ? undefined : bytes(o['result'], 'result', l.maxPayloadBytes);
    return { op, ...head, ...(result !== undefined && { result }), ...decodeNext(o, l) };
  }
  if (o['final'] !== undefined && typeof o['final'] !== 'boolean') bad('"final" must be a boolean');
  if (o['release'] !== undefined && o['release'] !== true) bad('"release" must be true');
  if (o['release'] === true && o['final'] === true) bad('"release" and "final" exclude each other');
  if (o['counted'] !== undefined && (o['counted'] !== true || o['release'] !== true))
    bad('"counted" must be true, and only with "release"');
  return {
    op,
    ...head,
    error: text(o['error'], 'error', l.maxMessageChars),
    ...(o['final'] === true && { final: true }),
    ...(o['release'] === true && { release: true }),
    ...(o['counted'] === true && { counted: true }),
    ...decodeNext(o, l),
  };
}

const addJobFields = ['name', 'payload', 'id', 'delayMs', ...optionFields] as const;

/** An add's job: of an add, or one of a bulk add's, named `prefix` in a refusal. */
function decodeAddJob(o: Fields, l: QueueLimits, prefix = ''): BulkJob {
  try {
    const id = o['id'] === undefined ? undefined : checkName(o['id'], 'id', l);
    const delayMs = optInt(o['delayMs'], 'delayMs', 0, l.maxDurationMs);
    return {
      name: checkName(o['name'], 'name', l),
      payload: bytes(o['payload'], 'payload', l.maxPayloadBytes),
      ...(id !== undefined && { id }),
      ...(delayMs !== undefined && { delayMs }),
      ...decodeOptions(o, l),
    };
  } catch (err) {
    // Which job of a batch: the message says so first, as the API's does.
    if (prefix === '' || !(err instanceof FlotillaError)) throw err;
    bad(`${prefix}: ${err.message}`);
  }
}

/** Decodes and checks one command; throws a FlotillaError naming the first problem. */
export function decodeQueueCommand(data: Uint8Array, l: QueueLimits): QueueCommandAny {
  let raw: unknown;
  try {
    raw = packr.unpack(data);
  } catch (err) {
    bad(`not msgpack (${(err as Error).message})`);
  }
  const op = (raw as Fields | null)?.['op'];
  const q = (o: Fields): string => checkName(o['queue'], 'queue', l);
  switch (op) {
    case 'add': {
      const o = map(raw, 'add', ['op', 'queue', ...addJobFields]);
      return { op, queue: q(o), ...decodeAddJob(o, l) };
    }
    case 'addBulk': {
      const o = map(raw, 'addBulk', ['op', 'queue', 'jobs']);
      const jobs = o['jobs'];
      if (!Array.isArray(jobs) || jobs.length < 1 || jobs.length > l.maxAddBatch)
        bad(`"jobs" must be an array of 1 to ${l.maxAddBatch} jobs, got ${preview(jobs)}`);
      return {
        op,
        queue: q(o),
        jobs: jobs.map((j: unknown, i) =>
          decodeAddJob(map(j, `jobs[${i}]`, addJobFields), l, `jobs[${i}]`),
        ),
      };
    }
    case 'claim': {
      const o = map(raw, 'claim', ['op', 'queue', 'max', 'worker', 'leaseMs', 'maxBytes']);
      return { op, queue: q(o), ...decodeClaimSpec(o, '', l) };
    }
    case 'heartbeat': {
      const o = map(raw, op, ['op', 'queue', 'id', 'token', 'leaseMs']);
      const leaseMs = optInt(o['leaseMs'], 'leaseMs', 1, l.maxDurationMs);
      return {
        op,
        queue: q(o),
        id: jobId(o['id'], l),
        token: token(o['token']),
        ...(leaseMs !== undefined && { leaseMs }),
      };
    }
    case 'progress': {
      const o = map(raw, op, ['op', 'queue', 'id', 'token', 'progress']);
      return {
        op,
        queue: q(o),
        id: jobId(o['id'], l),
        token: token(o['token']),
        progress: int(o['progress'], 'progress', 0, 100),
      };
    }
    case 'complete':
    case 'fail': {
      const o = map(raw, op, ['op', 'queue', ...reportFields[op]]);
      return { queue: q(o), ...decodeReport(o, op, l) };
    }
    case 'reportBulk': {
      const o = map(raw, op, ['op', 'queue', 'reports']);
      const reports = o['reports'];
      if (!Array.isArray(reports) || reports.length < 1 || reports.length > l.maxAddBatch)
        bad(`"reports" must be an array of 1 to ${l.maxAddBatch} reports, got ${preview(reports)}`);
      return {
        op,
        queue: q(o),
        reports: reports.map((r: unknown, i) => {
          const what = `reports[${i}]`;
          const kind = (r as Fields | null)?.['op'];
          if (kind !== 'complete' && kind !== 'fail')
            bad(`"${what}.op" must be complete or fail, got ${preview(kind)}`);
          try {
            // A release is a single fail (its own feature level), never one of a bulk's.
            const fields = reportFields[kind].filter((f) => f !== 'release' && f !== 'counted');
            return decodeReport(map(r, what, ['op', ...fields]), kind, l);
          } catch (err) {
            if (!(err instanceof FlotillaError)) throw err;
            return bad(`${what}: ${err.message}`);
          }
        }),
      };
    }
    case 'cancel':
    case 'delete':
    case 'retry': {
      const o = map(raw, op, ['op', 'queue', 'id']);
      return { op, queue: q(o), id: jobId(o['id'], l) };
    }
    case 'pause':
    case 'resume': {
      const o = map(raw, op, ['op', 'queue']);
      return { op, queue: q(o) };
    }
    case 'configure': {
      const o = map(raw, op, [
        'op',
        'queue',
        'rateLimit',
        'concurrency',
        'keepCompleted',
        'keepDead',
        'maxReleases',
      ]);
      const c = o['concurrency'];
      return {
        op,
        queue: q(o),
        ...(o['rateLimit'] !== undefined && { rateLimit: decodeRateLimit(o['rateLimit'], l) }),
        ...(c !== undefined && {
          concurrency: c === null ? null : int(c, 'concurrency', 1, l.maxJobs),
        }),
        ...(o['keepCompleted'] !== undefined && {
          keepCompleted: decodeRetention(o['keepCompleted'], 'keepCompleted', l),
        }),
        ...(o['keepDead'] !== undefined && {
          keepDead: decodeRetention(o['keepDead'], 'keepDead', l),
        }),
        ...(o['maxReleases'] !== undefined && {
          maxReleases: int(o['maxReleases'], 'maxReleases', 0, l.maxAttempts),
        }),
      };
    }
    case 'repeat': {
      const o = map(raw, op, [
        'op',
        'queue',
        'repeatId',
        'everyMs',
        'cron',
        'name',
        'payload',
        'options',
      ]);
      if ((o['everyMs'] === undefined) === (o['cron'] === undefined))
        bad('a repeatable job needs exactly one of "everyMs" and "cron"');
      let cron: string | undefined;
      if (o['cron'] !== undefined) {
        cron = text(o['cron'], 'cron', l.maxNameChars);
        try {
          parseCron(cron);
        } catch (err) {
          bad((err as Error).message);
        }
      }
      const everyMs = optInt(o['everyMs'], 'everyMs', 1, l.maxDurationMs);
      const options =
        o['options'] === undefined
          ? undefined
          : decodeOptions(map(o['options'], 'options', optionFields), l);
      return {
        op,
        queue: q(o),
        repeatId: checkName(o['repeatId'], 'repeatId', l),
        name: checkName(o['name'], 'name', l),
        payload: bytes(o['payload'], 'payload', l.maxPayloadBytes),
        ...(everyMs !== undefined && { everyMs }),
        ...(cron !== undefined && { cron }),
        ...(options !== undefined && { options }),
      };
    }
    case 'unrepeat': {
      const o = map(raw, op, ['op', 'queue', 'repeatId']);
      return { op, queue: q(o), repeatId: checkName(o['repeatId'], 'repeatId', l) };
    }
    case 'tick':
      map(raw, op, ['op']);
      return { op };
    default:
      return bad(`unknown queue command ${preview(op)}`);
  }
}

/**
 * The checks a command gets when it is proposed, on top of decodeQueueCommand's: text a caller
 * gives must say something. A failure's `error` and a worker's name that are empty or only
 * whitespace are refused, since a dead job whose reason reads "" tells its operator nothing and
 * a worker named "" or " " cannot be told from none. Only at proposal, never when an entry is
 * applied: a release before these checks wrote such entries, and a member that refused them on
 * apply would part from the members that applied them (DESIGN.md, "Upgrades").
 */
export function checkProposal(cmd: QueueCommandAny): void {
  switch (cmd.op) {
    case 'claim':
      return checkWorker(cmd.worker, '');
    case 'complete':
    case 'fail':
      return checkReport(cmd);
    case 'reportBulk':
      for (const [i, r] of cmd.reports.entries()) {
        try {
          checkReport(r);
        } catch (err) {
          if (!(err instanceof FlotillaError)) throw err;
          bad(`reports[${i}]: ${err.message}`);
        }
      }
      return;
    default:
      return;
  }
}

function checkReport(r: BulkReport): void {
  if (r.op === 'fail') said(r.error, 'error');
  checkWorker(r.next?.worker, 'next.');
}

function checkWorker(worker: string | undefined, prefix: string): void {
  if (worker !== undefined) said(worker, `${prefix}worker`);
}

/** Refuses text that is empty or only whitespace, naming the field. */
function said(v: string, field: string): void {
  if (v.trim() === '')
    bad(
      v === ''
        ? `"${field}" is empty: give a non-empty text`
        : `"${field}" is only whitespace (${preview(v)}): give a non-empty text`,
    );
}

/**
 * A job id in a command about an existing job: a caller's (checkName) or one the machine made
 * (`#seq`, `repeatId@timeMs`).
 */
export function jobId(v: unknown, l: QueueLimits): string {
  if (typeof v !== 'string' || !/^[A-Za-z0-9._:#@-]+$/.test(v) || v.length > 2 * l.maxNameChars)
    bad(
      `"id" must be a job id (1 to ${2 * l.maxNameChars} letters, digits or ._:#@-), ` +
        `got ${preview(v)}`,
    );
  return v;
}
