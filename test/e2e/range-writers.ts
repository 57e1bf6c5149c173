// Writers and checks for the end-to-end range tests: one writer per key prefix records what
// the cluster acknowledged; `lostWrites` reads every prefix back with linearizable reads and
// names each acknowledged write not there; `mapFaults` names every gap and overlap of a range
// map. Both are plain functions of what they are given, so a test can plant a fault in front
// of them and see it named.

import type { RangesResponse } from '../../src/api/types.js';
import type { FlotillaClient } from '../../src/client/index.js';

/** Polls `probe` every 100 ms until it gives a value; throws with the last thing seen. */
export async function until<T>(
  what: string,
  probe: () => T | null | Promise<T | null>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let seen: unknown = null;
  for (;;) {
    try {
      const v = await probe();
      if (v !== null) return v;
    } catch (err) {
      seen = (err as Error).message;
    }
    if (Date.now() > deadline)
      throw new Error(`${what}: not within ${timeoutMs} ms (last error: ${String(seen)})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Writes `prefix/00000`, `prefix/00001`, ... one at a time until stopped. */
export class PrefixWriter {
  /** Acknowledged keys and their values, in the order they were acknowledged. */
  readonly acked = new Map<string, string>();
  /** Writes that failed, by error code (their outcome is unknown or a definite no). */
  readonly failed = new Map<string, number>();
  private stopped = false;
  private lastAckMs = Date.now();
  private readonly running: Promise<void>;

  constructor(
    private readonly client: FlotillaClient,
    readonly prefix: string,
  ) {
    this.running = this.run();
  }

  private async run(): Promise<void> {
    for (let i = 0; !this.stopped; i++) {
      const key = `${this.prefix}/${String(i).padStart(5, '0')}`;
      const value = `${this.prefix}-v${i}`;
      try {
        await this.client.put(key, value);
        this.acked.set(key, value);
        this.lastAckMs = Date.now();
      } catch (err) {
        // Not acknowledged: it may or may not have applied; only acknowledged writes count.
        const code = (err as { code?: string }).code ?? (err as Error).message;
        this.failed.set(code, (this.failed.get(code) ?? 0) + 1);
      }
    }
  }

  /** What it did so far, for a failure's message. */
  progress(): string {
    return `${this.prefix}: ${this.acked.size} acknowledged, the last ${Date.now() - this.lastAckMs} ms ago, failed ${JSON.stringify([...this.failed])}`;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
  }
}

/** Acknowledged writes not read back: the key, what was acknowledged, what was read. */
export interface LostWrite {
  readonly key: string;
  readonly acked: string;
  readonly read: string | null;
}

/**
 * Reads every writer's prefix back through `client` (linearizable reads, one range each) and
 * lists every acknowledged write whose value is not there. A writer writes each key once, so
 * the value read must be the one acknowledged.
 */
export async function lostWrites(
  client: FlotillaClient,
  writers: readonly Pick<PrefixWriter, 'prefix' | 'acked'>[],
): Promise<LostWrite[]> {
  const lost: LostWrite[] = [];
  for (const w of writers) {
    const r = await client.range(`${w.prefix}/`, { prefix: true });
    if (r.more) throw new Error(`the read of ${w.prefix}/ was cut short (${r.count} keys)`);
    const found = new Map(r.kvs.map((kv) => [kv.key, kv.value]));
    for (const [key, acked] of w.acked) {
      const read = found.get(key) ?? null;
      if (read !== acked) lost.push({ key, acked, read });
    }
  }
  return lost;
}

/** Every gap, overlap or misplaced end of a range map, in words (empty: it covers the keys once). */
export function mapFaults(map: Pick<RangesResponse, 'ranges'>): string[] {
  const faults: string[] = [];
  const rs = map.ranges;
  if (rs.length === 0) return ['the map holds no range'];
  const ids = new Set<number>();
  rs.forEach((r, i) => {
    if (ids.has(r.id)) faults.push(`range ${r.id} appears twice`);
    ids.add(r.id);
    if (r.end !== null && r.end <= r.start)
      faults.push(`range ${r.id} ends (${r.end}) at or before its start (${r.start})`);
    const prev = rs[i - 1];
    if (prev === undefined) {
      if (r.start !== '') faults.push(`the first range ${r.id} starts at "${r.start}", not ""`);
    } else if (prev.end === null) {
      faults.push(`range ${prev.id} runs to the end, yet range ${r.id} follows it`);
    } else if (r.start < prev.end) {
      faults.push(`ranges ${prev.id} and ${r.id} overlap from "${r.start}" to "${prev.end}"`);
    } else if (r.start > prev.end) {
      faults.push(`a gap between ranges ${prev.id} and ${r.id}: "${prev.end}" to "${r.start}"`);
    }
  });
  const last = rs[rs.length - 1];
  if (last !== undefined && last.end !== null)
    faults.push(`the last range ${last.id} ends at "${last.end}", not at the end of the keys`);
  return faults;
}
