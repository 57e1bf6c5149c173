// The workloads a chaos run drives, each recording what every client did in the form the
// checkers in src/check judge.
//
//   register  clients read, write and compare-and-swap a few keys; every write carries a value
//             no one else writes, so the checker can tell which write a read saw;
//   set       clients add unique elements (one key each under `set/`); after the faults heal,
//             every node is read on its own. A key's version counts how many times its put was
//             applied, so an add applied twice (a retry without exactly-once sessions) shows up
//             as a duplicate.
//
// Outcomes: an answer is 'ok'; an error the server marks definite (refused before proposing:
// NOT_LEADER, NO_LEADER, bad request...) is 'fail'; anything else on a write (timeout, reset
// after sending, an indefinite error) is 'unknown' and may take effect at any later time. A
// read that fails has no effect, so it is recorded as 'fail' and the checker drops it.

import { FlotillaClient, FlotillaError } from '../../src/client/index.js';
import type { FinalRead, Operation, OpStatus, SetAdd, Value } from '../../src/check/index.js';
import type { Rng } from '../../src/raft/index.js';
import type { Deadline } from './deadline.js';

export const WORKLOADS = ['register', 'set', 'watch', 'lock', 'queue'] as const;
export type WorkloadKind = (typeof WORKLOADS)[number];

export interface ClientTiming {
  /** Per attempt. */
  readonly timeoutMs: number;
  /** Per operation, retries included. */
  readonly deadlineMs: number;
  /** Think time between a client's operations, ms: [min, max). */
  readonly thinkMs: readonly [number, number];
}

export const defaultClientTiming: ClientTiming = {
  timeoutMs: 1_000,
  deadlineMs: 3_000,
  thinkMs: [0, 30],
};

function writeStatus(err: unknown): OpStatus {
  return err instanceof FlotillaError && !err.indefinite ? 'fail' : 'unknown';
}

/** Endpoints rotated so client `k` starts on node k mod n (reads then spread over nodes). */
function rotated(endpoints: readonly string[], k: number): string[] {
  const n = endpoints.length;
  return endpoints.map((_, i) => endpoints[(i + k) % n] as string);
}

function newClient(
  endpoints: readonly string[],
  k: number,
  t: ClientTiming,
  maxAttempts = 10,
): FlotillaClient {
  return new FlotillaClient({
    endpoints: rotated(endpoints, k),
    timeoutMs: t.timeoutMs,
    deadlineMs: t.deadlineMs,
    maxAttempts,
    connections: 2,
    // The workload's clients talk to the nodes' real client ports only: a routing client would
    // follow a node's advertised URL (its client front, which carries member-to-member traffic
    // and is cut by partitions) whenever that node's own endpoint is down, and the sniffer
    // rightly flags such connections. The nodes' own forwarding is what the suite tests; the
    // client's routing has its own tests (test/client/range-routing*.test.ts).
    rangeRouting: false,
  });
}

/** Think time between operations, ended early by the deadline. */
async function think(rng: Rng, t: ClientTiming, until: Deadline): Promise<void> {
  const [lo, hi] = t.thinkMs;
  await until.sleep(lo + rng.float() * (hi - lo));
}

export interface WorkloadOptions {
  readonly clients: number;
  /** Client numbers start here (the history's client ids are unique across workloads). */
  readonly firstClient: number;
}

/** A workload: `clients` concurrent clients, each running its own loop until a deadline. */
abstract class ClientWorkload<
  O extends { readonly clients: number; readonly firstClient: number },
> {
  constructor(
    protected readonly endpoints: readonly string[],
    protected readonly rng: Rng,
    protected readonly o: O,
    protected readonly timing: ClientTiming,
    protected readonly now: () => number,
  ) {}

  /**
   * Runs the clients until `until` passes (it may move earlier while they run); each finishes
   * the operation it has started, which its client's deadline bounds.
   */
  async runUntil(until: Deadline): Promise<void> {
    await Promise.all(
      Array.from({ length: this.o.clients }, (_, k) =>
        this.client(this.o.firstClient + k, k, until),
      ),
    );
  }

  /** Client `id` (the history's number for it), the `k`-th of this workload. */
  protected abstract client(id: number, k: number, until: Deadline): Promise<void>;
}

/** The register workload's `i`-th key. */
export function registerKey(i: number): string {
  return `r${i}`;
}

export interface RegisterOptions extends WorkloadOptions {
  readonly keys: number;
}

export class RegisterWorkload extends ClientWorkload<RegisterOptions> {
  readonly history: Operation[] = [];

  protected async client(id: number, k: number, until: Deadline): Promise<void> {
    const client = newClient(this.endpoints, k, this.timing);
    // Reads make one attempt each. A read retried inside the client would be recorded as
    // invoked at its first attempt, so a stale answer from a later attempt could be placed
    // early enough to pass; a failed read has no effect, so nothing is lost by not retrying.
    const reader = newClient(this.endpoints, k, this.timing, 1);
    /** The last value this client saw per key: CAS expects it, so some swaps succeed. */
    const seen = new Map<string, Value>();
    let n = 0;
    try {
      while (!until.passed()) {
        const key = registerKey(this.rng.int(this.o.keys));
        const roll = this.rng.float();
        if (roll < 0.5) await this.read(reader, id, key, seen);
        else if (roll < 0.75) await this.write(client, id, key, `${id}.${n++}`, seen);
        else await this.cas(client, id, key, seen.get(key) ?? null, `${id}.${n++}`, seen);
        await think(this.rng, this.timing, until);
      }
    } finally {
      await client.close();
      await reader.close();
    }
  }

  /**
   * After the faults healed and the cluster settled: a linearizable read of every key on
   * every node, one node after the other, recorded in the history as clients `firstClient`,
   * `firstClient + 1`, ... (one per node). A lost write that no read happened to observe
   * during the run shows up here.
   */
  async finalReads(endpoints: readonly string[], firstClient: number): Promise<number> {
    let failed = 0;
    for (const [i, endpoint] of endpoints.entries()) {
      const c = new FlotillaClient({ endpoints: [endpoint], timeoutMs: 5_000, maxAttempts: 1 });
      try {
        for (let key = 0; key < this.o.keys; key++) {
          const before = this.history.length;
          await this.read(c, firstClient + i, registerKey(key), new Map());
          if (this.history[before]?.status !== 'ok') failed++;
        }
      } finally {
        await c.close();
      }
    }
    return failed;
  }

  private async read(
    c: FlotillaClient,
    client: number,
    key: string,
    seen: Map<string, Value>,
  ): Promise<void> {
    const invokeMs = this.now();
    try {
      const kv = await c.get(key);
      const output = kv?.value ?? null;
      seen.set(key, output);
      this.history.push({
        kind: 'read',
        client,
        key,
        invokeMs,
        completeMs: this.now(),
        status: 'ok',
        output,
      });
    } catch {
      this.history.push({
        kind: 'read',
        client,
        key,
        invokeMs,
        completeMs: this.now(),
        status: 'fail',
      });
    }
  }

  private async write(
    c: FlotillaClient,
    client: number,
    key: string,
    value: string,
    seen: Map<string, Value>,
  ): Promise<void> {
    const invokeMs = this.now();
    let status: OpStatus = 'ok';
    try {
      await c.put(key, value);
      seen.set(key, value);
    } catch (err) {
      status = writeStatus(err);
    }
    this.history.push({
      kind: 'write',
      client,
      key,
      invokeMs,
      completeMs: this.now(),
      status,
      input: value,
    });
  }

  private async cas(
    c: FlotillaClient,
    client: number,
    key: string,
    expected: Value,
    next: string,
    seen: Map<string, Value>,
  ): Promise<void> {
    const invokeMs = this.now();
    const input = { expected, new: next };
    try {
      const swapped = await c.compareAndSwap(key, expected, next);
      if (swapped) seen.set(key, next);
      this.history.push({
        kind: 'cas',
        client,
        key,
        invokeMs,
        completeMs: this.now(),
        status: 'ok',
        input,
        output: swapped,
      });
    } catch (err) {
      const status = writeStatus(err);
      this.history.push({
        kind: 'cas',
        client,
        key,
        invokeMs,
        completeMs: this.now(),
        status,
        input,
      });
    }
  }
}

export const SET_PREFIX = 'set/';

export type SetOptions = WorkloadOptions;

export class SetWorkload extends ClientWorkload<SetOptions> {
  readonly adds: SetAdd[] = [];
  /** Why each add that did not end `ok` failed: the error's code and message. */
  readonly errors = new Map<string, string>();

  protected async client(id: number, k: number, until: Deadline): Promise<void> {
    const client = newClient(this.endpoints, k, this.timing);
    let n = 0;
    try {
      while (!until.passed()) {
        const element = `${id}-${n++}`;
        let status: OpStatus = 'ok';
        try {
          await client.put(`${SET_PREFIX}${element}`, '1');
        } catch (err) {
          status = writeStatus(err);
          this.errors.set(
            element,
            err instanceof FlotillaError ? `${err.code}: ${err.message}` : String(err),
          );
        }
        this.adds.push({ element, status });
        await think(this.rng, this.timing, until);
      }
    } finally {
      await client.close();
    }
  }

  /**
   * Reads the whole set from one node, page by page, with linearizable reads: the node
   * answers from its own state once it has applied everything committed when it was asked.
   * Run after the cluster settled, so every node must hold every acknowledged add.
   */
  static async finalRead(endpoint: string, node: string): Promise<FinalRead> {
    const client = new FlotillaClient({ endpoints: [endpoint], timeoutMs: 5_000, maxAttempts: 3 });
    const elements: string[] = [];
    const rangeEnd =
      SET_PREFIX.slice(0, -1) +
      String.fromCharCode(SET_PREFIX.charCodeAt(SET_PREFIX.length - 1) + 1);
    let from = SET_PREFIX;
    try {
      for (let page = 0; page < 10_000; page++) {
        const r = await client.range(from, { rangeEnd, limit: 1_000 });
        for (const kv of r.kvs) {
          const element = kv.key.slice(SET_PREFIX.length);
          // A key's version is the number of puts applied to it: each is one "add".
          for (let v = 0; v < kv.version; v++) elements.push(element);
        }
        const last = r.kvs[r.kvs.length - 1];
        if (!r.more || last === undefined) return { node, elements };
        from = `${last.key}\u0000`;
      }
      throw new Error(`final read of ${node} did not finish in 10,000 pages`);
    } finally {
      await client.close();
    }
  }
}
