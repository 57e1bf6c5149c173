// What the host needs from the layers below it and offers to the state machines above it,
// stated as structural contracts: the WAL, SQLite and memory stores, the TCP and in-memory
// transports, and any replicated state machine (the key-value store, later the job queue) plug
// in without the host knowing which.

import type {
  Entry,
  HardState,
  InitialState,
  Message,
  NodeId,
  SnapshotDescriptor,
  SnapshotMeta,
} from '../raft/index.js';

/** Identifies one Raft group among those a host runs; every peer message carries one. */
export type GroupId = number;

/**
 * One group's durable Raft state (implemented in src/storage). Each group has its own today
 * (its own directory); nothing here assumes so, and a log shared by groups could implement
 * it as well.
 */
export interface GroupStorage {
  initialState(): InitialState;
  /**
   * Durable once the promise resolves; concurrent calls share one sync (group commit).
   * `inline`: the runtime has nothing to do until this write is durable (it follows), so the
   * storage may write on the calling thread (src/storage's PersistOptions); only a hint.
   */
  persist(
    entries: readonly Entry[],
    hardState: HardState | null,
    opts?: { readonly inline?: boolean },
  ): Promise<void>;
  /** Durable snapshot; the log is compacted through meta.index afterwards. */
  saveSnapshot(meta: SnapshotMeta, data: Uint8Array): Promise<void>;
  /**
   * The same, written from `data`'s pieces as they come and never held whole (the WAL writes
   * them to its file): answers the snapshot's size in bytes, or null when storage already
   * holds a snapshot at or past meta.index (nothing written). Optional: without it the runtime
   * gathers the pieces and calls saveSnapshot.
   */
  saveSnapshotFrom?(meta: SnapshotMeta, data: AsyncIterable<Uint8Array>): Promise<number | null>;
  loadSnapshot(): Promise<{ meta: SnapshotMeta; data: Uint8Array } | null>;
  /**
   * The snapshot held, its data read a few MB at a time each time `pieces` is iterated (a
   * failed check of the bytes throws from it), or null for none. Optional: without it the
   * runtime reads the whole snapshot (loadSnapshot) to restore from it at start.
   */
  openSnapshot?(): Promise<{
    meta: SnapshotMeta;
    totalBytes: number;
    pieces: () => AsyncIterable<Uint8Array>;
  } | null>;
  /**
   * `length` bytes from `offset` of the snapshot held for `meta` (`totalBytes` long), read
   * without the rest: a chunk for a follower, at the start of a buffer `spare` bytes longer
   * (room for its checksum, appended without a copy); null when storage holds another
   * snapshot now. Optional: without it the runtime reads the whole snapshot (loadSnapshot) to
   * send one.
   */
  readSnapshotRange?(
    meta: SnapshotMeta,
    totalBytes: number,
    offset: number,
    length: number,
    spare: number,
  ): Promise<Uint8Array | null>;
  close(): Promise<void>;
}

/**
 * Where a follower keeps a snapshot it is receiving, so that a transfer cut by a restart of
 * either side resumes rather than starts over (src/storage/partial-snapshot.ts keeps it in a
 * file of the group's directory). Chunks arrive in order: `write` always continues the bytes
 * held. Writes need not be synced: after a crash `load` reports what survived, the leader
 * resumes from there, and the whole is checked against its id before it is installed, so a
 * torn tail is caught.
 */
export interface PartialSnapshotStore {
  /** The partial snapshot kept (and how many of its bytes), or null. */
  load(): Promise<{ snapshot: SnapshotDescriptor; received: number } | null>;
  /** Starts `snapshot` with no bytes, discarding any other. */
  begin(snapshot: SnapshotDescriptor): Promise<void>;
  /** Appends `data`; `offset` is the number of bytes held. */
  write(offset: number, data: Uint8Array): Promise<void>;
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Forgets the partial snapshot (installed, or refused). */
  discard(): Promise<void>;
}

/**
 * Peer messaging for every group of a host (implemented in src/transport). `send` never blocks
 * and may drop. One handler receives every group's messages; the host routes them by group.
 */
export interface HostTransport {
  send(msg: Message, attachment?: Uint8Array, group?: GroupId): void;
  /** Writes what `send` queued now, not at the end of this run of the loop (TcpTransport). */
  flush?(): void;
  onMessage(handler: (msg: Message, attachment: Uint8Array | null, group: GroupId) => void): void;
  close(): Promise<void>;
  /**
   * A thread that keeps a leader's heartbeats going while the main thread is silent
   * (transport/liveness.ts); the host says at every tick that it ran and what it leads.
   */
  readonly liveness?: LivenessReporter | null;
}

export interface LivenessReporter {
  alive(): void;
  lead(
    group: GroupId,
    leading: { readonly term: number; readonly followers: readonly NodeId[] } | null,
  ): void;
}

/** A committed command as a state machine receives it. */
export interface Command {
  /** Its log index: unique, increasing; a fencing token where one is needed. */
  readonly index: number;
  readonly term: number;
  /**
   * The proposing leader's clock when it proposed (from the command envelope), or 0 when the
   * command carries none. The only time a state machine may use: the applying node's own
   * clock would make replicas disagree.
   */
  readonly timeMs: number;
  readonly payload: Uint8Array;
}

/**
 * A replicated state machine. Every method but the snapshot's encoding runs on the apply path
 * and must be deterministic: the same commands in the same order give the same state and the
 * same results on every replica.
 */
export interface StateMachine {
  /**
   * Applies committed commands, in log order; returns one result per command, handed to the
   * proposer when it waits on this node. A command it cannot decode is answered with a result
   * saying so, never by throwing: a throw stops the group (the state is then unknown).
   */
  apply(commands: readonly Command[]): unknown[];
  /**
   * The state as of this call, as a stream of chunks: whatever is captured must be captured
   * before this returns (commands applied after it must not show); the chunks may be produced
   * later, so a large state does not block the event loop.
   */
  snapshot(): AsyncIterable<Uint8Array>;
  /** Replaces the whole state with the one `chunks` (from `snapshot`) describe. */
  restore(chunks: AsyncIterable<Uint8Array>): Promise<void>;
  /** Told when this node learns of a new leader (0: none known) in a new or the same term. */
  onLeaderChange?(leader: NodeId, term: number): void;
}

/**
 * A command answered without being applied: the session layer's verdict on a retry it can no
 * longer judge, or a state machine's on bytes it cannot decode. Deterministic, like any result.
 */
export interface Refusal {
  readonly refused: 'SESSION_STALE_SEQUENCE' | 'BAD_COMMAND';
  readonly message: string;
}

export function isRefusal(result: unknown): result is Refusal {
  return typeof result === 'object' && result !== null && 'refused' in result;
}

/**
 * An async stream over chunks produced lazily by `chunks` (a generator, typically): one chunk
 * is made per pull, so the reader paces the work and the event loop turns in between.
 */
export function chunkStream(chunks: () => Iterator<Uint8Array>): AsyncIterable<Uint8Array> {
  return {
    [Symbol.asyncIterator]: () => {
      const it = chunks();
      return {
        next: () => {
          try {
            return Promise.resolve(it.next());
          } catch (err) {
            return Promise.reject(err instanceof Error ? err : new Error(String(err)));
          }
        },
        // A reader that stops early (a save that failed) ends the generator, so its `finally`
        // lets go of what it holds (a key-value capture keeps pre-images until closed).
        return: () => {
          it.return?.();
          return Promise.resolve({ done: true as const, value: undefined });
        },
      };
    },
  };
}

/** One applied batch, as the stream of applied changes delivers it. */
export interface AppliedBatch {
  readonly commands: readonly Command[];
  /** The state machine's result for each command, in order. */
  readonly results: readonly unknown[];
  /** The index applied through once this batch is (commands may be fewer: no-ops carry none). */
  readonly appliedIndex: number;
}

/** Time for the host; tests and the simulator substitute their own. */
export interface Clock {
  nowMs(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  nowMs: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** The wall clock's reading when the monotonic one read 0, so both read alike at start. */
const monotonicOrigin = Date.now() - performance.now();

/**
 * The system's monotonic clock (performance.now), on the wall clock's scale as it was at start:
 * what Raft's ticks and the leader's lease are measured by. The wall clock can be stepped (NTP,
 * an operator): stepped back, a leader's lease ticks stood still while its followers, ticking
 * on, elected another, and it went on serving lease reads; stepped forward, a restarted
 * member's wait before voting ended early. Entry times, which the state machines read, stay on
 * the wall clock (systemClock).
 */
export const monotonicClock: Clock = {
  nowMs: () => monotonicOrigin + performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};
