// Flotilla on a real network: three hosts, each a Linux network namespace with its own address
// on one bridge (hosts.ts), each running `flotilla start` (nodes.ts). A client in the root
// namespace writes without pause while the cluster is bootstrapped with `--join`, its leader
// is cut off by iptables inside its namespace, a link loses packets and is delayed (netem, or
// a relay where the kernel has none), and the bootstrap node is killed, its data directory wiped, and the node
// started again under its id with `--join`: it must recover before it votes. At the end every node is
// read on its own and the set checker (src/check/set.ts) must find every acknowledged write on
// every node; an acknowledged write then deleted behind the client's back must be reported lost. Needs root, iproute2 and iptables, and runs only with
// FLOTILLA_NETNS_TESTS=1 (docs/TESTING.md, "Multi-host tests in network namespaces").

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { test } from 'node:test';
import { checkSet, type SetReport } from '../../src/check/index.js';
import { FlotillaClient } from '../../src/client/index.js';
import { createRng } from '../../src/raft/index.js';
import { SET_PREFIX, SetWorkload } from '../chaos/workload.js';
import { RunDeadline } from '../chaos/deadline.js';
import { NetnsHosts, ended, netnsUnsupported } from './hosts.js';
import { NetnsNodes, PEER_PORT } from './nodes.js';

const skip =
  process.env['FLOTILLA_NETNS_TESTS'] !== '1'
    ? 'set FLOTILLA_NETNS_TESTS=1 to run (as root, with iproute2 and iptables)'
    : await netnsUnsupported();
if (skip !== null && process.env['FLOTILLA_NETNS_TESTS'] === '1')
  console.log(`# network namespace tests skipped: ${skip}`);

/** Prints each step with the seconds since the test began, and keeps them for a failure. */
class Timeline {
  private readonly t0 = Date.now();
  readonly lines: string[] = [];

  say(what: string): void {
    const line = `[+${((Date.now() - this.t0) / 1000).toFixed(1)}s] ${what}`;
    this.lines.push(line);
    console.log(`# ${line}`);
  }
}

/** Polls `probe` until it gives a value; fails after `timeoutMs` with what it saw last. */
async function waitFor<T>(
  what: string,
  probe: () => T | null | false | Promise<T | null | false>,
  o: { timeoutMs: number; context: () => string },
): Promise<T> {
  const deadline = Date.now() + o.timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      const v = await probe();
      if (v !== null && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(
        `${what}: not within ${o.timeoutMs} ms (last error: ${String(last)})\n${o.context()}`,
      );
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Whether a TCP connection from host `from`'s namespace to `to`:`port` opens: a child `node`
 * in the namespace dials, and exits 0 on connect, 1 on an error or after 1.5 s.
 */
function dials(hosts: NetnsHosts, from: number, to: string, port: number): Promise<boolean> {
  const script =
    `const s=require('net').connect(${port},'${to}',()=>process.exit(0));` +
    `s.on('error',()=>process.exit(1));setTimeout(()=>process.exit(1),1500);`;
  return new Promise((resolve) => {
    const child = spawn('ip', hosts.execArgs(from, process.execPath, ['-e', script]), {
      stdio: 'ignore',
    });
    child.once('exit', (code) => resolve(code === 0));
  });
}

/** A TCP listener on host `i`'s address, in its namespace, for at most a minute. */
function listenOn(hosts: NetnsHosts, i: number, port: number): ChildProcess {
  const script =
    `require('net').createServer((s)=>s.end()).listen(${port},'${hosts.address(i)}');` +
    `setTimeout(()=>process.exit(0),60000);`;
  return spawn('ip', hosts.execArgs(i, process.execPath, ['-e', script]), { stdio: 'ignore' });
}

/** An echo server on host `i`'s address, in its namespace, for at most a minute. */
function echoOn(hosts: NetnsHosts, i: number, port: number): ChildProcess {
  const script =
    `require('net').createServer((s)=>s.pipe(s)).listen(${port},'${hosts.address(i)}');` +
    `setTimeout(()=>process.exit(0),60000);`;
  return spawn('ip', hosts.execArgs(i, process.execPath, ['-e', script]), { stdio: 'ignore' });
}

/**
 * The median of 5 round trips, in ms, of one byte sent from host `from`'s namespace to the
 * echo server at `to`:`port`, over a connection opened for the measurement; null when the
 * connection fails or the trips take over 5 s.
 */
function roundTripMs(
  hosts: NetnsHosts,
  from: number,
  to: string,
  port: number,
): Promise<number | null> {
  const script =
    `const s=require('net').connect(${port},'${to}');s.setNoDelay(true);const t=[];let at=0;` +
    `const ping=()=>{at=performance.now();s.write('x')};s.on('connect',ping);` +
    `s.on('data',()=>{t.push(performance.now()-at);if(t.length<5)ping();else{` +
    `t.sort((a,b)=>a-b);console.log(t[2].toFixed(1));process.exit(0)}});` +
    `s.on('error',()=>process.exit(1));setTimeout(()=>process.exit(1),5000);`;
  return new Promise((resolve) => {
    const child = spawn('ip', hosts.execArgs(from, process.execPath, ['-e', script]), {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.once('exit', (code) => resolve(code === 0 ? Number(out.trim()) : null));
  });
}

/** What `ip netns list` and `ip link` show in the root namespace. */
function rootNetworkState(): Promise<string> {
  return new Promise((resolve) => {
    const p = spawn('sh', ['-c', 'ip netns list; ip -o link show'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let out = '';
    p.stdout.on('data', (b: Buffer) => (out += b.toString()));
    p.once('exit', () => resolve(out));
  });
}

void test(
  'namespace hosts: a partition drops traffic both ways, healing restores it, nothing is left behind',
  { skip: skip ?? false, timeout: 60_000 },
  async () => {
    const hosts = await NetnsHosts.create({ hosts: 2 });
    const listeners = [listenOn(hosts, 1, 9000), listenOn(hosts, 2, 9000)];
    try {
      const [a1, a2] = [hosts.address(1), hosts.address(2)];
      const ctx = { timeoutMs: 10_000, context: () => '' };
      await waitFor('host 1 reaches host 2', () => dials(hosts, 1, a2, 9000), ctx);
      await waitFor('host 2 reaches host 1', () => dials(hosts, 2, a1, 9000), ctx);
      // Rules in host 1's namespace alone cut both directions.
      await hosts.partition(1, [2]);
      assert.match(await hosts.rulesOf(1), new RegExp(`-A INPUT -s ${a2}/32 -j DROP`));
      assert.equal(await dials(hosts, 1, a2, 9000), false, 'host 1 still reaches host 2');
      assert.equal(await dials(hosts, 2, a1, 9000), false, 'host 2 still reaches host 1');
      await hosts.heal(1);
      assert.equal(await dials(hosts, 1, a2, 9000), true, 'host 1 cannot reach host 2 healed');
      assert.equal(await dials(hosts, 2, a1, 9000), true, 'host 2 cannot reach host 1 healed');
      assert.doesNotMatch(await hosts.rulesOf(1), /DROP/);
    } finally {
      // Ended before their namespaces go: a process in a namespace keeps it alive.
      await Promise.all(listeners.map((l) => ended(l)));
      await hosts.destroy();
    }
    await hosts.destroy(); // a second call is a no-op
    const left = await rootNetworkState();
    assert.doesNotMatch(left, new RegExp(`\\b${hosts.tag}[-hsc]`), `left behind:\n${left}`);
  },
);

void test(
  'namespace hosts: a delayed host sends late (netem, or the relay without it), healing ends it, nothing is left behind',
  { skip: skip ?? false, timeout: 60_000 },
  async () => {
    const hosts = await NetnsHosts.create({ hosts: 2 });
    const echo = echoOn(hosts, 2, 9001);
    const delayMs = 100;
    try {
      const a2 = hosts.address(2);
      const rtt = () => roundTripMs(hosts, 1, a2, 9001);
      const before = await waitFor('host 1 reaches host 2', rtt, {
        timeoutMs: 10_000,
        context: () => '',
      });
      assert.ok(before < delayMs / 2, `round trip before the delay: ${before} ms`);
      await hosts.degrade(1, { delayMs, lossPercent: 0, ports: [9001] });
      const method = hosts.netemAvailable ? 'netem' : 'relay';
      const slow = await rtt();
      assert.ok(
        slow !== null && slow >= delayMs && slow < delayMs * 3,
        `round trip delayed by ${delayMs} ms (${method}): ${slow} ms`,
      );
      if (!hosts.netemAvailable)
        assert.match(await hosts.rulesOf(1, 'nat'), /REDIRECT/, 'no REDIRECT rule for the relay');
      await hosts.heal(1);
      const after = await rtt();
      assert.ok(after !== null && after < delayMs / 2, `round trip healed: ${after} ms`);
      assert.doesNotMatch(await hosts.rulesOf(1, 'nat'), /REDIRECT/);
      assert.doesNotMatch(await hosts.rulesOf(1), /REJECT/);
    } finally {
      await ended(echo);
      await hosts.destroy();
    }
    const left = await rootNetworkState();
    assert.doesNotMatch(left, new RegExp(`\\b${hosts.tag}[-hsc]`), `left behind:\n${left}`);
  },
);

/** Reads the whole set from every node in `ids` and judges it with the chaos suite's checker. */
async function judge(
  w: SetWorkload,
  nodes: NetnsNodes,
  ids: readonly number[],
): Promise<SetReport> {
  const finalReads = [];
  for (const i of ids) finalReads.push(await SetWorkload.finalRead(nodes.url(i), `node ${i}`));
  return checkSet({ adds: w.adds, finalReads });
}

function acked(w: SetWorkload): number {
  return w.adds.filter((a) => a.status === 'ok').length;
}

void test(
  'three hosts on a bridge: join, leader partitioned, lossy link, a wiped node back under its id, while a client writes: nothing acknowledged is lost',
  { skip: skip ?? false, timeout: 240_000 },
  async () => {
    const tl = new Timeline();
    const hosts = await NetnsHosts.create({ hosts: 3 });
    const ids = [1, 2, 3];
    // Snapshots every 500 entries: the wiped node catches up by snapshot and log.
    const nodes = new NetnsNodes(hosts, ['--snapshot-every-entries', '500', '--log-level', 'info']);
    let passed = false;
    // The clients write until the scenario is over: it then moves their deadline to now.
    const writeUntil = new RunDeadline(Date.now, Date.now() + 200_000);
    let writing: Promise<void> | null = null;
    const ctx = (timeoutMs: number) => ({
      timeoutMs,
      context: () => `${tl.lines.join('\n')}\n${nodes.tailsText()}\nlogs: ${nodes.dir}`,
    });
    const roleOf = async (i: number) => (await nodes.status(i))?.role ?? 'unreachable';
    /** The leader all of `among` agree on, if they do and it is one of them. */
    const agreedLeader = async (among: readonly number[]): Promise<number | null> => {
      const sts = await Promise.all(among.map((i) => nodes.status(i)));
      const leaders = new Set(sts.map((s) => s?.leader ?? 0));
      const [l] = [...leaders];
      if (leaders.size !== 1 || l === undefined || !among.includes(l)) return null;
      return sts.find((s) => s?.id === l)?.role === 'leader' ? l : null;
    };
    /** Resolves once `ms` have passed since `sinceMs`: how long a fault lasts at least. */
    const heldFor = (sinceMs: number, ms: number) =>
      waitFor(`${ms} ms passed`, () => Date.now() - sinceMs >= ms, ctx(ms + 1_000));
    /** Resolves once `n` more writes were acknowledged than now. */
    const moreAcked = (w: SetWorkload, n: number, what: string) => {
      const target = acked(w) + n;
      return waitFor(what, () => acked(w) >= target, ctx(30_000));
    };
    try {
      tl.say(
        `hosts ${ids.map((i) => `${i}=${hosts.address(i)}`).join(' ')} on a bridge; ` +
          `client at ${hosts.subnet}.254; iptables partitions; delay by ${hosts.netemAvailable ? 'netem' : 'the relay (no netem in this kernel)'}`,
      );
      nodes.start(1);
      await waitFor('node 1 leads alone', async () => (await roleOf(1)) === 'leader', ctx(20_000));
      tl.say('node 1 bootstrapped alone and leads');
      nodes.start(2, { join: [nodes.url(1)] });
      nodes.start(3, { join: [nodes.url(1)] });
      await waitFor(
        'nodes 2 and 3 voters in both groups',
        async () => {
          const m = await nodes.members(1);
          return (
            m !== null &&
            ids.every((i) =>
              m.members.some((x) => x.id === i && x.role === 'voter' && x.queueRole === 'voter'),
            )
          );
        },
        ctx(40_000),
      );
      tl.say('nodes 2 and 3 joined with --join and are voters in both groups');

      const w = new SetWorkload(
        ids.map((i) => nodes.url(i)),
        createRng(20261130),
        { clients: 4, firstClient: 1 },
        { timeoutMs: 1_000, deadlineMs: 3_000, thinkMs: [0, 20] },
        Date.now,
      );
      writing = w.runUntil(writeUntil);
      await moreAcked(w, 50, 'first writes acknowledged');
      tl.say(`client writing from the root namespace: ${acked(w)} acknowledged`);

      // The leader cut off from both peers by iptables in its own namespace.
      const old = await waitFor('an agreed leader', () => agreedLeader(ids), ctx(20_000));
      const rest = ids.filter((i) => i !== old);
      await hosts.partition(old, rest);
      const cutAt = Date.now();
      const ackedAtCut = acked(w);
      tl.say(`partitioned leader ${old} from ${rest.join(', ')} (DROP both ways)`);
      const next = await waitFor(
        `a new leader among ${rest.join(', ')}`,
        () => agreedLeader(rest),
        ctx(30_000),
      );
      tl.say(`node ${next} elected leader of ${rest.join(', ')}`);
      await waitFor(
        `cut-off node ${old} steps down`,
        async () => (await roleOf(old)) !== 'leader',
        ctx(15_000),
      );
      tl.say(`node ${old} stepped down (${await roleOf(old)})`);
      await moreAcked(w, 50, 'writes acknowledged with the old leader cut off');
      tl.say(`writes continue: ${acked(w)} acknowledged`);
      // Long enough for the cut-off node's TCP retransmissions to back off to seconds.
      await heldFor(cutAt, 8_000);
      await hosts.heal(old);
      tl.say(`${acked(w) - ackedAtCut} writes acknowledged while node ${old} was cut off`);
      const commit = (await nodes.status(next))?.commit ?? 0;
      tl.say(`healed node ${old}; leader's commit ${commit}`);
      await waitFor(
        `node ${old} applies ${commit}`,
        async () => ((await nodes.status(old))?.applied ?? 0) >= commit,
        ctx(40_000),
      );
      tl.say(`node ${old} caught up`);

      // A lossy, slow link for a while (the delay by netem, or by the relay without it).
      const slow = await waitFor('an agreed leader', () => agreedLeader(ids), ctx(20_000));
      await hosts.degrade(slow, { delayMs: 50, lossPercent: 5, ports: [PEER_PORT] });
      const degradedAt = Date.now();
      const ackedAtDegrade = acked(w);
      tl.say(
        `degraded leader ${slow}'s link: 5% loss each way, 50 ms delay (${hosts.netemAvailable ? 'netem' : 'relay'})`,
      );
      await moreAcked(w, 100, 'writes acknowledged over the degraded link');
      tl.say(`writes continue: ${acked(w)} acknowledged`);
      await heldFor(degradedAt, 8_000);
      await hosts.heal(slow);
      tl.say(
        `restored node ${slow}'s link; ${acked(w) - ackedAtDegrade} writes acknowledged while degraded`,
      );

      // Node 1, the member the cluster was bootstrapped with, loses its disk: killed, its
      // directory removed, started again under its id with --join through the others (its
      // original command names only itself and would start a new cluster: docs/TESTING.md).
      const lost = 1;
      await nodes.stop(lost, 'SIGKILL');
      rmSync(nodes.dataDir(lost), { recursive: true, force: true });
      tl.say(`killed node ${lost} (SIGKILL) and removed its data directory`);
      await moreAcked(w, 30, `writes acknowledged with node ${lost} down`);
      const others = ids.filter((i) => i !== lost);
      const via = others.map((i) => nodes.url(i));
      nodes.start(lost, { join: via });
      tl.say(`started node ${lost} again, empty, with --join ${via.join(',')}`);
      await waitFor(
        `node ${lost} says it lost its data`,
        () => nodes.logged(lost, 'this node lost its data'),
        ctx(30_000),
      );
      tl.say(`node ${lost} knows it lost its data: recovering, it neither votes nor counts`);
      await waitFor(
        `node ${lost} caught up and a voter in both groups`,
        async () => {
          const s = await nodes.status(lost);
          const m = await nodes.members(others[0] as number);
          return (
            s !== null &&
            !s.recovering &&
            m !== null &&
            m.members.some((x) => x.id === lost && x.role === 'voter' && x.queueRole === 'voter')
          );
        },
        ctx(60_000),
      );
      tl.say(`node ${lost} finished recovering and votes in both groups`);
      const recovered = nodes.logSinceStart(lost);
      const end = recovered.indexOf('recovery finished');
      assert.ok(end >= 0, `node ${lost} did not log the end of its recovery`);
      assert.equal(
        recovered.slice(0, end).includes('became leader'),
        false,
        'it led while recovering',
      );
      await moreAcked(w, 30, `writes acknowledged after node ${lost} recovered`);
      const final = ids;

      writeUntil.cut();
      await writing;
      writing = null;
      const tally = { ok: 0, fail: 0, unknown: 0 };
      for (const a of w.adds) tally[a.status]++;
      tl.say(
        `client stopped: ${w.adds.length} writes, ${tally.ok} ok, ${tally.fail} failed, ${tally.unknown} unknown`,
      );

      // Every node applied everything, then each is read on its own.
      const top = Math.max(
        ...(await Promise.all(final.map(async (i) => (await nodes.status(i))?.commit ?? 0))),
      );
      await waitFor(
        `every node applies ${top}`,
        async () => {
          const sts = await Promise.all(final.map((i) => nodes.status(i)));
          return sts.every((s) => s !== null && s.applied >= top && !s.recovering);
        },
        ctx(30_000),
      );
      const report = await judge(w, nodes, final);
      tl.say(
        `set check: ${report.acknowledged} acknowledged, lost ${report.lost.length}, ` +
          `unexpected ${report.unexpected.length}, duplicated ${report.duplicated.length}, ` +
          `failed but present ${report.failedPresent.length}; unknown present ${report.unknownPresent}/${report.unknown}`,
      );
      assert.equal(
        report.valid,
        true,
        `${JSON.stringify(report, null, 1).slice(0, 3000)}\n${tl.lines.join('\n')}`,
      );
      assert.ok(report.acknowledged >= 300, `only ${report.acknowledged} writes acknowledged`);
      assert.equal(report.readsAgree, true, 'the nodes hold different sets');

      // The check can fail: an acknowledged write deleted behind the client's back is lost.
      const victim = w.adds.find((a) => a.status === 'ok')?.element as string;
      const c = new FlotillaClient({ endpoints: final.map((i) => nodes.url(i)), timeoutMs: 5_000 });
      try {
        await c.delete(`${SET_PREFIX}${victim}`);
      } finally {
        await c.close();
      }
      const planted = await judge(w, nodes, final);
      assert.deepEqual(
        planted.lost.map((l) => l.element),
        [victim],
      );
      assert.deepEqual(
        planted.lost[0]?.missingFrom,
        final.map((i) => `node ${i}`),
      );
      tl.say(
        `planted: write ${victim} deleted behind the client's back is reported lost from every node`,
      );
      passed = true;
    } finally {
      writeUntil.cut();
      await writing?.catch(() => undefined);
      await nodes.close({ keep: !passed });
      await hosts.destroy();
      if (!passed) console.log(`# node logs kept in ${nodes.dir}`);
    }
  },
);
