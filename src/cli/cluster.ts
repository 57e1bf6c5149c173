// `flotilla cluster up`: a local cluster as child processes on loopback, for trying Flotilla
// and for tests. It restarts nothing silently: a node that exits is reported, and the others
// keep running. Ctrl-C (or SIGTERM) stops every node it started, by PID, and waits for them.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface ClusterUpOptions {
  readonly nodes: number;
  readonly dataDir: string;
  readonly host: string;
  readonly peerPortBase: number;
  readonly clientPortBase: number;
  readonly storage: 'wal' | 'sqlite';
  readonly logLevel: string;
  readonly clusterId: string;
  /** Extra flags passed to every `flotilla start`. */
  readonly extraArgs?: readonly string[];
  readonly out?: (line: string) => void;
}

export interface LocalMember {
  readonly id: number;
  readonly peer: string;
  readonly client: string;
  readonly dataDir: string;
}

export function planCluster(o: ClusterUpOptions): LocalMember[] {
  if (!Number.isInteger(o.nodes) || o.nodes < 1 || o.nodes > 9) {
    throw new Error(`--nodes must be an integer from 1 to 9, got ${o.nodes}`);
  }
  return Array.from({ length: o.nodes }, (_, i) => ({
    id: i + 1,
    peer: `${o.host}:${o.peerPortBase + i}`,
    client: `http://${o.host}:${o.clientPortBase + i}`,
    dataDir: resolve(join(o.dataDir, `node${i + 1}`)),
  }));
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
    ...(o.extraArgs ?? []),
  ];
}

export async function clusterUp(o: ClusterUpOptions): Promise<number> {
  const out = o.out ?? ((l: string) => process.stdout.write(l + '\n'));
  const members = planCluster(o);
  const children = new Map<number, ChildProcess>();
  let stopping = false;
  for (const m of members) {
    mkdirSync(m.dataDir, { recursive: true });
    const child = spawn(process.execPath, startArgs(m, members, o), {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.set(m.id, child);
    prefixLines(child, `[node ${m.id}] `, out);
    child.on('exit', (code, signal) => {
      children.delete(m.id);
      if (!stopping)
        out(
          `node ${m.id} exited (${signal ?? `code ${code}`}); it is not restarted. Restart it by hand or run "cluster up" again.`,
        );
    });
  }
  out(
    `Flotilla cluster "${o.clusterId}" with ${members.length} node(s); data under ${resolve(o.dataDir)}`,
  );
  for (const m of members)
    out(
      `  node ${m.id}: client ${m.client}  peer ${m.peer}  pid ${children.get(m.id)?.pid ?? '?'}`,
    );
  out(
    `Try: curl -s ${members[0]?.client}/v1/kv/put -H 'content-type: application/json' -d '{"key":"hello","value":"world"}'`,
  );
  out('Press Ctrl-C to stop all nodes.');
  void announceLeader(members, out, () => stopping);

  return new Promise((resolveDone) => {
    // Every timer is cleared on the way out, so the process exits once its nodes have.
    const watch = setInterval(() => {
      if (children.size === 0 && !stopping) {
        clearInterval(watch);
        out('All nodes have exited.');
        resolveDone(1);
      }
    }, 200);
    const stop = (): void => {
      if (stopping) return;
      stopping = true;
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
          resolveDone(0);
        }
      }, 50);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}

function prefixLines(child: ChildProcess, prefix: string, out: (l: string) => void): void {
  for (const stream of [child.stdout, child.stderr]) {
    if (stream === null) continue;
    let buf = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        out(prefix + humanize(buf.slice(0, nl)));
        buf = buf.slice(nl + 1);
      }
    });
  }
}

const levels: Record<number, string> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
};

/** Renders a pino JSON line as `12:00:01.123 INFO message key=value ...` for people. */
export function humanize(line: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  if (typeof rec['msg'] !== 'string') return line;
  const { level, time, msg, pid: _pid, hostname: _host, node: _node, ...rest } = rec;
  const t = typeof time === 'number' ? new Date(time).toISOString().slice(11, 23) : '';
  const fields = Object.entries(rest)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  return `${t} ${levels[level as number] ?? String(level)} ${msg}${fields ? ' ' + fields : ''}`;
}

/** Polls the nodes (bounded) and says once a leader is elected, so people know when to start. */
async function announceLeader(
  members: readonly LocalMember[],
  out: (l: string) => void,
  stopped: () => boolean,
): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline && !stopped()) {
    for (const m of members) {
      try {
        const res = await fetch(`${m.client}/v1/status`, { signal: AbortSignal.timeout(500) });
        const st = (await res.json()) as { leader?: number };
        if (typeof st.leader === 'number' && st.leader > 0) {
          out(`Ready: node ${st.leader} leads; every node accepts reads and writes.`);
          return;
        }
      } catch {
        // not up yet
      }
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  if (!stopped()) out('No leader after 20 s: check the node logs above.');
}
