// `flotilla cluster up`: a local cluster as child processes on loopback, for trying Flotilla
// and for tests. It restarts nothing silently: a node that exits is reported, and the others
// keep running. Ctrl-C (or SIGTERM) stops every node it started, by PID, and waits for them;
// if this process dies without doing so, its nodes stop by themselves.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MembersResponse, NodeStatus } from '../api/types.js';
import { renderMembers } from './member.js';
import { humanize } from '../server/logging.js';
import { StartupError, checkListenable, prepareDataDir } from '../server/startup.js';
import { IDENTITY_FILE, readIdentity } from '../server/data-dir.js';
import { LOCK_FILE, pidAlive } from '../storage/index.js';
import { UsageError } from './usage-error.js';

export interface ClusterUpOptions {
  readonly nodes: number;
  readonly dataDir: string;
  readonly host: string;
  readonly peerPortBase: number;
  readonly clientPortBase: number;
  /** First port of the binary client protocol, one per node; 0 or absent: not served. */
  readonly binaryPortBase?: number;
  readonly storage: 'wal' | 'sqlite';
  readonly logLevel: string;
  readonly clusterId: string;
  /** Extra flags passed to every `flotilla start`. */
  readonly extraArgs?: readonly string[];
  /**
   * Whether the ports were given (--peer-port, --client-port, --binary-port); false: cluster
   * up's defaults, which every `cluster up` started without them shares. Only for messages.
   */
  readonly portsGiven?: boolean;
  readonly out?: (line: string) => void;
  /** Commands, one a line (`add`, `start N`, `remove N`, `list`): default standard input. */
  readonly control?: NodeJS.ReadableStream;
}

export interface LocalMember {
  readonly id: number;
  readonly peer: string;
  readonly client: string;
  readonly dataDir: string;
}

export const maxLocalNodes = 9;
const maxPort = 65_535;

/** The members of a local cluster; refuses options that could not work before anything starts. */
export function planCluster(o: ClusterUpOptions): LocalMember[] {
  const members = Array.from({ length: o.nodes }, (_, i) => localMember(o, i + 1));
  if (!Number.isInteger(o.nodes) || o.nodes < 1 || o.nodes > maxLocalNodes)
    throw new UsageError(`--nodes must be an integer from 1 to ${maxLocalNodes}, got ${o.nodes}`);
  const ranges: [string, number][] = [
    ['--peer-port', o.peerPortBase],
    ['--client-port', o.clientPortBase],
  ];
  if ((o.binaryPortBase ?? 0) !== 0) ranges.push(['--binary-port', o.binaryPortBase as number]);
  for (const [flag, base] of ranges) {
    if (!Number.isInteger(base) || base < 1 || base + o.nodes - 1 > maxPort)
      throw new UsageError(
        `${flag} ${base} with ${o.nodes} node(s) needs ports ${base}..${base + o.nodes - 1}; ports must be in 1..${maxPort}`,
      );
  }
  ranges.forEach(([flag, base], i) => {
    for (const [otherFlag, other] of ranges.slice(i + 1))
      if (Math.abs(base - other) < o.nodes)
        throw new UsageError(
          `${flag} ${base} and ${otherFlag} ${other} overlap with ${o.nodes} node(s): each needs ${o.nodes} consecutive ports`,
        );
  });
  return members;
}

/** Member `id` of a local cluster: its ports follow the bases, its directory is node<id>. */
/** A member's line: its id, addresses (the binary port when served) and process. */
function memberLine(o: ClusterUpOptions, m: LocalMember, pid: number | undefined): string {
  const binaryBase = o.binaryPortBase ?? 0;
  return (
    `node ${m.id}: client ${m.client}  peer ${m.peer}` +
    (binaryBase === 0 ? '' : `  binary ${o.host}:${binaryBase + m.id - 1}`) +
    `  pid ${pid ?? '?'}`
  );
}

function localMember(o: ClusterUpOptions, id: number): LocalMember {
  return {
    id,
    peer: `${o.host}:${o.peerPortBase + id - 1}`,
    client: `http://${o.host}:${o.clientPortBase + id - 1}`,
    dataDir: resolve(join(o.dataDir, `node${id}`)),
  };
}

/**
 * Checks every port of the plan can be bound now, and names each one that cannot: a cluster
 * started on ports another cluster holds would ask that cluster whether it is ready.
 */
export async function checkPorts(
  members: readonly LocalMember[],
  /** The binary client protocol's first port, one per node (0: not served). */
  binary: { readonly host: string; readonly portBase: number } = { host: '', portBase: 0 },
): Promise<void> {
  const problems: string[] = [];
  for (const m of members) {
    const ports: [string, string][] = [
      [m.peer, `the peer port of node ${m.id}`],
      [new URL(m.client).host, `the client port of node ${m.id}`],
    ];
    if (binary.portBase !== 0)
      ports.push([
        `${binary.host}:${binary.portBase + m.id - 1}`,
        `the binary client port of node ${m.id}`,
      ]);
    for (const [address, purpose] of ports) {
      try {
        await checkListenable(address, purpose);
      } catch (err) {
        if (!(err instanceof StartupError)) throw err;
        problems.push(`  ${err.message}`);
      }
    }
  }
  if (problems.length > 0)
    throw new StartupError(
      'ADDRESS_IN_USE',
      `Cannot start the cluster; nothing was started:\n${problems.join('\n')}\n` +
        'Stop what holds these ports, or choose others with --peer-port' +
        (binary.portBase !== 0 ? ', --client-port and --binary-port.' : ' and --client-port.'),
    );
}

function binaryPorts(o: ClusterUpOptions): { host: string; portBase: number } {
  return { host: o.host, portBase: o.binaryPortBase ?? 0 };
}

export function initialClusterSpec(members: readonly LocalMember[]): string {
  return members.map((m) => `${m.id}=${m.peer}@${m.client}`).join(',');
}

/** The path of this CLI's entry point, for spawning nodes. */
export function cliEntry(): string {
  return fileURLToPath(new URL('./main.js', import.meta.url));
}

export function startArgs(
  m: LocalMember,
  members: readonly LocalMember[],
  o: ClusterUpOptions,
): string[] {
  return [
    cliEntry(),
    'start',
    '--id',
    String(m.id),
    '--data-dir',
    m.dataDir,
    '--initial-cluster',
    initialClusterSpec(members),
    '--cluster-id',
    o.clusterId,
    '--storage',
    o.storage,
    '--log-level',
    o.logLevel,
    // JSON whatever the terminal: this process renders the lines, prefixed with the node.
    '--log-format',
    'json',
    ...((o.binaryPortBase ?? 0) === 0
      ? []
      : ['--client-protocol-port', String((o.binaryPortBase as number) + m.id - 1)]),
    ...(o.extraArgs ?? []),
  ];
}

/**
 * The live process holding a lock in `dataDir` (a group's WAL or SQLite lock, the shared
 * journal's), if any: another cluster, or a node, still running on it.
 */
function lockHolder(dataDir: string): { file: string; pid: number } | null {
  const dirs = [dataDir];
  try {
    for (const e of readdirSync(dataDir, { withFileTypes: true }))
      if (e.isDirectory()) dirs.push(join(dataDir, e.name));
  } catch {
    return null; // missing or unreadable: prepareDataDir says which
  }
  for (const dir of dirs) {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      continue;
    }
    for (const name of names) {
      if (name !== LOCK_FILE && !name.endsWith('.lock')) continue;
      const file = join(dir, name);
      let pid: number;
      try {
        pid = Number.parseInt(readFileSync(file, 'utf8').trim(), 10);
      } catch {
        continue;
      }
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && pidAlive(pid))
        return { file, pid };
    }
  }
  return null;
}

/**
 * Refuses data directories a live process holds, before anything starts: each node would
 * start and die of STORAGE_LOCKED, after the ports had been found free.
 */
function checkDataDirsFree(members: readonly LocalMember[]): void {
  const held = members.flatMap((m) => {
    const h = lockHolder(m.dataDir);
    return h === null ? [] : [`  ${h.file} is held by live process ${h.pid} (node ${m.id})`];
  });
  if (held.length > 0)
    throw new StartupError(
      'DATA_DIR_UNUSABLE',
      `Cannot start the cluster; nothing was started:\n${held.join('\n')}\n` +
        'Another cluster or node still runs on these data directories: stop it, or choose another --data-dir. ' +
        'If the process named is no node (its pid reused after a crash), delete the lock file named.',
    );
}

/** Whether a node's data directory is marked removed from its cluster. */
function markedRemoved(dataDir: string): boolean {
  try {
    return readIdentity(dataDir)?.removed === true;
  } catch {
    return false; // unreadable: said by the node itself as it failed to start
  }
}

export async function clusterUp(o: ClusterUpOptions): Promise<number> {
  const out = o.out ?? ((l: string) => process.stdout.write(l + '\n'));
  const members = planCluster(o);
  /** Whether this run makes every node's directory (for portTakenAdvice). */
  const fresh = members.every((m) => !existsSync(join(m.dataDir, IDENTITY_FILE)));
  // The ports first: a refusal then leaves nothing behind, not even empty node directories.
  await checkPorts(members, binaryPorts(o));
  checkDataDirsFree(members);
  for (const m of members) prepareDataDir(m.dataDir);
  const children = new Map<number, ChildProcess>();
  const pids = new Map<number, number>();
  /** What each node was started with, so that `start N` starts it again the same way. */
  const started = new Map<number, { member: LocalMember; args: string[] }>();
  /** Members removed from the cluster here: their exit is expected. */
  const removed = new Set<number>();
  let stopping = false;
  /** Once the wait for a leader ended, a node that cannot listen no longer ends the cluster. */
  let firstStartOver = false;
  /** Stops every node and ends with `code` (set below, once the process's handlers are). */
  let stopAll: (code: number) => void = () => undefined;
  /**
   * A node of the first start found its port taken: the cluster stops, saying which port and
   * what to do. Left running, the others would wait for a member that never comes, or worse,
   * take the process on that port (another cluster's node, with the same default cluster id)
   * for their peer. Later (`start N`, `add`), the node's own line and exit say enough.
   */
  const onNodeLine = (m: LocalMember, line: string): void => {
    const taken = addressTaken(line);
    if (taken === null || firstStartOver || stopping || !members.includes(m)) return;
    out(`node ${m.id} cannot listen for ${taken.purpose} on ${taken.address}.`);
    out(portTakenAdvice(o, taken.address, fresh));
    stopAll(1);
  };
  const spawnNode = (m: LocalMember, args: string[]): number | undefined => {
    // The IPC channel is the node's tie to this process: should this one end without stopping
    // it (SIGKILL, or a wrapper such as npm that took a SIGTERM and left), the channel closes
    // and the node stops itself (runNode).
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    children.set(m.id, child);
    started.set(m.id, { member: m, args });
    if (child.pid !== undefined) pids.set(m.id, child.pid);
    prefixLines(child, `[node ${m.id}] `, out, (line) => onNodeLine(m, line));
    child.on('exit', (code, signal) => {
      children.delete(m.id);
      if (removed.has(m.id)) out(`node ${m.id} was removed from the cluster and stopped.`);
      else if (markedRemoved(m.dataDir))
        // Removed from elsewhere (flotilla member remove): its directory never starts again,
        // so restarting it, by hand or with "cluster up", would only be refused.
        out(
          `node ${m.id} was removed from the cluster (its data directory says so) and stopped; it never starts again.`,
        );
      else if (!stopping)
        out(
          `node ${m.id} exited (${signal ?? `code ${code}`}); it is not restarted. Type "start ${m.id}" to start it again.`,
        );
    });
    return child.pid;
  };
  for (const m of members) spawnNode(m, startArgs(m, members, o));
  out(
    `Flotilla cluster "${o.clusterId}" with ${members.length} node(s); data under ${resolve(o.dataDir)}`,
  );
  for (const m of members) out(`  ${memberLine(o, m, children.get(m.id)?.pid)}`);
  // Every node serves the dashboard; the first is as good as any.
  out(`Dashboard: ${members[0]?.client}/ (every node serves it at its client URL)`);
  out(
    `Try: curl -s ${members[0]?.client}/v1/kv/put -H 'content-type: application/json' -d '{"key":"hello","value":"world"}'`,
  );
  out(
    'Press Ctrl-C to stop all nodes. Type "add", "start N", "remove N" or "list" to change the cluster.',
  );
  const control = createInterface({ input: o.control ?? process.stdin });
  let nextId = members.length + 1;
  control.on('line', (line) => {
    const running = [...children.keys()].map((id) => localMember(o, id));
    void runControl(line.trim(), {
      options: o,
      running,
      stopped: (id) => (children.has(id) ? undefined : started.get(id)),
      takeId: () => nextId++,
      removed,
      spawnNode,
      out,
    }).catch((err: unknown) => out(`${line.trim()}: ${(err as Error).message}`));
  });
  /** Every node exited with no command to come: the cluster is over, its wait for a leader too. */
  let over = false;
  void announceLeader({
    members,
    pids,
    out,
    stopped: () => stopping || over,
    slow: () => {
      firstStartOver = true;
      out(
        'No leader after 20 s: check the node logs above. Still waiting: "Ready" follows when one leads.',
      );
    },
  }).then(() => {
    firstStartOver = true;
  });

  // Whether a command can still come: while one can, a cluster whose nodes have all exited
  // waits for "start N" (someone killing every node to watch the recovery) rather than exit.
  let controlOpen = true;
  control.on('close', () => (controlOpen = false));
  return new Promise((resolveDone) => {
    let emptySaid = false;
    // Every timer is cleared on the way out, so the process exits once its nodes have.
    const watch = setInterval(() => {
      if (stopping) return;
      if (children.size > 0) {
        emptySaid = false;
        return;
      }
      if (!controlOpen) {
        clearInterval(watch);
        // The wait for a leader kept the process alive for the rest of its 20 s.
        over = true;
        out('All nodes have exited.');
        resolveDone(1);
      } else if (!emptySaid) {
        emptySaid = true;
        out('All nodes have exited. Type "start N" to start one again, or press Ctrl-C to quit.');
      }
    }, 200);
    const stop = (code = 0): void => {
      if (stopping) return;
      stopping = true;
      control.close();
      clearInterval(watch);
      out('Stopping all nodes...');
      for (const c of children.values()) c.kill('SIGTERM');
      const deadline = setTimeout(() => {
        for (const c of children.values()) c.kill('SIGKILL');
      }, 10_000);
      const poll = setInterval(() => {
        if (children.size === 0) {
          clearInterval(poll);
          clearTimeout(deadline);
          resolveDone(code);
        }
      }, 50);
    };
    // `on`, not `once`: under `npm start` a Ctrl-C reaches this process twice (from the
    // terminal and from npm), and a second SIGINT with no listener would end it before its
    // nodes, leaving them running. `stop` acts once.
    stopAll = stop;
    process.on('SIGINT', () => stop());
    process.on('SIGTERM', () => stop());
  });
}

interface ControlContext {
  readonly options: ClusterUpOptions;
  readonly running: readonly LocalMember[];
  /** A node started here that is not running now, with what it was started with. */
  readonly stopped: (id: number) => { member: LocalMember; args: string[] } | undefined;
  readonly takeId: () => number;
  readonly removed: Set<number>;
  readonly spawnNode: (m: LocalMember, args: string[]) => number | undefined;
  readonly out: (line: string) => void;
}

/**
 * One command typed while the cluster runs: `add` starts a node with the next id on the next
 * ports that joins through the running ones (a learner, promoted once caught up); `start N`
 * starts node N again, as it was started here, after it exited; `remove N` removes member N
 * (its process stops by itself); `list` prints the members.
 */
async function runControl(line: string, c: ControlContext): Promise<void> {
  const via = c.running.map((m) => m.client);
  if (line === '') return;
  if (line === 'add') {
    // An id the cluster knows (a member, or one removed and never usable again: perhaps in an
    // earlier run whose directory was deleted since) is skipped, and so is one whose directory
    // a member of an earlier run left.
    const known = await knownIds(via);
    let m = localMember(c.options, c.takeId());
    while (known.has(m.id) || existsSync(join(m.dataDir, IDENTITY_FILE)))
      m = localMember(c.options, c.takeId());
    await checkPorts([m], binaryPorts(c.options));
    prepareDataDir(m.dataDir);
    const pid = c.spawnNode(m, [...startArgs(m, [m], c.options), '--join', via.join(',')]);
    c.out(`${memberLine(c.options, m, pid)}: joining through ${via.join(', ')}`);
    return;
  }
  const start = /^start (\d+)$/.exec(line);
  if (start !== null) {
    const id = Number(start[1]);
    const node = c.stopped(id);
    if (node === undefined) {
      const running = c.running.some((m) => m.id === id);
      c.out(`start ${id}: ${running ? `node ${id} is running` : `no node ${id} was started here`}`);
      return;
    }
    if (c.removed.has(id) || markedRemoved(node.member.dataDir)) {
      c.out(
        `start ${id}: node ${id} was removed from the cluster; its directory never starts again`,
      );
      return;
    }
    await checkPorts([node.member], binaryPorts(c.options));
    const pid = c.spawnNode(node.member, node.args);
    c.out(`${memberLine(c.options, node.member, pid)}: started again`);
    return;
  }
  const remove = /^remove (\d+)$/.exec(line);
  if (remove !== null || line === 'list') {
    const path = remove === null ? 'list' : 'remove';
    const body = remove === null ? {} : { id: Number(remove[1]) };
    if (remove !== null) c.removed.add(Number(remove[1]));
    const res = await fetch(`${via[0] ?? ''}/v1/cluster/members/${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(15_000),
    });
    const json = (await res.json()) as MembersResponse & {
      error?: { code: string; message: string };
    };
    if (json.error !== undefined) {
      if (remove !== null) c.removed.delete(Number(remove[1]));
      c.out(`${line}: ${json.error.code}: ${json.error.message}`);
      return;
    }
    for (const l of renderMembers(json).trimEnd().split('\n')) c.out(l);
    return;
  }
  c.out(`unknown command "${line}": type add, start N, remove N or list`);
}

/**
 * The ids the cluster has given out, members and removed, as the first running node to answer
 * lists them; none when none answers (a join with a removed id is then refused by the cluster
 * itself, `MEMBER_REMOVED`, and the new node exits saying so).
 */
async function knownIds(via: readonly string[]): Promise<Set<number>> {
  for (const url of via) {
    try {
      const res = await fetch(`${url}/v1/cluster/members/list`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
        signal: AbortSignal.timeout(5_000),
      });
      const json = (await res.json()) as Partial<MembersResponse>;
      if (json.members === undefined || json.removed === undefined) continue;
      return new Set([...json.members.map((m) => m.id), ...json.removed]);
    } catch {
      // Try the next node: this one is starting, stopped or slow.
    }
  }
  return new Set();
}

function prefixLines(
  child: ChildProcess,
  prefix: string,
  out: (l: string) => void,
  onLine: (raw: string) => void = () => undefined,
): void {
  for (const stream of [child.stdout, child.stderr]) {
    if (stream === null) continue;
    let buf = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        out(prefix + humanize(line));
        buf = buf.slice(nl + 1);
        onLine(line);
      }
    });
  }
}

/**
 * The port a node could not listen on because another process holds it, from the line a
 * refused `flotilla start` ends with (main.ts: `flotilla: ADDRESS_IN_USE: Cannot listen for
 * <purpose> on <address>: …`, startup.ts listenError); null for any other line.
 */
export function addressTaken(line: string): { purpose: string; address: string } | null {
  const m = /^flotilla: ADDRESS_IN_USE: Cannot listen for (.+) on (\S+): /.exec(line);
  return m === null ? null : { purpose: m[1] as string, address: m[2] as string };
}

/**
 * What to do when a node of the cluster's first start found its port taken, although
 * checkPorts found every port free a moment before: another process took it in between,
 * most likely another `cluster up` started at the same time on the same (default) ports.
 * Data directories made by this run hold these ports in their membership, so other ports
 * need another data directory too; older ones keep their ports.
 */
export function portTakenAdvice(
  o: Pick<ClusterUpOptions, 'dataDir' | 'portsGiven' | 'binaryPortBase'>,
  address: string,
  freshDataDirs: boolean,
): string {
  const flags =
    (o.binaryPortBase ?? 0) !== 0
      ? '--peer-port, --client-port and --binary-port'
      : '--peer-port and --client-port';
  const who =
    o.portsGiven === true
      ? 'another process took it after cluster up found it free'
      : "another process took it after cluster up found it free: these are cluster up's " +
        'default ports, which another "cluster up" (or npm start) started at the same time ' +
        'uses too';
  const what = freshDataDirs
    ? `Stop what holds ${address} and start again, or choose other ports with ${flags}` +
      ` and, as this run made ${resolve(o.dataDir)} for these ports, another --data-dir (or remove it).`
    : `The data under ${resolve(o.dataDir)} was made for these ports: stop what holds ${address} ` +
      'and start again.';
  return `Port ${address} is in use: ${who}. Stopping the cluster. ${what}`;
}

export interface AnnounceOptions {
  readonly members: readonly Pick<LocalMember, 'id' | 'client'>[];
  /** The PID of the process started for each member: only those processes are believed. */
  readonly pids: ReadonlyMap<number, number>;
  readonly out: (line: string) => void;
  readonly stopped: () => boolean;
  readonly timeoutMs?: number;
  /**
   * Called once when `timeoutMs` passed without a leader; the polling then goes on (every
   * second) until one leads or `stopped`. Without it, the polling ends there.
   */
  readonly slow?: () => void;
}

/**
 * Polls the nodes (for `timeoutMs`; with `slow`, until one leads or `stopped`) and says once
 * one of them leads, so people know when to start.
 * Only a node that answers with the id and the PID of the process started for it counts: a
 * stranger answering on the port (another cluster) is named, never taken for a leader.
 * Returns whether a leader was announced.
 */
export async function announceLeader(o: AnnounceOptions): Promise<boolean> {
  const deadline = Date.now() + (o.timeoutMs ?? 20_000);
  const strangers = new Set<number>();
  let late = false;
  while (!o.stopped()) {
    if (!late && Date.now() >= deadline) {
      if (o.slow === undefined) break;
      // A node that loads a large state on a busy machine may take longer: say so, and
      // still say when one leads rather than leave "no leader" as the last word.
      late = true;
      o.slow();
    }
    for (const m of o.members) {
      let st: Partial<NodeStatus>;
      try {
        const res = await fetch(`${m.client}/v1/status`, { signal: AbortSignal.timeout(500) });
        st = (await res.json()) as Partial<NodeStatus>;
      } catch {
        continue; // not up yet
      }
      if (st.id !== m.id || st.pid === undefined || st.pid !== o.pids.get(m.id)) {
        if (!strangers.has(m.id))
          o.out(
            `${m.client} is answered by another process (node ${st.id ?? '?'}, pid ${st.pid ?? '?'}), not node ${m.id} (pid ${o.pids.get(m.id) ?? '?'}) started here`,
          );
        strangers.add(m.id);
        continue;
      }
      if (st.role === 'leader' && st.leader === m.id) {
        o.out(`Ready: node ${m.id} leads; every node accepts reads and writes.`);
        return true;
      }
    }
    await new Promise((r) => setTimeout(r, late ? 1_000 : 200));
  }
  return false;
}
