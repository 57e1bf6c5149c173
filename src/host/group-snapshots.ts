// One group's snapshots, for its runtime (runtime.ts): when to take one (at the same indexes on
// every member, once the log outgrew the last snapshot), capturing it when its index applies and
// encoding and saving it once that Ready is advanced, offering it to the core, sending it to
// followers in chunks and receiving one from the leader (DESIGN.md, "Snapshots" and "Snapshots
// in chunks"). The runtime keeps the Ready loop; this keeps everything a snapshot needs besides.

import { snapshotMetaOf, type Message, type RaftNode, type SnapshotMeta } from '../raft/index.js';
import type { GroupStorage, StateMachine } from './contracts.js';
import {
  collectSnapshot,
  framedSnapshot,
  pacedChunks,
  snapshotChunks,
  unframeSnapshot,
} from './snapshot-stream.js';
import type { SnapshotReceiver } from './snapshot-receiver.js';
import {
  SEAL_BYTES,
  TransferCounters,
  idOf,
  sealChunk,
  sealInPlace,
  snapshotHash,
  snapshotId,
  type SnapshotTransfer,
} from './snapshot-transfer.js';

/** What happens to snapshots, for logs and metrics (part of the runtime's events). */
export type SnapshotEvent =
  | { readonly kind: 'snapshot-saved'; readonly index: number; readonly bytes: number }
  /** A snapshot chunk whose bytes did not match their checksum was dropped (it is resent). */
  | { readonly kind: 'snapshot-chunk-refused'; readonly from: number; readonly offset: number }
  /** A complete snapshot did not match its id: discarded, and asked for again from byte 0. */
  | { readonly kind: 'snapshot-refused'; readonly id: string; readonly index: number };

export interface SnapshotPolicy {
  /** Snapshots are taken only at multiples of this index. */
  readonly everyEntries: number;
  /** ...and only once the log applied since the last one holds this fraction of its bytes. */
  readonly logRatio: number;
  /** Entries kept behind a snapshot for slow followers to catch up from the log. */
  readonly catchupEntries: number;
  /** The largest share of the time a snapshot's encoding may take (pacedChunks). */
  readonly encodeShare: number;
}

export interface GroupSnapshotsOptions {
  readonly node: RaftNode;
  readonly storage: GroupStorage;
  readonly stateMachine: StateMachine;
  readonly receiver: SnapshotReceiver;
  readonly policy: SnapshotPolicy;
  readonly nowMs: () => number;
  /** Sends a message with its attachment (a snapshot chunk's bytes). */
  readonly send: (m: Message, attachment?: Uint8Array) => void;
  readonly onEvent: (e: SnapshotEvent) => void;
  /** Lets timers and I/O run between slices of a large snapshot's work. */
  readonly nextTurn: () => Promise<void>;
  /** Resolves after `ms`: the pauses that keep a snapshot's encoding to its share. */
  readonly sleep: (ms: number) => Promise<void>;
  /** Stops the group: a snapshot that cannot be saved leaves the disk's state unknown. */
  readonly die: (err: Error) => void;
}

/** A snapshot followers may be sent, and its bytes once read from storage. */
interface Sendable {
  readonly meta: SnapshotMeta;
  readonly totalBytes: number;
  data: Uint8Array | null;
  /** Chunks asked for while its bytes are read from storage (null: no read under way). */
  waiting: (Message & { type: 'snapshot' })[] | null;
}

export class GroupSnapshots {
  private lastIndex: number;
  /** The size of the latest snapshot taken or installed; unknown (null) while one is taken. */
  private lastBytes: number | null;
  /**
   * Bytes of the entries applied since that snapshot's index: counted again by the replay after
   * a restart, so a member decides as it would have without the restart.
   */
  private logBytesSince = 0;
  /** A snapshot is being encoded or saved; at most one at a time. */
  private snapshotting = false;
  /** Set when the node closes: a snapshot still being encoded is no longer paced. */
  private hurried = false;
  /** The background save of the last snapshot taken (settled: none runs). */
  private saving: Promise<void> = Promise.resolve();
  /** Reads of snapshots' bytes from storage for sending (settled: none runs). */
  private loading: Promise<void> = Promise.resolve();
  /** The state machine's state captured at `index`, to encode once its Ready is advanced. */
  private captured: { index: number; term: number; chunks: AsyncIterable<Uint8Array> } | null =
    null;
  /** The index of the latest durable snapshot (0: none). */
  private latestIndex: number;
  /**
   * Snapshots chunks are sent from, by id: the latest offered to the core, and the one before
   * it, which transfers started earlier still send (Progress keeps its snapshot to the end).
   * Their bytes stay in storage: read a chunk at a time where storage can (the WAL), else
   * whole when a follower first needs one (Sendable.data).
   */
  private readonly sendable = new Map<string, Sendable>();
  /** The leader the last snapshot chunk came from (status). */
  private incomingFrom = 0;
  /** What each snapshot transfer moved, for status and metrics. */
  private readonly counters: TransferCounters;

  constructor(
    private readonly o: GroupSnapshotsOptions,
    /** The snapshot storage held at start (the state machine was restored from it). */
    initial: { meta: SnapshotMeta; totalBytes: number } | null,
  ) {
    this.latestIndex = initial?.meta.index ?? 0;
    this.lastIndex = initial?.meta.index ?? 0;
    this.lastBytes = initial?.totalBytes ?? 0;
    this.counters = new TransferCounters(o.nowMs);
  }

  /** The index of the latest snapshot taken or installed (the state machine starts there). */
  get lastSnapshotIndex(): number {
    return this.lastIndex;
  }

  /** A complete incoming snapshot waiting to be checked against its id, or null. */
  get pendingCheck(): string | null {
    return this.o.receiver.pendingCheck;
  }

  /** Entries applied: their bytes count toward the next snapshot's size rule. */
  applied(bytes: number): void {
    this.logBytesSince += bytes;
  }

  /**
   * Called once `index` applied: takes a snapshot when it is a multiple of the interval past
   * the last one and the log outgrew the last snapshot (snapshotLogRatio). Every member that
   * holds the same last snapshot and log decides the same; one that installed a leader's
   * snapshot holds the leader's from then.
   */
  maybeTake(index: number, term: number | undefined): void {
    if (index % this.o.policy.everyEntries !== 0 || index <= this.lastIndex) return;
    if (this.lastBytes === null) return;
    if (this.logBytesSince < this.o.policy.logRatio * this.lastBytes) return;
    this.take(index, term);
  }

  /**
   * Captures the state machine at `index` now (commands applied later must not show; it
   * encodes later); the snapshot is encoded and saved once this Ready is advanced
   * (`saveCaptured`), when the core holds every membership change up to that index.
   */
  private take(index: number, term: number | undefined): void {
    if (this.snapshotting || term === undefined) return;
    this.lastIndex = index;
    this.lastBytes = null;
    this.logBytesSince = 0;
    this.snapshotting = true;
    this.captured = { index, term, chunks: this.o.stateMachine.snapshot() };
  }

  /** The snapshot being encoded, if any, goes on unpaced: the node is closing and waits for it. */
  hurry(): void {
    this.hurried = true;
  }

  /**
   * Settles once no snapshot save runs in the background: the runtime's close waits for it,
   * so the storage is never closed under a save (a range given up while it snapshotted).
   */
  idle(): Promise<void> {
    return Promise.all([this.saving, this.loading]).then(() => undefined);
  }

  /** Encodes and saves the snapshot captured in the Ready just advanced, in the background. */
  saveCaptured(): void {
    const c = this.captured;
    if (c === null) return;
    this.captured = null;
    const { index, term } = c;
    const { node } = this.o;
    const st = node.status();
    // The configuration the core holds at `index`, not the one this node started with: a
    // membership change must survive a restart from this snapshot.
    const meta: SnapshotMeta = snapshotMetaOf(index, term, node.confStateAt(index));
    const { nowMs, sleep, policy } = this.o;
    const chunks =
      policy.encodeShare >= 1
        ? c.chunks
        : pacedChunks(c.chunks, {
            share: policy.encodeShare,
            nowMs,
            sleep,
            hurried: () => this.hurried,
          });
    this.saving = this.save(meta, chunks)
      .then((saved) => {
        // Storage held a newer snapshot already (installed from the leader meanwhile).
        if (saved === null) return;
        // Unless a snapshot installed from the leader meanwhile is the latest now.
        if (this.lastIndex === index) this.lastBytes = saved.bytes;
        // A snapshot installed from the leader meanwhile may be newer: never go back.
        if (this.latestIndex >= index) return;
        this.offer(meta, saved.id, saved.bytes, null);
        const compactTo = Math.min(index - this.o.policy.catchupEntries, st.persistedIndex);
        if (compactTo > node.status().firstIndex) node.compact(compactTo);
        this.o.onEvent({ kind: 'snapshot-saved', index, bytes: saved.bytes });
      })
      .catch((err: unknown) => this.o.die(err instanceof Error ? err : new Error(String(err))))
      .finally(() => {
        this.snapshotting = false;
      });
  }

  /**
   * Encodes the captured chunks and saves them: written to storage as they are encoded where
   * it can (the WAL), so the snapshot is never held whole in memory, else gathered into one
   * buffer first. Answers the size and id, or null when storage held a newer snapshot.
   */
  private async save(
    meta: SnapshotMeta,
    chunks: AsyncIterable<Uint8Array>,
  ): Promise<{ bytes: number; id: string } | null> {
    const { storage, nextTurn } = this.o;
    if (storage.saveSnapshotFrom === undefined) {
      const data = await collectSnapshot(chunks, nextTurn);
      await storage.saveSnapshot(meta, data);
      return { bytes: data.length, id: await snapshotId(meta, data, nextTurn) };
    }
    const hash = snapshotHash(meta);
    async function* hashed(): AsyncGenerator<Uint8Array> {
      for await (const piece of framedSnapshot(chunks, nextTurn)) {
        hash.update(piece);
        yield piece;
      }
    }
    const bytes = await storage.saveSnapshotFrom(meta, hashed());
    return bytes === null ? null : { bytes, id: idOf(hash) };
  }

  /**
   * The core may send the snapshot to followers behind its compacted log from now on. Its
   * bytes are read from storage as chunks are sent, unless `data` holds them.
   */
  offer(meta: SnapshotMeta, id: string, totalBytes: number, data: Uint8Array | null): void {
    this.latestIndex = Math.max(this.latestIndex, meta.index);
    this.sendable.delete(id);
    this.sendable.set(id, { meta, totalBytes, data, waiting: null });
    for (const old of this.sendable.keys()) {
      if (this.sendable.size <= 2) break;
      this.sendable.delete(old);
    }
    this.o.node.offerSnapshot({ meta, id, totalBytes });
  }

  /**
   * Installs the snapshot the core took from the leader: the partial one, complete and checked
   * against its id. Storage writes it atomically (a crash leaves the old snapshot and log).
   * Returns its size.
   */
  async install(meta: SnapshotMeta, asked: string | null): Promise<number> {
    const { storage, receiver, stateMachine } = this.o;
    let id: string;
    let totalBytes: number;
    if (storage.saveSnapshotFrom !== undefined) {
      // Storage that writes a snapshot as it comes (the WAL): the partial copy is read twice, a
      // few MB at a time, to write it and to restore it, and never held whole.
      const complete = receiver.complete(meta, asked);
      ({ id, totalBytes } = complete);
      await storage.saveSnapshotFrom(meta, complete.pieces());
      await stateMachine.restore(unframeSnapshot(complete.pieces()));
    } else {
      const whole = await receiver.whole(meta, asked);
      ({ id } = whole);
      totalBytes = whole.data.length;
      await storage.saveSnapshot(meta, whole.data);
      await stateMachine.restore(snapshotChunks(whole.data));
    }
    await receiver.installed();
    this.offer(meta, id, totalBytes, null);
    this.lastIndex = meta.index;
    this.lastBytes = totalBytes;
    this.logBytesSince = 0;
    return totalBytes;
  }

  /** Sends one chunk of a snapshot held for sending; one no longer held is not sent. */
  sendChunk(m: Message & { type: 'snapshot' }): void {
    // No longer held (two newer snapshots were taken meanwhile): the transfer stalls, and
    // the core starts over with the snapshot offered now when its progress times out.
    const s = this.sendable.get(m.id);
    if (s === undefined) return;
    if (s.data !== null) {
      this.sendBytes(s.data.subarray(m.offset, m.offset + m.length), m);
      return;
    }
    const { storage } = this.o;
    if (storage.readSnapshotRange !== undefined) {
      // Just this chunk from the file (the WAL). One chunk is in flight per follower, so they
      // go out in order; a resend racing its first read sends the same bytes twice, which the
      // follower answers with what it holds. Read with room for the checksum, written after
      // the bytes without a copy.
      const read = storage
        .readSnapshotRange(s.meta, s.totalBytes, m.offset, m.length, SEAL_BYTES)
        .then(
          (buf) => {
            // Storage moved on to a newer snapshot (it keeps only the latest): the transfer
            // stalls and starts over with the one offered now, as above.
            if (buf === null || this.sendable.get(m.id) !== s) return;
            this.count(m);
            this.o.send(m, sealInPlace(buf, m.length));
          },
          (err: unknown) => this.o.die(err instanceof Error ? err : new Error(String(err))),
        );
      this.loading = Promise.all([this.loading, read]).then(() => undefined);
      return;
    }
    // Storage that reads only whole snapshots: read it once, and send the chunks asked for
    // meanwhile in the order they were asked.
    if (s.waiting !== null) {
      s.waiting.push(m);
      return;
    }
    s.waiting = [m];
    const read = storage.loadSnapshot().then(
      (held) => {
        const waiting = s.waiting ?? [];
        s.waiting = null;
        const same =
          held?.meta.index === s.meta.index &&
          held.meta.term === s.meta.term &&
          held.data.length === s.totalBytes;
        if (!same) return;
        s.data = held.data;
        if (this.sendable.get(m.id) !== s) return;
        for (const w of waiting)
          this.sendBytes(held.data.subarray(w.offset, w.offset + w.length), w);
      },
      (err: unknown) => this.o.die(err instanceof Error ? err : new Error(String(err))),
    );
    this.loading = Promise.all([this.loading, read]).then(() => undefined);
  }

  private sendBytes(chunk: Uint8Array, m: Message & { type: 'snapshot' }): void {
    this.count(m);
    this.o.send(m, sealChunk(chunk));
  }

  /** Counts a chunk sent, for status and metrics. */
  private count(m: Message & { type: 'snapshot' }): void {
    this.counters.sent(
      m.to,
      { meta: m.snapshot, id: m.id, totalBytes: m.totalBytes },
      m.offset,
      m.length,
    );
  }

  /**
   * A chunk from the leader: its bytes are kept until the core hands the chunk out to write.
   * Returns false for one to drop before the core sees it (no bytes, or bytes that do not
   * match their checksum): the leader sends it again after a quiet heartbeat round.
   */
  receiveChunk(m: Message & { type: 'snapshot' }, attachment: Uint8Array | null): boolean {
    if (!this.o.receiver.keep(m, attachment)) {
      this.counters.corruptChunks += 1;
      this.o.onEvent({ kind: 'snapshot-chunk-refused', from: m.from, offset: m.offset });
      return false;
    }
    this.incomingFrom = m.from;
    const snapshot = { meta: m.snapshot, id: m.id, totalBytes: m.totalBytes };
    this.counters.received(m.from, snapshot, m.offset, m.length);
    return true;
  }

  /** Writes a chunk the core accepted (before the answers that say how much is held). */
  writeChunk(c: Parameters<SnapshotReceiver['write']>[0]): Promise<void> {
    return this.o.receiver.write(c);
  }

  /** Checks a complete incoming snapshot against its id and tells the core. */
  async checkIncoming(id: string): Promise<void> {
    const { good, index } = await this.o.receiver.check(id);
    if (!good) {
      this.counters.refusedSnapshots += 1;
      this.o.onEvent({ kind: 'snapshot-refused', id, index });
    }
    this.o.node.incomingSnapshotChecked(id, good);
  }

  /**
   * Snapshot transfers in progress: to each follower this leader sends one to, and from the
   * leader this node receives one from; with bytes held, bytes moved, chunks and rate.
   */
  transfers(): SnapshotTransfer[] {
    const st = this.o.node.status();
    const acked = new Map<number, { id: string; acked: number }>();
    for (const [id, p] of Object.entries(st.progress))
      if (p.snapshot !== undefined) acked.set(Number(id), p.snapshot);
    const inc = st.incomingSnapshot;
    return this.counters.list(
      acked,
      inc === null ? null : { id: inc.id, received: inc.received, from: this.incomingFrom },
    );
  }

  /** Counters of refused chunks and snapshots and of snapshot bytes sent, since start. */
  totals(): { corruptChunks: number; refusedSnapshots: number; bytesSent: number } {
    const c = this.counters;
    return {
      corruptChunks: c.corruptChunks,
      refusedSnapshots: c.refusedSnapshots,
      bytesSent: c.bytesSentTotal,
    };
  }
}
