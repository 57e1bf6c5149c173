// `flotilla lock NAME -- cmd` and `flotilla elect NAME [value]`: the client's lock and
// election recipes (src/client/concurrency.ts) as commands, for shell scripts and cron jobs.

import { spawn } from 'node:child_process';
import { hostname } from 'node:os';
import {
  Election,
  FlotillaError,
  Mutex,
  Session,
  observe,
  type FlotillaClient,
} from '../client/index.js';

/**
 * Runs `argv` while holding lock `name`, with FLOTILLA_LOCK_KEY and FLOTILLA_LOCK_TOKEN (the
 * fencing token) in its environment. If the session's lease is lost while it runs, the command
 * is sent SIGTERM (SIGKILL 5 s later) and this exits 1. Answers the exit code to use.
 */
export async function runLocked(
  client: FlotillaClient,
  name: string,
  argv: readonly string[],
  ttl: number,
): Promise<number> {
  const [cmd, ...args] = argv;
  if (cmd === undefined)
    throw new FlotillaError(
      'INVALID_REQUEST',
      'No command to run: flotilla lock NAME -- cmd [args]',
    );
  const session = await Session.create(client, { ttl });
  try {
    const mutex = new Mutex(session, name);
    const held = await mutex.lock();
    process.stderr.write(`holding lock ${name} (token ${held.token})\n`);
    const child = spawn(cmd, args, {
      stdio: 'inherit',
      env: { ...process.env, FLOTILLA_LOCK_KEY: held.key, FLOTILLA_LOCK_TOKEN: String(held.token) },
    });
    let lost = false;
    session.done.catch((err: unknown) => {
      lost = true;
      process.stderr.write(`lost lock ${name}: ${(err as Error).message}; stopping the command\n`);
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 5_000).unref();
    });
    const code = await new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (c, signal) => resolve(c ?? (signal === null ? 1 : 128)));
    });
    if (!lost) await mutex.unlock();
    return lost ? 1 : code;
  } finally {
    await session.close().catch(() => undefined);
  }
}

/**
 * Campaigns in election `name` with `value`, prints `elected <token>` once it leads, and leads
 * until SIGINT or SIGTERM (then resigns) or until its lease is lost (exit 1). With `watchOnly`,
 * prints every change of leader instead, as JSON lines, until interrupted.
 */
export async function runElection(
  client: FlotillaClient,
  name: string,
  value: string | undefined,
  o: { ttl: number; watchOnly: boolean },
): Promise<number> {
  const stop = new AbortController();
  process.once('SIGINT', () => stop.abort());
  process.once('SIGTERM', () => stop.abort());
  if (o.watchOnly) {
    for await (const leader of observe(client, name, { signal: stop.signal }))
      process.stdout.write(`${JSON.stringify({ leader })}\n`);
    return 0;
  }
  const session = await Session.create(client, { ttl: o.ttl });
  try {
    const election = new Election(session, name);
    const held = await election.campaign(value ?? `${hostname()}-${process.pid}`, {
      signal: stop.signal,
    });
    process.stdout.write(`elected ${held.token}\n`);
    const lost = await Promise.race([
      session.done.then(
        () => false,
        () => true,
      ),
      new Promise<boolean>((resolve) =>
        stop.signal.addEventListener('abort', () => resolve(false)),
      ),
    ]);
    if (lost) {
      process.stderr.write(`lost the leadership of ${name}: the lease expired\n`);
      return 1;
    }
    await election.resign();
    process.stdout.write('resigned\n');
    return 0;
  } catch (err) {
    if (err instanceof FlotillaError && err.code === 'ABORTED') return 0;
    throw err;
  } finally {
    await session.close().catch(() => undefined);
  }
}
