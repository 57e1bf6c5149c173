// Messages between SqliteStorage (main thread) and its worker. Plain data only: they cross a
// structured-clone boundary.

import type { Entry, HardState, SnapshotMeta } from '../raft/index.js';
import type { StorageErrorCode } from './errors.js';

export type SqliteOp =
  | { readonly kind: 'append'; readonly entries: readonly Entry[] }
  | { readonly kind: 'hardState'; readonly hardState: HardState }
  /** Drop entries <= index and record the compaction point. */
  | { readonly kind: 'compact'; readonly index: number; readonly term: number }
  /** Drop every entry; the log now starts after (index, term). */
  | { readonly kind: 'reset'; readonly index: number; readonly term: number }
  | { readonly kind: 'snapshot'; readonly meta: SnapshotMeta; readonly data: Uint8Array };

export type SqliteRequest =
  | { readonly id: number; readonly type: 'open'; readonly file: string }
  | { readonly id: number; readonly type: 'write'; readonly ops: readonly SqliteOp[] }
  | { readonly id: number; readonly type: 'loadSnapshot' }
  | { readonly id: number; readonly type: 'close' };

export interface SqliteLoaded {
  readonly hardState: HardState;
  readonly base: { readonly index: number; readonly term: number };
  readonly snapshot: SnapshotMeta | null;
  readonly entries: Entry[];
}

export interface SqliteErrorData {
  readonly code: StorageErrorCode;
  readonly message: string;
  readonly file?: string;
  readonly offset?: number;
  readonly expected?: string;
}

export type SqliteResponse =
  | { readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly id: number; readonly ok: false; readonly error: SqliteErrorData };
