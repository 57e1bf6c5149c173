// A watch of keys in a range this node does not run (docs/DESIGN.md, "Ranges in a node"): the
// node opens the same watch on a replica of the range (the leader it knows first, then the
// replicas in turn) and relays its stream, so a client may watch through any node.
//
// Why relaying is sound: a replica's stream is in revision order, each revision once, and the
// relay passes it on in that order. The relay's own progress lines name the last revision it
// relayed (an event's, or the replica's progress), so "every change up to it was sent" stays
// true of what the client received. When the replica's stream breaks (it stopped, was cut off)
// (or the replica shuts down) the watch ends with WATCH_RESET and the revision after the last
// relayed one: the client resumes there, on any node, and misses or repeats nothing. Any other
// ending by the replica (the history compacted, the watch's keys in a range split since) is
// passed on as it came.

import type { Dispatcher, Pool } from 'undici';
import { FlotillaError, isErrorCode, type ErrorCode } from '../base/errors.js';
import type { WatchEvent, WatchSpec } from '../kv/watch-hub.js';
import { forwardedHeader } from '../api/routes.js';
import type { ServedWatch, WatchSink, WatchVia } from '../api/watch.js';
import type { Header } from '../api/requests.js';
import type { RangeDescriptor } from '../ranges/types.js';
import type { Member } from './config.js';
import { isCount, keyValueOf } from './range-remote.js';

export interface RemoteWatchesOptions {
  readonly selfId: number;
  /** The address book (a live list). */
  readonly members: readonly Member[];
  /** The connection pool to a member's client URL. */
  readonly pool: (url: string) => Pool;
  /** The leader of a range not run here, as this node knows it (0: none). */
  readonly leader: (range: number) => number;
  /** How long a replica may take to answer a watch's opening. */
  readonly openTimeoutMs: number;
}

/** A line of a watch stream as a node writes it (keys in base64, asked so). */
interface UpstreamLine {
  created?: boolean;
  startRevision?: unknown;
  progress?: boolean;
  canceled?: boolean;
  resumeRevision?: unknown;
  header?: { revision?: unknown; memberId?: unknown; raftTerm?: unknown };
  events?: unknown;
  error?: { code?: unknown; message?: unknown; compactRevision?: unknown };
}

/** Codes after which the watch is opened on another replica rather than refused. */
const tryElsewhere = new Set<string>(['WRONG_RANGE', 'OVERLOADED', 'SHUTTING_DOWN', 'NO_LEADER']);

export class RemoteWatches {
  private open = 0;

  constructor(private readonly o: RemoteWatchesOptions) {}

  /** Watches relayed now. */
  count(): number {
    return this.open;
  }

  /** Opens `spec` on a replica of range `d` and relays it to `sink`. */
  async watch(
    d: RangeDescriptor,
    spec: WatchSpec,
    sink: WatchSink,
    via: WatchVia,
  ): Promise<ServedWatch> {
    const candidates = [this.o.leader(d.id), ...d.replicas].filter(
      (id, i, all) => id !== 0 && id !== this.o.selfId && all.indexOf(id) === i,
    );
    let last: FlotillaError | null = null;
    for (const id of candidates) {
      const url = this.o.members.find((m) => m.id === id)?.client;
      if (url === undefined) continue;
      try {
        return await this.openOn(id, url, spec, sink, via);
      } catch (err) {
        if (via.signal?.aborted === true) throw err;
        const e =
          err instanceof FlotillaError
            ? err
            : new FlotillaError('CONNECTION', `node ${id}: ${(err as Error).message}`);
        if (!tryElsewhere.has(e.code) && e.code !== 'CONNECTION') throw e;
        last = e;
      }
    }
    throw new FlotillaError(
      'NO_LEADER',
      `No replica of range ${d.id} (nodes ${d.replicas.join(', ')}) could serve the watch` +
        (last === null ? '' : ` (last: ${last.code}: ${last.message})`),
      false,
    );
  }

  private async openOn(
    id: number,
    url: string,
    spec: WatchSpec,
    sink: WatchSink,
    via: WatchVia,
  ): Promise<ServedWatch> {
    const ac = new AbortController();
    const onAbort = (): void => ac.abort();
    via.signal?.addEventListener('abort', onAbort, { once: true });
    const progressMs = via.progressMs ?? 10_000;
    const b64 = (x: Uint8Array): string =>
      Buffer.from(x.buffer, x.byteOffset, x.byteLength).toString('base64');
    const body = {
      key: b64(spec.range.key),
      ...(spec.range.rangeEnd === null ? {} : { rangeEnd: b64(spec.range.rangeEnd) }),
      ...(spec.startRevision === 0 ? {} : { startRevision: spec.startRevision }),
      ...(spec.prevKv ? { prevKv: true } : {}),
      progressNotifyMs: progressMs,
      encoding: 'base64',
    };
    let res: Dispatcher.ResponseData;
    try {
      res = await this.o.pool(url).request({
        method: 'POST',
        path: '/v1/watch',
        headers: {
          'content-type': 'application/json',
          [forwardedHeader]: String(this.o.selfId),
          ...(via.authorization === undefined ? {} : { authorization: via.authorization }),
        },
        body: JSON.stringify(body),
        signal: ac.signal,
        headersTimeout: this.o.openTimeoutMs,
        // The replica sends a progress line every progressMs: silence for much longer is death.
        bodyTimeout: Math.max(30_000, 3 * progressMs),
      });
    } catch (err) {
      via.signal?.removeEventListener('abort', onAbort);
      throw err;
    }
    const lines = readLines(res.body);
    const first = await lines.next().catch((err: unknown) => {
      ac.abort();
      via.signal?.removeEventListener('abort', onAbort);
      throw err;
    });
    const line = first.done === true ? null : first.value;
    if (res.statusCode !== 200 || line?.created !== true || !isCount(line.startRevision)) {
      ac.abort();
      via.signal?.removeEventListener('abort', onAbort);
      throw refusalOf(line, `node ${id} answered ${res.statusCode} to a watch`);
    }
    const startRevision = line.startRevision;
    let header: Header = headerOf(line, startRevision - 1, id);
    let stopped = false;
    const stop = (): void => {
      if (stopped) return;
      stopped = true;
      this.open--;
      ac.abort();
      via.signal?.removeEventListener('abort', onAbort);
    };
    this.open++;
    void (async () => {
      let ending: { code: ErrorCode; message: string; resume: number | null } | null = null;
      let stopping = false;
      try {
        for (;;) {
          const next = await lines.next();
          if (next.done === true || stopped) break;
          const l = next.value;
          if (l.canceled === true) {
            const e = refusalOf(l, `node ${id} ended the watch`);
            // The replica shutting down is the stream ending, not this node: passed on as it
            // came, SHUTTING_DOWN would name this node as the one stopping. It ends below as a
            // broken stream does.
            if (e.code === 'SHUTTING_DOWN') {
              stopping = true;
              break;
            }
            const resume = isCount(l.resumeRevision) ? l.resumeRevision : null;
            ending = { code: e.code, message: e.message, resume };
            break;
          }
          const revision = l.header?.revision;
          if (!isCount(revision)) continue;
          if (l.progress !== true) sink.events(revision, eventsOf(l.events, id));
          if (revision > header.revision) header = headerOf(l, revision, id);
        }
      } catch {
        // The stream broke: the client resumes from the revision after the last relayed.
      }
      if (stopped) return;
      stop();
      ending ??= {
        code: 'WATCH_RESET',
        message:
          `The stream from node ${id}, a replica this watch was relayed from, ended ` +
          `(${stopping ? 'the replica is shutting down' : 'broken or closed'}); ` +
          `resume from revision ${header.revision + 1}`,
        resume: header.revision + 1,
      };
      sink.ended(ending.code, ending.message, ending.resume);
    })();
    return { id: 0, startRevision, cancel: stop, header: () => header };
  }
}

/** A stream's body as lines of JSON. */
async function* readLines(body: AsyncIterable<Buffer>): AsyncGenerator<UpstreamLine> {
  let buffered = '';
  for await (const chunk of body) {
    buffered += chunk.toString('utf8');
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const text = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      yield JSON.parse(text) as UpstreamLine;
    }
  }
}

function headerOf(l: UpstreamLine, revision: number, id: number): Header {
  const h = l.header;
  return {
    revision,
    memberId: isCount(h?.memberId) ? h.memberId : id,
    raftTerm: isCount(h?.raftTerm) ? h.raftTerm : 0,
  };
}

function refusalOf(l: UpstreamLine | null, fallback: string): FlotillaError {
  const code = l?.error?.code;
  const message = typeof l?.error?.message === 'string' ? l.error.message : fallback;
  const compacted = l?.error?.compactRevision;
  if (typeof code === 'string' && isErrorCode(code))
    return new FlotillaError(code, message, undefined, 0, 0, isCount(compacted) ? compacted : 0);
  return new FlotillaError('BAD_RESPONSE', `${fallback}: ${JSON.stringify(l ?? null)}`);
}

function eventsOf(v: unknown, id: number): WatchEvent[] {
  const bad = (why: string): Error =>
    new FlotillaError('BAD_RESPONSE', `Node ${id} sent a malformed watch event: ${why}`);
  if (!Array.isArray(v)) throw bad('no events');
  return v.map((x: unknown, i): WatchEvent => {
    const e = x as { type?: unknown; kv?: unknown; prevKv?: unknown } | null;
    if (e?.type !== 'put' && e?.type !== 'delete') throw bad(`events[${i}] has no type`);
    return {
      type: e.type,
      kv: keyValueOf(e.kv, `events[${i}].kv`, bad),
      ...(e.prevKv === undefined ? {} : { prevKv: keyValueOf(e.prevKv, `events[${i}]`, bad) }),
    };
  });
}
