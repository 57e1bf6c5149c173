// Hosts on a real network, on one Linux machine: one network namespace per host, each with its
// own interface and address, joined by a bridge that lives in a namespace of its own (the
// "switch"). The test process reaches the hosts from the root namespace through one more link
// into the switch, as a client outside the cluster would. Faults are the kernel's own:
//
//   partition   iptables DROP rules inside a host's namespace, both directions, per peer;
//   loss        iptables `statistic` DROP rules inside a host's namespace;
//   delay       `tc qdisc ... netem` on the host's interface, when the kernel has sch_netem
//               (`netemAvailable`); on a kernel without it, a relay in the host's namespace
//               (delay-relay.ts) that iptables REDIRECT puts between the host and the ports
//               it connects to on its peers, which forwards what the host sends late.
//
// Addresses are from 198.18.0.0/15, the range set aside for network tests (RFC 2544): one /24
// per run, chosen among 198.19.100-199.0/24 so that it overlaps no route the machine already
// has (another run, a container network). Every name carries the process id, so two runs on one
// machine never collide, and everything made here is removed by `destroy()`, which is safe to
// call twice and also runs, synchronously, if the process exits without calling it.

import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Every command here is bounded: a wedged `ip` or `iptables` must not hang a test. */
const COMMAND_TIMEOUT_MS = 10_000;

/** The host interface inside each namespace; namespaced, so every host can use the same name. */
const HOST_IF = 'eth0';

async function sh(cmd: string, args: readonly string[]): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, { timeout: COMMAND_TIMEOUT_MS });
    return stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${(e.stderr ?? '').trim() || e.message}`, {
      cause: err,
    });
  }
}

/** Like `sh`, for a command whose failure is an answer (does this exist?). */
async function succeeds(cmd: string, args: readonly string[]): Promise<boolean> {
  try {
    await run(cmd, args, { timeout: COMMAND_TIMEOUT_MS });
    return true;
  } catch {
    return false;
  }
}

/**
 * Why namespace tests cannot run here, or null when they can: they need root, `ip netns`,
 * and an iptables that works inside a namespace (the nft or the legacy backend).
 */
export async function netnsUnsupported(): Promise<string | null> {
  if (process.platform !== 'linux')
    return `network namespaces are Linux only (${process.platform})`;
  if (process.getuid?.() !== 0) return 'network namespaces need root (uid 0)';
  if (!(await succeeds('ip', ['netns', 'list']))) return '`ip netns` is unavailable (iproute2)';
  const probe = `flotilla-probe-${process.pid}`;
  try {
    await sh('ip', ['netns', 'add', probe]);
  } catch (err) {
    return `cannot create a network namespace: ${(err as Error).message}`;
  }
  try {
    return (await findIptables(probe)) === null
      ? 'no iptables (nft or legacy backend) works inside a namespace: apt-get install iptables'
      : null;
  } finally {
    await succeeds('ip', ['netns', 'del', probe]);
  }
}

/** The first iptables command that can list the filter table inside namespace `ns`. */
async function findIptables(ns: string): Promise<string | null> {
  for (const cmd of ['iptables', 'iptables-nft', 'iptables-legacy']) {
    if (await succeeds('ip', ['netns', 'exec', ns, cmd, '-w', '-S'])) return cmd;
  }
  return null;
}

/** IPv4 routes of the root namespace as [network, prefix length], the default route left out. */
async function rootRoutes(): Promise<[number, number][]> {
  const out = await sh('ip', ['-4', 'route', 'show', 'table', 'all']);
  const routes: [number, number][] = [];
  for (const line of out.split('\n')) {
    const m = /^(?:\w+\s+)?(\d+\.\d+\.\d+\.\d+)(?:\/(\d+))?\s/.exec(line);
    if (m === null) continue;
    routes.push([ipToInt(m[1] as string), m[2] === undefined ? 32 : Number(m[2])]);
  }
  return routes;
}

function ipToInt(ip: string): number {
  return ip.split('.').reduce((a, b) => a * 256 + Number(b), 0);
}

function overlaps(a: [number, number], b: [number, number]): boolean {
  const bits = Math.min(a[1], b[1]);
  const block = 2 ** (32 - bits);
  return Math.floor(a[0] / block) === Math.floor(b[0] / block);
}

/** A /24 in 198.19.100-199.0 that overlaps no route of the root namespace; the pid picks first. */
async function freeSubnet(): Promise<string> {
  const routes = await rootRoutes();
  for (let i = 0; i < 100; i++) {
    const third = 100 + ((process.pid + i) % 100);
    const net: [number, number] = [ipToInt(`198.19.${third}.0`), 24];
    if (!routes.some((r) => overlaps(r, net))) return `198.19.${third}`;
  }
  throw new Error('No free /24 in 198.19.100.0-198.19.199.0: every one overlaps a route');
}

export interface Degradation {
  /**
   * One-way delay added to what the host sends: everything, with netem; without it, what it
   * sends on the TCP connections it opens to `ports` on the other hosts (the relay).
   */
  readonly delayMs: number;
  /** Percentage of packets dropped, each way. */
  readonly lossPercent: number;
  /** The other hosts' TCP ports the relay delays (needed only without netem). */
  readonly ports?: readonly number[];
}

/**
 * The relay's own source ports: below Linux's default ephemeral range (32768-60999), so no
 * connection of the host's own is ever given one and slips past the REDIRECT rules.
 */
const RELAY_SOURCE_PORTS = [21_000, 21_999] as const;
/** Relay listening ports: base + 16 * peer host + index of the port. */
const RELAY_LISTEN_BASE = 17_000;
/** A relay ends itself after this, should the test never let it go. */
const RELAY_MAX_LIFE_MS = 600_000;
const RELAY_READY_MS = 10_000;

interface Rule {
  readonly table: 'filter' | 'nat';
  readonly spec: string[];
}

export interface HostsOptions {
  readonly hosts: number;
}

/**
 * `hosts` namespaces on one bridge. Host `i` (1-based) has address `${subnet}.${i}`; the root
 * namespace has `${subnet}.254`.
 */
export class NetnsHosts {
  /** Whether this kernel has sch_netem (delay); known after `create`. */
  netemAvailable = false;
  /** In every name this object gives a namespace or link. */
  readonly tag = `f${process.pid}`;
  /** Namespaces made so far, removed in reverse order. */
  private readonly made: string[] = [];
  /** Root-namespace links made so far (each removed with its peer, if still there). */
  private readonly rootLinks: string[] = [];
  /** Each host's iptables rules in force, as `-A` argument lists, to delete one by one. */
  private readonly rules = new Map<number, Rule[]>();
  private readonly netem = new Set<number>();
  /** Each degraded host's delay relay, on a kernel without netem. */
  private readonly relays = new Map<number, ChildProcess>();
  private destroyed = false;
  private iptables = 'iptables';
  private readonly onExit = (): void => this.destroySync();

  private constructor(
    private readonly o: HostsOptions,
    readonly subnet: string,
  ) {
    process.once('exit', this.onExit);
  }

  static async create(o: HostsOptions): Promise<NetnsHosts> {
    if (o.hosts < 1 || o.hosts > 200) throw new Error(`hosts must be 1 to 200, saw ${o.hosts}`);
    const h = new NetnsHosts(o, await freeSubnet());
    try {
      await h.build();
    } catch (err) {
      await h.destroy();
      throw err;
    }
    return h;
  }

  /** The namespace of host `i`. */
  ns(i: number): string {
    this.check(i);
    return `${this.tag}-h${i}`;
  }

  /** Host `i`'s address. */
  address(i: number): string {
    this.check(i);
    return `${this.subnet}.${i}`;
  }

  /** The argument list that runs `cmd args...` inside host `i`'s namespace (`ip netns exec`). */
  execArgs(i: number, cmd: string, args: readonly string[]): string[] {
    return ['netns', 'exec', this.ns(i), cmd, ...args];
  }

  private get switchNs(): string {
    return `${this.tag}-sw`;
  }

  private check(i: number): void {
    if (!Number.isInteger(i) || i < 1 || i > this.o.hosts)
      throw new Error(`No host ${i}: hosts are 1 to ${this.o.hosts}`);
  }

  private async addNs(name: string): Promise<void> {
    await sh('ip', ['netns', 'add', name]);
    this.made.push(name);
    await sh('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  }

  /**
   * A veth pair made in the root namespace under unique names, its `far` end moved into the
   * switch and enslaved to the bridge; returns the near end's name, still in the root.
   */
  private async linkToSwitch(near: string, far: string, farName: string): Promise<void> {
    await sh('ip', ['link', 'add', near, 'type', 'veth', 'peer', 'name', far]);
    this.rootLinks.push(near, far);
    await sh('ip', ['link', 'set', far, 'netns', this.switchNs]);
    await sh('ip', ['-n', this.switchNs, 'link', 'set', far, 'name', farName]);
    await sh('ip', ['-n', this.switchNs, 'link', 'set', farName, 'master', 'br0', 'up']);
  }

  private async build(): Promise<void> {
    await this.addNs(this.switchNs);
    await sh('ip', ['-n', this.switchNs, 'link', 'add', 'br0', 'type', 'bridge']);
    await sh('ip', ['-n', this.switchNs, 'link', 'set', 'br0', 'up']);
    for (let i = 1; i <= this.o.hosts; i++) {
      const ns = this.ns(i);
      await this.addNs(ns);
      const near = `${this.tag}h${i}`;
      await this.linkToSwitch(near, `${this.tag}s${i}`, `h${i}`);
      await sh('ip', ['link', 'set', near, 'netns', ns]);
      await sh('ip', ['-n', ns, 'link', 'set', near, 'name', HOST_IF]);
      await sh('ip', ['-n', ns, 'addr', 'add', `${this.address(i)}/24`, 'dev', HOST_IF]);
      await sh('ip', ['-n', ns, 'link', 'set', HOST_IF, 'up']);
    }
    const client = `${this.tag}c`;
    await this.linkToSwitch(client, `${this.tag}cs`, 'client');
    await sh('ip', ['addr', 'add', `${this.subnet}.254/24`, 'dev', client]);
    await sh('ip', ['link', 'set', client, 'up']);
    const found = await findIptables(this.ns(1));
    if (found === null) throw new Error('No iptables works inside the namespaces');
    this.iptables = found;
    this.netemAvailable = await this.probeNetem();
  }

  private async probeNetem(): Promise<boolean> {
    const ns = this.ns(1);
    const ok = await succeeds('ip', [
      'netns',
      'exec',
      ns,
      'tc',
      'qdisc',
      'add',
      'dev',
      HOST_IF,
      'root',
      'netem',
      'delay',
      '1ms',
    ]);
    if (ok) await sh('ip', ['netns', 'exec', ns, 'tc', 'qdisc', 'del', 'dev', HOST_IF, 'root']);
    return ok;
  }

  private async addRule(i: number, spec: string[], table: Rule['table'] = 'filter'): Promise<void> {
    await sh('ip', this.execArgs(i, this.iptables, ['-w', '-t', table, '-A', ...spec]));
    const list = this.rules.get(i) ?? [];
    list.push({ table, spec });
    this.rules.set(i, list);
  }

  /** Drops everything between host `i` and each of `peers`, both ways, in `i`'s namespace. */
  async partition(i: number, peers: readonly number[]): Promise<void> {
    for (const p of peers) {
      await this.addRule(i, ['INPUT', '-s', this.address(p), '-j', 'DROP']);
      await this.addRule(i, ['OUTPUT', '-d', this.address(p), '-j', 'DROP']);
    }
  }

  /**
   * Host `i`'s link made worse: `lossPercent` of packets dropped each way (iptables
   * `statistic`) and, where the kernel has netem, `delayMs` added to what it sends.
   */
  async degrade(i: number, d: Degradation): Promise<void> {
    if (d.lossPercent > 0) {
      const p = (d.lossPercent / 100).toFixed(4);
      const loss = ['-m', 'statistic', '--mode', 'random', '--probability', p, '-j', 'DROP'];
      await this.addRule(i, ['INPUT', '-i', HOST_IF, ...loss]);
      await this.addRule(i, ['OUTPUT', '-o', HOST_IF, ...loss]);
    }
    if (d.delayMs > 0 && !this.netemAvailable) await this.delayByRelay(i, d);
    if (d.delayMs > 0 && this.netemAvailable) {
      await sh(
        'ip',
        this.execArgs(i, 'tc', [
          'qdisc',
          'add',
          'dev',
          HOST_IF,
          'root',
          'netem',
          'delay',
          `${d.delayMs}ms`,
        ]),
      );
      this.netem.add(i);
    }
  }

  /**
   * Delay without netem: a relay in host `i`'s namespace (delay-relay.ts) listens for each
   * port of `d.ports` on each other host; iptables REDIRECT sends every new connection `i`
   * opens to one of them to the relay, and a reset ends the connections `i` had open, so that
   * they are opened again through it. The relay's own connections leave from its source ports,
   * which the rules leave alone; they cross the interface, so the loss rules apply to them too.
   */
  private async delayByRelay(i: number, d: Degradation): Promise<void> {
    const ports = d.ports ?? [];
    if (ports.length === 0 || ports.length > 16)
      throw new Error('Delay without netem needs 1 to 16 ports to delay (Degradation.ports)');
    if (this.relays.has(i)) throw new Error(`Host ${i} is delayed already; heal it first`);
    const [first, last] = RELAY_SOURCE_PORTS;
    const routes: { listen: number; host: string; port: number }[] = [];
    for (let j = 1; j <= this.o.hosts; j++)
      if (j !== i)
        ports.forEach((port, k) =>
          routes.push({ listen: RELAY_LISTEN_BASE + 16 * j + k, host: this.address(j), port }),
        );
    const script = fileURLToPath(new URL('./delay-relay.js', import.meta.url));
    const args = [script, String(d.delayMs), String(first), String(last)];
    args.push(String(RELAY_MAX_LIFE_MS), ...routes.map((r) => `${r.listen}=${r.host}:${r.port}`));
    const relay = spawn('ip', this.execArgs(i, process.execPath, args), {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.relays.set(i, relay);
    await relayReady(relay);
    const own = ['!', '--sport', `${first}:${last}`];
    for (const r of routes) {
      const to = ['-p', 'tcp', '-d', r.host, '--dport', String(r.port), ...own];
      await this.addRule(
        i,
        ['OUTPUT', ...to, '-j', 'REDIRECT', '--to-ports', String(r.listen)],
        'nat',
      );
      // After NAT a redirected connection leaves by the loopback: only the ones opened before
      // are still on the interface, and each is reset when it next sends.
      await this.addRule(i, [
        'OUTPUT',
        '-o',
        HOST_IF,
        ...to,
        '-j',
        'REJECT',
        '--reject-with',
        'tcp-reset',
      ]);
    }
  }

  /** Removes every partition and degradation of host `i`. */
  async heal(i: number): Promise<void> {
    const list = this.rules.get(i) ?? [];
    while (list.length > 0) {
      const rule = list[list.length - 1] as Rule;
      await sh('ip', this.execArgs(i, this.iptables, ['-w', '-t', rule.table, '-D', ...rule.spec]));
      list.pop();
    }
    if (this.netem.delete(i))
      await sh('ip', this.execArgs(i, 'tc', ['qdisc', 'del', 'dev', HOST_IF, 'root']));
    const relay = this.relays.get(i);
    this.relays.delete(i);
    if (relay !== undefined) await ended(relay);
  }

  /** The iptables rules in host `i`'s namespace now, as `iptables -S` prints them. */
  async rulesOf(i: number, table: Rule['table'] = 'filter'): Promise<string> {
    return sh('ip', this.execArgs(i, this.iptables, ['-w', '-t', table, '-S']));
  }

  /** Removes every namespace and link this object made. Safe to call twice. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    process.removeListener('exit', this.onExit);
    // A process in a namespace keeps it alive: the relays end first.
    for (const relay of this.relays.values()) await ended(relay);
    this.relays.clear();
    const errors: string[] = [];
    for (const ns of [...this.made].reverse()) {
      // Deleting a namespace deletes its interfaces, and a veth goes with either end.
      if ((await sh('ip', ['netns', 'list'])).split('\n').some((l) => l.split(' ')[0] === ns))
        await sh('ip', ['netns', 'del', ns]).catch((e: Error) => errors.push(e.message));
    }
    for (const link of this.rootLinks) {
      // A veth whose other end went with its namespace is removed by the kernel a moment
      // later: it may vanish between `show` and `del`. Only a link still there is left behind.
      if (await succeeds('ip', ['link', 'show', 'dev', link]))
        await sh('ip', ['link', 'del', link]).catch(async (e: Error) => {
          if (await succeeds('ip', ['link', 'show', 'dev', link])) errors.push(e.message);
        });
    }
    if (errors.length > 0) throw new Error(`Cleanup left something behind: ${errors.join('; ')}`);
  }

  /** The same as `destroy`, synchronously: for an exiting process. */
  private destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    const quiet = (args: string[]): void => {
      try {
        execFileSync('ip', args, { stdio: 'ignore', timeout: COMMAND_TIMEOUT_MS });
      } catch {
        // Already gone, or never made: nothing to undo.
      }
    };
    for (const relay of this.relays.values()) relay.kill('SIGKILL');
    for (const ns of [...this.made].reverse()) quiet(['netns', 'del', ns]);
    for (const link of this.rootLinks) quiet(['link', 'del', link]);
  }
}

/** Resolves once `relay` printed `ready`; kills it and throws with its errors otherwise. */
async function relayReady(relay: ChildProcess): Promise<void> {
  let out = '';
  let err = '';
  relay.stderr?.on('data', (b: Buffer) => (err += b.toString()));
  const ready = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), RELAY_READY_MS);
    relay.stdout?.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('ready')) {
        clearTimeout(timer);
        resolve(true);
      }
    });
    relay.once('exit', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
  if (ready) return;
  await ended(relay);
  throw new Error(`The delay relay did not start within ${RELAY_READY_MS} ms: ${err.trim()}`);
}

/** Kills `p` (if it still runs) and resolves once it exited. */
export async function ended(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once('exit', r));
  p.kill('SIGKILL');
  await exited;
}
