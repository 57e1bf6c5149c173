// The watch and lock workloads of a chaos run (the register and set ones are in workload.ts).
//
//   watch  watchers follow every key from revision 1 for the whole run, through the client's
//          reconnecting watch(); after the faults heal, one node replays the whole history and
//          src/check/watch.ts judges each watcher against it (no gap, no repeat, in order,
//          same events), and each must have reached the final revision;
//   lock   clients take one lock in turn (sessions with a short lease, so faults make holders
//          lose it) and, holding it, make guarded writes tagged with their fencing token;
//          along the final history of that key, tokens must never go down.

import {
  checkLockWrites,
  checkWatchers,
  type LockReport,
  type WatchReport,
  type WatchedRevision,
  type WatcherLog,
} from '../../src/check/index.js';
import { FlotillaClient, Mutex, Session } from '../../src/client/index.js';
import type { WatchBatch } from '../../src/client/index.js';
import type { Deadline } from './deadline.js';

/** The keys a watch follows: from `key` up to `rangeEnd` (etcd's convention: `\0` is the end). */
export interface WatchSpan {
  readonly key: string;
  readonly rangeEnd: string;
}

/** Every key (keys are never empty): from \0 to the end of the keyspace. */
export const ALL_KEYS: WatchSpan = { key: '\u0000', rangeEnd: '\u0000' };
const LOCK = 'chaos/lock';
const LOCK_DATA = 'chaos/lock-data';

function render(batch: WatchBatch): WatchedRevision {
  return {
    revision: batch.revision,
    events: batch.events.map((e) => `${e.type} ${e.kv.key} ${e.kv.modRevision} ${e.kv.value}`),
  };
}

export class WatchWorkload {
  private readonly logs: { watcher: string; revisions: WatchedRevision[] }[] = [];
  private readonly stop = new AbortController();
  private running: Promise<unknown> | null = null;
  private readonly clients: FlotillaClient[] = [];

  constructor(
    private readonly endpoints: readonly string[],
    private readonly watchers: number,
    /** Every key by default; a store split in ranges refuses a watch across them. */
    private readonly span: WatchSpan = ALL_KEYS,
  ) {}

  /** Starts the watchers, each on a different first node; they run until `stopAll`. */
  start(): void {
    const n = this.endpoints.length;
    this.running = Promise.allSettled(
      Array.from({ length: this.watchers }, async (_, k) => {
        const log = { watcher: `watcher ${k}`, revisions: [] as WatchedRevision[] };
        this.logs.push(log);
        const client = new FlotillaClient({
          endpoints: this.endpoints.map((_e, i) => this.endpoints[(i + k) % n] as string),
        });
        this.clients.push(client);
        for await (const batch of client.watch(this.span.key, {
          rangeEnd: this.span.rangeEnd,
          startRevision: 1,
          progressNotifyMs: 500,
          signal: this.stop.signal,
        }))
          if (batch.progress !== true) log.revisions.push(render(batch));
      }),
    );
  }

  /** The last revision every watcher has reached. */
  lowestReached(): number {
    return Math.min(...this.logs.map((l) => l.revisions.at(-1)?.revision ?? 0));
  }

  async stopAll(): Promise<void> {
    if (this.stop.signal.aborted) return;
    this.stop.abort();
    await this.running;
    await Promise.all(this.clients.map((c) => c.close()));
  }

  /**
   * After the cluster settled: replays the whole history of the watched keys from one node,
   * waits (bounded) until every watcher reached its last revision, and judges the watchers.
   * (The last change to the watched keys, not the store's revision: a watch of some keys
   * hears nothing of the revisions that changed others.)
   */
  async judge(endpoint: string, problems: string[]): Promise<WatchReport | null> {
    const client = new FlotillaClient({ endpoints: [endpoint], timeoutMs: 5_000 });
    const { key, rangeEnd } = this.span;
    try {
      const final = (await client.range(key, { rangeEnd, countOnly: true })).header.revision;
      const history = await replay(client, key, rangeEnd, final);
      const last = history.at(-1)?.revision ?? 0;
      const deadline = Date.now() + 20_000;
      while (this.lowestReached() < last && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 50));
      await this.stopAll();
      if (this.lowestReached() < last)
        problems.push(
          `a watcher stopped short: reached ${this.logs.map((l) => l.revisions.at(-1)?.revision ?? 0).join(', ')} of revision ${last}`,
        );
      const logs: WatcherLog[] = this.logs.map((l) => ({
        watcher: l.watcher,
        revisions: l.revisions.filter((r) => r.revision <= final),
      }));
      return checkWatchers(history, logs);
    } catch (err) {
      problems.push(`watch check failed: ${(err as Error).message}`);
      return null;
    } finally {
      await client.close();
    }
  }
}

/** A key range's whole history up to `until`, from one node (a watch from revision 1). */
async function replay(
  client: FlotillaClient,
  key: string,
  rangeEnd: string | undefined,
  until: number,
): Promise<WatchedRevision[]> {
  const out: WatchedRevision[] = [];
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), 30_000);
  try {
    for await (const batch of client.watch(key, {
      ...(rangeEnd === undefined ? {} : { rangeEnd }),
      startRevision: 1,
      progressNotifyMs: 100,
      signal: stop.signal,
    })) {
      if (batch.progress !== true) out.push(render(batch));
      if (batch.revision >= until) return out;
    }
    throw new Error(`the history replay stopped before revision ${until}`);
  } finally {
    clearTimeout(timer);
    stop.abort();
  }
}

export class LockWorkload {
  /** Critical sections entered, and guarded writes refused because the lock was lost. */
  entered = 0;
  refused = 0;

  constructor(
    private readonly endpoints: readonly string[],
    private readonly clients: number,
  ) {}

  async runUntil(until: Deadline): Promise<void> {
    await Promise.all(Array.from({ length: this.clients }, (_, k) => this.client(k, until)));
  }

  private async client(k: number, until: Deadline): Promise<void> {
    const n = this.endpoints.length;
    const client = new FlotillaClient({
      endpoints: this.endpoints.map((_e, i) => this.endpoints[(i + k) % n] as string),
      timeoutMs: 1_000,
      deadlineMs: 3_000,
      // Real client ports only, as the register workload's clients (workload.ts says why).
      rangeRouting: false,
    });
    try {
      while (!until.passed()) {
        let session: Session | null = null;
        try {
          session = await Session.create(client, { ttl: 2 });
          const mutex = new Mutex(session, LOCK);
          const held = await mutex.lock({ signal: AbortSignal.timeout(5_000) });
          this.entered++;
          for (let i = 0; i < 3; i++) {
            const r = await mutex.guardedTxn(
              [],
              [{ put: { key: LOCK_DATA, value: `${held.token}:${k}:${i}` } }],
            );
            if (!r.succeeded) {
              this.refused++;
              break;
            }
          }
          await mutex.unlock();
        } catch {
          // Under faults a lock attempt fails often (no leader, a lease lost, a timeout); the
          // checker judges what was written, not these attempts. Pause before the next one.
          await until.sleep(50);
        } finally {
          // The session's lease expires by itself if the cluster cannot take the revoke now.
          await session?.close().catch(() => undefined);
        }
      }
    } finally {
      await client.close();
    }
  }

  /** After the cluster settled: the data key's whole history, judged for interleaving. */
  async judge(endpoint: string, problems: string[]): Promise<LockReport | null> {
    const client = new FlotillaClient({ endpoints: [endpoint], timeoutMs: 5_000 });
    try {
      const final = (await client.range(LOCK_DATA, { countOnly: true })).header.revision;
      const history = await replay(client, LOCK_DATA, undefined, final);
      const writes = history.flatMap((h) =>
        h.events
          .filter((e) => e.startsWith('put '))
          .map((e) => ({ revision: h.revision, token: Number(e.split(' ')[3]?.split(':')[0]) })),
      );
      return checkLockWrites(writes);
    } catch (err) {
      problems.push(`lock check failed: ${(err as Error).message}`);
      return null;
    } finally {
      await client.close();
    }
  }
}
