// `npm run example`: a local three-member cluster (`flotilla cluster up`, the package's own
// command, as a user would run it) and the task board against it. Prints the board's URL and
// the dashboard's; Ctrl-C or SIGTERM stops the board and the cluster, by PID, and waits for
// them. The ports sit beside `npm start`'s (7001.., 8001..) so both can run at once:
//
//   board     http://127.0.0.1:8100/      (--port or BOARD_PORT)
//   members   client 8101..8103, peer 7101..7103   (--client-port, --peer-port)
//   data      data/example/                (--data-dir; the board survives a restart)

import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const members = 3;
const stopTimeoutMs = 15_000;
const readyTimeoutMs = 60_000;

/** The installed package's root and its `flotilla` command, found by name like any dependency. */
function flotillaCli(): string {
  const pkgJson = fileURLToPath(import.meta.resolve('flotilla/package.json'));
  const pkg = JSON.parse(readFileSync(pkgJson, 'utf8')) as { bin: { flotilla: string } };
  return join(dirname(pkgJson), pkg.bin.flotilla);
}

function port(name: string, raw: string): number {
  const n = Number(raw);
  if (!/^\d{1,5}$/.test(raw) || n < 1 || n > 65_535)
    throw new Error(`${name} must be an integer from 1 to 65535, got "${raw}"`);
  return n;
}

/** Whether `port` can be listened on now: a clear refusal before anything starts. */
function checkFree(host: string, p: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new Error(
          err.code === 'EADDRINUSE'
            ? `Port ${p} (the board) is in use by another process; nothing was started. Choose another with --port.`
            : `Cannot listen on ${host}:${p}: ${err.message}`,
        ),
      ),
    );
    srv.listen(p, host, () => srv.close(() => resolve()));
  });
}

/** Forwards a child's output line by line, and resolves when a line matches `ready`. */
function watchOutput(child: ChildProcess, prefix: string, ready: RegExp): Promise<string> {
  return new Promise((resolve) => {
    for (const stream of [child.stdout, child.stderr]) {
      let buf = '';
      stream?.setEncoding('utf8');
      stream?.on('data', (chunk: string) => {
        buf += chunk;
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          process.stdout.write(`${prefix}${line}\n`);
          const m = ready.exec(line);
          if (m !== null) resolve(m[1] ?? line);
        }
      });
    }
  });
}

const exited = (c: ChildProcess): Promise<number> =>
  c.exitCode !== null || c.signalCode !== null
    ? Promise.resolve(c.exitCode ?? 1)
    : new Promise((r) => c.once('exit', (code) => r(code ?? 1)));

/** SIGTERM to each child by PID, SIGKILL to any still running after the bound. */
async function stopAll(children: readonly ChildProcess[]): Promise<void> {
  const running = children.filter((c) => c.exitCode === null && c.signalCode === null);
  for (const c of running) if (c.pid !== undefined) process.kill(c.pid, 'SIGTERM');
  const timer = setTimeout(() => {
    for (const c of running)
      if (c.exitCode === null && c.signalCode === null && c.pid !== undefined)
        process.kill(c.pid, 'SIGKILL');
  }, stopTimeoutMs);
  await Promise.all(running.map(exited));
  clearTimeout(timer);
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      'client-port': { type: 'string', default: '8101' },
      'peer-port': { type: 'string', default: '7101' },
      'data-dir': { type: 'string', default: join('data', 'example') },
    },
  });
  const host = '127.0.0.1';
  const boardPort = port('--port', values.port ?? process.env['BOARD_PORT'] ?? '8100');
  const clientPort = port('--client-port', values['client-port']);
  await checkFree(host, boardPort);

  const cli = flotillaCli();
  // Each child in a process group of its own: Ctrl-C reaches this process only, which then
  // stops each child exactly once, by PID.
  const cluster = spawn(
    process.execPath,
    [
      cli,
      'cluster',
      'up',
      '--nodes',
      String(members),
      '--peer-port',
      String(port('--peer-port', values['peer-port'])),
      '--client-port',
      String(clientPort),
      '--data-dir',
      values['data-dir'],
      '--cluster-id',
      'board-example',
      '--log-level',
      'warn',
    ],
    { stdio: ['pipe', 'pipe', 'pipe'], detached: true },
  );
  // What is typed here goes to `cluster up`, whose commands it prints ("start N" brings back
  // a node killed to watch the board fail over); it ends with this process's input.
  cluster.stdin?.on('error', () => undefined);
  if (cluster.stdin !== null) process.stdin.pipe(cluster.stdin);
  const children: ChildProcess[] = [cluster];
  // One stop, whatever asks for it: a second SIGTERM would end `cluster up` before its nodes.
  let stopped: Promise<void> | null = null;
  const stop = (why: string): Promise<void> => {
    if (stopped === null) {
      process.stdout.write(`${why}; stopping the board and the cluster...\n`);
      // Reading the terminal would keep this process alive after its children.
      process.stdin.unpipe();
      process.stdin.destroy();
      stopped = stopAll(children).then(() => void process.stdout.write('Stopped.\n'));
    }
    return stopped;
  };
  let signalled = false;
  // `on`, not `once`: Ctrl-C under `npm run` arrives twice (the terminal's process group, and
  // npm forwarding it), and a signal with no listener left would end this process at once,
  // before it has stopped the board.
  for (const sig of ['SIGINT', 'SIGTERM'] as const)
    process.on(sig, () => {
      signalled = true;
      void stop(sig);
    });

  const clusterReady = watchOutput(cluster, '[cluster] ', /^Ready: /);
  const first = await Promise.race([clusterReady.then(() => 'ready'), exited(cluster)]);
  if (first !== 'ready' || signalled) {
    await stop(signalled ? 'Stopped before the cluster was ready' : 'The cluster did not start');
    return signalled ? 0 : 1;
  }
  const endpoints = Array.from({ length: members }, (_, i) => `http://${host}:${clientPort + i}`);
  const board = spawn(
    process.execPath,
    [
      join(dirname(fileURLToPath(import.meta.url)), 'main.js'),
      '--endpoints',
      endpoints.join(','),
      '--host',
      host,
      '--port',
      String(boardPort),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  children.push(board);
  const boardUrl = watchOutput(board, '[board] ', /^Board: (\S+)/);
  const up = await Promise.race([
    boardUrl,
    exited(board).then(() => null),
    new Promise<null>((r) => setTimeout(() => r(null), readyTimeoutMs).unref()),
  ]);
  if (up === null || signalled) {
    await stop(signalled ? 'Stopped before the board was ready' : 'The board did not start');
    return signalled ? 0 : 1;
  }
  process.stdout.write(
    `\nTask board:  ${up}\nDashboard:   ${endpoints[0]}/  (every member serves it)\n` +
      `Processes:   cluster up pid ${cluster.pid ?? '?'}, board pid ${board.pid ?? '?'}\n` +
      'Open the board in two browsers. Stop the leader (see the dashboard) with kill -9 and\n' +
      'keep using the board; type "start N" here to start node N again. Press Ctrl-C to stop\n' +
      'everything.\n\n',
  );
  // Either child ending by itself ends the example: one without the other is of no use.
  await Promise.race(children.map(exited));
  const byItself = !signalled;
  await stop(byItself ? 'A process of the example exited by itself' : 'Signalled');
  return byItself ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`example: ${(err as Error).message}\n`);
    process.exitCode = 2;
  },
);
