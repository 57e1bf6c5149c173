// POST /v1/watch: a key's, a range's or a prefix's changes as a stream of JSON lines, from a
// past revision or from now (src/kv/watch-hub.ts does the matching and replay). Each revision's
// changes are one line; an idle watch gets a progress line every `progressNotifyMs`, saying
// every change up to its revision was sent. A reader that lets more than the buffer limit pile
// up is cancelled, told to resume from the first revision it has not been sent; so is every
// watch when its node installs a snapshot or shuts down. Watches are not client work for
// admission (they live long), but their number per node is bounded.

import { FlotillaError } from '../base/errors.js';
import type { Clock } from '../host/contracts.js';
import type { Range } from '../kv/kv-store.js';
import type { Watch, WatchEndCode, WatchEvent, WatchSpec } from '../kv/watch-hub.js';
import { errorJson } from './errors.js';
import type { JsonHttpServer, JsonLines } from './http.js';
import { parseRangeSpec, renderKv, type Header } from './routes.js';
import { asObject, encodingOf, onlyFields, optBool, optInt, type Encoding } from './validate.js';
import type { Limits } from '../base/limits.js';

export interface WatchBackend {
  readonly limits: Pick<Limits, 'maxKeyBytes'>;
  readonly clock: Clock;
  /** Most bytes a watch may leave unread before it is cancelled (WATCH_TOO_SLOW). */
  readonly maxWatchBufferBytes: number;
  /** Most watches open on this node at once. */
  readonly maxWatches: number;
  /**
   * The header of the range holding `range` (a split store counts revisions per range); throws
   * when no range here holds it (a split moved the keys, which ends the watch).
   */
  header(range: Range): Header;
  /** The hub's count of open watches. */
  watches(): number;
  /** Starts a watch on the node's store (throws COMPACTED when its start is gone). */
  watch(
    spec: WatchSpec,
    sink: {
      events(revision: number, events: readonly WatchEvent[]): void;
      ended(code: WatchEndCode, message: string, resumeRevision: number): void;
    },
  ): Watch;
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
  http.route('POST', '/v1/watch', ({ body }) => {
    const w = parseWatchRequest(body, b);
    return { stream: (out) => runWatch(b, w, out) };
  });
}

/**
 * One watch's stream, until its reader goes (`out.signal`), lags too far, or the hub ends it.
 * The lines are the HTTP stream's; the binary protocol frames the same objects. The last line
 * of a watch the node ended is `{canceled: true, error, resumeRevision?}`.
 */
export async function runWatch(b: WatchBackend, w: WatchRequest, out: JsonLines): Promise<void> {
  const { spec, enc, progressMs } = w;
  let done: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => (done = resolve));
  let watch: Watch | null = null;
  let timer: unknown = null;
  let ended = false;
  const end = (line: unknown) => {
    if (ended) return;
    ended = true;
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
  // The watched range's header, or null once a split moved the keys off this node's ranges
  // (the hub is then ending the watch). `known` is the last one had, for the events' lines.
  let known: Header | null = null;
  const header = (): Header | null => {
    try {
      known = b.header(spec.range);
      return known;
    } catch {
      return null;
    }
  };
  const progress = () => {
    timer = b.clock.setTimeout(() => {
      if (ended) return;
      // Never another range's revision: the client resumes after it when it reconnects.
      const h = header();
      if (h !== null) out.write({ header: h, progress: true });
      progress();
    }, progressMs);
  };
  out.signal.addEventListener('abort', () => end(null), { once: true });
  try {
    // The replay is delivered inside watch(): the created line must go first.
    const pending: [number, readonly WatchEvent[]][] = [];
    let live = false;
    const send = (revision: number, events: readonly WatchEvent[]) => {
      out.write({
        header: { ...(header() ?? known), revision },
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
    watch = b.watch(spec, {
      events: (revision, events) => {
        if (ended) return;
        if (live) send(revision, events);
        else pending.push([revision, events]);
      },
      ended: (code, message, resumeRevision) =>
        end(cancelLine(new FlotillaError(code, message), resumeRevision)),
    });
    // Routed a moment ago by b.watch, so a header is there.
    out.write({ created: true, header: header(), startRevision: watch.startRevision });
    live = true;
    for (const [revision, events] of pending) if (!ended) send(revision, events);
    if (!ended) progress();
  } catch (err) {
    if (!(err instanceof FlotillaError)) throw err;
    end(cancelLine(err, null));
  }
  await finished;
}
