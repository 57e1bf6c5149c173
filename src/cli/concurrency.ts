// `flotilla lock NAME -- cmd` and `flotilla elect NAME [value]`: the client's lock and
// election recipes (src/client/concurrency.ts) as commands, for shell scripts and cron jobs.

import { spawn } from 'node:child_process';
import { constants as osConstants, hostname } from 'node:os';
import {
  Election,
  FlotillaError,
  Mutex,
  Session,
  observe,
  type FlotillaClient,
} from '../client/index.js';
import { exactText } from './key-arg.js';

/** Signals that stop `flotilla lock`'s command and then free the lock, as they reach it. */
const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const;

/**
 * Runs `argv` while holding lock `name`, with FLOTILLA_LOCK_KEY and FLOTILLA_LOCK_TOKEN (the
 * fencing token) in its environment. Without a terminal on standard input the command runs in
 * a process group of its own, so that what it starts is stopped with it:
 *
 * - SIGINT, SIGTERM, SIGHUP or SIGQUIT sent to this process (a service manager, a cron daemon)
 *   is passed to the command's group, a second one as SIGKILL; once the command has exited, the
 *   lock is freed and this exits with the command's code. Exiting at once would leave the
 *   command running without the lock. (SIGKILL of this process cannot be passed on: the
 *   command then runs on until its lease runs out, and is not stopped.)
 * - If the session's lease is lost while it runs, the group is sent SIGTERM (SIGKILL 5 s
 *   later) and this exits 1.
 *
 * On a terminal the command stays in the terminal's group, so that it can read the terminal
 * (password prompts) and Ctrl-C and Ctrl-Z reach it directly; then only the command itself is
 * signalled. Answers the exit code to use: the command's, 128 + the signal's number when a
 * signal ended it, and 127 or 126 when it could not be started (not found, not executable),
 * as a shell says.
 *
 * With `encoding: 'base64'` the name is base64 (a name that is not UTF-8): FLOTILLA_LOCK_KEY is
 * then the key as text, and FLOTILLA_LOCK_KEY_BASE64 its bytes when they are not UTF-8.
 */
export async function runLocked(
  client: FlotillaClient,
  name: string,
  o: { argv: readonly string[]; ttl: number; encoding?: 'base64' },
): Promise<number> {
  const { argv, ttl } = o;
  const [cmd, ...args] = argv;
  if (cmd === undefined)
    throw new FlotillaError(
      'INVALID_REQUEST',
      'No command to run: flotilla lock NAME -- cmd [args]',
    );
  const session = await Session.create(client, { ttl });
  try {
    const mutex = new Mutex(
      session,
      name,
      o.encoding === undefined ? {} : { encoding: o.encoding },
    );
    const held = await mutex.lock();
    const key = o.encoding === 'base64' ? exactText(held.key) : { text: held.key };
    process.stderr.write(`holding lock ${name} (token ${held.token})\n`);
    const ownGroup = process.stdin.isTTY !== true;
    const child = spawn(cmd, args, {
      stdio: 'inherit',
      // Its own process group (and session): the group is signalled as a whole.
      detached: ownGroup,
      env: {
        ...process.env,
        FLOTILLA_LOCK_KEY: key.text,
        ...(key.base64 === undefined ? {} : { FLOTILLA_LOCK_KEY_BASE64: key.base64 }),
        FLOTILLA_LOCK_TOKEN: String(held.token),
      },
    });
    let exited = false;
    const signal = (sig: NodeJS.Signals): void => {
      if (exited || child.pid === undefined) return;
      try {
        process.kill(ownGroup ? -child.pid : child.pid, sig);
      } catch {
        // Gone already: the command and everything it started have exited.
      }
    };
    let asked = 0;
    const forward = (sig: NodeJS.Signals): void => {
      asked += 1;
      // On a terminal the command got the terminal's signal itself; a second one kills it.
      if (asked > 1) signal('SIGKILL');
      else if (ownGroup) signal(sig);
    };
    for (const sig of FORWARDED) process.on(sig, forward);
    let lost = false;
    let killTimer: NodeJS.Timeout | undefined;
    session.done.catch((err: unknown) => {
      lost = true;
      process.stderr.write(`lost lock ${name}: ${(err as Error).message}; stopping the command\n`);
      signal('SIGTERM');
      killTimer = setTimeout(() => signal('SIGKILL'), 5_000);
      killTimer.unref();
    });
    let code: number;
    try {
      code = await new Promise<number>((resolve) => {
        child.once('error', (err: NodeJS.ErrnoException) => {
          exited = true;
          process.stderr.write(`cannot run ${cmd}: ${err.message}\n`);
          resolve(err.code === 'ENOENT' ? 127 : 126);
        });
        child.once('exit', (c, sig) => {
          exited = true;
          resolve(c ?? (sig === null ? 1 : 128 + (osConstants.signals[sig] ?? 0)));
        });
      });
    } finally {
      clearTimeout(killTimer);
      // The command is done: a Ctrl-C now ends this process while it frees the lock.
      for (const sig of FORWARDED) process.off(sig, forward);
    }
    if (!lost) await mutex.unlock();
    return lost ? 1 : code;
  } finally {
    await session.close().catch(() => undefined);
  }
}

/**
 * Campaigns in election `name` with `value`, prints `elected <token>` once it leads, and leads
 * until SIGINT or SIGTERM (then resigns) or until its lease is lost (exit 1). With `watchOnly`,
 * prints every change of leader instead, as JSON lines, until interrupted. With `encoding:
 * 'base64'` the name is base64 (one that is not UTF-8); `value` stays text, and a leader's value
 * printed that is not UTF-8 has its base64 beside it (`valueBase64`).
 */
export async function runElection(
  client: FlotillaClient,
  name: string,
  value: string | undefined,
  o: { ttl: number; watchOnly: boolean; encoding?: 'base64' },
): Promise<number> {
  const stop = new AbortController();
  process.once('SIGINT', () => stop.abort());
  process.once('SIGTERM', () => stop.abort());
  const enc = o.encoding === undefined ? {} : { encoding: o.encoding };
  if (o.watchOnly) {
    for await (const leader of observe(client, name, { signal: stop.signal, ...enc }))
      process.stdout.write(
        `${JSON.stringify({ leader: o.encoding === undefined ? leader : exactLeader(leader) })}\n`,
      );
    return 0;
  }
  const session = await Session.create(client, { ttl: o.ttl });
  try {
    const election = new Election(session, name, enc);
    const announced = value ?? `${hostname()}-${process.pid}`;
    const held = await election.campaign(
      o.encoding === 'base64' ? Buffer.from(announced).toString('base64') : announced,
      { signal: stop.signal },
    );
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

/** A leader read in base64, its value as text with the base64 beside it if not UTF-8. */
function exactLeader(
  leader: { value: string; token: number } | null,
): { value: string; valueBase64?: string; token: number } | null {
  if (leader === null) return null;
  const value = exactText(leader.value);
  return {
    value: value.text,
    ...(value.base64 === undefined ? {} : { valueBase64: value.base64 }),
    token: leader.token,
  };
}
