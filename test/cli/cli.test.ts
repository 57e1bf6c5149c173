// The `flotilla` command as a user meets it: bad options are refused before anything starts,
// with one line and exit code 2; a taken port or an unusable data directory is named at once;
// `cluster up` announces a leader only when one of the nodes it started leads.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../support/root.js';
import { after, describe, it } from 'node:test';
import { announceLeader } from '../../src/cli/cluster.js';
import { freePorts } from '../e2e/harness.js';
import { writeIdentity } from '../../src/server/data-dir.js';
import { until } from '../support/until.js';
import {
  alive,
  holdPort,
  printedPids,
  release,
  runCli,
  startCli,
  stopAll,
  waitForOutput,
  exitOf,
  freePortRun,
} from './run.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'flotilla-cli-'));
  dirs.push(d);
  return d;
}

after(async () => {
  await stopAll();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A usage error: one line on stderr, exit code 2, no stack trace, nothing started. */
function assertUsageError(
  r: { code: number | string; stdout: string; stderr: string },
  message: RegExp,
): void {
  assert.equal(r.code, 2, `exit code\nstderr: ${r.stderr}`);
  assert.match(r.stderr, message);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  assert.doesNotMatch(r.stdout, /pid \d+/, 'no node was started');
}

void describe('--version', () => {
  void it("prints the package's version and exits 0", async () => {
    const pkg = JSON.parse(readFileSync(join(repoRoot(), 'package.json'), 'utf8')) as {
      version: string;
    };
    for (const flag of ['--version', '-V']) {
      const r = await runCli([flag], 10_000);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `${pkg.version}\n`);
    }
  });
});

void describe('FLOTILLA_ENDPOINTS', () => {
  void it('is where a command goes without --endpoints, and --endpoints wins over it', async () => {
    // Ports 1 and 2, where nothing listens here: the error names the URL the command went to.
    const [a, b] = [1, 2];
    const env = { FLOTILLA_ENDPOINTS: `http://127.0.0.1:${a}` };
    const r = await runCli(['status'], 20_000, env);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`http://127\\.0\\.0\\.1:${a}/v1/cluster/status`));
    const o = await runCli(['status', '--endpoints', `http://127.0.0.1:${b}`], 20_000, env);
    assert.match(o.stderr, new RegExp(`http://127\\.0\\.0\\.1:${b}/v1/cluster/status`));
  });
});

void describe('a node started with another cluster id', () => {
  void it('says which cluster its peers belong to, once per peer', async () => {
    const [p1, c1, p2, c2] = await freePortRun(4).then((p) => [p, p + 1, p + 2, p + 3]);
    const spec = `1=127.0.0.1:${p1}@http://127.0.0.1:${c1},2=127.0.0.1:${p2}@http://127.0.0.1:${c2}`;
    const start = (id: number, clusterId: string) =>
      startCli([
        ...['start', '--id', String(id), '--data-dir', join(tempDir(), `n${id}`)],
        ...['--initial-cluster', spec, '--cluster-id', clusterId, '--log-level', 'warn'],
      ]);
    const one = start(1, 'alpha');
    const two = start(2, 'beta');
    await waitForOutput(
      two,
      /peer 1 belongs to cluster \\?"alpha\\?", this node to \\?"beta\\?": check its clusterId/,
      20_000,
    );
    await waitForOutput(
      one,
      /peer 2 belongs to cluster \\?"beta\\?", this node to \\?"alpha\\?"/,
      20_000,
    );
    for (const run of [one, two]) {
      run.child.kill('SIGTERM');
      await exitOf(run, 20_000);
    }
    const told = (two.out.stdout + two.out.stderr).match(/peer 1 belongs to cluster/g) ?? [];
    assert.equal(told.length, 1, 'said once, not at every refused dial');
  });
});

void describe('cluster up refuses bad options before starting anything', () => {
  const bound = 10_000; // generous: one Node start-up on a loaded machine
  void it('--nodes 0', async () => {
    const r = await runCli(['cluster', 'up', '--nodes', '0', '--data-dir', tempDir()], bound);
    assertUsageError(r, /--nodes must be in 1\.\.9, got 0/);
  });
  void it('--client-port 70000', async () => {
    const r = await runCli(
      ['cluster', 'up', '--client-port', '70000', '--data-dir', tempDir()],
      bound,
    );
    assertUsageError(r, /--client-port must be in 1\.\.65535, got 70000/);
  });
  void it('a port range that runs past 65535', async () => {
    const r = await runCli(
      ['cluster', 'up', '--nodes', '3', '--client-port', '65534', '--data-dir', tempDir()],
      bound,
    );
    assertUsageError(r, /--client-port 65534 with 3 node\(s\) needs ports 65534\.\.65536/);
  });
  void it('peer and client ranges that overlap', async () => {
    const r = await runCli(
      ['cluster', 'up', '--peer-port', '9000', '--client-port', '9002', '--data-dir', tempDir()],
      bound,
    );
    assertUsageError(r, /--peer-port 9000 and --client-port 9002 overlap with 3 node\(s\)/);
  });
  void it('a binary port range that overlaps the client ports', async () => {
    const r = await runCli(
      [
        ...['cluster', 'up', '--client-port', '9100', '--binary-port', '9101'],
        ...['--data-dir', tempDir()],
      ],
      bound,
    );
    assertUsageError(r, /--client-port 9100 and --binary-port 9101 overlap with 3 node\(s\)/);
  });
  void it('an unknown storage kind', async () => {
    const r = await runCli(['cluster', 'up', '--storage', 'tape', '--data-dir', tempDir()], bound);
    assertUsageError(r, /'tape' is invalid/);
  });
});

void describe('range split refuses a bad --replicas before asking anyone', () => {
  // No node listens at this endpoint: the refusal must come from the option's parser.
  const endpoints = ['--endpoints', 'http://127.0.0.1:9'];
  for (const list of ['abc', '1,,2', '0,1']) {
    void it(`--replicas ${list}`, async () => {
      const r = await runCli(['range', 'split', 'm', '--replicas', list, ...endpoints], 10_000);
      assertUsageError(r, /--replicas takes comma-separated node ids, got/);
    });
  }
});

void describe('cluster up names a taken port and starts nothing', () => {
  void it('when another program holds the client port of node 2', async () => {
    const peer = await freePortRun(6);
    const client = peer + 3;
    const held = await holdPort(client + 1);
    // A data directory that does not exist yet: refusing must not leave it, or node1..node3
    // in it, behind (before, the node directories were made before the ports were checked).
    const dataDir = join(tempDir(), 'cluster');
    try {
      const r = await runCli(
        [
          'cluster',
          'up',
          '--peer-port',
          String(peer),
          '--client-port',
          String(client),
          '--data-dir',
          dataDir,
        ],
        10_000,
      );
      assert.equal(r.code, 1, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(
          `Cannot listen for the client port of node 2 on 127\\.0\\.0\\.1:${client + 1}: the address is already in use`,
        ),
      );
      assert.match(r.stderr, /nothing was started/);
      assert.doesNotMatch(r.stdout, /Ready|pid \d+/);
      assert.equal(existsSync(dataDir), false, `${dataDir} was created`);
    } finally {
      await release(held);
    }
  });
});

void describe('cluster up names a data directory another process holds and starts nothing', () => {
  void it("when a live process holds node 2's group lock", async () => {
    // Before, the ports were found free, three nodes started, and each died of STORAGE_LOCKED.
    const peer = await freePortRun(6);
    const dataDir = join(tempDir(), 'cluster');
    const group = join(dataDir, 'node2', 'group-0');
    mkdirSync(group, { recursive: true });
    // This test's own process: alive, and not the cluster's.
    writeFileSync(join(group, 'LOCK'), `${process.pid}\n`);
    const r = await runCli(threeNodes(peer, dataDir), 10_000);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(`group-0/LOCK is held by live process ${process.pid} \\(node 2\\)`),
    );
    assert.match(r.stderr, /nothing was started/);
    assert.doesNotMatch(r.stdout, /Ready|pid \d+/);
    assert.equal(existsSync(join(dataDir, 'node1')), false, 'node 1 directory was created');
  });
});

void describe('cluster up checks the binary client ports too', () => {
  void it('when another program holds the binary port of node 3', async () => {
    const peer = await freePortRun(9);
    const held = await holdPort(peer + 8);
    const dataDir = join(tempDir(), 'cluster');
    try {
      const r = await runCli(
        [
          'cluster',
          'up',
          '--peer-port',
          String(peer),
          '--client-port',
          String(peer + 3),
          '--binary-port',
          String(peer + 6),
          '--data-dir',
          dataDir,
        ],
        10_000,
      );
      assert.equal(r.code, 1, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(
          `Cannot listen for the binary client port of node 3 on 127\\.0\\.0\\.1:${peer + 8}: the address is already in use`,
        ),
      );
      assert.match(r.stderr, /--binary-port/);
      assert.doesNotMatch(r.stdout, /Ready|pid \d+/);
      assert.equal(existsSync(dataDir), false, `${dataDir} was created`);
    } finally {
      await release(held);
    }
  });
});

/** `cluster up` of three nodes: peer ports from `peer`, client ports the three after them. */
function threeNodes(peer: number, dataDir = tempDir()): string[] {
  return [
    ...['cluster', 'up', '--peer-port', String(peer), '--client-port', String(peer + 3)],
    ...['--data-dir', dataDir, '--log-level', 'warn'],
  ];
}

void describe('cluster up', () => {
  void it('announces the leader only from the nodes it started, and stops them on SIGINT', async () => {
    const peer = await freePortRun(6);
    const client = peer + 3;
    const run = startCli(threeNodes(peer));
    const [, leader] = await waitForOutput(run, /Ready: node (\d+) leads/, 30_000);
    const pids = printedPids(run);
    assert.equal(pids.size, 3, run.out.stdout);
    assert.ok(
      run.out.stdout.includes(`Dashboard: http://127.0.0.1:${client}/ `),
      `cluster up prints the dashboard's address:\n${run.out.stdout}`,
    );
    const res = await fetch(`http://127.0.0.1:${client + Number(leader) - 1}/v1/status`, {
      signal: AbortSignal.timeout(5_000),
    });
    const st = (await res.json()) as { id: number; pid: number; role: string };
    assert.equal(st.id, Number(leader));
    assert.equal(st.role, 'leader');
    assert.equal(st.pid, pids.get(st.id), 'the status names the PID cluster up printed');
    // A member removed from elsewhere stops; cluster up says so, not to restart it (its data
    // directory would refuse to start).
    const gone = [1, 2, 3].find((id) => id !== Number(leader)) as number;
    const removal = await fetch(
      `http://127.0.0.1:${client + Number(leader) - 1}/v1/cluster/members/remove`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ id: gone }),
        signal: AbortSignal.timeout(15_000),
      },
    );
    assert.equal(removal.status, 200, await removal.text());
    await waitForOutput(
      run,
      new RegExp(`node ${gone} was removed from the cluster \\(its data`),
      20_000,
    );
    assert.doesNotMatch(run.out.stdout, new RegExp(`node ${gone} exited`));
    // Under `npm start` a Ctrl-C arrives twice at once (the terminal's and the one npm
    // forwards); sent together here, the kernel may merge them into one. What this checks is
    // that the stop happens once, exits 0 and leaves no node running. A second signal sent
    // after the stop began would race this process's own exit, which it can reach within
    // 50 ms of its nodes' (its signal handlers are gone while it exits).
    run.child.kill('SIGINT');
    run.child.kill('SIGINT');
    assert.equal(await exitOf(run, 20_000), 0, run.out.stdout);
    const running = [...pids.values()].filter(alive);
    assert.deepEqual(
      running,
      [],
      `nodes still running after cluster up exited:\n${run.out.stdout}`,
    );
  });

  void it('leaves no node running when it is killed without stopping them', async () => {
    // SIGKILL, or a wrapper that took the signal and left (npm given SIGTERM once ran its
    // script through a shell that did not pass it on): the nodes must not run on orphaned.
    // With the binary client protocol served, whose ports the member lines name too (they
    // named the peer and client ports only).
    const peer = await freePortRun(9);
    const run = startCli([...threeNodes(peer), '--binary-port', String(peer + 6)]);
    await waitForOutput(run, /Ready: node \d+ leads/, 30_000);
    const pids = printedPids(run);
    assert.equal(pids.size, 3, run.out.stdout);
    for (const id of [1, 2, 3])
      assert.match(
        run.out.stdout,
        new RegExp(
          `node ${id}: client \\S+\\s+peer \\S+\\s+binary 127\\.0\\.0\\.1:${peer + 5 + id}\\s`,
        ),
      );
    run.child.kill('SIGKILL');
    await exitOf(run, 10_000);
    after(() => {
      for (const pid of pids.values()) if (alive(pid)) process.kill(pid, 'SIGKILL');
    });
    await until(
      () =>
        `nodes still running after cluster up was killed: ${[...pids.values()].filter(alive).join(', ')}`,
      () => [...pids.values()].every((pid) => !alive(pid)),
      20_000,
    );
  });

  void it('grows and shrinks while it runs: add, list, remove', async () => {
    // Ports for five nodes: peers p..p+4, clients p+5..p+9 (node 4 takes the next of each).
    const peer = await freePortRun(10);
    const dataDir = tempDir();
    const args = [
      'cluster',
      'up',
      '--peer-port',
      String(peer),
      '--client-port',
      String(peer + 5),
      '--data-dir',
      dataDir,
      '--log-level',
      'warn',
    ];
    const run = startCli(args, {}, { stdin: true });
    const stdin = run.child.stdin;
    assert.ok(stdin !== null);
    await waitForOutput(run, /Ready: node (\d+) leads/, 30_000);
    stdin.write('add\n');
    await waitForOutput(
      run,
      /node 4: client \S+\s+peer \S+\s+(?:binary \S+\s+)?pid \d+: joining through/,
      10_000,
    );
    // Node 4 is a learner until caught up, then a voter of both groups.
    const deadline = Date.now() + 30_000;
    const voter = /^4\s+127\.0\.0\.1:\d+\s+\S+\s+voter\s+voter/m;
    while (!voter.test(run.out.stdout)) {
      assert.ok(Date.now() < deadline, `node 4 never listed as a voter:\n${run.out.stdout}`);
      stdin.write('list\n');
      await new Promise((r) => setTimeout(r, 500));
    }
    stdin.write('remove 4\n');
    await waitForOutput(run, /node 4 was removed from the cluster and stopped/, 20_000);
    await waitForOutput(run, /removed: 4/, 5_000);
    stdin.write('remove 9\n');
    await waitForOutput(run, /remove 9: MEMBERSHIP_UNKNOWN_MEMBER/, 10_000);

    // `start N` starts a node that exited as it was started, and nothing else.
    stdin.write('start 4\n');
    await waitForOutput(run, /start 4: node 4 was removed from the cluster/, 5_000);
    stdin.write('start 1\n');
    await waitForOutput(run, /start 1: node 1 is running/, 5_000);
    stdin.write('start 9\n');
    await waitForOutput(run, /start 9: no node 9 was started here/, 5_000);
    const first = printedPids(run).get(2);
    assert.ok(first !== undefined, run.out.stdout);
    process.kill(first, 'SIGKILL');
    await waitForOutput(
      run,
      /node 2 exited \(SIGKILL\); it is not restarted\. Type "start 2"/,
      10_000,
    );
    stdin.write('start 2\n');
    await waitForOutput(
      run,
      /node 2: client \S+\s+peer \S+\s+(?:binary \S+\s+)?pid \d+: started again/,
      10_000,
    );
    const second = printedPids(run).get(2);
    assert.ok(second !== undefined && second !== first, run.out.stdout);
    let seen = '';
    await until(
      () => `node 2 answering as pid ${second} and following a leader (last seen: ${seen})`,
      async () => {
        try {
          const res = await fetch(`http://127.0.0.1:${peer + 6}/v1/status`, {
            signal: AbortSignal.timeout(1_000),
          });
          const st = (await res.json()) as { pid?: number; leader?: number };
          seen = JSON.stringify(st);
          return st.pid === second && (st.leader ?? 0) > 0;
        } catch (err) {
          seen = String(err);
          return false;
        }
      },
      20_000,
    );
    // Every node killed: with its terminal still open, cluster up waits for "start N".
    const pidsNow = printedPids(run);
    for (const id of [1, 2, 3]) process.kill(pidsNow.get(id) as number, 'SIGKILL');
    await waitForOutput(run, /All nodes have exited\. Type "start N" to start one again/, 10_000);
    stdin.write('start 3\n');
    await waitForOutput(
      run,
      /node 3: client \S+\s+peer \S+\s+(?:binary \S+\s+)?pid \d+: started again/,
      10_000,
    );
    assert.equal(run.child.exitCode, null, `cluster up exited:\n${run.out.stdout}`);
    run.child.kill('SIGINT');
    assert.equal(await exitOf(run, 20_000), 0, run.out.stdout);

    // Run again with removed node 4's directory deleted by hand: `add` must not take id 4,
    // which the cluster refuses for good, but the next id it never gave out.
    rmSync(join(dataDir, 'node4'), { recursive: true, force: true });
    const again = startCli(args, {}, { stdin: true });
    after(() => {
      for (const pid of printedPids(again).values()) if (alive(pid)) process.kill(pid, 'SIGKILL');
    });
    await waitForOutput(again, /Ready: node (\d+) leads/, 30_000);
    again.child.stdin?.write('add\n');
    await waitForOutput(
      again,
      /node 5: client \S+\s+peer \S+\s+(?:binary \S+\s+)?pid \d+: joining through/,
      10_000,
    );
    assert.doesNotMatch(again.out.stdout, /node 4: client/, again.out.stdout);
    const learner = /^5\s+127\.0\.0\.1:\d+\s+\S+\s+(?:learner|voter)\s/m;
    let asked = 0;
    await until(
      () => `node 5 listed as a member:\n${again.out.stdout}`,
      () => {
        if (learner.test(again.out.stdout)) return true;
        if (Date.now() - asked >= 500) {
          asked = Date.now();
          again.child.stdin?.write('list\n');
        }
        return false;
      },
      30_000,
    );
    again.child.kill('SIGINT');
    assert.equal(await exitOf(again, 20_000), 0, again.out.stdout);
  });

  void it('exits once every node has exited and no command can come', async () => {
    // Its standard input closed (a script, CI): nothing could start a node again.
    const run = startCli(threeNodes(await freePortRun(6)));
    await waitForOutput(run, /Ready: node \d+ leads/, 30_000);
    const pids = printedPids(run);
    assert.equal(pids.size, 3, run.out.stdout);
    for (const pid of pids.values()) process.kill(pid, 'SIGKILL');
    assert.equal(await exitOf(run, 20_000), 1, run.out.stdout);
    assert.match(run.out.stdout, /^All nodes have exited\.$/m);
  });

  void it('exits at once when every node has exited before a leader, and no command can come', async () => {
    // Each node refuses its data directory (another cluster's member 9) and exits. Before, the
    // wait for a leader kept cluster up alive for the rest of its 20 s.
    const dataDir = tempDir();
    for (const id of [1, 2, 3]) {
      const dir = join(dataDir, `node${id}`);
      mkdirSync(dir, { recursive: true });
      writeIdentity(dir, {
        clusterId: 'another',
        memberId: 9,
        members: [9],
        storage: 'wal',
        recovery: 'none',
      });
    }
    const run = startCli(threeNodes(await freePortRun(6), dataDir));
    assert.equal(await exitOf(run, 10_000), 1, run.out.stdout);
    assert.match(run.out.stdout, /^All nodes have exited\.$/m);
    assert.doesNotMatch(run.out.stdout, /No leader after 20 s/);
  });

  void it('still announces a leader elected after the wait for one said it was slow', async () => {
    // A node loading a large state on a busy machine led 4 s after "No leader after 20 s",
    // and cluster up never said Ready: the last word was that there was no leader.
    let leads = false;
    const node: Server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          id: 1,
          pid: process.pid,
          role: leads ? 'leader' : 'follower',
          leader: leads ? 1 : 0,
        }),
      );
    });
    await new Promise<void>((r) => node.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(node.address() as AddressInfo).port}`;
    const lines: string[] = [];
    let stop = false;
    try {
      const announced = announceLeader({
        members: [{ id: 1, client: url }],
        pids: new Map([[1, process.pid]]),
        out: (l) => lines.push(l),
        stopped: () => stop,
        timeoutMs: 300,
        slow: () => lines.push('slow'),
      });
      await until('the slow notice', () => lines.includes('slow'), 10_000);
      leads = true;
      assert.equal(await announced, true, lines.join('\n'));
      assert.deepEqual(lines, [
        'slow',
        'Ready: node 1 leads; every node accepts reads and writes.',
      ]);
    } finally {
      stop = true;
      node.closeAllConnections();
      await new Promise((r) => node.close(r));
    }
  });

  void it('does not take a stranger answering on a node port for its leader', async () => {
    // A process that is not the node started here answers on its client port, as another
    // cluster would, and claims to lead.
    const stranger: Server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id: 1, pid: 1, role: 'leader', leader: 1 }));
    });
    await new Promise<void>((r) => stranger.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(stranger.address() as AddressInfo).port}`;
    const lines: string[] = [];
    try {
      const announced = await announceLeader({
        members: [{ id: 1, client: url }],
        pids: new Map([[1, process.pid]]),
        out: (l) => lines.push(l),
        stopped: () => false,
        timeoutMs: 1_000,
      });
      assert.equal(announced, false, lines.join('\n'));
      assert.deepEqual(lines, [
        `${url} is answered by another process (node 1, pid 1), not node 1 (pid ${process.pid}) started here`,
      ]);
    } finally {
      stranger.closeAllConnections();
      await new Promise((r) => stranger.close(r));
    }
  });
});

void describe('start fails fast, before opening storage', () => {
  /** Starts node 1 with one of its ports held by another listener, then releases it. */
  const startWithTaken = async (taken: 'peer' | 'client' | 'binary', extra: string[] = []) => {
    const [peer, client, binary] = (await freePorts(3)) as [number, number, number];
    const port = { peer, client, binary }[taken];
    const dataDir = join(tempDir(), 'node1');
    const held = await holdPort(port);
    try {
      const r = await runCli(
        [
          'start',
          '--id',
          '1',
          '--data-dir',
          dataDir,
          '--initial-cluster',
          `1=127.0.0.1:${peer}@http://127.0.0.1:${client}`,
          ...(taken === 'binary' ? ['--client-protocol-port', String(binary)] : []),
          ...extra,
        ],
        10_000,
      );
      return { r, port, dataDirCreated: existsSync(dataDir) };
    } finally {
      await release(held);
    }
  };

  void it('when the client port is taken: names it, and creates no data directory', async () => {
    const { r, port, dataDirCreated } = await startWithTaken('client', ['--log-level', 'warn']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `ADDRESS_IN_USE: Cannot listen for clients \\(listenClient\\) on 127\\.0\\.0\\.1:${port}: the address is already in use`,
      ),
    );
    assert.equal(dataDirCreated, false, 'the data directory was not even created');
  });

  void it('when the client port is taken and logs are JSON: the reason is a log record too', async () => {
    const { r, port } = await startWithTaken('client', ['--log-format', 'json']);
    assert.equal(r.code, 1, r.stderr);
    const records = r.stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const fatal = records.find((x) => x['level'] === 60);
    assert.ok(fatal !== undefined, `no fatal record in: ${r.stdout}`);
    assert.equal(fatal['code'], 'ADDRESS_IN_USE');
    assert.match(String(fatal['msg']), new RegExp(`on 127\\.0\\.0\\.1:${port}`));
  });

  void it('when the peer port is taken', async () => {
    const { r, port, dataDirCreated } = await startWithTaken('peer');
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`peers \\(listenPeer\\) on 127\\.0\\.0\\.1:${port}`));
    assert.equal(dataDirCreated, false, 'the data directory was not even created');
  });

  void it('when the binary client-protocol port is taken', async () => {
    const { r, port, dataDirCreated } = await startWithTaken('binary');
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(`ADDRESS_IN_USE: .*clients \\(clientProtocolPort\\) on 127\\.0\\.0\\.1:${port}`),
    );
    assert.equal(dataDirCreated, false, 'the data directory was not even created');
  });

  // Free ports, never bound: the ports pass their check and the directory fails.
  const cluster = async (): Promise<string> => {
    const [peer, client] = (await freePorts(2)) as [number, number];
    return `1=127.0.0.1:${peer}@http://127.0.0.1:${client}`;
  };
  void it(
    'when the data directory cannot be created under /proc',
    { skip: !existsSync('/proc/self') },
    async () => {
      const r = await runCli(
        ['start', '--id', '1', '--data-dir', '/proc/x/data', '--initial-cluster', await cluster()],
        10_000,
      );
      assert.equal(r.code, 1, r.stderr);
      assert.match(
        r.stderr,
        /DATA_DIR_UNUSABLE: Cannot use data directory \/proc\/x\/data: cannot create \/proc\/x \(ENOENT/,
      );
    },
  );

  void it('when a component of the data directory is a file', async () => {
    const file = join(tempDir(), 'plain-file');
    writeFileSync(file, '');
    const r = await runCli(
      [
        'start',
        '--id',
        '1',
        '--data-dir',
        join(file, 'data'),
        '--initial-cluster',
        await cluster(),
      ],
      10_000,
    );
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`${file} exists and is not a directory`));
  });

  void it(
    'cluster up with a data directory under /proc',
    { skip: !existsSync('/proc/self') },
    async () => {
      const r = await runCli(['cluster', 'up', '--data-dir', '/proc/x'], 10_000);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /Cannot use data directory \/proc\/x\/node1: cannot create \/proc\/x/);
      assert.doesNotMatch(r.stdout, /pid \d+/);
    },
  );
});

void describe('start logs', () => {
  const cases: [string, string[], NodeJS.ProcessEnv, boolean][] = [
    // With a misspelt variable, warned of with the one it likely meant, and one the command
    // line reads, not warned of.
    [
      'JSON lines when piped, a warning for a FLOTILLA_ variable nothing reads',
      [],
      { FLOTILLA_JION: 'http://127.0.0.1:1', FLOTILLA_ENDPOINTS: 'http://127.0.0.1:2' },
      false,
    ],
    ['human lines with --log-format pretty', ['--log-format', 'pretty'], {}, true],
    ['human lines with FLOTILLA_LOG_FORMAT=pretty', [], { FLOTILLA_LOG_FORMAT: 'pretty' }, true],
  ];
  for (const [name, args, env, pretty] of cases) {
    void it(name, async () => {
      const [peer, client] = (await freePorts(2)) as [number, number];
      const run = startCli(
        [
          'start',
          '--id',
          '1',
          '--data-dir',
          join(tempDir(), 'node1'),
          '--initial-cluster',
          `1=127.0.0.1:${peer}@http://127.0.0.1:${client}`,
          ...args,
        ],
        env,
      );
      const [line] = await waitForOutput(run, /^.*node started.*$/m, 15_000);
      run.child.kill('SIGTERM');
      assert.equal(await exitOf(run, 15_000), 0, run.out.stderr);
      if (pretty) {
        assert.match(line, /^\d\d:\d\d:\d\d\.\d{3} INFO node started client=127\.0\.0\.1:/);
        assert.ok(line.includes(` dashboard=http://127.0.0.1:${client}/`), line);
      } else {
        const rec = JSON.parse(line) as { msg?: unknown; time?: unknown; dashboard?: unknown };
        assert.equal(rec.msg, 'node started');
        assert.equal(typeof rec.time, 'number');
        assert.equal(rec.dashboard, `http://127.0.0.1:${client}/`, 'start prints the dashboard');
        const warnings = run.out.stdout
          .split('\n')
          .filter((l) => l.includes('is not a setting'))
          .map(
            (l) =>
              JSON.parse(l) as { level: number; variable: string; meant?: string; msg: string },
          );
        assert.deepEqual(
          warnings.map((w) => [w.level, w.variable, w.meant, w.msg]),
          [
            [
              40,
              'FLOTILLA_JION',
              'FLOTILLA_JOIN',
              'FLOTILLA_JION is not a setting and is ignored: did you mean FLOTILLA_JOIN?',
            ],
          ],
          run.out.stdout,
        );
      }
    });
  }
});
