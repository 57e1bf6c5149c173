// Configuration of one Flotilla node: from a file (YAML or JSON), environment variables
// (FLOTILLA_*) and flags, in rising precedence. Every field is validated with a message that
// names the field, what was expected and the value seen; unknown fields are refused so a typo
// never silently falls back to a default.

import { closestName } from '../base/closest.js';
import { decimalOrAsIs } from '../base/decimal.js';
import { joinHostPort, parseHostPort, splitHostPort } from '../base/host-port.js';
import { ConfigError } from './config-error.js';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseDocument, visit, type Scalar } from 'yaml';
import {
  LimitsError,
  MAX_CONFIGURED_KEY_BYTES,
  MAX_CONFIGURED_VALUE_BYTES,
  checkLimits,
  defaultLimits,
  type LimitEncodings,
  type Limits,
} from '../base/limits.js';
import { maxWriteEnvelopeBytes } from '../kv/machine.js';
import { resolveNodeAuth, type NodeAuth } from './auth-tokens.js';
import {
  TlsConfigError,
  resolveTlsConfig,
  tlsFields,
  type TlsConfig,
  type TlsField,
} from './tls-config.js';

export interface Member {
  readonly id: number;
  /** host:port of the peer (Raft) listener. */
  readonly peer: string;
  /** Base URL of the client (HTTP) listener, e.g. http://127.0.0.1:8001. */
  readonly client: string;
}

export interface NodeConfig {
  readonly id: number;
  readonly clusterId: string;
  readonly dataDir: string;
  readonly members: readonly Member[];
  /** Where this node listens for peers; default: its own member entry's peer address. */
  readonly listenPeer: string;
  /** Where this node serves HTTP; default: its own member entry's client address. */
  readonly listenClient: string;
  readonly storage: 'wal' | 'sqlite';
  /**
   * How the WAL storage of this node's groups becomes durable: `per-group`, each group's
   * appends synced in its own log; `shared`, the appends of every group gathered during one
   * sync go through one node journal (docs/STORAGE.md, "The node journal"). WAL storage only.
   */
  readonly walSync: 'per-group' | 'shared';
  readonly tickMs: number;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  /**
   * Lease reads (DESIGN.md, "Lease reads"): the bound on clock drift between members over one
   * election timeout, in ticks, plus one for tick granularity; below `electionTicks`. 0 turns
   * the lease off (a lease read then takes a ReadIndex round).
   */
  readonly leaseDriftTicks: number;
  /**
   * How long a leader whose main thread is silent keeps its followers from electing, through
   * the liveness lane's thread (transport/liveness.ts); 0: no lane.
   */
  readonly livenessGraceMs: number;
  readonly snapshotEveryEntries: number;
  /**
   * A snapshot is taken at such a multiple only once the log since the last one holds this
   * percentage of its size (RuntimeOptions.snapshotLogRatio × 100); 0: at every multiple.
   */
  readonly snapshotLogPercent: number;
  /**
   * The largest percentage of the time since a snapshot began that encoding it may take
   * (RuntimeOptions.snapshotEncodeShare × 100); 100: as fast as the event loop allows.
   */
  readonly snapshotEncodePercent: number;
  /** Bytes of one snapshot chunk sent to a follower: the unit a transfer resumes in. */
  readonly snapshotChunkBytes: number;
  /** The leader compacts the key-value history to keep at least this many revisions; 0: off. */
  readonly compactionKeepRevisions: number;
  /** The leader compacts the key-value history to keep at least this much time; 0: off. */
  readonly compactionKeepMs: number;
  /** The leader compacts a range's history to at most this many bytes, over the rules above; 0: off. */
  readonly compactionKeepBytes: number;
  /** Writes that put are refused STORE_FULL once this node's key-value data reaches this; 0: off. */
  readonly storeQuotaBytes: number;
  /** A range's leader splits it once it holds this many keys; 0: off. */
  readonly rangeSplitKeys: number;
  /** A range's leader splits it once its keys and values hold this many bytes; 0: off. */
  readonly rangeSplitBytes: number;
  /** A range's leader splits it once its writes per second stay above this; 0: off. */
  readonly rangeSplitWritesPerSec: number;
  /** How long the writes must stay above `rangeSplitWritesPerSec`. */
  readonly rangeSplitLoadWindowMs: number;
  /** A range split automatically (and its new half) is not split again for this long. */
  readonly rangeSplitCooldownMs: number;
  /** Watches open on this node at once; one more is refused OVERLOADED. */
  readonly maxWatches: number;
  /** Bytes a watch may leave unread before it is cancelled WATCH_TOO_SLOW. */
  readonly maxWatchBufferBytes: number;
  readonly requestTimeoutMs: number;
  readonly maxKeyBytes: number;
  readonly maxValueBytes: number;
  readonly maxBodyBytes: number;
  /**
   * Derived, not set: the most bytes one write takes in the log (a key and a value at their
   * limits in the command envelope). The Raft core refuses larger proposals; the API refuses
   * them first, so a client never sees the core's refusal.
   */
  readonly maxProposalBytes: number;
  /**
   * Every size limit of the node (src/base/limits.ts), its relations checked: the ones above
   * and the defaults of those a config file does not set (storage, peer frames, sessions).
   */
  readonly limits: Limits;
  /** A connection must send a request's headers within this, or it is answered 408 and closed. */
  readonly httpHeadersTimeoutMs: number;
  /** A connection must send a whole request (headers and body) within this. */
  readonly httpRequestTimeoutMs: number;
  /** A keep-alive connection idle this long between requests is closed. */
  readonly httpIdleTimeoutMs: number;
  /** Client connections open at once; connections past it are closed on arrival. */
  readonly httpMaxConnections: number;
  /** Client requests (reads and writes) in this node at once; more are refused OVERLOADED. */
  readonly maxInflightRequests: number;
  /** Body bytes of the client requests in this node at once; more are refused OVERLOADED. */
  readonly maxInflightBytes: number;
  /** New client requests are refused OVERLOADED while the oldest has taken longer than this. */
  readonly maxInflightAgeMs: number;
  /**
   * A client request past the in-flight limits waits up to this long for a slot, in arrival
   * order, before it is refused OVERLOADED (0: refused at once). At most four times
   * maxInflightRequests wait at once.
   */
  readonly maxInflightWaitMs: number;
  /**
   * The port of the binary client protocol (docs/CLIENT-PROTOCOL.md), on the host of
   * `listenClient`; 0: not served.
   */
  readonly clientProtocolPort: number;
  /** Requests in flight on one binary protocol connection; more are refused OVERLOADED. */
  readonly clientProtocolMaxInflight: number;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** `auto`: human-readable on a terminal, JSON lines otherwise. */
  readonly logFormat: 'auto' | 'json' | 'pretty';
  /**
   * Deliberately unsafe behaviour for proving the fault-injection checker can fail; never for
   * production: `local-reads` serves every read without ReadIndex, `early-ack` acknowledges
   * writes as soon as they are proposed, before they commit, `stale-tokens` lets a queue
   * worker's report through under whatever claim its job has now (no fencing).
   */
  readonly unsafeTestMode: 'none' | 'local-reads' | 'early-ack' | 'stale-tokens';
  /**
   * Client URLs of running members to join through, when the data directory is empty: the node
   * asks the cluster to add it as a learner and takes the cluster id and the members from the
   * answer. Empty: not joining (the members are `initialCluster`).
   */
  readonly join: readonly string[];
  /** The leader promotes a joined learner once its log is within this many entries of its own. */
  readonly learnerPromoteLagEntries: number;
  /**
   * How long a node whose data directory is empty and whose `initialCluster` names only itself
   * waits for a member holding a log to dial it before it starts a new cluster (DESIGN.md, "A
   * node that lost its data").
   */
  readonly emptyStartWaitMs: number;
  /**
   * How a node with an empty data directory decides that the cluster is new (startup.ts):
   * `auto`, once every other member on its command line answered that it holds nothing; `new`,
   * once a majority did (a first start with members missing; unsafe once the cluster holds
   * data).
   */
  readonly initialClusterState: 'auto' | 'new';
  /** The tokens clients must present (docs/API.md, "Authentication"); empty: no authentication. */
  readonly authTokensFile: string;
  /** The file holding the admin token this node presents to the other members. */
  readonly authNodeTokenFile: string;
  /** Derived from the two files, checked: the tokens and the node's own; null when off. */
  readonly auth: NodeAuth | null;
  /**
   * The member that starts a new cluster when it joins and no one answers (0: none). With
   * `join`, an empty data directory and this node's id, the node bootstraps a cluster of its
   * `initialCluster` once no member at the join URLs answered for `bootstrapWaitMs`; every
   * other node keeps asking. The same value can be given to every member.
   */
  readonly bootstrapMember: number;
  /** How long the bootstrap member asks the join URLs before it starts a new cluster. */
  readonly bootstrapWaitMs: number;
  /** TLS on both ports, mutual between peers (tls-config.ts); null: plain TCP and HTTP. */
  readonly tls: TlsConfig | null;
  /** Whether the meta group's leader runs the placement loop (placement-loop.ts). */
  readonly placement: 'on' | 'off';
  /**
   * Quiescing idle groups (DESIGN.md, "Quiescing idle groups"; RaftConfig.quiesce): an idle
   * group stops its heartbeats and timers until something wakes it. On every member or none.
   */
  readonly quiesce: 'on' | 'off';
  /** How often the placement loop looks at the range map when it has nothing to do. */
  readonly placementEveryMs: number;
  /** How long one placement step (a move, say) may take before the loop abandons it. */
  readonly placementStepTimeoutMs: number;
  /** The replicas the placement loop gives each range from 3 on (fewer with fewer members). */
  readonly replicasPerRange: number;
}

export { ConfigError } from './config-error.js';

export const configDefaults = {
  clusterId: 'flotilla',
  storage: 'wal',
  tickMs: 10,
  electionTicks: 15,
  heartbeatTicks: 5,
  /** Unset, a third of electionTicks rounded up: this is that third of the default 15. */
  leaseDriftTicks: 5,
  livenessGraceMs: 1_000,
  snapshotEveryEntries: 10_000,
  snapshotLogPercent: 50,
  snapshotEncodePercent: 25,
  snapshotChunkBytes: defaultLimits.maxSnapshotChunkBytes,
  compactionKeepRevisions: 10_000,
  compactionKeepMs: 0,
  compactionKeepBytes: 256 * 1024 * 1024,
  storeQuotaBytes: 2 * 1024 * 1024 * 1024,
  rangeSplitKeys: 0,
  rangeSplitBytes: 0,
  rangeSplitWritesPerSec: 0,
  rangeSplitLoadWindowMs: 30_000,
  rangeSplitCooldownMs: 60_000,
  maxWatches: 10_000,
  maxWatchBufferBytes: 4 * 1024 * 1024,
  requestTimeoutMs: 5_000,
  maxKeyBytes: defaultLimits.maxKeyBytes,
  maxValueBytes: defaultLimits.maxValueBytes,
  maxBodyBytes: defaultLimits.maxBodyBytes,
  httpHeadersTimeoutMs: 5_000,
  httpRequestTimeoutMs: 30_000,
  httpIdleTimeoutMs: 10_000,
  httpMaxConnections: 8_192,
  maxInflightRequests: 256,
  maxInflightBytes: 64 * 1024 * 1024,
  maxInflightAgeMs: 1_000,
  maxInflightWaitMs: 1_000,
  clientProtocolPort: 0,
  clientProtocolMaxInflight: 1_024,
  learnerPromoteLagEntries: 1_000,
  emptyStartWaitMs: 6_000,
  initialClusterState: 'auto',
  bootstrapMember: 0,
  bootstrapWaitMs: 10_000,
  placement: 'on',
  quiesce: 'off',
  placementEveryMs: 5_000,
  placementStepTimeoutMs: 120_000,
  replicasPerRange: 3,
  logLevel: 'info',
  logFormat: 'auto',
} as const;

type Raw = Record<string, unknown>;

/** Integer fields with their inclusive bounds. */
export const numericFields = [
  ['tickMs', 1, 10_000],
  ['electionTicks', 2, 10_000],
  ['heartbeatTicks', 1, 10_000],
  ['leaseDriftTicks', 0, 10_000],
  ['livenessGraceMs', 0, 60_000],
  ['snapshotEveryEntries', 10, 1e9],
  ['snapshotLogPercent', 0, 100_000],
  ['snapshotEncodePercent', 1, 100],
  ['snapshotChunkBytes', 1024, 64 * 1024 * 1024],
  ['compactionKeepRevisions', 0, 1e12],
  ['compactionKeepMs', 0, 1e11],
  ['compactionKeepBytes', 0, 1e15],
  ['storeQuotaBytes', 0, 1e15],
  // A split's apply moves half the range's keys on every replica's event loop: 16-68 ms at
  // 100,000 to 256,000 keys, more with history (BENCHMARKS.md, "Range splits"). Past this a
  // range would split only after it had grown to where a split costs an election timeout.
  ['rangeSplitKeys', 0, 250_000],
  ['rangeSplitBytes', 0, 2 ** 40],
  ['rangeSplitWritesPerSec', 0, 10_000_000],
  ['rangeSplitLoadWindowMs', 1_000, 86_400_000],
  ['rangeSplitCooldownMs', 0, 86_400_000],
  ['maxWatches', 0, 1_000_000],
  ['maxWatchBufferBytes', 1024, 2 ** 32],
  ['requestTimeoutMs', 1, 3_600_000],
  ['maxKeyBytes', 1, MAX_CONFIGURED_KEY_BYTES],
  ['maxValueBytes', 1, MAX_CONFIGURED_VALUE_BYTES],
  ['maxBodyBytes', 1024, 128 * 1024 * 1024],
  ['httpHeadersTimeoutMs', 10, 600_000],
  ['httpRequestTimeoutMs', 10, 3_600_000],
  ['httpIdleTimeoutMs', 10, 3_600_000],
  ['httpMaxConnections', 1, 1_000_000],
  ['maxInflightRequests', 1, 1_000_000],
  ['maxInflightBytes', 1024, 2 ** 40],
  ['maxInflightAgeMs', 1, 3_600_000],
  ['maxInflightWaitMs', 0, 60_000],
  ['clientProtocolPort', 0, 65_535],
  ['clientProtocolMaxInflight', 1, 65_536],
  ['learnerPromoteLagEntries', 0, 1e9],
  ['emptyStartWaitMs', 0, 600_000],
  ['bootstrapMember', 0, 2 ** 31],
  ['bootstrapWaitMs', 0, 3_600_000],
  ['placementEveryMs', 100, 3_600_000],
  ['placementStepTimeoutMs', 1_000, 3_600_000],
  // The meta group's limit on a range's replicas.
  ['replicasPerRange', 1, 15],
] as const;

/** The sizes of the encodings between a node's layers, for checkLimits. */
export const nodeLimitEncodings: LimitEncodings = {
  writeEntryBytes: (l) => maxWriteEnvelopeBytes(l),
  // Room in a peer frame for an append's fields and the entries' own fields beside the data.
  appendOverheadBytes: 1024 * 1024,
  // Field names, flags, session fields and punctuation of a put's JSON body.
  putBodyOverheadBytes: 1024,
};

const otherFields = [
  'id',
  'clusterId',
  'dataDir',
  'members',
  'initialCluster',
  'listenPeer',
  'listenClient',
  'storage',
  'walSync',
  'logLevel',
  'logFormat',
  'unsafeTestMode',
  'join',
  'authTokensFile',
  'authNodeTokenFile',
  'advertisePeer',
  'advertiseClient',
  'placement',
  'quiesce',
  'initialClusterState',
] as const;

/** Every field a config file may hold; each is documented in docs/CONFIG.md. */
export type ConfigField =
  (typeof otherFields)[number] | (typeof numericFields)[number][0] | TlsField;

export const configFields: readonly ConfigField[] = [
  ...otherFields,
  ...numericFields.map(([n]) => n),
  ...tlsFields,
];

const knownFields = new Set<string>(configFields);

/** The environment variable of a field: dataDir -> FLOTILLA_DATA_DIR. */
export function envVarName(field: ConfigField): string {
  return 'FLOTILLA_' + field.replace(/[A-Z]/g, (c) => '_' + c).toUpperCase();
}

/** Reads a YAML or JSON config file (by extension; YAML is a superset of JSON anyway). */
export function readConfigFile(path: string): Raw {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`Cannot read config file ${path}: ${(err as Error).message}`);
  }
  const doc = parseDocument(text);
  const [error] = doc.errors;
  if (error !== undefined)
    throw new ConfigError(`Config file ${path} is not valid YAML/JSON: ${error.message}`);
  // YAML reads 0x10, 0o17 and 1e3 as numbers: a setting is decimal in a file as in its
  // environment variable, so that a typo never becomes another value silently.
  let odd: Scalar | null = null;
  visit(doc, {
    Scalar(_key, node) {
      const source = node.source as unknown;
      if (
        odd === null &&
        node.type === 'PLAIN' &&
        typeof node.value === 'number' &&
        typeof source === 'string' &&
        !/^-?\d+(\.\d+)?$/.test(source)
      )
        odd = node;
    },
  });
  if (odd !== null) {
    const n: Scalar = odd;
    const line = text.slice(0, n.range?.[0] ?? 0).split('\n').length;
    throw new ConfigError(
      `Config file ${path}, line ${line}: ${String(n.source)} is not a decimal number (digits, with a minus sign or a fraction); write it in decimal, or quote it if it is text`,
    );
  }
  const parsed: unknown = doc.toJS();
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError(`Config file ${path} must hold a mapping of settings`);
  }
  return parsed as Raw;
}

/**
 * FLOTILLA_* variables that are not a node's settings: those the command line's client
 * commands read (the cluster, the token), those it sets for the commands it runs (a job's, a
 * lock holder's), the image the compose files run (read by the shell that starts them), and
 * the file where the container image has `start` note where it serves, for its health check.
 */
export const clientEnvVars: readonly string[] = [
  'FLOTILLA_ENDPOINTS',
  'FLOTILLA_TOKEN',
  'FLOTILLA_JOB_ID',
  'FLOTILLA_JOB_TOKEN',
  'FLOTILLA_LOCK_KEY',
  'FLOTILLA_LOCK_KEY_BASE64',
  'FLOTILLA_LOCK_TOKEN',
  'FLOTILLA_IMAGE',
  'FLOTILLA_SERVING_FILE',
];

/**
 * FLOTILLA_* variables the project's own tests and benchmarks read: set for a test run, they
 * reach every node it starts, which should not warn of them (a test checks this list is whole).
 */
export const testEnvVars: readonly string[] = [
  'FLOTILLA_CONTAINER_CACHE',
  'FLOTILLA_CONTAINER_TESTS',
  'FLOTILLA_CRASH_PLANT',
  'FLOTILLA_CRASH_RUNS',
  'FLOTILLA_CRASH_SEED',
  'FLOTILLA_MAP_REPAIR',
  'FLOTILLA_NETNS_TESTS',
  'FLOTILLA_PROPERTY_SEED',
  'FLOTILLA_TEST_STALL_MS',
];

/**
 * The FLOTILLA_* variables of `env` that nothing reads, each with the one it most likely meant,
 * if any: a misspelt setting would otherwise be ignored without a word (etcd warns the same
 * way). In name order.
 */
export function unknownEnvVars(env: NodeJS.ProcessEnv): { name: string; meant?: string }[] {
  const known = [...configFields.map(envVarName), ...clientEnvVars];
  const knownSet = new Set([...known, ...testEnvVars]);
  return Object.keys(env)
    .filter((name) => name.startsWith('FLOTILLA_') && !knownSet.has(name))
    .sort()
    .map((name) => {
      const meant = closestName(name, known);
      return meant === undefined ? { name } : { name, meant };
    });
}

/** FLOTILLA_ID, FLOTILLA_DATA_DIR, FLOTILLA_INITIAL_CLUSTER, ... -> config fields. */
export function configFromEnv(env: NodeJS.ProcessEnv): Raw {
  const out: Raw = {};
  for (const field of configFields) {
    const v = env[envVarName(field)];
    if (v !== undefined && v !== '') out[field] = v;
  }
  return out;
}

/**
 * Parses `1=127.0.0.1:7001@http://127.0.0.1:8001,2=...`: each member's id, peer address and
 * client URL (the client URL lets any node forward writes to the leader).
 */
export function parseInitialCluster(spec: string): Member[] {
  const members: Member[] = [];
  for (const part of spec
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const m = /^(\d+)=([^@\s]+)@(https?:\/\/\S+)$/.exec(part);
    if (m === null) {
      throw new ConfigError(
        `initialCluster entry "${part}" must look like 1=127.0.0.1:7001@http://127.0.0.1:8001`,
      );
    }
    members.push({
      id: Number(m[1]),
      peer: m[2] as string,
      client: (m[3] as string).replace(/\/$/, ''),
    });
  }
  return members;
}

export function resolveNodeConfig(...layers: Raw[]): NodeConfig {
  const merged: Raw = {};
  for (const [i, layer] of layers.entries()) {
    if (typeof layer !== 'object' || layer === null || Array.isArray(layer))
      throw new ConfigError(
        `Config layer ${i + 1} must be an object of fields, got ${layer === null ? 'null' : Array.isArray(layer) ? 'an array' : typeof layer}`,
      );
    if (layer['members'] !== undefined && layer['initialCluster'] !== undefined)
      throw new ConfigError(
        `Config layer ${i + 1} gives both members and initialCluster: they are one setting, give one`,
      );
    for (const [k, v] of Object.entries(layer)) {
      if (v === undefined) continue;
      if (!knownFields.has(k)) {
        const meant = closestName(k, configFields);
        throw new ConfigError(
          `Unknown config field "${k}"${meant === undefined ? '' : ` (did you mean "${meant}"?)`}`,
        );
      }
      // A YAML field with nothing after its colon: a setting half written, not the default.
      if (v === null)
        throw new ConfigError(
          `${k} has no value; give one, or leave the field out for its default`,
        );
      // One setting in two spellings: a later layer's replaces an earlier layer's either way.
      if (k === 'members') delete merged['initialCluster'];
      if (k === 'initialCluster') delete merged['members'];
      merged[k] = v;
    }
  }
  if (merged['id'] === undefined)
    throw new ConfigError(
      'id is required: this node\'s id, one of the members\' (--id, FLOTILLA_ID or "id" in the config file)',
    );
  const id =
    merged['id'] === hostOrdinal
      ? idFromHostname(hostname())
      : toInt(merged['id'], 'id', 1, 2 ** 31);
  const members = resolveMembers(merged, id);
  const self = members.find((m) => m.id === id);
  if (self === undefined)
    throw new ConfigError(
      `id ${id} is not among the members (${members.map((m) => m.id).join(', ')})`,
    );
  const numbers = Object.fromEntries(
    numericFields.map(([name, min, max]) => [
      name,
      toInt(merged[name] ?? configDefaults[name], name, min, max),
    ]),
  ) as Record<(typeof numericFields)[number][0], number>;
  if (numbers.heartbeatTicks >= numbers.electionTicks) {
    throw new ConfigError(
      `heartbeatTicks (${numbers.heartbeatTicks}) must be below electionTicks (${numbers.electionTicks})`,
    );
  }
  // Unset, the bound follows the election timeout (a third of it, 5 of the default 15), so a
  // config that shortens the timeout does not have to set it too.
  if (merged['leaseDriftTicks'] === undefined)
    numbers.leaseDriftTicks = Math.ceil(numbers.electionTicks / 3);
  if (numbers.leaseDriftTicks >= numbers.electionTicks) {
    throw new ConfigError(
      `leaseDriftTicks (${numbers.leaseDriftTicks}) must be below electionTicks (${numbers.electionTicks}): it would leave no lease (0 turns lease reads off)`,
    );
  }
  const limits = resolveLimits(numbers);
  const storage = str(merged['storage'], 'storage', configDefaults.storage);
  if (storage !== 'wal' && storage !== 'sqlite')
    throw new ConfigError(`storage must be "wal" or "sqlite", got "${storage}"`);
  const walSync = str(merged['walSync'], 'walSync', 'per-group');
  if (walSync !== 'per-group' && walSync !== 'shared')
    throw new ConfigError(`walSync must be "per-group" or "shared", got "${walSync}"`);
  if (walSync === 'shared' && storage !== 'wal')
    throw new ConfigError('walSync "shared" needs storage "wal"');
  const logLevel = str(merged['logLevel'], 'logLevel', configDefaults.logLevel);
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) {
    throw new ConfigError(`logLevel "${logLevel}" is not a pino level`);
  }
  const logFormat = str(merged['logFormat'], 'logFormat', configDefaults.logFormat);
  if (logFormat !== 'auto' && logFormat !== 'json' && logFormat !== 'pretty')
    throw new ConfigError(`logFormat must be auto, json or pretty, got "${logFormat}"`);
  const unsafeTestMode = str(merged['unsafeTestMode'], 'unsafeTestMode', 'none');
  if (
    unsafeTestMode !== 'none' &&
    unsafeTestMode !== 'local-reads' &&
    unsafeTestMode !== 'early-ack' &&
    unsafeTestMode !== 'stale-tokens'
  ) {
    throw new ConfigError(
      `unsafeTestMode must be none, local-reads, early-ack or stale-tokens, got "${unsafeTestMode}"`,
    );
  }
  const dataDir = merged['dataDir'];
  if (dataDir !== undefined && typeof dataDir !== 'string')
    throw new ConfigError(`dataDir must be a directory path, got ${JSON.stringify(dataDir)}`);
  if (dataDir === undefined || dataDir === '')
    throw new ConfigError('dataDir is required (a directory path)');
  const clusterId = str(merged['clusterId'], 'clusterId', configDefaults.clusterId);
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(clusterId))
    throw new ConfigError(`clusterId "${clusterId}" must be 1-64 of [A-Za-z0-9._-]`);
  const join = resolveJoin(merged['join']);
  const authTokensFile = str(merged['authTokensFile'], 'authTokensFile', '');
  const authNodeTokenFile = str(merged['authNodeTokenFile'], 'authNodeTokenFile', '');
  const auth = resolveNodeAuth(authTokensFile, authNodeTokenFile);
  const tls = resolveTls(merged, members, join);
  const initialClusterState = str(
    merged['initialClusterState'],
    'initialClusterState',
    configDefaults.initialClusterState,
  );
  if (initialClusterState !== 'auto' && initialClusterState !== 'new')
    throw new ConfigError(`initialClusterState must be auto or new, got "${initialClusterState}"`);
  const placement = onOff(merged['placement'], 'placement', configDefaults.placement);
  const quiesce = onOff(merged['quiesce'], 'quiesce', configDefaults.quiesce);
  const listenPeer = listenAddress(merged['listenPeer'], 'listenPeer', self.peer);
  const listenClient = listenAddress(
    merged['listenClient'],
    'listenClient',
    urlHostPort(self.client),
  );
  checkOwnPortsApart(listenPeer, listenClient, numbers.clientProtocolPort);
  return {
    initialClusterState,
    placement,
    quiesce,
    tls,
    join,
    id,
    clusterId,
    dataDir,
    members,
    listenPeer,
    listenClient,
    storage,
    walSync,
    logLevel: logLevel as NodeConfig['logLevel'],
    logFormat,
    unsafeTestMode,
    ...numbers,
    maxProposalBytes: limits.maxProposalBytes,
    limits,
    authTokensFile,
    authNodeTokenFile,
    auth,
  };
}

/**
 * The node's limits: the configured ones, the proposal limit derived from them (the most bytes
 * one write of a key and a value at their limits takes in the log, so a write the API accepted
 * is never refused by the core), and the defaults of the rest; their relations checked
 * (src/base/limits.ts), and the one between the HTTP time limits.
 */
function resolveLimits(n: Record<(typeof numericFields)[number][0], number>): Limits {
  const set = {
    ...defaultLimits,
    maxKeyBytes: n.maxKeyBytes,
    maxValueBytes: n.maxValueBytes,
    maxBodyBytes: n.maxBodyBytes,
    maxSnapshotChunkBytes: n.snapshotChunkBytes,
  };
  const limits: Limits = { ...set, maxProposalBytes: maxWriteEnvelopeBytes(set) };
  try {
    checkLimits(limits, nodeLimitEncodings);
  } catch (err) {
    if (err instanceof LimitsError) throw new ConfigError(err.message);
    throw err;
  }
  if (n.maxInflightBytes < n.maxBodyBytes) {
    throw new ConfigError(
      `maxInflightBytes (${n.maxInflightBytes}) must hold at least one request at the body limit (maxBodyBytes ${n.maxBodyBytes})`,
    );
  }
  if (n.httpHeadersTimeoutMs > n.httpRequestTimeoutMs) {
    throw new ConfigError(
      `httpHeadersTimeoutMs (${n.httpHeadersTimeoutMs}) must not exceed httpRequestTimeoutMs (${n.httpRequestTimeoutMs})`,
    );
  }
  return limits;
}

/**
 * `id: host-ordinal`: the id is the trailing number of the host name plus one, so that the pods
 * of a Kubernetes StatefulSet (`flotilla-0`, `flotilla-1`, ...) share one configuration.
 */
export const hostOrdinal = 'host-ordinal';

/** `flotilla-0` -> 1, `db-12` -> 13; a host name without a trailing `-N` is refused. */
export function idFromHostname(name: string): number {
  const m = /-(\d{1,9})$/.exec(name);
  if (m === null)
    throw new ConfigError(
      `id "${hostOrdinal}" needs a host name ending in -N (a StatefulSet pod's, like flotilla-0), got "${name}"`,
    );
  return toInt(String(Number(m[1]) + 1), `id (from host name "${name}")`, 1, 2 ** 31);
}

/**
 * This node's own member entry from `advertisePeer` and `advertiseClient`, when they are given
 * instead of `initialCluster` (a node that joins, or bootstraps alone, names only itself).
 */
function advertisedSelf(merged: Raw, id: number): Member[] | null {
  const peer = merged['advertisePeer'];
  const client = merged['advertiseClient'];
  if (peer === undefined && client === undefined) return null;
  if (typeof peer !== 'string' || typeof client !== 'string')
    throw new ConfigError(
      `advertisePeer (host:port) and advertiseClient (URL) go together, got ${JSON.stringify(peer)} and ${JSON.stringify(client)}`,
    );
  if (merged['members'] !== undefined || merged['initialCluster'] !== undefined)
    throw new ConfigError(
      'advertisePeer and advertiseClient name this node alone: give them or initialCluster (members), not both',
    );
  return [{ id, peer, client: client.replace(/\/$/, '') }];
}

function resolveMembers(merged: Raw, id: number): Member[] {
  const raw = merged['members'] ?? merged['initialCluster'];
  let members: Member[];
  const advertised = advertisedSelf(merged, id);
  if (advertised !== null) members = advertised;
  else if (merged['initialCluster'] !== undefined && typeof raw !== 'string')
    throw new ConfigError(
      `initialCluster must be a string such as 1=127.0.0.1:7001@http://127.0.0.1:8001,... ` +
        `(a list of mappings is given as members), got ${JSON.stringify(raw)}`,
    );
  else if (typeof raw === 'string') members = parseInitialCluster(raw);
  else if (Array.isArray(raw)) {
    members = raw.map((m: unknown, i) => {
      if (m === null || typeof m !== 'object')
        throw new ConfigError(`members[${i}] must be a mapping`);
      const r = m as Raw;
      for (const k of Object.keys(r))
        if (!['id', 'peer', 'client'].includes(k))
          throw new ConfigError(`members[${i}] has unknown field "${k}"`);
      if (typeof r['peer'] !== 'string' || typeof r['client'] !== 'string') {
        throw new ConfigError(
          `members[${i}] needs string fields peer (host:port) and client (URL)`,
        );
      }
      return {
        id: toInt(r['id'], `members[${i}].id`, 1, 2 ** 31),
        peer: r['peer'],
        client: r['client'].replace(/\/$/, ''),
      };
    });
  } else
    throw new ConfigError(
      'initialCluster is required (or advertisePeer and advertiseClient), e.g. 1=127.0.0.1:7001@http://127.0.0.1:8001,...',
    );
  if (members.length === 0) throw new ConfigError('initialCluster lists no members');
  if (members.length > 9)
    throw new ConfigError(`At most 9 voting members are supported, got ${members.length}`);
  const ids = new Set<number>();
  for (const m of members) {
    if (ids.has(m.id)) throw new ConfigError(`initialCluster lists member id ${m.id} twice`);
    ids.add(m.id);
  }
  const peers = new Map<string, number>();
  for (const m of members) {
    if (parseHostPort(m.peer, 1) === null)
      throw new ConfigError(
        `Member ${m.id} peer "${m.peer}" must be host:port (an IPv6 host in brackets) with a port in [1, 65535]`,
      );
    try {
      new URL(m.client);
    } catch {
      throw new ConfigError(`Member ${m.id} client "${m.client}" is not a URL`);
    }
    // Two members at one address would each take the other's connections: every handshake is
    // refused (wrong node id) for ever, and the cluster never forms.
    const peer = m.peer.toLowerCase();
    const samePeer = peers.get(peer);
    if (samePeer !== undefined)
      throw new ConfigError(`members ${samePeer} and ${m.id} both have peer address ${m.peer}`);
    peers.set(peer, m.id);
  }
  return members;
}

/**
 * Refuses what resolveNodeConfig did not make, before a node uses it: a program in plain
 * JavaScript passing its own object (`{ id, dataDir, initialCluster }`) failed deep in
 * start-up (the logger's "default level:undefined must be included in custom levels").
 */
export function checkResolvedConfig(c: unknown): asserts c is NodeConfig {
  const o = (typeof c === 'object' && c !== null ? c : {}) as Record<string, unknown>;
  const wrong =
    typeof c !== 'object' || c === null
      ? 'it is not an object'
      : !Number.isSafeInteger(o['id'])
        ? 'id'
        : !Array.isArray(o['members'])
          ? 'members'
          : (['dataDir', 'listenPeer', 'listenClient', 'storage', 'logLevel', 'logFormat'].find(
              (k) => typeof o[k] !== 'string',
            ) ?? numericFields.map(([k]) => k).find((k) => typeof o[k] !== 'number'));
  if (wrong !== undefined)
    throw new ConfigError(
      `A node takes the config resolveNodeConfig makes (docs/CLIENT.md, "Embedding a node"); this one ${wrong === 'it is not an object' ? 'is not an object' : `has no valid ${wrong}`}${'initialCluster' in o ? ': it has initialCluster, which resolveNodeConfig turns into members, so pass it through resolveNodeConfig({ ... }) first' : ''}`,
    );
}

/**
 * A client URL's host and port, the port spelled out when the URL leaves it to its scheme
 * (80, 443): `new URL(u).host` drops a default port, and a node then listened on port NaN.
 */
function urlHostPort(u: string): string {
  const url = new URL(u);
  const port = url.port !== '' ? url.port : url.protocol === 'https:' ? '443' : '80';
  return `${url.hostname}:${port}`;
}

const wildcardHosts = new Set(['0.0.0.0', '::', '']);

/**
 * A node's own listeners on one port: the second would fail to bind only after the node had
 * set up its data directory (and, peer and client on one port, after it had elected itself),
 * with a message blaming another process. Refused here, before anything is touched. Port 0
 * (any free port) never collides.
 */
function checkOwnPortsApart(listenPeer: string, listenClient: string, binaryPort: number): void {
  type Listener = { readonly name: string; readonly host: string; readonly port: number };
  const client = splitHostPort(listenClient);
  const listeners: Listener[] = [
    { name: 'listenPeer', ...splitHostPort(listenPeer) },
    { name: 'listenClient', ...client },
  ];
  if (binaryPort !== 0)
    listeners.push({ name: 'clientProtocolPort', host: client.host, port: binaryPort });
  for (const [i, a] of listeners.entries())
    for (const b of listeners.slice(i + 1)) {
      const sameHost = a.host === b.host || wildcardHosts.has(a.host) || wildcardHosts.has(b.host);
      if (a.port !== 0 && a.port === b.port && sameHost)
        throw new ConfigError(
          `${a.name} (${joinHostPort(a.host, a.port)}) and ${b.name} (${joinHostPort(b.host, b.port)}) are the same port: each of a node's listeners needs its own`,
        );
    }
}

/** A listen address: `host:port` (an IPv6 host in brackets), the port from 0 to 65535. */
function listenAddress(v: unknown, name: string, fallback: string): string {
  if (v === undefined) return fallback;
  if (typeof v !== 'string' || parseHostPort(v) === null)
    throw new ConfigError(
      `${name} must be host:port (an IPv6 host in brackets, a port from 0 to 65535), got ${typeof v === 'string' ? `"${v}"` : typeof v}`,
    );
  return v;
}

function resolveTls(
  merged: Raw,
  members: readonly Member[],
  join: readonly string[],
): TlsConfig | null {
  try {
    return resolveTlsConfig(merged, [
      ...members.map((m) => ({ what: `member ${m.id}'s client URL`, url: m.client })),
      ...join.map((url) => ({ what: 'a join URL', url })),
    ]);
  } catch (err) {
    if (err instanceof TlsConfigError) throw new ConfigError(err.message);
    throw err;
  }
}

/** `join`: comma-separated client URLs (a string) or a list of them (in a file). */
function resolveJoin(raw: unknown): string[] {
  if (raw === undefined) return [];
  const list =
    typeof raw === 'string'
      ? raw.split(',').map((s) => s.trim())
      : Array.isArray(raw) && raw.every((u) => typeof u === 'string')
        ? raw
        : null;
  if (list === null) throw new ConfigError(`join must be client URLs, got ${JSON.stringify(raw)}`);
  return list
    .filter((u) => u !== '')
    .map((u) => {
      try {
        new URL(u);
      } catch {
        throw new ConfigError(`join address "${u}" is not a URL (e.g. http://127.0.0.1:8001)`);
      }
      return u.replace(/\/$/, '');
    });
}

function toInt(v: unknown, name: string, min: number, max: number): number {
  const n = decimalOrAsIs(v);
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(
      `${name} must be an integer in [${min}, ${max}], got ${typeof v === 'number' ? String(v) : JSON.stringify(v)}`,
    );
  }
  return n;
}

/** `on` or `off`; a YAML or JSON boolean is taken too. */
function onOff(v: unknown, name: string, fallback: 'on' | 'off'): 'on' | 'off' {
  if (v === undefined) return fallback;
  if (v === true || v === 'on' || v === 'true') return 'on';
  if (v === false || v === 'off' || v === 'false') return 'off';
  throw new ConfigError(`${name} must be on or off, got ${JSON.stringify(v)}`);
}

function str(v: unknown, name: string, fallback: string): string {
  if (v === undefined) return fallback;
  if (typeof v !== 'string')
    throw new ConfigError(`${name} must be a string, got ${JSON.stringify(v)}`);
  return v;
}
