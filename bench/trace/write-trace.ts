// Where one write's time goes: a 3-node cluster (real WAL storage with its fsyncs, TCP
// between the nodes, HTTP for the client, all on 127.0.0.1), one client writing sequentially
// to the leader, and every step of each write timed through the nodes' trace hooks
// (src/host/trace.ts). Prints the median and p90 of each step, then the CPU per write (user +
// system of the nodes and the clients) at 1 and at 64 clients.
//
//   node dist/bench/trace/write-trace.js [--processes] [--writes 2000] [--warmup 200]
//                                        [--cpu-writes 4000] [--value-bytes 100] [--dir <path>]
//
// --processes runs each node in a child process of its own, as deployed, and collects its
// trace points over IPC (wall-clock times, microsecond resolution); without it the nodes
// share this process's event loop, so a hop between them also waits for the sender's work.
// The follower a step names is the one whose acknowledgement reached the leader first: the one
// that made the write commit. The leader's write runs alongside the follower's path; a step
// "max(ack, leader persist end) -> committed" joins them.

import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TraceEvent } from '../../src/host/trace.js';
import { KV_GROUP } from '../../src/server/node.js';
import { benchArgs } from '../args.js';
import { printSteps, Recorder, startMembers, waitForLeader, type Member } from './members.js';

/** One client: a keep-alive connection writing `count` puts in sequence. */
function makeClient(
  port: number,
  valueBytes: number,
): { put: (key: string) => Promise<number>; close: () => void } {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const value = 'v'.repeat(valueBytes);
  const put = (key: string) =>
    new Promise<number>((resolve, reject) => {
      const body = JSON.stringify({ key, value });
      const started = performance.now();
      const req = request(
        {
          host: '127.0.0.1',
          port,
          path: '/v1/kv/put',
          method: 'POST',
          agent,
          headers: { 'content-type': 'application/json', 'content-length': body.length },
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode !== 200) reject(new Error(`put answered ${res.statusCode}`));
            else resolve(performance.now() - started);
          });
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  return { put, close: () => agent.destroy() };
}

const STEPS = [
  'received -> parsed (body, turn)',
  'parsed -> proposed',
  'proposed -> append sent',
  'append sent -> follower received',
  'follower received -> persist start',
  'follower persist (fsync)',
  'follower persist end -> ack sent',
  'ack sent -> leader received',
  'proposed -> leader persist start',
  'leader persist (fsync)',
  'max(ack, leader persist end) -> committed',
  'committed -> applied',
  'applied -> answer written',
  'server total (received -> answered)',
  'client round trip',
] as const;

/** Each write's steps, in ms, from the trace points of a sequential run. */
function steps(rec: Recorder, leader: number, rtts: number[]): Map<string, number[]> {
  const out = new Map<string, number[]>(STEPS.map((s) => [s, []]));
  const add = (step: (typeof STEPS)[number], ms: number | undefined) => {
    if (ms !== undefined && Number.isFinite(ms)) out.get(step)?.push(ms);
  };
  const indexes = rec.proposals(leader);
  const http = rec.http.filter((p) => p.node === leader);
  const followers = [1, 2, 3].filter((id) => id !== leader);
  for (const [w, index] of indexes.entries()) {
    const [received, parsed, answered] = [0, 1, 2].map((k) => http[w * 3 + k]?.t);
    const L = (e: TraceEvent, peer = 0) => rec.at(leader, e, index, peer);
    const proposed = L('proposed');
    // The follower whose acknowledgement arrived first made the write commit.
    const f = followers
      .map((id) => ({ id, t: L('ack-received', id) ?? Infinity }))
      .sort((a, b) => a.t - b.t)[0];
    if (f === undefined || received === undefined || answered === undefined) continue;
    const F = (e: TraceEvent, peer = 0) => rec.at(f.id, e, index, peer);
    const sub = (a: number | undefined, b: number | undefined) =>
      a === undefined || b === undefined ? undefined : a - b;
    add(STEPS[0], sub(parsed, received));
    add(STEPS[1], sub(proposed, parsed));
    add(STEPS[2], sub(L('append-sent', f.id), proposed));
    add(STEPS[3], sub(F('append-received', leader), L('append-sent', f.id)));
    add(STEPS[4], sub(F('persist-start'), F('append-received', leader)));
    add(STEPS[5], sub(F('persist-end'), F('persist-start')));
    add(STEPS[6], sub(F('ack-sent', leader), F('persist-end')));
    add(STEPS[7], sub(f.t, F('ack-sent', leader)));
    add(STEPS[8], sub(L('persist-start'), proposed));
    add(STEPS[9], sub(L('persist-end'), L('persist-start')));
    const ready = Math.max(f.t, L('persist-end') ?? Infinity);
    add(STEPS[10], sub(L('committed'), ready));
    add(STEPS[11], sub(L('applied'), L('committed')));
    add(STEPS[12], sub(answered, L('applied')));
    add(STEPS[13], answered - received);
    add(STEPS[14], rtts[w]);
  }
  return out;
}

/** CPU (user + system, all nodes and the clients) per write with `clients` writing at once. */
async function cpuPerWrite(
  members: Member[],
  port: number,
  clients: number,
  writes: number,
  valueBytes: number,
): Promise<{ cpuUsPerWrite: number; writesPerSec: number }> {
  const cs = Array.from({ length: clients }, () => makeClient(port, valueBytes));
  const perClient = Math.ceil(writes / clients);
  const cpuUs = async () => {
    const u = process.cpuUsage();
    const children = await Promise.all(members.map((m) => m.cpuUs()));
    return u.user + u.system + children.reduce((a, b) => a + b, 0);
  };
  const cpu0 = await cpuUs();
  const t0 = performance.now();
  await Promise.all(
    cs.map(async (c, i) => {
      for (let k = 0; k < perClient; k++) await c.put(`cpu-${i}-${k % 64}`);
    }),
  );
  const elapsedMs = performance.now() - t0;
  const cpu = (await cpuUs()) - cpu0;
  for (const c of cs) c.close();
  const done = perClient * clients;
  return {
    cpuUsPerWrite: cpu / done,
    writesPerSec: (done / elapsedMs) * 1000,
  };
}

async function main(): Promise<void> {
  const { values } = benchArgs({
    options: {
      writes: { type: 'string', default: '2000' },
      warmup: { type: 'string', default: '200' },
      'cpu-writes': { type: 'string', default: '4000' },
      'value-bytes': { type: 'string', default: '100' },
      processes: { type: 'boolean', default: false },
      dir: { type: 'string' },
    },
  });
  const writes = Number(values.writes);
  const warmup = Number(values.warmup);
  const cpuWrites = Number(values['cpu-writes']);
  const valueBytes = Number(values['value-bytes']);
  for (const [name, v] of Object.entries({ writes, warmup, cpuWrites, valueBytes }))
    if (!Number.isInteger(v) || v < 0) throw new RangeError(`--${name} must be an integer >= 0`);
  const dir = mkdtempSync(join(values.dir ?? tmpdir(), 'flotilla-trace-'));
  const rec = new Recorder();
  const members = await startMembers(dir, rec, {
    processes: values.processes,
    traceGroup: KV_GROUP,
  });
  const where = values.processes ? 'one process per node' : 'all in one process';
  try {
    const leader = await waitForLeader(members);
    const port = Number(new URL(leader.members[leader.id - 1]?.client ?? '').port);
    const c = makeClient(port, valueBytes);
    for (let i = 0; i < warmup; i++) await c.put(`warm-${i % 64}`);
    const rtts: number[] = [];
    await Promise.all(members.map((m) => m.record(true)));
    for (let i = 0; i < writes; i++) rtts.push(await c.put(`k-${i % 64}`));
    await Promise.all(members.map((m) => m.record(false)));
    for (const m of members) for (const p of await m.points()) rec.add(p);
    c.close();
    console.log(
      `${writes} sequential writes of ${valueBytes}-byte values, 1 client, leader ${leader.id}, ${where}`,
    );
    printSteps(steps(rec, leader.id, rtts));
    for (const clients of [1, 64]) {
      const r = await cpuPerWrite(members, port, clients, cpuWrites, valueBytes);
      console.log(
        `CPU per write at ${clients} client(s): ${r.cpuUsPerWrite.toFixed(0)} us ` +
          `(${r.writesPerSec.toFixed(0)} writes/s; the nodes and the clients, ${where})`,
      );
    }
  } finally {
    await Promise.all(members.map((m) => m.close()));
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
