// One process of the idle-groups benchmark (idle-groups.ts starts three). It assembles what a
// node assembles for its Raft groups, minus the key-value and queue machines: the TCP
// transport with its liveness lane (as node-setup.ts opens it), one Host, and G groups of the
// same three voters, each on its own WAL directory (the node's default storage kind) with a
// state machine that keeps nothing. The parent drives it over the IPC channel:
//
//   -> { kind: 'census' }              <- { kind: 'census', led, withLeader }
//   -> { kind: 'measure', windowMs, profile }   <- { kind: 'measured', ... }
//   -> { kind: 'stop' }                <- (exits)
//
// Nothing here proposes: the groups only elect, then tick and exchange heartbeats (or, with
// quiescing on, go quiet: the host then sends each peer a node-level heartbeat).

import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';
import { Host } from '../../src/host/host.js';
import { chunkStream, systemClock, type StateMachine } from '../../src/host/contracts.js';
import { createRng } from '../../src/raft/index.js';
import { openWalStorage } from '../../src/storage/index.js';
import { TcpTransport } from '../../src/transport/index.js';

export interface IdleNodeArgs {
  readonly id: number;
  readonly groups: number;
  /** Peer ports of nodes 1..3, in order. */
  readonly ports: readonly number[];
  readonly dataDir: string;
  /** Highest peer protocol version this node offers (0: the build's own). */
  readonly protocolMax: number;
  /** Quiescing on (RaftConfig.quiesce; the node's `quiesce: on`). */
  readonly quiesce: boolean;
}

export type ToNode =
  | { readonly kind: 'census' }
  | { readonly kind: 'measure'; readonly windowMs: number; readonly profileDir: string | null }
  | { readonly kind: 'stop' };

export interface Measured {
  readonly kind: 'measured';
  readonly id: number;
  readonly windowMs: number;
  readonly cpuUserMs: number;
  readonly cpuSystemMs: number;
  readonly rssBytes: number;
  /** Raft messages and bytes (frame bytes) sent to and received from peers in the window. */
  readonly sent: { readonly messages: number; readonly bytes: number; readonly frames: number };
  readonly received: { readonly messages: number; readonly bytes: number };
  readonly led: number;
  /** Groups quiesced here at the end of the window, and woken by silence since start. */
  readonly quiesced: number;
  readonly wokenBySilence: number;
  /** Functions with the most self time in the window, when profiled. */
  readonly profileTop: readonly { readonly fn: string; readonly ms: number }[];
}

export type FromNode =
  | { readonly kind: 'started'; readonly id: number; readonly startMs: number }
  | {
      readonly kind: 'census';
      readonly id: number;
      readonly led: number;
      readonly withLeader: number;
      readonly quiesced: number;
    }
  | Measured;

/** Keeps nothing: the benchmark measures Raft's own upkeep, not a machine's. */
const nothing: StateMachine = {
  apply: (commands) => commands.map(() => null),
  snapshot: () => chunkStream(() => [][Symbol.iterator]()),
  restore: async (chunks) => {
    for await (const _ of chunks) void _;
  },
};

function totals(t: TcpTransport): {
  sent: { messages: number; bytes: number; frames: number };
  received: { messages: number; bytes: number };
} {
  const sent = { messages: 0, bytes: 0, frames: 0 };
  const received = { messages: 0, bytes: 0 };
  for (const p of t.stats().peers.values()) {
    for (const v of Object.values(p.sent)) {
      sent.messages += v.messages;
      sent.bytes += v.bytes;
    }
    for (const v of Object.values(p.received)) {
      received.messages += v.messages;
      received.bytes += v.bytes;
    }
    sent.frames += p.framesSent;
  }
  return { sent, received };
}

/** Self time per function (name, file, line) from a V8 CPU profile, largest first. */
function topSelfTime(profile: {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  samples?: number[];
  timeDeltas?: number[];
}): { fn: string; ms: number }[] {
  const nameOf = new Map<number, string>();
  for (const n of profile.nodes) {
    const file = n.callFrame.url.split('/').pop() ?? '';
    nameOf.set(
      n.id,
      `${n.callFrame.functionName || '(anonymous)'} ${file}:${n.callFrame.lineNumber + 1}`,
    );
  }
  const us = new Map<string, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) {
    const name = nameOf.get(samples[i] as number) ?? '?';
    us.set(name, (us.get(name) ?? 0) + (deltas[i] ?? 0));
  }
  return [...us]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 25)
    .map(([fn, u]) => ({ fn, ms: Math.round(u / 100) / 10 }));
}

async function measure(
  a: IdleNodeArgs,
  host: Host,
  transport: TcpTransport,
  windowMs: number,
  profileDir: string | null,
): Promise<Measured> {
  const session = profileDir === null ? null : new Session();
  if (session !== null) {
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.start');
  }
  const before = totals(transport);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, windowMs));
  const cpu = process.cpuUsage(cpu0);
  const elapsedMs = performance.now() - t0;
  const after = totals(transport);
  let profileTop: { fn: string; ms: number }[] = [];
  if (session !== null && profileDir !== null) {
    const { profile } = await session.post('Profiler.stop');
    session.disconnect();
    writeFileSync(join(profileDir, `node-${a.id}.cpuprofile`), JSON.stringify(profile));
    profileTop = topSelfTime(profile as Parameters<typeof topSelfTime>[0]);
  }
  return {
    kind: 'measured',
    id: a.id,
    windowMs: elapsedMs,
    cpuUserMs: cpu.user / 1000,
    cpuSystemMs: cpu.system / 1000,
    rssBytes: process.memoryUsage().rss,
    sent: {
      messages: after.sent.messages - before.sent.messages,
      bytes: after.sent.bytes - before.sent.bytes,
      frames: after.sent.frames - before.sent.frames,
    },
    received: {
      messages: after.received.messages - before.received.messages,
      bytes: after.received.bytes - before.received.bytes,
    },
    led: host.groups().filter((rt) => rt.isLeader()).length,
    quiesced: host.stats().quiesced,
    wokenBySilence: host.stats().wokenBySilence,
    profileTop,
  };
}

async function main(): Promise<void> {
  const a = JSON.parse(process.argv[2] ?? '{}') as IdleNodeArgs;
  const send = (m: FromNode): void => void process.send?.(m);
  const started = performance.now();
  const peers = new Map(
    a.ports
      .map((port, i) => [i + 1, { host: '127.0.0.1', port }] as const)
      .filter(([id]) => id !== a.id),
  );
  // As node-setup.ts opens it, with the default timing (10 ms ticks, heartbeat every 5).
  const transport = await TcpTransport.listen({
    nodeId: a.id,
    clusterId: 'idle-bench',
    listen: { host: '127.0.0.1', port: a.ports[a.id - 1] as number },
    backoff: { baseMs: 25, maxMs: 1000 },
    peers,
    liveness: { heartbeatMs: 50, graceMs: 1000 },
    ...(a.protocolMax > 0 ? { protocolVersionMax: a.protocolMax } : {}),
  });
  const host = new Host({ id: a.id, transport, clock: systemClock, tickMs: 10 });
  for (let g = 0; g < a.groups; g++) {
    const storage = await openWalStorage(join(a.dataDir, `group-${g}`), {
      snapshotsCoverCompaction: true,
    });
    await host.addGroup(g, {
      voters: [1, 2, 3],
      storage,
      stateMachine: nothing,
      rng: createRng(a.id * 104729 + g * 31 + 1),
      electionTicks: 15,
      heartbeatTicks: 5,
      ...(a.quiesce ? { raft: { quiesce: true } } : {}),
    });
  }
  send({ kind: 'started', id: a.id, startMs: performance.now() - started });
  process.on('message', (m: ToNode) => {
    if (m.kind === 'census') {
      const groups = host.groups();
      send({
        kind: 'census',
        id: a.id,
        led: groups.filter((rt) => rt.isLeader()).length,
        withLeader: groups.filter((rt) => rt.leaderId() !== 0).length,
        quiesced: host.stats().quiesced,
      });
    } else if (m.kind === 'measure') {
      void measure(a, host, transport, m.windowMs, m.profileDir).then(send);
    } else {
      void host.close(0).finally(() => process.exit(0));
    }
  });
}

void main().catch((err: unknown) => {
  process.stderr.write(`idle node: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
