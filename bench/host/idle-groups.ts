// The cost of idle Raft groups: three processes on 127.0.0.1 (idle-node.ts), each a Host with
// the real TCP transport and its liveness lane, the real runtime and WAL storage in a temp
// directory, all hosting the same G groups of the same three voters. For each G it waits until
// every group has a leader, lets the groups settle, then measures each process's CPU over an
// idle window (nothing is proposed: only ticks, heartbeats and their answers) and prints JSON:
// CPU ms per second per process, CPU µs per second per idle group, Raft messages, frames and
// bytes per second between the processes, and resident memory.
//
//   node dist/bench/host/idle-groups.js [--groups 1,10,100,1000] [--window-ms 15000]
//        [--quiesce off,on] [--profile] [--protocol-max N] [--out FILE]
//
// --quiesce lists the settings each G runs with, one after the other (default: off only):
// with `on` every group has RaftConfig.quiesce, and the window starts once every group is
// quiesced on every process (DESIGN.md, "Quiescing idle groups").
// --profile takes a V8 CPU profile of every process during the largest G's window (the
// .cpuprofile files go next to the data, their top self times into the JSON).
// --protocol-max pins the peer protocol version every process offers (3: no coalesced
// heartbeats), to compare with and without them on one build.
// Every phase has a time limit; every child is stopped by its PID, whatever happens.

import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { machineFacts } from '../eval/machine.js';
import type { FromNode, IdleNodeArgs, Measured, ToNode } from './idle-node.js';
import { benchArgs } from '../args.js';

interface Options {
  readonly groups: readonly number[];
  readonly windowMs: number;
  readonly settleMs: number;
  readonly profile: boolean;
  readonly protocolMax: number;
  readonly quiesce: readonly boolean[];
  readonly out: string | null;
}

function parseOptions(): Options {
  const { values: v } = benchArgs({
    options: {
      groups: { type: 'string', default: '1,10,100,1000' },
      'window-ms': { type: 'string', default: '15000' },
      'settle-ms': { type: 'string', default: '3000' },
      profile: { type: 'boolean', default: false },
      'protocol-max': { type: 'string', default: '0' },
      quiesce: { type: 'string', default: 'off' },
      out: { type: 'string' },
    },
  });
  const groups = v.groups.split(',').map(Number);
  if (groups.some((g) => !Number.isSafeInteger(g) || g < 1 || g > 10_000))
    throw new Error(`--groups takes integers 1..10000, got ${v.groups}`);
  const windowMs = Number(v['window-ms']);
  if (!Number.isSafeInteger(windowMs) || windowMs < 1_000 || windowMs > 300_000)
    throw new Error(`--window-ms takes 1000..300000, got ${v['window-ms']}`);
  return {
    groups,
    windowMs,
    settleMs: Number(v['settle-ms']),
    profile: v.profile,
    protocolMax: Number(v['protocol-max']),
    quiesce: v.quiesce.split(',').map((q) => {
      if (q !== 'on' && q !== 'off') throw new Error(`--quiesce takes on and off, got ${q}`);
      return q === 'on';
    }),
    out: v.out ?? null,
  };
}

/** Free ports on 127.0.0.1, chosen by the OS. */
async function freePorts(n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    out.push(
      await new Promise<number>((resolve, reject) => {
        const s = createServer();
        s.once('error', reject);
        s.listen(0, '127.0.0.1', () => {
          const a = s.address();
          const port = typeof a === 'object' && a !== null ? a.port : 0;
          s.close(() => resolve(port));
        });
      }),
    );
  }
  return out;
}

/** Waits for the first message of `kind` from a child, or fails after `ms` saying what it waited for. */
function next<K extends FromNode['kind']>(
  child: ChildProcess,
  kind: K,
  ms: number,
): Promise<Extract<FromNode, { kind: K }>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      done();
      reject(new Error(`node (pid ${child.pid}) sent no ${kind} within ${ms} ms`));
    }, ms);
    const on = (m: FromNode): void => {
      if (m.kind !== kind) return;
      done();
      resolve(m as Extract<FromNode, { kind: K }>);
    };
    const exited = (code: number | null): void => {
      done();
      reject(new Error(`node (pid ${child.pid}) exited (${code}) while we waited for ${kind}`));
    };
    const done = (): void => {
      clearTimeout(timer);
      child.off('message', on);
      child.off('exit', exited);
    };
    child.on('message', on);
    child.on('exit', exited);
  });
}

/** Stops a child by its PID: asks, then SIGKILL after a bound. */
async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.send({ kind: 'stop' } satisfies ToNode, () => undefined);
  const late = setTimeout(() => {
    if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
  }, 10_000);
  await exited;
  clearTimeout(late);
}

interface Row {
  readonly groups: number;
  readonly quiesce: boolean;
  readonly electedInMs: number;
  /** With quiescing: from every group led to every group quiesced on every process. */
  readonly quiescedInMs: number | null;
  readonly perProcess: readonly {
    readonly id: number;
    readonly led: number;
    readonly cpuMsPerS: number;
    readonly cpuSystemMsPerS: number;
    readonly rssMiB: number;
    readonly sentMessagesPerS: number;
    readonly sentFramesPerS: number;
    readonly sentKiBPerS: number;
    readonly receivedMessagesPerS: number;
    /** Groups quiesced at the end of the window, and woken by silence since start. */
    readonly quiesced: number;
    readonly wokenBySilence: number;
  }[];
  /** The three processes' CPU together, per idle group (each group has a replica on each). */
  readonly cpuUsPerSPerGroup: number;
  /** The same per group replica (one process's share). */
  readonly cpuUsPerSPerReplica: number;
  readonly messagesPerS: number;
  /**
   * Messages a cluster that keeps up exchanges: each group's leader sends each of two
   * followers a heartbeat every 50 ms, and each answers. Below it, the processes fell behind
   * (ticks late on a loaded machine) and their CPU figures understate the cost. With
   * quiescing: each process's node-level heartbeat every 50 ms to each peer it exchanged
   * messages with: 80/s when one process leads every group (its followers do not talk to each
   * other), 120/s once two or more lead some.
   */
  readonly expectedMessagesPerS: number;
  /** The three processes' CPU per 1,000 messages exchanged: comparable when behind. */
  readonly cpuMsPer1kMessages: number;
  readonly framesPerS: number;
  readonly kiBPerS: number;
  readonly loadAverage: readonly number[];
  readonly profileTop?: Record<number, Measured['profileTop']>;
}

/** Asks every child for its census and returns the answers. */
function census(
  children: readonly ChildProcess[],
): Promise<Extract<FromNode, { kind: 'census' }>[]> {
  return Promise.all(
    children.map((c) => {
      const answer = next(c, 'census', 5_000);
      c.send({ kind: 'census' } satisfies ToNode);
      return answer;
    }),
  );
}

/** The run in progress: its node processes and data directory, for the signal handlers. */
const running = new Set<{ readonly dataDir: string; readonly children: ChildProcess[] }>();

// Ctrl-C or SIGTERM: end the node processes, then remove their data directories.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    process.stderr.write(`idle-groups: ${signal}, stopping the nodes\n`);
    const runs = [...running];
    const exits = runs.flatMap((r) =>
      r.children.map((c) => {
        if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
        const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
        c.kill('SIGKILL');
        return exited;
      }),
    );
    const leave = (): void => {
      for (const r of runs) rmSync(r.dataDir, { recursive: true, force: true, maxRetries: 3 });
      process.exit(signal === 'SIGINT' ? 130 : 143);
    };
    setTimeout(leave, 5_000).unref();
    void Promise.all(exits).finally(leave);
  });
}

async function runOne(
  g: number,
  quiesce: boolean,
  o: Options,
  profileDir: string | null,
): Promise<Row> {
  const dataDir = mkdtempSync(join(tmpdir(), `flotilla-idle-${g}-`));
  const children: ChildProcess[] = [];
  const run = { dataDir, children };
  running.add(run);
  try {
    const ports = await freePorts(3);
    const script = fileURLToPath(new URL('./idle-node.js', import.meta.url));
    for (let id = 1; id <= 3; id++) {
      const args: IdleNodeArgs = {
        id,
        groups: g,
        ports,
        dataDir: join(dataDir, `node-${id}`),
        protocolMax: o.protocolMax,
        quiesce,
      };
      children.push(
        fork(script, [JSON.stringify(args)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }),
      );
    }
    const startLimitMs = 30_000 + g * 60;
    await Promise.all(children.map((c) => next(c, 'started', startLimitMs)));
    const t0 = performance.now();
    const electLimitMs = 30_000 + g * 60;
    // Every group knows a leader on every process, and exactly G are led in all.
    for (;;) {
      const seen = await census(children);
      const led = seen.reduce((n, c) => n + c.led, 0);
      if (led === g && seen.every((c) => c.withLeader === g)) break;
      if (performance.now() - t0 > electLimitMs)
        throw new Error(
          `G=${g}: not every group had a leader after ${electLimitMs} ms: ${JSON.stringify(seen)}`,
        );
      await new Promise((r) => setTimeout(r, 250));
    }
    const electedInMs = Math.round(performance.now() - t0);
    let quiescedInMs: number | null = null;
    if (quiesce) {
      const quietLimitMs = 30_000 + g * 30;
      for (;;) {
        const seen = await census(children);
        if (seen.every((c) => c.quiesced === g)) break;
        if (performance.now() - t0 - electedInMs > quietLimitMs)
          throw new Error(
            `G=${g}: not every group quiesced ${quietLimitMs} ms after all had a leader: ${JSON.stringify(seen)}`,
          );
        await new Promise((r) => setTimeout(r, 100));
      }
      quiescedInMs = Math.round(performance.now() - t0 - electedInMs);
    }
    // Let the elections' stragglers (appends of the new terms' no-ops) finish.
    await new Promise((r) => setTimeout(r, o.settleMs));
    const load = loadavg().map((x) => Math.round(x * 100) / 100);
    const measured = await Promise.all(
      children.map((c) => {
        const answer = next(c, 'measured', o.windowMs + 30_000);
        c.send({ kind: 'measure', windowMs: o.windowMs, profileDir } satisfies ToNode);
        return answer;
      }),
    );
    const perS = (n: number, m: Measured): number => Math.round((n * 1000) / m.windowMs);
    const cpuMsPerS = (m: Measured): number => ((m.cpuUserMs + m.cpuSystemMs) * 1000) / m.windowMs;
    const totalCpu = measured.reduce((n, m) => n + cpuMsPerS(m), 0);
    const messagesPerS = measured.reduce((n, m) => n + perS(m.sent.messages, m), 0);
    const row: Row = {
      groups: g,
      quiesce,
      electedInMs,
      quiescedInMs,
      perProcess: measured.map((m) => ({
        id: m.id,
        led: m.led,
        cpuMsPerS: Math.round(cpuMsPerS(m) * 10) / 10,
        cpuSystemMsPerS: Math.round(((m.cpuSystemMs * 1000) / m.windowMs) * 10) / 10,
        rssMiB: Math.round(m.rssBytes / 1024 / 1024),
        sentMessagesPerS: perS(m.sent.messages, m),
        sentFramesPerS: perS(m.sent.frames, m),
        sentKiBPerS: Math.round(perS(m.sent.bytes, m) / 102.4) / 10,
        receivedMessagesPerS: perS(m.received.messages, m),
        quiesced: m.quiesced,
        wokenBySilence: m.wokenBySilence,
      })),
      cpuUsPerSPerGroup: Math.round((totalCpu * 1000) / g),
      cpuUsPerSPerReplica: Math.round((totalCpu * 1000) / g / 3),
      messagesPerS,
      expectedMessagesPerS: quiesce
        ? measured.filter((m) => m.led > 0).length > 1
          ? 120
          : 80
        : 80 * g,
      cpuMsPer1kMessages:
        messagesPerS === 0 ? 0 : Math.round((totalCpu * 1000 * 100) / messagesPerS) / 100,
      framesPerS: measured.reduce((n, m) => n + perS(m.sent.frames, m), 0),
      kiBPerS: Math.round(measured.reduce((n, m) => n + perS(m.sent.bytes, m), 0) / 102.4) / 10,
      loadAverage: load,
      ...(profileDir === null
        ? {}
        : { profileTop: Object.fromEntries(measured.map((m) => [m.id, m.profileTop])) }),
    };
    return row;
  } finally {
    await Promise.all(children.map(stop));
    rmSync(dataDir, { recursive: true, force: true });
    running.delete(run);
  }
}

async function main(): Promise<void> {
  const o = parseOptions();
  const facts = machineFacts(tmpdir());
  const rows: Row[] = [];
  const largest = Math.max(...o.groups);
  for (const g of o.groups)
    for (const quiesce of o.quiesce) {
      let profileDir: string | null = null;
      if (o.profile && g === largest) {
        profileDir = mkdtempSync(join(tmpdir(), 'flotilla-idle-profile-'));
        mkdirSync(profileDir, { recursive: true });
        process.stderr.write(`profiles of G=${g} go to ${profileDir}\n`);
      }
      const name = `G=${g}${quiesce ? ' quiesce' : ''}`;
      process.stderr.write(`${name}: starting\n`);
      const row = await runOne(g, quiesce, o, profileDir);
      process.stderr.write(
        `${name}: elected in ${row.electedInMs} ms${quiesce ? `, quiesced in ${row.quiescedInMs} ms more` : ''}; ${row.perProcess.map((p) => p.cpuMsPerS).join(' / ')} CPU ms/s; ${row.cpuUsPerSPerGroup} µs/s per group; ${row.messagesPerS} of ${row.expectedMessagesPerS} messages/s; ${row.cpuMsPer1kMessages} ms per 1,000 messages; quiesced at the end ${row.perProcess.map((p) => p.quiesced).join(' / ')}\n`,
      );
      rows.push(row);
    }
  const report = {
    bench: 'idle-groups',
    windowMs: o.windowMs,
    protocolMax: o.protocolMax === 0 ? 'build default' : o.protocolMax,
    machine: facts,
    rows,
  };
  const text = JSON.stringify(report, null, 2);
  if (o.out !== null) writeFileSync(o.out, text + '\n');
  process.stdout.write(text + '\n');
}

void main().catch((err: unknown) => {
  process.stderr.write(`idle-groups: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
