// Prometheus metrics of one node (prom-client), on a registry of its own so that several nodes
// in one process (tests) do not collide. Names follow Prometheus conventions: units last.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ProgressState } from '../raft/index.js';
import type { RuntimeEvent } from '../host/runtime-options.js';
import type { LoopDelaySnapshot } from './loop-health.js';

const progressStates: readonly ProgressState[] = ['probe', 'replicate', 'snapshot'];

/** What the gauges read from the node at each scrape (the core's status, plus applied). */
export interface StatusView {
  readonly id: number;
  readonly role: string;
  readonly term: number;
  /** The leader this node knows of (0: none). */
  readonly leader: number;
  readonly commit: number;
  readonly applied: number;
  readonly lastIndex: number;
  /** Per follower, on the leader only. */
  readonly progress: Readonly<
    Record<number, { readonly match: number; readonly next: number; readonly state: ProgressState }>
  >;
}

/** Delays that matter against a 150–300 ms election timeout, from 1 ms to 5 s. */
const delayBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5];

const latencyBuckets = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
];

export class NodeMetrics {
  readonly registry = new Registry();
  readonly proposals: Counter<'outcome'>;
  readonly applied: Counter;
  /** Of those, the entries applied while the group's own write was in flight. */
  readonly appliedDuringWrite: Counter;
  readonly applyLatency: Histogram;
  readonly fsyncLatency: Histogram;
  readonly persistedEntries: Counter;
  /** Durable writes of every group the node runs (ranges, queue, meta), not only range 0's. */
  readonly groupPersists: Counter;
  readonly elections: Counter;
  readonly leaderChanges: Counter;
  readonly messagesSent: Counter<'type'>;
  readonly messagesReceived: Counter<'type'>;
  readonly reads: Counter<'level' | 'outcome'>;
  /** Requests this node sent on to another node (forward.ts), by path: each is a second hop. */
  readonly forwarded: Counter<'path'>;
  /** Reads served by a node that does not lead their range (a linearizable one asks it). */
  readonly followerReads: Counter<'level'>;
  readonly httpRequests: Counter<'route' | 'status'>;
  readonly snapshots: Counter<'kind'>;
  readonly heartbeatRoundTrip: Histogram;
  readonly leaderContactGap: Histogram;
  readonly loopStalls: Counter;
  readonly admission: Counter<'outcome'>;
  /** Steps of the placement loop on this node (while it led the meta group). */
  readonly placementSteps: Counter<'kind' | 'outcome'>;

  constructor(nodeId: number, withDefaults = true) {
    this.registry.setDefaultLabels({ node: String(nodeId) });
    if (withDefaults) collectDefaultMetrics({ register: this.registry, prefix: 'flotilla_' });
    const r = [this.registry];
    this.proposals = new Counter({
      name: 'flotilla_proposals_total',
      help: 'Proposals by outcome',
      labelNames: ['outcome'],
      registers: r,
    });
    this.applied = new Counter({
      name: 'flotilla_applied_entries_total',
      help: 'Entries applied to the state machine',
      registers: r,
    });
    this.appliedDuringWrite = new Counter({
      name: 'flotilla_applied_during_write_entries_total',
      help:
        "Entries applied while the group's own write was in flight, committed by an " +
        'acknowledgement that arrived meanwhile (a part of flotilla_applied_entries_total)',
      registers: r,
    });
    this.applyLatency = new Histogram({
      name: 'flotilla_proposal_apply_seconds',
      help: 'From proposal to applied result',
      buckets: latencyBuckets,
      registers: r,
    });
    this.fsyncLatency = new Histogram({
      name: 'flotilla_persist_seconds',
      help:
        'Duration of one durable write (entries + hard state), from its submission until the ' +
        "group's loop sees it done (after applying what its Ready committed, done meanwhile)",
      buckets: latencyBuckets,
      registers: r,
    });
    this.persistedEntries = new Counter({
      name: 'flotilla_persisted_entries_total',
      help: 'Entries written durably',
      registers: r,
    });
    this.placementSteps = new Counter({
      name: 'flotilla_placement_steps_total',
      help: 'Placement steps (add, remove, move, transfer) this node carried out, by outcome (done, failed)',
      labelNames: ['kind', 'outcome'],
      registers: r,
    });
    this.groupPersists = new Counter({
      name: 'flotilla_group_persists_total',
      help: 'Durable writes (entries + hard state) of all Raft groups on this node',
      registers: r,
    });
    this.elections = new Counter({
      name: 'flotilla_elections_total',
      help: 'Elections this node started',
      registers: r,
    });
    this.leaderChanges = new Counter({
      name: 'flotilla_leader_changes_total',
      help: 'Leader changes seen',
      registers: r,
    });
    this.messagesSent = new Counter({
      name: 'flotilla_messages_sent_total',
      help: 'Raft messages sent by type',
      labelNames: ['type'],
      registers: r,
    });
    this.messagesReceived = new Counter({
      name: 'flotilla_messages_received_total',
      help: 'Raft messages received by type',
      labelNames: ['type'],
      registers: r,
    });
    this.reads = new Counter({
      name: 'flotilla_reads_total',
      help: 'Reads by consistency level and outcome',
      labelNames: ['level', 'outcome'],
      registers: r,
    });
    this.forwarded = new Counter({
      name: 'flotilla_forwarded_requests_total',
      help: 'Requests sent on to another node (the leader of their group or range), by path',
      labelNames: ['path'],
      registers: r,
    });
    this.followerReads = new Counter({
      name: 'flotilla_follower_reads_total',
      help: 'Key-value reads served by a node that does not lead their range, by level',
      labelNames: ['level'],
      registers: r,
    });
    this.httpRequests = new Counter({
      name: 'flotilla_http_requests_total',
      help: 'HTTP requests by route and status',
      labelNames: ['route', 'status'],
      registers: r,
    });
    this.snapshots = new Counter({
      name: 'flotilla_snapshots_total',
      help: 'Snapshots saved or restored',
      labelNames: ['kind'],
      registers: r,
    });
    this.heartbeatRoundTrip = new Histogram({
      name: 'flotilla_heartbeat_round_trip_seconds',
      help: 'Leader only: from a heartbeat sent to its answer stepped into the core',
      buckets: delayBuckets,
      registers: r,
    });
    this.leaderContactGap = new Histogram({
      name: 'flotilla_leader_contact_gap_seconds',
      help: 'Follower only: time between two messages from the leader',
      buckets: delayBuckets,
      registers: r,
    });
    this.loopStalls = new Counter({
      name: 'flotilla_event_loop_stalls_total',
      help: 'Stalls of the event loop long enough to cost an election (the election timeout less a heartbeat interval)',
      registers: r,
    });
    this.admission = new Counter({
      name: 'flotilla_admission_total',
      help: 'Client requests admitted, or refused at once as OVERLOADED',
      labelNames: ['outcome'],
      registers: r,
    });
  }

  /** The build this node runs, and the Node.js it runs on: a gauge of 1 with them as labels. */
  bindBuild(version: string): void {
    new Gauge({
      name: 'flotilla_build_info',
      help: 'The Flotilla version and the Node.js version this node runs (always 1)',
      labelNames: ['version', 'nodejs'],
      registers: [this.registry],
    }).set({ version, nodejs: process.versions.node }, 1);
  }

  /**
   * When the TLS certificate in use stops being valid (Unix seconds): a reloaded certificate
   * shows at the next scrape, so an alert on it less now() sees a rotation that did not happen.
   */
  bindTlsExpiry(read: () => number): void {
    new Gauge({
      name: 'flotilla_tls_certificate_expiry_timestamp_seconds',
      help: "When the node's TLS certificate in use expires, in Unix seconds",
      registers: [this.registry],
      collect() {
        this.set(read());
      },
    });
  }

  /** Heartbeats the liveness lane sent for a silent main thread (transport/liveness.ts). */
  bindLiveness(read: () => number): void {
    let counted = 0;
    new Counter({
      name: 'flotilla_liveness_heartbeats_total',
      help: "Heartbeats the liveness lane's thread sent while this leader's main thread was silent",
      registers: [this.registry],
      collect() {
        const now = read();
        if (now > counted) this.inc(now - counted);
        counted = now;
      },
    });
  }

  /**
   * Event-loop delay since the node started, at the median, the 99th percentile and the
   * maximum (quantile "1"): how late this node's timers, ticks included, fire.
   */
  bindLoopDelay(read: () => LoopDelaySnapshot): void {
    new Gauge({
      name: 'flotilla_event_loop_delay_seconds',
      help: 'Event-loop delay since start by quantile (1: the maximum)',
      labelNames: ['quantile'],
      registers: [this.registry],
      collect() {
        const s = read();
        this.set({ quantile: '0.5' }, s.p50Ms / 1000);
        this.set({ quantile: '0.99' }, s.p99Ms / 1000);
        this.set({ quantile: '1' }, s.maxMs / 1000);
      },
    });
  }

  /**
   * Quiescing (CONFIG.md, `quiesce`): the Raft groups this node runs, quiesced or awake now,
   * and those woken by the node-level failure detection since start.
   */
  bindQuiescing(
    read: () => {
      readonly groups: number;
      readonly quiesced: number;
      readonly wokenBySilence: number;
      readonly stopped: number;
    },
  ): void {
    new Gauge({
      name: 'flotilla_raft_groups',
      help: 'Raft groups this node runs, by state: quiesced (not ticked until woken), awake, or stopped by a storage failure (until the node restarts)',
      labelNames: ['state'],
      registers: [this.registry],
      collect() {
        const s = read();
        this.set({ state: 'quiesced' }, s.quiesced);
        this.set({ state: 'awake' }, s.groups - s.quiesced - s.stopped);
        this.set({ state: 'stopped' }, s.stopped);
      },
    });
    new Gauge({
      name: 'flotilla_quiesce_woken_by_silence',
      help: 'Since start: quiesced groups woken because a peer node was silent for an election timeout, or was heard again',
      registers: [this.registry],
      collect() {
        this.set(read().wokenBySilence);
      },
    });
  }

  /** Client requests holding an admission slot now, and their body bytes. */
  bindAdmission(
    read: () => { readonly requests: number; readonly bytes: number; readonly waiting: number },
  ): void {
    new Gauge({
      name: 'flotilla_admission_waiting',
      help: 'Client requests past the in-flight limits waiting for a slot (maxInflightWaitMs)',
      registers: [this.registry],
      collect() {
        this.set(read().waiting);
      },
    });
    new Gauge({
      name: 'flotilla_admission_in_flight',
      help: 'Client requests admitted and not yet answered (unit: requests or bytes)',
      labelNames: ['unit'],
      registers: [this.registry],
      collect() {
        const s = read();
        this.set({ unit: 'requests' }, s.requests);
        this.set({ unit: 'bytes' }, s.bytes);
      },
    });
  }

  /**
   * Snapshot transfers in progress (bytes the follower holds, the total, bytes moved, chunks,
   * rate) by group, direction and peer; and per group, since start: snapshot bytes sent, chunks
   * refused for a bad checksum, complete snapshots refused for not matching their id.
   */
  bindSnapshotTransfers(
    read: () => {
      readonly transfers: readonly {
        readonly group: number;
        readonly direction: string;
        readonly peer: number;
        readonly totalBytes: number;
        readonly bytesDone: number;
        readonly bytesMoved: number;
        readonly chunks: number;
        readonly bytesPerSec: number;
      }[];
      readonly counters: readonly {
        readonly group: number;
        readonly corruptChunks: number;
        readonly refusedSnapshots: number;
        readonly bytesSent: number;
      }[];
    },
  ): void {
    new Gauge({
      name: 'flotilla_snapshot_transfer_bytes',
      help: 'Snapshot transfers in progress: bytes the follower holds (done), the snapshot (total), chunk bytes moved, resends included (moved)',
      labelNames: ['group', 'direction', 'peer', 'kind'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const t of read().transfers) {
          const l = transferLabels(t);
          this.set({ ...l, kind: 'done' }, t.bytesDone);
          this.set({ ...l, kind: 'total' }, t.totalBytes);
          this.set({ ...l, kind: 'moved' }, t.bytesMoved);
        }
      },
    });
    new Gauge({
      name: 'flotilla_snapshot_transfer_chunks',
      help: 'Snapshot transfers in progress: chunks sent or received, resends included',
      labelNames: ['group', 'direction', 'peer'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const t of read().transfers) this.set(transferLabels(t), t.chunks);
      },
    });
    new Gauge({
      name: 'flotilla_snapshot_transfer_rate_bytes_per_second',
      help: 'Snapshot transfers in progress: chunk bytes moved per second since the transfer began',
      labelNames: ['group', 'direction', 'peer'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const t of read().transfers) this.set(transferLabels(t), t.bytesPerSec);
      },
    });
    new Gauge({
      name: 'flotilla_snapshot_events',
      help: 'Since start, per group: snapshot bytes sent (bytes_sent), chunks refused for a bad checksum (chunks_refused), snapshots refused for not matching their id (snapshots_refused)',
      labelNames: ['group', 'kind'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const c of read().counters) {
          const group = String(c.group);
          this.set({ group, kind: 'bytes_sent' }, c.bytesSent);
          this.set({ group, kind: 'chunks_refused' }, c.corruptChunks);
          this.set({ group, kind: 'snapshots_refused' }, c.refusedSnapshots);
        }
      },
    });
  }

  /** The key-value store's revision, compacted revision and the history held for past reads. */
  bindKvHistory(
    read: () => {
      readonly revision: number;
      readonly compacted: number;
      readonly versions: number;
      readonly bytes: number;
    },
  ): void {
    new Gauge({
      name: 'flotilla_kv_revision',
      help: "The key-value store's revision (kind: current, or compacted: reads below are refused)",
      labelNames: ['kind'],
      registers: [this.registry],
      collect() {
        const s = read();
        this.set({ kind: 'current' }, s.revision);
        this.set({ kind: 'compacted' }, s.compacted);
      },
    });
    new Gauge({
      name: 'flotilla_kv_history_versions',
      help: 'Older versions and deletions the key-value store holds for reads at past revisions',
      registers: [this.registry],
      collect() {
        this.set(read().versions);
      },
    });
    new Gauge({
      name: 'flotilla_kv_history_bytes',
      help: 'Bytes of keys and values in those older versions (compactionKeepBytes bounds them)',
      registers: [this.registry],
      collect() {
        this.set(read().bytes);
      },
    });
  }

  /**
   * Watches this node serves now (over HTTP and the binary protocol, relayed ones included): a
   * count that only grows while clients come and go is a leak.
   */
  bindWatches(count: () => number): void {
    new Gauge({
      name: 'flotilla_watches',
      help: 'Watches open on this node (maxWatches bounds them)',
      registers: [this.registry],
      collect() {
        this.set(count());
      },
    });
  }

  /**
   * Listeners on the open client connections' aborts, by protocol (`http`, `binary`): one per
   * wait of a request in progress that stops when its client leaves. It falls back as requests
   * end; a count that grows while connections sit idle is a leak.
   */
  bindClientAbortListeners(count: () => { http: number; binary: number }): void {
    new Gauge({
      name: 'flotilla_client_abort_listeners',
      help: 'Waits of client requests in progress that stop when their client leaves (listeners on the open connections), by protocol',
      labelNames: ['protocol'],
      registers: [this.registry],
      collect() {
        const c = count();
        this.set({ protocol: 'http' }, c.http);
        this.set({ protocol: 'binary' }, c.binary);
      },
    });
  }

  /** Bytes of keys and values this node holds, live and history: what storeQuotaBytes bounds. */
  bindStoreBytes(read: () => number): void {
    new Gauge({
      name: 'flotilla_kv_store_bytes',
      help: 'Bytes of keys and values this node holds over its ranges, live and history (storeQuotaBytes bounds them)',
      registers: [this.registry],
      collect() {
        this.set(read());
      },
    });
  }

  /** How many ranges (Raft groups of the key-value store) run on this node. */
  bindRanges(count: () => number): void {
    new Gauge({
      name: 'flotilla_ranges',
      help: 'Ranges of the key-value store running on this node (1 until the store first splits)',
      registers: [this.registry],
      collect() {
        this.set(count());
      },
    });
  }

  /**
   * The key-value group's configuration in force here (voters and learners, with the outgoing
   * voters while joint) and, on the leader, the snapshot transfers in progress; the queue group
   * follows it (membership.ts).
   */
  bindMembership(
    read: () => {
      readonly status: {
        readonly voters: readonly number[];
        readonly learners: readonly number[];
        readonly outgoingVoters: readonly number[];
      };
      readonly replication: readonly { readonly snapshot: object | null }[];
    },
  ): void {
    new Gauge({
      name: 'flotilla_members',
      help: 'Members of the key-value group by role (voter, learner, outgoing: voters being left while joint)',
      labelNames: ['role'],
      registers: [this.registry],
      collect() {
        const { status } = read();
        this.set({ role: 'voter' }, status.voters.length);
        this.set({ role: 'learner' }, status.learners.length);
        this.set({ role: 'outgoing' }, status.outgoingVoters.length);
      },
    });
    new Gauge({
      name: 'flotilla_snapshot_transfers',
      help: 'Snapshots this leader is sending to members now',
      registers: [this.registry],
      collect() {
        this.set(read().replication.filter((r) => r.snapshot !== null).length);
      },
    });
  }

  /**
   * Reads the gauges (role, term, commit and applied index) from `status` at each scrape, and
   * on the leader, each follower's replication progress (see `followerGauges`).
   */
  bindStatus(status: () => StatusView): void {
    const read = () => status();
    const r = [this.registry];
    this.followerGauges(read);
    new Gauge({
      name: 'flotilla_is_leader',
      help: '1 if this node leads',
      registers: r,
      collect() {
        this.set(read().role === 'leader' ? 1 : 0);
      },
    });
    new Gauge({
      name: 'flotilla_has_leader',
      help: '1 if this node knows a leader of the key-value group (as etcd_server_has_leader)',
      registers: r,
      collect() {
        this.set(read().leader !== 0 ? 1 : 0);
      },
    });
    new Gauge({
      name: 'flotilla_term',
      help: 'Current term',
      registers: r,
      collect() {
        this.set(read().term);
      },
    });
    new Gauge({
      name: 'flotilla_commit_index',
      help: 'Commit index',
      registers: r,
      collect() {
        this.set(read().commit);
      },
    });
    new Gauge({
      name: 'flotilla_applied_index',
      help: 'Applied index',
      registers: r,
      collect() {
        this.set(read().applied);
      },
    });
  }

  /**
   * The leader's view of each follower (etcd's tracker): the highest index known replicated
   * (match), the next index to send, the progress state, and the lag, the leader's last index
   * minus match. A follower whose lag only grows is not catching up. Empty on other nodes.
   */
  private followerGauges(read: () => StatusView): void {
    const r = [this.registry];
    const followers = () => {
      const st = read();
      return st.role === 'leader'
        ? Object.entries(st.progress)
            .filter(([id]) => Number(id) !== st.id)
            .map(([peer, p]) => ({ peer, ...p, lag: st.lastIndex - p.match }))
        : [];
    };
    const gauge = (
      name: string,
      help: string,
      value: (f: ReturnType<typeof followers>[number]) => number,
    ) =>
      new Gauge({
        name,
        help,
        labelNames: ['peer'],
        registers: r,
        collect() {
          this.reset();
          for (const f of followers()) this.set({ peer: f.peer }, value(f));
        },
      });
    gauge(
      'flotilla_follower_match_index',
      'Leader only: highest index known replicated on the follower',
      (f) => f.match,
    );
    gauge(
      'flotilla_follower_next_index',
      'Leader only: next index the leader sends the follower',
      (f) => f.next,
    );
    gauge(
      'flotilla_follower_lag_entries',
      "Leader only: the leader's last index minus the follower's match index",
      (f) => f.lag,
    );
    new Gauge({
      name: 'flotilla_follower_progress_state',
      help: 'Leader only: 1 for the state the follower is in (probe, replicate, snapshot)',
      labelNames: ['peer', 'state'],
      registers: r,
      collect() {
        this.reset();
        for (const f of followers())
          for (const state of progressStates)
            this.set({ peer: f.peer, state }, f.state === state ? 1 : 0);
      },
    });
  }

  /**
   * Exposes the transport's per-peer frame bytes, summed by direction and message type, so
   * bytes on the wire per committed write can be read from the metrics.
   */
  bindPeerBytes(
    read: () => { direction: 'sent' | 'received'; type: string; bytes: number }[],
  ): void {
    new Gauge({
      name: 'flotilla_peer_bytes',
      help: 'Peer frame bytes by direction and message type since start (a running total)',
      labelNames: ['direction', 'type'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const r of read()) this.inc({ direction: r.direction, type: r.type }, r.bytes);
      },
    });
  }

  /** Folds runtime events into the counters. */
  observe(e: RuntimeEvent): void {
    switch (e.kind) {
      case 'persisted':
        this.fsyncLatency.observe(e.durationMs / 1000);
        this.persistedEntries.inc(e.entries);
        return;
      case 'applied':
        this.applied.inc(e.entries);
        if (e.duringWrite) this.appliedDuringWrite.inc(e.entries);
        return;
      case 'leader-changed':
        this.leaderChanges.inc();
        return;
      case 'snapshot-saved':
        this.snapshots.inc({ kind: 'saved' });
        return;
      case 'snapshot-restored':
        this.snapshots.inc({ kind: 'restored' });
        return;
      case 'raft':
        if (e.event.kind === 'become-candidate') this.elections.inc();
        return;
      case 'fatal':
        return;
    }
  }
}

/** The labels of one snapshot transfer's gauges. */
function transferLabels(t: {
  readonly group: number;
  readonly direction: string;
  readonly peer: number;
}) {
  return { group: String(t.group), direction: t.direction, peer: String(t.peer) };
}
