// What every configuration field means, and the reference table of docs/CONFIG.md rendered
// from it. The table is typed over every field config.ts accepts, so a new field does not
// compile until it is described here, and test/server/config-reference.test.ts fails until
// docs/CONFIG.md shows it (REWRITE=1 regenerates the table).

import {
  type ConfigField,
  configDefaults,
  configFields,
  envVarName,
  numericFields,
} from './config.js';
import { tlsFieldDocs } from './tls-config.js';

interface FieldDoc {
  readonly meaning: string;
  /** What values are accepted; numeric fields take their bounds from config.ts. */
  readonly values?: string;
  /** The default when not set; otherwise configDefaults' value. */
  readonly default?: string;
}

const fieldDocs: { readonly [F in ConfigField]: FieldDoc } = {
  id: {
    meaning:
      "This node's id; one of the members' ids. `host-ordinal`: the trailing number of the host name plus one (`flotilla-0` is 1), so that the pods of a StatefulSet share one configuration.",
    values: 'integer in [1, 2147483648], or `host-ordinal`',
    default: 'required',
  },
  clusterId: {
    meaning: 'Sent in the peer handshake: peers of another cluster are refused.',
    values: '1-64 of `A-Z a-z 0-9 . _ -`',
  },
  dataDir: {
    meaning:
      "This node's log, hard state and snapshots; created if missing. One process per directory.",
    values: 'a directory path (relative: to the working directory)',
    default: 'required',
  },
  initialCluster: {
    meaning:
      'The voting members, comma-separated: `id=peerHost:peerPort@clientURL`. The client URL lets any node forward writes to the leader.',
    values: '1 to 9 members; ids and peer addresses distinct',
    default: 'required (or `members`)',
  },
  members: {
    meaning:
      "The members as a list of `{id, peer, client}` mappings (in a file); a string is read as `initialCluster`. One setting with `initialCluster`: a layer gives one or the other, and a later layer replaces an earlier one whichever it gives (a flag `--initial-cluster` replaces a file's `members`).",
    values: 'as `initialCluster`',
    default: '`initialCluster`',
  },
  listenPeer: {
    meaning: 'Where to listen for peers.',
    values: '`host:port`',
    default: "this node's member peer address",
  },
  listenClient: {
    meaning: 'Where to serve the HTTP API.',
    values: '`host:port`',
    default: "host and port of this node's client URL (80 or 443 when it names none)",
  },
  storage: {
    meaning: 'Storage backend: write-ahead log files, or SQLite (docs/STORAGE.md).',
    values: '`wal`, `sqlite`',
  },
  walSync: {
    meaning:
      'How the WAL storage of the node\'s Raft groups becomes durable: `per-group`, each group\'s appends synced in its own log; `shared`, the appends of every group gathered during one sync written and synced once, through one journal in the data directory (docs/STORAGE.md, "The node journal"). Needs `storage` `wal`. Either way, a journal left by an earlier run is replayed at start.',
    values: '`per-group`, `shared`',
    default: '`per-group`',
  },
  logLevel: {
    meaning: 'Least severe log level written.',
    values: '`fatal`, `error`, `warn`, `info`, `debug`, `trace`, `silent`',
  },
  logFormat: {
    meaning:
      '`pretty`: one line per record with local clock times; `json`: one JSON object per line (`time` in epoch milliseconds); `auto`: `pretty` on a terminal, `json` otherwise.',
    values: '`auto`, `json`, `pretty`',
  },
  placement: {
    meaning:
      'Whether the meta group\'s leader runs the placement loop: it gives each range from 3 on `replicasPerRange` replicas, moves them off nodes being drained (`flotilla node drain`) and evens out the replicas and leaders per node, one step at a time but for drain moves, up to four at once (docs/DESIGN.md, "Placement").',
    values: '`on`, `off` (or a boolean)',
  },
  quiesce: {
    meaning:
      'Quiescing idle groups (docs/DESIGN.md, "Quiescing idle groups"): once every member of a group holds its whole log, committed and applied, with nothing pending, the leader sends one last heartbeat that says so and the group stops its heartbeats and timers until a write, a read or any message wakes it. A quiesced leader\'s lease counts as expired, so a lease read wakes the group and takes a heartbeat round first. Failure detection moves to the node: each node sends every peer node a heartbeat each heartbeat interval, and a peer silent for an election timeout wakes the groups it led here, which then elect after one more election timeout. Turn it on on every member or none: a member without it stays awake and campaigns in a quiesced group, which wakes it again.',
    values: '`on`, `off` (or a boolean)',
  },
  placementEveryMs: {
    meaning:
      'How often the placement loop looks at the range map when it has nothing to do; it goes straight on to the next step after one succeeds. A range whose step failed waits this times 2, 4, ... up to 64.',
  },
  placementStepTimeoutMs: {
    meaning:
      'How long one placement step (moving a replica, say: the new one must catch up first) may take before the loop abandons it and plans again.',
  },
  replicasPerRange: {
    meaning:
      'The replicas the placement loop gives each range split off range 0; one on every member when there are fewer members. A drain never takes a range below this (it waits, reported blocked) unless forced (`flotilla node drain --force`). Ranges 0, 1 and 2 run on every member.',
  },
  unsafeTestMode: {
    meaning:
      "Breaks linearizability on purpose, to prove the fault-injection checker catches it: `local-reads` skips ReadIndex, `early-ack` answers writes before they commit, `stale-tokens` takes a queue report under its job's current claim whatever token the worker sent. Never in production.",
    values: '`none`, `local-reads`, `early-ack`, `stale-tokens`',
    default: '`none`',
  },
  tickMs: { meaning: 'Milliseconds per Raft tick, the unit of the two timeouts below.' },
  electionTicks: {
    meaning: 'Election timeout in ticks: a follower campaigns after a random [e, 2e) ticks.',
  },
  heartbeatTicks: { meaning: "The leader's heartbeat interval in ticks; below `electionTicks`." },
  leaseDriftTicks: {
    meaning:
      'Lease reads (`"consistency": "lease"`): the bound on how far members\' clocks may drift apart over one election timeout, in ticks, plus one tick for tick granularity; below `electionTicks`. A leader\'s lease lasts `electionTicks - leaseDriftTicks` ticks from the heartbeat a majority answered. A leader counts its lease in real time, so a pause does not extend it; a clock that drifts more than this, or is stepped back, can serve a stale lease read (API.md). 0 turns the lease off: lease reads then cost a ReadIndex round.',
    default: 'a third of `electionTicks`, rounded up (5)',
  },
  livenessGraceMs: {
    meaning:
      "A leader's heartbeats come from its main thread; when a loaded machine does not run that thread, or a full garbage collection stops it, for longer than an election timeout, the followers would elect a new leader though the old one is about to go on. A small thread with its own connections sends the leader's heartbeats (they commit nothing and confirm no read) while the main thread has not ticked for a heartbeat interval, for at most this many milliseconds; past that the followers elect as usual, so a leader stuck for good is still replaced. 0: no such thread.",
  },
  compactionKeepRevisions: {
    meaning:
      'The key-value store keeps the versions writes replaced, for reads at a past revision; the leader compacts that history so at least this many revisions stay readable (and a watch can resume from them), within `compactionKeepBytes`. 0 turns this rule off; with every rule off the history grows with every write.',
  },
  compactionKeepMs: {
    meaning:
      'As `compactionKeepRevisions`, by time: the leader keeps every revision made in this many milliseconds of its clock (checked every second). 0 turns this rule off. With both rules on, a revision stays while either keeps it.',
  },
  compactionKeepBytes: {
    meaning:
      "The history is held in memory: the leader also compacts each range's history to at most this many bytes of keys and values (`flotilla_kv_history_bytes`), even when that leaves fewer revisions than the two rules above keep, so that rewriting large values cannot fill a node's memory (10,000 revisions of a 1 MiB value are 10 GiB). A read or a watch from a revision compacted so is refused `410 COMPACTED`, as after any compaction. 0 turns this bound off.",
  },
  storeQuotaBytes: {
    meaning:
      'The key-value store is held in memory: once the keys and values this node holds (every range it runs, live versions and history, `flotilla_kv_store_bytes`) reach this many bytes, a write that puts is refused `507 STORE_FULL` with nothing written, as etcd refuses writes past its backend quota; deletes, compaction and reads go on, so an operator can make room. A node\'s memory is several times this (the Raft log, snapshots, the process): size it below the memory the node may use (PRODUCTION.md, "Sizing"). 0 turns the quota off.',
  },
  rangeSplitKeys: {
    meaning:
      "Automatic splits (DESIGN.md, \"Automatic splits\"): a range's leader splits it at its middle key once it holds this many keys; 0 turns this rule off. **Off by default on purpose**: a store of more than one range refuses leases, backups and compaction to one revision (`MULTIPLE_RANGES`), and a split is refused while the store holds a lease (`LEASES_HELD`), so turn it on only where none of those is used. A split's apply holds every replica's event loop (16-68 ms at 100,000-256,000 keys: BENCHMARKS.md), hence the bound; 50,000 to 100,000 keeps it short.",
  },
  rangeSplitBytes: {
    meaning:
      "As `rangeSplitKeys`, by size: a range's leader splits it at its middle key (by count) once its live keys and values hold this many bytes. 0 turns this rule off.",
  },
  rangeSplitWritesPerSec: {
    meaning:
      "As `rangeSplitKeys`, by load: a range's leader splits it once the write transactions it applies per second (a rate decaying over about 5 s) stay above this for `rangeSplitLoadWindowMs`, at the key that best halves its latest 128 writes; not at all when no key does (the writes go to one key). 0 turns this rule off.",
  },
  rangeSplitLoadWindowMs: {
    meaning:
      'How long the writes of a range must stay above `rangeSplitWritesPerSec` before it is split (checked every second).',
  },
  rangeSplitCooldownMs: {
    meaning:
      'A range split automatically is not split again by the automatic rules for this long, nor is the range split off it, nor one that was over a threshold but could not be split; so a range still over a threshold just after its split does not split again at once. One node carries out one automatic split at a time.',
  },
  maxWatches: {
    meaning:
      'Watches (`POST /v1/watch`) open on this node at once; one more is refused `429 OVERLOADED`. 0 refuses every watch.',
  },
  maxWatchBufferBytes: {
    meaning:
      "Bytes of a watch's stream its reader may leave unread; past it the watch is cancelled `WATCH_TOO_SLOW` with the revision to resume from, rather than buffered without bound.",
  },
  join: {
    meaning:
      "Client URLs of running members (comma-separated). With an empty data directory the node asks the cluster to add it as a learner, takes the cluster id and the members from the answer, and is promoted to voter once caught up; `initialCluster` (or `advertisePeer` and `advertiseClient`) then names only this node. A node the cluster says is a member already (its data directory was lost) recovers as a node that lost its data. This node's own URL in the list is skipped, so every member can be given the same list. Ignored once the directory holds the node's identity.",
    values: 'URLs',
    default: 'none (not joining)',
  },
  authTokensFile: {
    meaning:
      'Turns client authentication on: a YAML or JSON file listing the accepted bearer tokens, each with a name and a role (`read`, `write` or `admin`), by SHA-256 digest or as the token (docs/API.md, "Authentication"). Read again when it changes. Unset: every request is served without a token. Needs `authNodeTokenFile`.',
    values: 'a file path',
    default: 'none (no authentication)',
  },
  authNodeTokenFile: {
    meaning:
      "A file holding the token this node presents on the calls it makes to other members (status, member lists, removal notices, joins); it must be an `admin` token of `authTokensFile`. Forwarded requests carry their caller's token instead.",
    values: 'a file path',
    default: 'none',
  },
  learnerPromoteLagEntries: {
    meaning:
      "The leader promotes a joined learner to voter once the learner's log is within this many entries of its own, in each Raft group.",
  },
  emptyStartWaitMs: {
    meaning:
      "How long a node whose data directory is empty and whose `initialCluster` names only itself (a cluster's first member, bootstrapped alone) waits for a member holding a log to dial it before it starts a new cluster. Members that joined it dial it within the peers' longest reconnect delay (5 s); if one does, this node lost its data and recovers instead of starting a second cluster under the same id. More than 5 s, or the first start of a one-member cluster can still take a restart of a lost member for a new cluster.",
  },
  initialClusterState: {
    meaning:
      'How a node whose data directory is empty decides that its cluster is new rather than that it lost its data (docs/DESIGN.md, "A node that lost its data"). `auto`: once every other member on its `initialCluster` has answered that it holds nothing, so a first start waits until all are up, and two wiped members of three wait for the third instead of starting an empty cluster beside it. `new`: once a majority, itself included, has (a first start with members missing); a member that holds a log still makes it recover, but members that are down or slow are not waited for, so two wiped members of three can start a second cluster: remove it after the first start, as etcd\'s `initial-cluster-state`. Any member holding a log, or recovering lost data, makes an empty node recover either way.',
    values: '`auto`, `new`',
  },
  advertisePeer: {
    meaning:
      "This node's peer address as the others reach it (a DNS name in a container: `flotilla-0.flotilla:7001`). With `advertiseClient`, it names this node alone instead of `initialCluster`, as a node that joins (or the bootstrap member) does.",
    values: '`host:port`',
    default: 'none (`initialCluster` names this node)',
  },
  advertiseClient: {
    meaning: "This node's client URL as the others reach it; goes with `advertisePeer`.",
    values: 'URL',
    default: 'none (`initialCluster` names this node)',
  },
  bootstrapMember: {
    meaning:
      'The member that starts the cluster when no one answers its join (docs/PRODUCTION.md, "Bootstrap"). With `join` and an empty data directory, that member starts a new cluster of its `initialCluster` once no member at the join URLs has answered anything for `bootstrapWaitMs`; every other node keeps asking. Any answer means the cluster exists: a member whose data was lost is told its id is a voter that held a log, and recovers. Every member can be given the same value. 0: none.',
  },
  bootstrapWaitMs: {
    meaning:
      'How long the bootstrap member asks the join URLs, without an answer, before it starts a new cluster.',
  },
  snapshotEveryEntries: {
    meaning:
      'Snapshot the state machine and compact the log at every index that is a multiple of this: the same indexes on every node, so a new leader can resume the snapshot transfer its predecessor began.',
  },
  snapshotLogPercent: {
    meaning:
      "At such a multiple, snapshot only once the entries applied since the last snapshot hold at least this percentage of its bytes, so a large state is not copied in full every `snapshotEveryEntries` (the log kept between snapshots is then about this share of the state's size); 0: at every multiple.",
  },
  snapshotEncodePercent: {
    meaning:
      'The largest share of the time since a snapshot began, in percent, that encoding it may take: it pauses between chunks to stay under it, so the requests served meanwhile keep the rest of the event loop (every member snapshots at the same indexes, all at once). A lower value makes a large snapshot take longer and hold more pre-images of keys written meanwhile; 100: as fast as the event loop allows.',
  },
  snapshotChunkBytes: {
    meaning:
      'Bytes of one snapshot chunk sent to a follower: the unit a transfer is acknowledged, resent and resumed in (a lost chunk, a restart or a leader change mid-transfer costs about one); it must fit a peer frame.',
  },
  requestTimeoutMs: {
    meaning: 'How long a write or a linearizable read may wait in a node before `TIMEOUT`.',
  },
  maxKeyBytes: {
    meaning:
      'Largest key, in bytes, this node admits. Members may differ: each applies what the log committed whatever its own limit, so a limit can be raised one member at a time (a member with a smaller one refuses such keys from its clients, reads included).',
  },
  maxValueBytes: {
    meaning:
      'Largest value, in bytes, this node admits. Members may differ, as for maxKeyBytes: every member applies a committed value whatever its own limit.',
  },
  maxBodyBytes: {
    meaning:
      'Largest HTTP request body, in bytes; it must hold a put of a key and a value at their limits in base64.',
  },
  httpHeadersTimeoutMs: {
    meaning:
      "A request's headers must arrive within this, from the connection's opening for its first request; else `408 REQUEST_TIMEOUT` and the connection is closed. At most `httpRequestTimeoutMs`.",
  },
  httpRequestTimeoutMs: {
    meaning:
      'The whole request, body included, must arrive within this (waiting for the answer is not counted).',
  },
  httpIdleTimeoutMs: {
    meaning:
      'A connection idle this long between requests is closed (advertised as `Keep-Alive: timeout=`; Node closes 1 s after it).',
  },
  maxInflightRequests: {
    meaning:
      'Client requests (reads and writes, forwarded ones included) a node holds at once, from arrival to answer; one more is refused at once with `429 OVERLOADED` and `Retry-After`, unread and certainly not applied. Bounds the work each turn of the event loop does, so heartbeats keep their time, and the latency of what is admitted.',
  },
  maxInflightBytes: {
    meaning:
      'Body bytes of the client requests a node holds at once; past it, as `maxInflightRequests`. At least `maxBodyBytes`.',
  },
  maxInflightAgeMs: {
    meaning:
      'While the oldest client request in a node (counted from when its body arrived) has taken longer than this, new ones are refused `429 OVERLOADED`, until the backlog drains: latency stays near this bound instead of growing to `requestTimeoutMs`.',
  },
  maxInflightWaitMs: {
    meaning:
      'A client request past `maxInflightRequests`, `maxInflightBytes` or `maxInflightAgeMs` waits up to this long for a slot, in arrival order and unread, before it is refused `429 OVERLOADED`; at most four times `maxInflightRequests` wait at once, the rest are refused at once. A burst of new clients is then served as slots free instead of being sent away for seconds. 0: refused at once.',
  },
  clientProtocolPort: {
    meaning:
      'Port of the binary client protocol (length-prefixed msgpack over TCP, many requests in flight per connection; docs/CLIENT-PROTOCOL.md), on the host of `listenClient`. 0: not served. HTTP answers name it, and the client then uses it.',
  },
  clientProtocolMaxInflight: {
    meaning:
      'Requests in flight on one binary protocol connection; one more is answered `OVERLOADED` at once. Node admission (`maxInflightRequests`) applies as well.',
  },
  httpMaxConnections: {
    meaning:
      'HTTP connections open at once; one more is closed as it arrives, while the open ones keep working.',
  },
  ...tlsFieldDocs,
};

function valuesOf(field: ConfigField): string {
  const range = numericFields.find(([name]) => name === field);
  if (range !== undefined) return `integer in [${range[1]}, ${range[2]}]`;
  return fieldDocs[field].values ?? '';
}

function defaultOf(field: ConfigField): string {
  const doc = fieldDocs[field].default;
  if (doc !== undefined) return doc;
  const value = (configDefaults as Record<string, string | number | undefined>)[field];
  if (value === undefined) throw new Error(`Config field ${field} has no documented default`);
  return typeof value === 'number' ? String(value) : `\`${value}\``;
}

/** The rows of the reference table: header first. */
export function configReferenceRows(): string[][] {
  return [
    ['field', 'environment variable', 'values', 'default', 'meaning'],
    ...configFields.map((f) => [
      `\`${f}\``,
      `\`${envVarName(f)}\``,
      valuesOf(f),
      defaultOf(f),
      fieldDocs[f].meaning,
    ]),
  ];
}

/** The table as Markdown, columns padded as the formatter pads them. */
export function renderConfigReference(): string {
  const rows = configReferenceRows().map((r) => r.map((c) => c.replace(/\|/g, '\\|')));
  const widths = (rows[0] ?? []).map((_, i) =>
    Math.max(3, ...rows.map((r) => (r[i] ?? '').length)),
  );
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  const [header, ...body] = rows;
  return [line(header ?? []), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}
