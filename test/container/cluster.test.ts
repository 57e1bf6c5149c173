// The project's own Dockerfile and compose file, run for real under podman: the image is built
// (on a Debian base made here with the machine's Node 20, as BASE_IMAGE), the compose file's
// three members are started with the settings compose.yaml gives them on a network of the
// test's own (198.18.7.0/24), and, while a writer keeps writing through them:
//
//   1. the leader is stopped with SIGTERM: it must hand over and exit 0, and start again;
//   2. a follower is killed (SIGKILL) and replaced by a container at a new address on the
//      same volume: the others must find it again by its name;
//   3. member 1, the bootstrap member, is replaced by a container with an empty volume: it must
//      find the cluster, recover and catch up, not start a cluster of its own.
//
// Then every acknowledged write must read back with its value, from the cluster and from the
// replaced member's own state; the members must be the same three voters; every container's
// HEALTHCHECK must pass. Runs only with FLOTILLA_CONTAINER_TESTS=1 (root, podman, runc,
// debootstrap; not in CI, docs/TESTING.md says how to run it). Figures (build and run times, image size) are printed.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { FlotillaClient, FlotillaError } from '../../src/client/index.js';
import type { MembersResponse, NodeStatus } from '../../src/api/types.js';
import {
  composeServices,
  dockerfileRuntime,
  root,
  type ComposeService,
} from '../deploy/manifests.js';
import { Podman, localNodeBase } from './podman.js';

const enabled = process.env['FLOTILLA_CONTAINER_TESTS'] === '1';
const subnet = '198.18.7';

/** GET or POST with a strongly held timer; null on any failure (the caller polls). */
async function http<T>(url: string, body?: unknown, timeoutMs = 3_000): Promise<T | null> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  try {
    const res = await fetch(url, {
      method: body === undefined ? 'GET' : 'POST',
      ...(body === undefined
        ? {}
        : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
      signal: ac.signal,
    });
    const json = (await res.json()) as T;
    return res.status === 200 ? json : null;
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
  }
}

async function until<T>(
  what: string,
  probe: () => Promise<T | null | false>,
  timeoutMs: number,
  seen: () => string | Promise<string>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== null && v !== false) return v;
    if (Date.now() > deadline)
      throw new Error(`${what}: not within ${timeoutMs} ms; ${await seen()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

void test(
  'the image and compose file: a cluster that survives SIGTERM, SIGKILL and a new address, and a lost volume',
  {
    skip: enabled
      ? false
      : 'set FLOTILLA_CONTAINER_TESTS=1 to run (needs root, podman, runc, debootstrap)',
    timeout: 15 * 60_000,
  },
  async (t) => {
    const started = performance.now();
    const runId = randomBytes(4).toString('hex');
    const tag = `localhost/flotilla-test-${runId}`;
    const p = new Podman(join(tmpdir(), `flotilla-container-${runId}`));
    const figures: Record<string, string> = {};
    const say = (k: string, v: string): void => {
      figures[k] = v;
      t.diagnostic(`${k}: ${v}`);
    };
    const services = composeServices('compose.yaml');
    const byName = new Map(services.map((s) => [s.name, s]));
    const containerOf = new Map<string, string>();
    const addressOf = new Map<string, string>();
    let nextHost = 11;
    const logsOf = async (): Promise<string> => {
      const out: string[] = [];
      for (const [name, id] of containerOf) {
        const r = await p.podman(['logs', '--tail', '15', id], 30_000, { allowFail: true });
        out.push(
          `--- ${name} (${addressOf.get(name)}):\n${r.stdout.slice(-3000)}${r.stderr.slice(-3000)}`,
        );
      }
      return out.join('\n');
    };
    let client: FlotillaClient | null = null;
    let failed = false;
    let writing = true;
    let writerDone: Promise<void> = Promise.resolve();
    try {
      // --- The image, from the project's own Dockerfile.
      const base = await localNodeBase(
        p,
        tag,
        process.env['FLOTILLA_CONTAINER_CACHE'] || undefined,
      );
      say(
        base.cached ? 'debootstrap base (cached)' : 'debootstrap base',
        `${(base.debootstrapMs / 1000).toFixed(0)} s`,
      );
      say('node base image', `${(base.baseMs / 1000).toFixed(0)} s`);
      const image = await p.build(
        [
          '--format',
          'docker',
          '--layers=false',
          '--build-arg',
          `BASE_IMAGE=${tag}-node`,
          '--tag',
          tag,
          '--file',
          join(root, 'Dockerfile'),
        ],
        root,
        12 * 60_000,
      );
      say('image build', `${(image.ms / 1000).toFixed(0)} s`);
      const size = Number(await p.inspect('image', image.id, '{{.Size}}'));
      say(
        'image size',
        `${(size / 1e6).toFixed(0)} MB (on a ${(Number(await p.inspect('image', base.id, '{{.Size}}')) / 1e6).toFixed(0)} MB base)`,
      );
      assert.equal(
        await p.inspect('image', image.id, '{{.Config.User}}'),
        '10001:10001',
        'runs as a user, not root',
      );
      assert.match(
        await p.inspect('image', image.id, '{{json .Config.Healthcheck}}'),
        /healthcheck\.js/,
      );
      assert.deepEqual(
        Object.keys(
          JSON.parse(await p.inspect('image', image.id, '{{json .Config.Volumes}}')) as object,
        ),
        [dockerfileRuntime().volume],
      );

      // --- The compose file's members, each as compose.yaml sets it up.
      const network = `flotilla-test-${runId}`;
      await p.createNetwork(network, `${subnet}.0/24`);
      const volumeOf = (s: ComposeService): [string, string] => {
        const [name, target] = Object.entries(s.volumes)[0] as [string, string];
        return [`flotilla-test-${runId}-${name}`, target];
      };
      const start = async (s: ComposeService): Promise<void> => {
        const [volume, target] = volumeOf(s);
        const address = `${subnet}.${nextHost++}`;
        const env = Object.entries(s.environment).flatMap(([k, v]) => ['--env', `${k}=${v}`]);
        const id = await p.runContainer([
          '--name',
          `flotilla-test-${runId}-${s.name}`,
          '--hostname',
          s.hostname,
          '--network',
          network,
          '--network-alias',
          s.hostname,
          '--ip',
          address,
          '--volume',
          `${volume}:${target}`,
          '--stop-timeout',
          String(s.stopGraceSeconds),
          ...env,
          tag,
        ]);
        containerOf.set(s.name, id);
        addressOf.set(s.name, address);
      };
      for (const s of services) await p.createVolume(volumeOf(s)[0]);
      const clusterStarted = performance.now();
      for (const s of services) await start(s);
      const url = (name: string): string => `http://${addressOf.get(name) as string}:8001`;
      const urls = (): string[] => services.map((s) => url(s.name));
      const members = (): Promise<MembersResponse | null> => {
        const asked = urls();
        return Promise.all(
          asked.map((u) => http<MembersResponse>(`${u}/v1/cluster/members/list`, {})),
        ).then((all) => all.find((m) => m !== null) ?? null);
      };
      const threeVoters = async (): Promise<MembersResponse | null> => {
        const m = await members();
        return m !== null &&
          m.members.map((x) => x.id).join() === '1,2,3' &&
          m.members.every((x) => x.role === 'voter' && x.queueRole === 'voter')
          ? m
          : null;
      };
      const ready = (name: string) => (): Promise<boolean> =>
        http<{ ready: boolean }>(`${url(name)}/readyz`).then((r) => r?.ready === true);
      await until('three voters in both groups', threeVoters, 180_000, logsOf);
      say(
        'cluster up (first start: bootstrap wait, two joins, promotions)',
        `${((performance.now() - clusterStarted) / 1000).toFixed(1)} s`,
      );

      // --- A writer that keeps writing distinct keys through every member.
      const acked = new Map<string, string>();
      let failedWrites = 0;
      const writer = async (): Promise<void> => {
        for (let i = 0; writing && i < 100_000; i++) {
          const c = new FlotillaClient({ endpoints: urls(), deadlineMs: 20_000, protocol: 'http' });
          try {
            for (let j = 0; writing && j < 25; j++, i++) {
              const key = `k${i}`;
              try {
                await c.put(key, `v${i}`);
                acked.set(key, `v${i}`);
              } catch (err) {
                if (!(err instanceof FlotillaError)) throw err;
                failedWrites++;
              }
            }
          } finally {
            await c.close();
          }
        }
      };
      writerDone = writer();
      const wroteMore = async (than: number): Promise<void> => {
        await until(
          `writes acknowledged past ${than}`,
          () => Promise.resolve(acked.size > than),
          60_000,
          logsOf,
        );
      };
      await wroteMore(50);

      // --- 1. SIGTERM on the leader: hand-off, exit 0, then back.
      const leaderName = async (): Promise<string> => {
        const m = await until('a leader', members, 30_000, logsOf);
        return `node${m.leader}`;
      };
      const leader = await leaderName();
      const stop = await p.podman(
        ['stop', '--time', '30', containerOf.get(leader) as string],
        60_000,
      );
      say('SIGTERM to exit (leader)', `${(stop.ms / 1000).toFixed(1)} s`);
      assert.equal(
        await p.inspect('container', containerOf.get(leader) as string, '{{.State.ExitCode}}'),
        '0',
        'a clean exit',
      );
      await until(
        'a new leader among the others',
        async () => {
          const m = await members();
          return m !== null && m.leader !== 0 && `node${m.leader}` !== leader;
        },
        30_000,
        logsOf,
      );
      await p.podman(['start', containerOf.get(leader) as string], 60_000);
      await until(`${leader} ready again`, ready(leader), 120_000, logsOf);
      await wroteMore(acked.size + 20);

      // --- 2. SIGKILL on a follower, replaced by a container at a new address, same volume.
      const m2 = await until('a leader', members, 30_000, logsOf);
      const follower =
        services.map((s) => s.name).find((n) => n !== `node${m2.leader}` && n !== 'node1') ??
        'node2';
      const oldAddress = addressOf.get(follower);
      await p.podman(['kill', containerOf.get(follower) as string], 60_000);
      await p.removeContainer(containerOf.get(follower) as string);
      await start(byName.get(follower) as ComposeService);
      assert.notEqual(addressOf.get(follower), oldAddress);
      await until(
        `${follower} found again at ${addressOf.get(follower)}`,
        ready(follower),
        120_000,
        logsOf,
      );
      await wroteMore(acked.size + 20);

      // --- 3. Member 1 (the bootstrap member) replaced with an empty volume.
      const lost = 'node1';
      await p.removeContainer(containerOf.get(lost) as string);
      await p.removeVolume(volumeOf(byName.get(lost) as ComposeService)[0]);
      await p.createVolume(volumeOf(byName.get(lost) as ComposeService)[0]);
      const replaced = performance.now();
      await start(byName.get(lost) as ComposeService);
      const status = (): Promise<NodeStatus | null> => http<NodeStatus>(`${url(lost)}/v1/status`);
      const first = await until(`${lost} serves again`, status, 120_000, logsOf);
      await until(`${lost} caught up and ready`, ready(lost), 180_000, logsOf);
      say(
        'empty-volume member caught up and ready',
        `${((performance.now() - replaced) / 1000).toFixed(1)} s`,
      );
      await wroteMore(acked.size + 20);
      writing = false;
      await writerDone;
      say('writes', `${acked.size} acknowledged, ${failedWrites} failed`);

      // --- Nothing acknowledged lost; the replaced member holds it all; still three voters.
      const lostLogs = await p.podman(['logs', containerOf.get(lost) as string], 30_000);
      const allLogs = lostLogs.stdout + lostLogs.stderr;
      assert.match(allLogs, /this id is a voter that held a log/, 'told it held a log');
      assert.doesNotMatch(allLogs, /starting a new cluster/, 'never bootstrapped again');
      assert.ok(first.id === 1);
      await until('the same three voters', threeVoters, 60_000, logsOf);
      client = new FlotillaClient({ endpoints: urls(), deadlineMs: 20_000, protocol: 'http' });
      const own = new FlotillaClient({
        endpoints: [url(lost)],
        deadlineMs: 20_000,
        protocol: 'http',
      });
      try {
        for (const [key, value] of acked) {
          assert.equal((await client.get(key))?.value, value, `acknowledged ${key} lost`);
          assert.equal(
            (await own.get(key, { serializable: true }))?.value,
            value,
            `the replaced member lacks ${key}`,
          );
        }
      } finally {
        await own.close();
      }
      for (const s of services) {
        const h = await p.podman(
          ['healthcheck', 'run', containerOf.get(s.name) as string],
          60_000,
          { allowFail: true },
        );
        assert.equal(h.code, 0, `${s.name} HEALTHCHECK: ${h.stdout}${h.stderr}`);
      }
      say('container test (all of it)', `${((performance.now() - started) / 1000).toFixed(0)} s`);
    } catch (err) {
      failed = true;
      t.diagnostic(await logsOf().catch((e: unknown) => String(e)));
      throw err;
    } finally {
      writing = false;
      await writerDone.catch((e: unknown) => t.diagnostic(`writer: ${String(e)}`));
      await client?.close();
      const failures = await p.cleanUp();
      process.stdout.write(`container test figures: ${JSON.stringify(figures)}\n`);
      // After a failure the first error is the one to see; the leftovers are printed.
      if (failed) for (const f of failures) t.diagnostic(`not removed: ${f}`);
      else assert.deepEqual(failures, [], 'everything the test made is removed');
    }
  },
);
