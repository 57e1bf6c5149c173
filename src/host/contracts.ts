// What the runtime needs from the layers below it, stated as structural contracts so that the
// WAL, SQLite and memory stores, and the TCP and in-memory transports, all plug in.

import type { Entry, HardState, InitialState, Message, SnapshotMeta } from '../raft/index.js';

/** One node's durable Raft state (implemented in src/storage). */
export interface RuntimeStorage {
  initialState(): InitialState;
  /** Durable once the promise resolves; concurrent calls share one sync (group commit). */
  persist(entries: readonly Entry[], hardState: HardState | null): Promise<void>;
  /** Durable snapshot; the log is compacted through meta.index afterwards. */
  saveSnapshot(meta: SnapshotMeta, data: Uint8Array): Promise<void>;
  loadSnapshot(): Promise<{ meta: SnapshotMeta; data: Uint8Array } | null>;
  close(): Promise<void>;
}

/** Peer messaging (implemented in src/transport). `send` never blocks and may drop. */
export interface RuntimeTransport {
  send(msg: Message, attachment?: Uint8Array): void;
  onMessage(handler: (msg: Message, attachment: Uint8Array | null) => void): void;
  close(): Promise<void>;
}

/** The replicated state machine as the runtime drives it: raw entries in, results out. */
export interface ApplyTarget {
  /** Applies one committed normal entry and returns the result handed to its proposer. */
  apply(entry: Entry): unknown;
  /**
   * The state as of this call: whatever is captured must be captured before this returns
   * (entries applied after it must not show). The encoding may finish later, asynchronously,
   * so that a large state does not block the event loop.
   */
  snapshot(): Uint8Array | Promise<Uint8Array>;
  restore(data: Uint8Array): void;
}

/** Time for the runtime; tests and the simulator substitute their own. */
export interface Clock {
  nowMs(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  nowMs: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};
