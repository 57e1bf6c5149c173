// POST /v1/watch: a key's, a range's or a prefix's changes as a stream of JSON lines, from a
// past revision or from now (src/kv/watch-hub.ts does the matching and replay). Each revision's
// changes are one line; an idle watch gets a progress line every `progressNotifyMs`, saying
// every change up to its revision was sent. A reader that lets more than the buffer limit pile
// up is cancelled, told to resume from the first revision it has not been sent; so is every
// watch when its node installs a snapshot or shuts down. Watches are not client work for
// admission (they live long), but their number per node is bounded.

import { FlotillaError, type ErrorCode } from '../base/errors.js';
import type { Clock } from '../host/contracts.js';
import type { Range } from '../kv/kv-store.js';
import type { Watch, WatchEvent, WatchSpec } from '../kv/watch-hub.js';
import { errorJson } from './errors.js';
import type { JsonHttpServer, JsonLines } from './http.js';
import { forwardedHeader, parseRangeSpec, renderKv, type Header } from './routes.js';
import { asObject, encodingOf, onlyFields, optBool, optInt, type Encoding } from './validate.js';
import type { Limits } from '../base/limits.js';

export interface WatchBackend {
  readonly limits: Pick<Limits, 'maxKeyBytes'>;
  readonly clock: Clock;
  /** Most bytes a watch may leave unread before it is cancelled (WATCH_TOO_SLOW). */
  readonly maxWatchBufferBytes: number;
  /** Most watches open on this node at once. */
  readonly maxWatches: number;
  /** The count of open watches (those served for a range not run here included). */
  watches(): number;
  /**
   * This node has known no leader for a while (its key-value group): a watch that asked for
   * progress is ended then, with where to resume, rather than told "nothing new" while the
   * cluster may go on writing elsewhere. Absent: never.
   */
  readonly leaderless?: () => boolean;
  /**
   * Starts a watch on the range holding its keys (throws COMPACTED when its start is gone): on
   * the range's watch hub here, or, for a range not run here, as a stream from a replica of it.
   */
  watch(spec: WatchSpec, sink: WatchSink, via: WatchVia): ServedWatch | Promise<ServedWatch>;
}

/** Where a watch's changes go; `ended` is the last call (resumeRevision null: no resuming). */
export interface WatchSink {
  events(revision: number, events: readonly WatchEvent[]): void;
  ended(code: ErrorCode, message: string, resumeRevision: number | null): void;
}

/** How a watch request came: as routes.ts's ReadVia, and the stream's end. */
export interface WatchVia {
  /** Forwarded by another node: served here or refused, never sent on again. */
  readonly forwarded?: boolean;
  /** The caller's credential, passed on to the replica a watch is proxied from. */
  readonly authorization?: string;
  /** Aborts when the watch's reader went. */
  readonly signal?: AbortSignal;
  /** How often the reader asked for a progress line. */
  readonly progressMs?: number;
}

/** A watch as the node serves it, with the header of the range it watches. */
export interface ServedWatch extends Watch {
  /** The range's header; every change up to its revision was delivered to the sink. */
  header(): Header;
}

const maxRevision = Number.MAX_SAFE_INTEGER;

/** A watch request, checked: what to watch, how to encode it, how often to say "idle". */
export interface WatchRequest {
  readonly spec: WatchSpec;
  readonly enc: Encoding;
  readonly progressMs: number;
}

/**
 * Checks a watch body (the HTTP route's and the binary protocol's `watch` alike) and that the
 * node has room for one more watch.
 */
export function parseWatchRequest(body: unknown, b: WatchBackend): WatchRequest {
  const o = asObject(body);
  onlyFields(o, [
    'key',
    'rangeEnd',
    'prefix',
    'startRevision',
    'prevKv',
    'progressNotifyMs',
    'encoding',
  ]);
  const enc = encodingOf(o);
  const range: Range = parseRangeSpec(o, enc, b.limits);
  const spec: WatchSpec = {
    range,
    startRevision: optInt(o, 'startRevision', 0, maxRevision) ?? 0,
    prevKv: optBool(o, 'prevKv'),
  };
  const progressMs = optInt(o, 'progressNotifyMs', 100, 3_600_000) ?? 10_000;
  checkWatchRoom(b);
  return { spec, enc, progressMs };
}

/** Refuses one more watch when the node has `maxWatches` open. */
export function checkWatchRoom(b: WatchBackend): void {
  if (b.watches() >= b.maxWatches)
    throw new FlotillaError(
      'OVERLOADED',
      `This node has ${b.watches()} watches open, its limit (maxWatches); watch through another node or later`,
    );
}

export function installWatchRoute(http: JsonHttpServer, b: WatchBackend): void {
  http.route('POST', '/v1/watch', ({ body, headers }) => {
    const w = parseWatchRequest(body, b);
    const authorization = headers['authorization'];
    const via = {
      forwarded: headers[forwardedHeader] !== undefined,
      ...(typeof authorization === 'string' ? { authorization } : {}),
    };
    return { stream: (out) => runWatch(b, w, out, via) };
  });
}

/**
 * One watch's stream, until its reader goes (`out.signal`), lags too far, or the hub ends it.
 * The lines are the HTTP stream's; the binary protocol frames the same objects. The last line
 * of a watch the node ended is `{canceled: true, error, resumeRevision?}`.
 */
export async function runWatch(
  b: WatchBackend,
  w: WatchRequest,
  out: JsonLines,
  via: WatchVia = {},
): Promise<void> {
  const { spec, enc, progressMs } = w;
  let done: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => (done = resolve));
  let watch: ServedWatch | null = null;
  let timer: unknown = null;
  let ended = false;
  const onAbort = (): void => end(null);
  const end = (line: unknown) => {
    if (ended) return;
    ended = true;
    // The signal may be the client connection's, which outlives this watch.
    out.signal.removeEventListener('abort', onAbort);
    watch?.cancel();
    if (timer !== null) b.clock.clearTimeout(timer);
    if (line !== null && line !== undefined) out.write(line);
    done();
  };
  const cancelLine = (e: FlotillaError, resumeRevision: number | null) => ({
    canceled: true,
    ...errorJson(e),
    ...(resumeRevision === null ? {} : { resumeRevision }),
  });
  const progress = () => {
    timer = b.clock.setTimeout(() => {
      if (ended || watch === null) return;
      if (b.leaderless?.() === true) {
        const from = watch.header().revision + 1;
        end(
          cancelLine(
            new FlotillaError(
              'NO_LEADER',
              `This node has known no leader for a while: resume on another node from revision ${from}`,
              false,
            ),
            from,
          ),
        );
        return;
      }
      out.write({ header: watch.header(), progress: true });
      progress();
    }, progressMs);
  };
  out.signal.addEventListener('abort', onAbort, { once: true });
  try {
    // The replay is delivered inside watch(): the created line must go first.
    const pending: [number, readonly WatchEvent[]][] = [];
    let live = false;
    const send = (served: ServedWatch, revision: number, events: readonly WatchEvent[]) => {
      out.write({
        header: { ...served.header(), revision },
        events: events.map((e) => ({
          type: e.type,
          kv: renderKv(e.kv, enc),
          ...(e.prevKv === undefined ? {} : { prevKv: renderKv(e.prevKv, enc) }),
        })),
      });
      if (out.buffered() > b.maxWatchBufferBytes)
        end(
          cancelLine(
            new FlotillaError(
              'WATCH_TOO_SLOW',
              `The watch fell ${out.buffered()} bytes behind (limit ${b.maxWatchBufferBytes}); resume from revision ${revision + 1}`,
            ),
            revision + 1,
          ),
        );
    };
    const served = await b.watch(
      spec,
      {
        events: (revision, events) => {
          if (ended) return;
          if (live && watch !== null) send(watch, revision, events);
          else pending.push([revision, events]);
        },
        ended: (code, message, resumeRevision) =>
          end(cancelLine(new FlotillaError(code, message), resumeRevision)),
      },
      { ...via, signal: out.signal, progressMs },
    );
    // The reader may have gone while a watch from another node was being opened.
    if (ended) served.cancel();
    else {
      watch = served;
      out.write({ created: true, header: served.header(), startRevision: served.startRevision });
      live = true;
      for (const [revision, events] of pending) if (!ended) send(served, revision, events);
      if (!ended) progress();
    }
  } catch (err) {
    if (!(err instanceof FlotillaError)) throw err;
    end(cancelLine(err, null));
  }
  await finished;
}
