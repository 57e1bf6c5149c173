// Running podman from a test, as this project's machines allow it (root, no registry, no
// Docker engine): the runc runtime and explicit ulimits no higher than the shell's, through a
// containers.conf of the test's own; a base image made locally with debootstrap, given the
// machine's own Node 20; every command bounded in time; and a record of every container,
// volume, network and image the test made, removed by id at the end, also after a failure.

import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';

export interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/** Runs a command, killing it (by its PID) after `timeoutMs`; refuses a failure unless `allowFail`. */
export function run(
  cmd: string,
  args: readonly string[],
  o: {
    timeoutMs: number;
    env?: NodeJS.ProcessEnv;
    allowFail?: boolean;
  },
): Promise<Run> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      env: { ...process.env, ...o.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, o.timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      const r = { code, stdout, stderr, ms: performance.now() - started };
      const line = `${cmd} ${args.join(' ')}`.slice(0, 300);
      if (timedOut)
        reject(new Error(`${line}: killed after ${o.timeoutMs} ms\n${stderr.slice(-2000)}`));
      else if (code !== 0 && o.allowFail !== true)
        reject(new Error(`${line}: exit ${code}\n${stderr.slice(-3000)}${stdout.slice(-1000)}`));
      else resolve(r);
    });
  });
}

/** The shell's hard limit of `flag` (-n, -u), capped at `cap`. */
function hardLimit(flag: string, cap: number): number {
  const r = spawnSync('sh', ['-c', `ulimit -H${flag}`], { encoding: 'utf8' });
  const n = Number(r.stdout.trim());
  return Number.isInteger(n) && n > 0 ? Math.min(n, cap) : cap;
}

/** What the test made, removed by id in reverse order by `cleanUp`. */
export class Podman {
  readonly containers = new Set<string>();
  readonly volumes = new Set<string>();
  readonly networks = new Set<string>();
  readonly images = new Set<string>();
  private readonly env: NodeJS.ProcessEnv;

  constructor(readonly workDir: string) {
    mkdirSync(workDir, { recursive: true });
    const conf = join(workDir, 'containers.conf');
    const nofile = hardLimit('n', 4096);
    const nproc = hardLimit('u', 4096);
    // crun fails on these machines (cgroups in hybrid mode, setrlimit); runc works, with
    // ulimits no higher than the shell's own.
    writeFileSync(
      conf,
      [
        '[containers]',
        `default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]`,
        '[engine]',
        'runtime = "runc"',
        '',
      ].join('\n'),
    );
    this.env = { CONTAINERS_CONF: conf };
  }

  podman(
    args: readonly string[],
    timeoutMs: number,
    o: { allowFail?: boolean } = {},
  ): Promise<Run> {
    return run('podman', args, { timeoutMs, env: this.env, ...o });
  }

  async inspect(
    what: 'container' | 'image' | 'network',
    id: string,
    format: string,
  ): Promise<string> {
    return (await this.podman([what, 'inspect', '--format', format, id], 30_000)).stdout.trim();
  }

  /** `podman build`; the image's id is recorded (and the ids of the stages it committed). */
  async build(
    args: readonly string[],
    context: string,
    timeoutMs: number,
  ): Promise<{ id: string; ms: number }> {
    const before = await this.allImageIds();
    const iid = join(this.workDir, `iid-${this.images.size}`);
    // Builds use the host's network: they fetch packages from Debian's and npm's registries,
    // and the default build network would be a private range.
    const r = await this.podman(
      ['build', '--network', 'host', '--iidfile', iid, ...args, context],
      timeoutMs,
    );
    const id = spawnSync('cat', [iid], { encoding: 'utf8' })
      .stdout.trim()
      .replace(/^sha256:/, '');
    this.images.add(id);
    // Stages committed on the way (the build stage) are this test's too.
    for (const other of await this.allImageIds()) if (!before.has(other)) this.images.add(other);
    return { id, ms: r.ms };
  }

  private async allImageIds(): Promise<Set<string>> {
    const r = await this.podman(['images', '--all', '--no-trunc', '--quiet'], 60_000);
    return new Set(
      r.stdout
        .split('\n')
        .map((l) => l.trim().replace(/^sha256:/, ''))
        .filter(Boolean),
    );
  }

  async runContainer(args: readonly string[]): Promise<string> {
    const r = await this.podman(['run', '--detach', ...args], 120_000);
    const id = r.stdout.trim().split('\n').at(-1) as string;
    this.containers.add(id);
    return id;
  }

  async createVolume(name: string): Promise<string> {
    await this.podman(['volume', 'create', name], 30_000);
    this.volumes.add(name);
    return name;
  }

  async removeVolume(name: string): Promise<void> {
    await this.podman(['volume', 'rm', '--force', name], 60_000);
    this.volumes.delete(name);
  }

  async removeContainer(id: string): Promise<void> {
    await this.podman(['rm', '--force', '--time', '0', id], 60_000);
    this.containers.delete(id);
  }

  async createNetwork(name: string, subnet: string): Promise<string> {
    await this.podman(['network', 'create', '--subnet', subnet, name], 30_000);
    const id = await this.inspect('network', name, '{{.ID}}');
    this.networks.add(id);
    return id;
  }

  /** Removes everything recorded, each by id; collects failures rather than stop at one. */
  async cleanUp(): Promise<string[]> {
    const failures: string[] = [];
    const each = async (ids: Set<string>, args: (id: string) => string[]): Promise<void> => {
      // Newest first: an image goes before the one it was built from.
      for (const id of [...ids].reverse()) {
        const r = await this.podman(args(id), 120_000, { allowFail: true }).catch((e: unknown) => ({
          code: -1,
          stderr: (e as Error).message,
        }));
        if (r.code === 0) ids.delete(id);
        else failures.push(`${args(id).join(' ')}: ${r.stderr.trim().slice(0, 300)}`);
      }
    };
    await each(this.containers, (id) => ['rm', '--force', '--time', '0', id]);
    await each(this.volumes, (id) => ['volume', 'rm', '--force', id]);
    await each(this.networks, (id) => ['network', 'rm', '--force', id]);
    await each(this.images, (id) => ['rmi', '--force', id]);
    rmSync(this.workDir, { recursive: true, force: true });
    return failures;
  }
}

/** Days a cached Debian root file system is used before it is made again. */
const cacheMaxAgeDays = 7;

function sha256Of(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/**
 * A Debian 12 minbase root file system as a tar file: made with debootstrap, or, when
 * `cacheDir` is given (FLOTILLA_CONTAINER_CACHE), taken from there if it is younger than
 * a week and matches the checksum written beside it. Written there by rename, so a run cut off
 * midway leaves no half file that a later run would take.
 */
async function debianRootfs(
  workDir: string,
  cacheDir: string | undefined,
): Promise<{ tar: string; ms: number; cached: boolean }> {
  const started = performance.now();
  const cached = cacheDir === undefined ? null : join(cacheDir, 'debian-bookworm-minbase.tar');
  if (cached !== null && existsSync(cached) && existsSync(`${cached}.sha256`)) {
    const ageDays = (Date.now() - statSync(cached).mtimeMs) / 86_400_000;
    if (
      ageDays < cacheMaxAgeDays &&
      readFileSync(`${cached}.sha256`, 'utf8').trim() === sha256Of(cached)
    )
      return { tar: cached, ms: performance.now() - started, cached: true };
  }
  const rootfs = join(workDir, 'rootfs');
  await run(
    'debootstrap',
    ['--variant=minbase', 'bookworm', rootfs, 'http://deb.debian.org/debian'],
    {
      timeoutMs: 8 * 60_000,
    },
  );
  const tar = join(workDir, 'rootfs.tar');
  await run('tar', ['-C', rootfs, '-cf', tar, '.'], { timeoutMs: 5 * 60_000 });
  rmSync(rootfs, { recursive: true, force: true });
  if (cached !== null && cacheDir !== undefined) {
    mkdirSync(cacheDir, { recursive: true });
    const partial = `${cached}.partial-${process.pid}`;
    cpSync(tar, partial);
    writeFileSync(`${cached}.sha256`, `${sha256Of(partial)}\n`);
    renameSync(partial, cached);
  }
  return { tar, ms: performance.now() - started, cached: false };
}

/**
 * A Debian 12 base made here (debootstrap, minbase) with this machine's Node 20 laid out as in
 * the official images (node, npm and the headers under /usr/local), for the Dockerfile's
 * BASE_IMAGE: no registry is reachable to pull node:20-slim from.
 */
export async function localNodeBase(
  p: Podman,
  tag: string,
  cacheDir: string | undefined,
): Promise<{ id: string; debootstrapMs: number; cached: boolean; baseMs: number }> {
  const rootfs = await debianRootfs(p.workDir, cacheDir);
  const imported = await p.podman(['import', rootfs.tar, `${tag}-debian`], 5 * 60_000);
  p.images.add(
    imported.stdout
      .trim()
      .split('\n')
      .at(-1)
      ?.replace(/^sha256:/, '') ?? '',
  );
  const ctx = join(p.workDir, 'node-base');
  mkdirSync(ctx, { recursive: true });
  const node = process.execPath;
  const prefix = dirname(dirname(realpathSync(node)));
  cpSync(node, join(ctx, 'node'));
  cpSync(join(prefix, 'lib', 'node_modules', 'npm'), join(ctx, 'npm'), { recursive: true });
  cpSync(join(prefix, 'include', 'node'), join(ctx, 'include'), { recursive: true });
  // The machine's own trust: where the registry is reached through a TLS proxy with a CA of
  // its own, Node here is told of it by NODE_EXTRA_CA_CERTS, and so is Node in the base.
  const trust: string[] = [];
  const extraCa = process.env['NODE_EXTRA_CA_CERTS'];
  if (extraCa !== undefined && extraCa !== '' && existsSync(extraCa)) {
    cpSync(extraCa, join(ctx, 'extra-ca.crt'));
    trust.push(
      'COPY extra-ca.crt /usr/local/share/flotilla-test-extra-ca.crt',
      'ENV NODE_EXTRA_CA_CERTS=/usr/local/share/flotilla-test-extra-ca.crt',
    );
  }
  writeFileSync(
    join(ctx, 'Containerfile'),
    [
      `FROM ${tag}-debian`,
      ...trust,
      'COPY node /usr/local/bin/node',
      'COPY npm /usr/local/lib/node_modules/npm',
      'COPY include /usr/local/include/node',
      'RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx && node --version && npm --version',
      '',
    ].join('\n'),
  );
  const base = await p.build(
    ['--tag', `${tag}-node`, '--file', join(ctx, 'Containerfile')],
    ctx,
    5 * 60_000,
  );
  return {
    id: base.id,
    debootstrapMs: rootfs.ms,
    cached: rootfs.cached,
    baseMs: imported.ms + base.ms,
  };
}
