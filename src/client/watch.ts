// The client side of a watch: an async iterator over revisions of changes that survives its
// node. When the stream breaks (the node died, was cut off, installed a snapshot, or cancelled
// a reader that fell behind) it reopens on the next endpoint from the revision after the last
// one it delivered, so a consumer sees every revision once, in order, across failures.
// Only a history compacted past that point ends it, with COMPACTED: the changes in between are
// gone and the consumer must read the current state again.

import { FlotillaError, isErrorCode } from '../base/errors.js';
import type { Pool } from 'undici';
import type { KeyValue } from '../api/types.js';
import { failureText, pick, refusalCode, refusedEndpoint, schemeHint, sleep } from './util.js';
import { ANSWER_ERROR, ANSWER_STREAM } from '../api/wire-codec.js';
import type { WireConnection } from './wire.js';

export interface WatchOptions {
  /** Exclusive end of the range; omit for a single key. */
  readonly rangeEnd?: string;
  /** Watch every key with `key` as prefix. */
  readonly prefix?: boolean;
  /** The first revision to deliver (may be in the past); default: the next one made. */
  readonly startRevision?: number;
  /** Each event also carries the version it replaced. */
  readonly prevKv?: boolean;
  /** How often an idle stream gets a progress batch; default 10 s. */
  readonly progressNotifyMs?: number;
  readonly encoding?: 'utf8' | 'base64';
  /** Ends the iteration (without an error) when aborted. */
  readonly signal?: AbortSignal;
}

export interface WatchEventJson {
  readonly type: 'put' | 'delete';
  readonly kv: KeyValue;
  readonly prevKv?: KeyValue;
}

/** One revision's changes; or, with `progress`, word that nothing changed up to `revision`. */
export interface WatchBatch {
  readonly revision: number;
  readonly events: readonly WatchEventJson[];
  readonly progress?: true;
}

/** One line of a watch stream (HTTP), or one frame of it (binary protocol): the same objects. */
export interface WatchLine {
  created?: boolean;
  startRevision?: number;
  progress?: boolean;
  canceled?: boolean;
  resumeRevision?: number;
  header?: { revision: number };
  events?: WatchEventJson[];
  error?: { code: string; message: string; compactRevision?: number };
}

/** The body of a watch request, as the HTTP route and the binary protocol take it. */
export type WatchBody = Record<string, unknown>;

/** What a watch needs of the client: its endpoints and a stream of lines from one of them. */
export interface WatchTransport {
  readonly endpoints: readonly string[];
  /**
   * Opens a watch on `endpoint`; ends when the stream ends, throws when it breaks. A stream
   * silent for `idleMs` (progress lines are due more often) is dead.
   */
  lines(
    endpoint: string,
    body: WatchBody,
    signal: AbortSignal,
    idleMs: number,
  ): AsyncIterable<WatchLine>;
}

const maxBackoffMs = 1_000;

export async function* watchStream(
  t: WatchTransport,
  key: string,
  o: WatchOptions = {},
): AsyncGenerator<WatchBatch> {
  const start = o.startRevision ?? 0;
  // A negative or fractional start watched from now, where HTTP refuses it.
  if (!Number.isSafeInteger(start) || start < 0)
    throw new FlotillaError(
      'BAD_REQUEST',
      `startRevision must be a non-negative integer, got ${String(start)}`,
    );
  let next = start;
  // Whether a node ever accepted this watch: a refusal after that is about a change since.
  let accepted = false;
  let endpoint = 0;
  let failures = 0;
  // A watch is idle between changes for as long as it likes; progress lines arrive every
  // progressNotifyMs, so a stream silent for three of them is dead (30 s by default). Not
  // below 3 s, so that a node's garbage collection or a busy moment does not move the watch.
  // Before, it was never below 30 s: a watch that asked for progress every second still
  // waited 30 s on a frozen node.
  const idleMs = watchSilenceMs(o.progressNotifyMs);
  /**
   * Before a node accepted the watch: the endpoints whose certificate this client refused (or
   * that speak TLS to an http:// URL, or answer an https:// one without TLS). Such a failure comes back on every attempt: once every
   * endpoint failed so, the watch ends with it, where it retried silently for ever.
   */
  const refused = new Set<string>();
  while (!(o.signal?.aborted ?? false)) {
    const url = t.endpoints[endpoint % t.endpoints.length] as string;
    const ac = new AbortController();
    const onAbort = () => ac.abort();
    o.signal?.addEventListener('abort', onAbort, { once: true });
    let resumeAt: number | null = null;
    try {
      const body = {
        key,
        ...pick(o, 'rangeEnd', 'prefix', 'prevKv', 'progressNotifyMs', 'encoding'),
        ...(next > 0 ? { startRevision: next } : {}),
      };
      for await (const line of t.lines(url, body, ac.signal, idleMs)) {
        // Lines read before the abort may still be queued: the consumer asked for none of them.
        if (o.signal?.aborted ?? false) return;
        if (line.created === true) {
          failures = 0;
          accepted = true;
          if (next === 0) next = line.startRevision ?? 0;
          continue;
        }
        if (line.canceled === true) {
          if (line.error?.code === 'COMPACTED' || line.resumeRevision === undefined)
            throw toError(line.error, 'watch cancelled');
          resumeAt = line.resumeRevision;
          break;
        }
        const revision = line.header?.revision ?? 0;
        if (line.progress === true) {
          // Every change up to `revision` was sent: resuming may start after it.
          if (revision + 1 > next) next = revision + 1;
          yield { revision, events: [], progress: true };
          continue;
        }
        // A revision delivered before a reconnection is never delivered twice.
        if (revision < next) continue;
        next = revision + 1;
        yield { revision, events: line.events ?? [] };
      }
      if (resumeAt !== null && resumeAt > next) next = resumeAt;
    } catch (err) {
      if (o.signal?.aborted ?? false) return;
      if (err instanceof FlotillaError && err.code === 'CROSS_RANGE' && accepted)
        throw splitAcross(err, next);
      if (err instanceof FlotillaError && !retryableWatch.has(err.code)) throw err;
      const refusal = err instanceof FlotillaError ? refusedEndpoint(err) : refusalCode(err);
      if (refusal !== null && !accepted) {
        refused.add(url);
        if (t.endpoints.every((u) => refused.has(u)))
          throw err instanceof FlotillaError
            ? err
            : new FlotillaError(
                'CONNECTION',
                `Cannot open the watch at ${url}: ${failureText(err)}${schemeHint(url, err)}`,
                false,
              );
      }
      failures++;
    } finally {
      o.signal?.removeEventListener('abort', onAbort);
      ac.abort();
    }
    // The stream ended or broke: another node, after a pause that grows with failures in a row.
    endpoint++;
    if (failures > 0) await sleep(Math.min(maxBackoffMs, 25 * 2 ** failures), o.signal);
  }
}

/** A watch's lines over HTTP: `POST /v1/watch`, newline-delimited JSON. */
export async function* httpWatchLines(
  pool: Pool,
  where: string,
  body: WatchBody,
  signal: AbortSignal,
  idleMs: number,
): AsyncGenerator<WatchLine> {
  const res = await pool.request({
    method: 'POST',
    path: '/v1/watch',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal,
    bodyTimeout: idleMs,
    headersTimeout: 10_000,
  });
  if (res.statusCode !== 200) {
    const answer = (await res.body.json()) as WatchLine;
    throw toError(answer.error, `HTTP ${res.statusCode} from ${where}`);
  }
  let buffered = '';
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    buffered += chunk.toString('utf8');
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      yield JSON.parse(buffered.slice(0, nl)) as WatchLine;
      buffered = buffered.slice(nl + 1);
    }
  }
}

/**
 * A watch's lines over the binary protocol: its stream frames are the HTTP lines; its closing
 * error (the node ended it, or refused it) stands for the HTTP stream's cancel line.
 */
export async function* wireWatchLines(
  conn: WireConnection,
  body: WatchBody,
  signal: AbortSignal,
  idleMs: number,
): AsyncGenerator<WatchLine> {
  for await (const [status, payload] of conn.stream('watch', body, { signal, idleMs })) {
    if (status === ANSWER_STREAM) yield payload as WatchLine;
    else if (status === ANSWER_ERROR) {
      const e = (payload ?? {}) as {
        code?: string;
        message?: string;
        resumeRevision?: number;
        compactRevision?: number;
      };
      yield {
        canceled: true,
        error: {
          code: String(e.code),
          message: String(e.message),
          ...(typeof e.compactRevision === 'number' ? { compactRevision: e.compactRevision } : {}),
        },
        ...(typeof e.resumeRevision === 'number' ? { resumeRevision: e.resumeRevision } : {}),
      };
    }
  }
}

/** Codes after which the watch reopens elsewhere rather than ending. */
const retryableWatch = new Set<string>([
  'CONNECTION',
  'TIMEOUT',
  'OVERLOADED',
  'SHUTTING_DOWN',
  'WATCH_RESET',
  'WATCH_TOO_SLOW',
  // A storage failure stopped the range's group on that node: another node serves it.
  'STORAGE_FAILED',
  // The watched keys moved to a range split off the one that served the watch, and the node
  // asked has not started that range yet: another node, or this one a moment later, serves it.
  'WRONG_RANGE',
]);

/**
 * A watch that ran until a split cut its keys in two: its resumption is refused, since a watch
 * stays within one range (each range counts its own revisions from the split on). Says so, and
 * from which revision each part is to be watched so that no change is lost.
 */
function splitAcross(err: FlotillaError, next: number): FlotillaError {
  return new FlotillaError(
    'CROSS_RANGE',
    `The watch ended: a range split cut its keys into more than one range, and a watch stays within one. Watch each range's part from revision ${next} to miss no change (${err.message})`,
    false,
  );
}

function toError(e: WatchLine['error'], fallback: string): FlotillaError {
  if (e !== undefined && isErrorCode(e.code))
    return new FlotillaError(e.code, e.message, false, 0, 0, e.compactRevision ?? 0);
  return new FlotillaError('BAD_RESPONSE', `${fallback}: ${JSON.stringify(e ?? null)}`, false);
}

/** How long a watch's stream may stay silent before it is taken for a frozen node's. */
export function watchSilenceMs(progressNotifyMs: number | undefined): number {
  return Math.max(3_000, 3 * (progressNotifyMs ?? 10_000));
}
