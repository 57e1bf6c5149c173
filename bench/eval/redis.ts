// A private redis-server for the BullMQ side of the queue scenario: on a free loopback port,
// with its data in its own directory, started and stopped by PID through the run's process
// group. Two durability settings, stated exactly in the report:
//
//   always:  --appendonly yes --appendfsync always  (every write fsynced before it is answered,
//            the setting that compares with a Raft log synced on every batch)
//   default: redis-server's built-in defaults: no append-only file, RDB snapshots by the
//            default save rules (after 3600 s/1 change, 300 s/100, 60 s/10,000), so an
//            acknowledged job can be lost on a crash
//
// Nothing else is tuned in either.

import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { EvalError } from './errors.js';
import { freePorts, sleep, type ProcessGroup } from './procs.js';

export type RedisDurability = 'always' | 'default';

/** The redis-server binary's version line, or null when there is none on the PATH. */
export function redisVersion(command = 'redis-server'): string | null {
  try {
    const out = execFileSync(command, ['--version'], { timeout: 5_000, encoding: 'utf8' });
    return /v=(\S+)/.exec(out)?.[1] ?? out.trim();
  } catch {
    return null;
  }
}

export function redisArgs(port: number, dir: string, durability: RedisDurability): string[] {
  const base = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir];
  return durability === 'always'
    ? [...base, '--appendonly', 'yes', '--appendfsync', 'always']
    : base;
}

export class RedisServer {
  private pid: number | undefined;
  port = 0;

  constructor(
    private readonly o: {
      readonly dir: string;
      readonly durability: RedisDurability;
      readonly procs: ProcessGroup;
    },
  ) {}

  async start(): Promise<void> {
    mkdirSync(this.o.dir, { recursive: true });
    [this.port] = (await freePorts(1)) as [number];
    this.pid = this.o.procs.spawn({
      name: `redis-server (${this.o.durability})`,
      command: 'redis-server',
      args: redisArgs(this.port, this.o.dir, this.o.durability),
      logPath: join(this.o.dir, 'redis.log'),
    });
    const deadline = Date.now() + 10_000;
    while (!(await this.pong())) {
      if (this.pid === undefined || !this.o.procs.isRunning(this.pid) || Date.now() > deadline)
        throw new EvalError(
          'EVAL_CLUSTER_START',
          `redis-server did not answer PING on port ${this.port} within 10 s; log in ${this.o.dir}`,
        );
      await sleep(50);
    }
  }

  pidOf(): number | undefined {
    return this.pid;
  }

  /** One PING over a fresh connection: true when the server answered +PONG. */
  private pong(): Promise<boolean> {
    return new Promise((resolve) => {
      const s = createConnection({ host: '127.0.0.1', port: this.port });
      const done = (ok: boolean): void => {
        s.destroy();
        resolve(ok);
      };
      s.setTimeout(1_000, () => done(false));
      s.once('error', () => done(false));
      s.once('connect', () => s.write('PING\r\n'));
      s.once('data', (d) => done(d.toString().startsWith('+PONG')));
    });
  }

  async stop(): Promise<void> {
    if (this.pid === undefined) return;
    const pid = this.pid;
    this.pid = undefined;
    await this.o.procs.kill(pid, 'SIGTERM', 10_000);
  }
}
