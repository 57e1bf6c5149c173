// Facts about the machine a run was measured on, printed at the top of every report.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';

export interface MachineFacts {
  readonly cpuModel: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly kernel: string;
  readonly node: string;
  readonly etcd: string | null;
  readonly disk: string;
  readonly loadAverageAtStart: readonly number[];
}

function run(cmd: string, args: readonly string[]): string | null {
  try {
    return execFileSync(cmd, [...args], { encoding: 'utf8', timeout: 5_000 }).trim();
  } catch {
    return null;
  }
}

function diskOf(dir: string): string {
  const src = run('findmnt', ['-no', 'SOURCE,FSTYPE', '--target', dir]) ?? 'unknown';
  const dev = /\/dev\/([a-z]+)/.exec(src)?.[1];
  let kind = '';
  if (dev !== undefined) {
    try {
      const rot = readFileSync(`/sys/block/${dev}/queue/rotational`, 'utf8').trim();
      kind = rot === '0' ? ', non-rotational' : ', rotational';
    } catch {
      kind = '';
    }
  }
  return `${src.replace(/\s+/g, ' ')}${kind}`;
}

export function machineFacts(dataDir: string): MachineFacts {
  const c = cpus();
  const etcdVersion = run('etcd', ['--version']);
  return {
    cpuModel: c[0]?.model ?? 'unknown',
    cores: c.length,
    memoryGiB: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    kernel: release(),
    node: process.version,
    etcd: etcdVersion === null ? null : (/etcd Version:\s*(\S+)/.exec(etcdVersion)?.[1] ?? null),
    disk: diskOf(dataDir),
    loadAverageAtStart: loadavg().map((x) => Math.round(x * 100) / 100),
  };
}
