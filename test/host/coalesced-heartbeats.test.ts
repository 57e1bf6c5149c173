// Many groups on three hosts over TCP, their heartbeats coalesced per peer (PROTOCOL.md,
// version 4): every group's leader must reach every follower with its heartbeats, and hear
// every follower's answers, although a tick's heartbeats to one peer leave as one frame. The
// same with one host that speaks only version 3, and with a planted fault on the wire (a
// proxy that leaves one group's records out of the coalesced frames), which the check must
// name.

import assert from 'node:assert/strict';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { afterEach, test } from 'node:test';
import { chunkStream, systemClock, type StateMachine } from '../../src/host/contracts.js';
import { Host } from '../../src/host/host.js';
import { createRng } from '../../src/raft/index.js';
import type { Message } from '../../src/raft/types.js';
import { createMemoryStorage } from '../../src/storage/index.js';
import { decodeHeartbeats, encodeHeartbeats } from '../../src/transport/coalesced.js';
import { FrameDecoder, FrameType, PREFACE, encodeSmallFrame } from '../../src/transport/frame.js';
import { TcpTransport } from '../../src/transport/tcp.js';
import type { PeerAddress } from '../../src/transport/types.js';

const GROUPS = 90;

const nothing: StateMachine = {
  apply: (commands) => commands.map(() => null),
  snapshot: () => chunkStream(() => [][Symbol.iterator]()),
  restore: async (chunks) => {
    for await (const _ of chunks) void _;
  },
};

interface Member {
  readonly id: number;
  readonly host: Host;
  readonly transport: TcpTransport;
  /** Messages received, by `group:type:from`. */
  readonly heard: Map<string, number>;
}

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

/**
 * A proxy in front of one peer port that leaves the records of `drop`'s groups out of every
 * HEARTBEATS frame it forwards: the planted fault of a coalescer that loses a group.
 */
async function lossyProxy(target: PeerAddress, drop: Set<number>): Promise<PeerAddress> {
  const server: Server = createServer((client: Socket) => {
    const upstream = createConnection({ host: target.host, port: target.port });
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    upstream.pipe(client);
    const decoder = new FrameDecoder(16 * 1024 * 1024);
    let preface = false;
    client.on('data', (chunk: Buffer) => {
      decoder.push(chunk);
      if (!preface) {
        const p = decoder.take(PREFACE.length);
        if (p === null) return;
        preface = true;
        upstream.write(p);
      }
      for (let f = decoder.next(); f !== null; f = decoder.next()) {
        if (f instanceof Error) return void client.destroy();
        if (f.type !== FrameType.heartbeats) {
          upstream.write(encodeSmallFrame(f.type, f.payload));
          continue;
        }
        const kept = decodeHeartbeats(f.payload, 1, 2).filter((r) => !drop.has(r.group));
        const records = kept.map((r) => ({
          msg: r.msg as Parameters<typeof encodeHeartbeats>[0][number]['msg'],
          group: r.group,
        }));
        if (records.length > 0)
          upstream.write(encodeSmallFrame(FrameType.heartbeats, encodeHeartbeats(records)));
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(() => new Promise<void>((r) => server.close(() => r())));
  const a = server.address();
  assert.ok(a !== null && typeof a === 'object');
  return { host: '127.0.0.1', port: a.port };
}

/** Three hosts running the same GROUPS groups; `pinned` ids speak only protocol version 3. */
async function cluster(
  o: {
    pinned?: readonly number[];
    route?: (from: number, to: number, a: PeerAddress) => Promise<PeerAddress>;
  } = {},
): Promise<Member[]> {
  const transports = await Promise.all(
    [1, 2, 3].map((id) =>
      TcpTransport.listen({
        nodeId: id,
        clusterId: 'coalesced',
        listen: { host: '127.0.0.1', port: 0 },
        backoff: { baseMs: 10, maxMs: 100 },
        ...(o.pinned?.includes(id) === true ? { protocolVersionMax: 3 } : {}),
      }),
    ),
  );
  for (const t of transports) cleanup.push(() => t.close());
  for (const [i, t] of transports.entries())
    for (const [j, peer] of transports.entries()) {
      if (i === j) continue;
      t.setPeer(j + 1, (await o.route?.(i + 1, j + 1, peer.address)) ?? peer.address);
    }
  const members: Member[] = [];
  for (const [i, transport] of transports.entries()) {
    const heard = new Map<string, number>();
    const host = new Host({
      id: i + 1,
      clock: systemClock,
      tickMs: 10,
      transport: {
        send: (m, a, g) => transport.send(m, a, g),
        flush: () => transport.flush(),
        onMessage: (h) =>
          transport.onMessage((m: Message, a, g) => {
            const k = `${g}:${m.type}:${m.from}`;
            heard.set(k, (heard.get(k) ?? 0) + 1);
            h(m, a, g);
          }),
        close: () => transport.close(),
      },
    });
    cleanup.push(() => host.close(0));
    for (let g = 0; g < GROUPS; g++)
      await host.addGroup(g, {
        voters: [1, 2, 3],
        storage: createMemoryStorage({ quiet: true }),
        stateMachine: nothing,
        // Election timeouts differ by group, so that leadership spreads over the hosts.
        rng: createRng(1_000 * (i + 1) + g),
        electionTicks: 15,
        heartbeatTicks: 5,
      });
    members.push({ id: i + 1, host, transport, heard });
  }
  return members;
}

async function until<T>(what: string, ms: number, f: () => T | null): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== null) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Each group's leader, once every host knows the same one for every group. */
function leaders(ms: readonly Member[]): number[] | null {
  const out: number[] = [];
  for (let g = 0; g < GROUPS; g++) {
    const l = ms[0]?.host.group(g)?.leaderId() ?? 0;
    if (l === 0 || ms.some((m) => m.host.group(g)?.leaderId() !== l)) return null;
    out.push(l);
  }
  return out;
}

/**
 * What is not heard yet: for each group, at least `n` heartbeats from its leader at each
 * follower, and `n` answers from each follower at the leader (counted since `from`).
 */
function unheard(
  ms: readonly Member[],
  lead: readonly number[],
  from: Map<string, number>[],
  n: number,
): string[] {
  const missing: string[] = [];
  const count = (m: Member, k: string): number =>
    (m.heard.get(k) ?? 0) - (from[m.id - 1]?.get(k) ?? 0);
  lead.forEach((l, g) => {
    const leader = ms[l - 1] as Member;
    for (const f of ms) {
      if (f.id === l) continue;
      if (count(f, `${g}:heartbeat:${l}`) < n) missing.push(`group ${g}: heartbeats ${l}->${f.id}`);
      if (count(leader, `${g}:heartbeat-resp:${f.id}`) < n)
        missing.push(`group ${g}: answers ${f.id}->${l}`);
    }
  });
  return missing;
}

function elected(ms: readonly Member[]): Promise<number[]> {
  return until('every group to have one leader', 20_000, () => leaders(ms));
}

/**
 * Waits (bounded) until every group's heartbeats and answers were heard, each way, from now
 * on; returns what was still not heard at the bound (empty: all).
 */
async function checkEveryGroupHeard(
  ms: readonly Member[],
  lead: readonly number[],
  boundMs: number,
): Promise<string[]> {
  const from = ms.map((m) => new Map(m.heard));
  const deadline = Date.now() + boundMs;
  let missing = unheard(ms, lead, from, 3);
  while (missing.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
    missing = unheard(ms, lead, from, 3);
  }
  return missing;
}

function frames(m: Member, peer: number): { framesIn: number; messagesIn: number } {
  const p = m.transport.stats().peers.get(peer);
  const messagesIn = Object.values(p?.received ?? {}).reduce((n, v) => n + v.messages, 0);
  return { framesIn: p?.framesReceived ?? 0, messagesIn };
}

/** Frames and messages each node read from each peer, by `node<-peer`. */
function traffic(ms: readonly Member[]): Map<string, { framesIn: number; messagesIn: number }> {
  const out = new Map<string, { framesIn: number; messagesIn: number }>();
  for (const m of ms)
    for (const peer of [1, 2, 3].filter((p) => p !== m.id))
      out.set(`${m.id}<-${peer}`, frames(m, peer));
  return out;
}

void test('every group hears its leader and its followers, in frames shared by the groups', async () => {
  const ms = await cluster();
  const lead = await elected(ms);
  const before = traffic(ms);
  assert.deepStrictEqual(await checkEveryGroupHeard(ms, lead, 5_000), []);
  for (const [link, now] of traffic(ms)) {
    const framesIn = now.framesIn - (before.get(link)?.framesIn ?? 0);
    const messagesIn = now.messagesIn - (before.get(link)?.messagesIn ?? 0);
    // Two followers of a group exchange nothing: a link may carry little.
    if (messagesIn < 30) continue;
    assert.ok(
      framesIn * 2 < messagesIn,
      `node ${link}: ${framesIn} frames for ${messagesIn} messages while idle: not coalesced`,
    );
  }
});

void test('a node that speaks only version 3 hears and is heard by every group, one frame per message', async () => {
  const ms = await cluster({ pinned: [3] });
  const lead = await elected(ms);
  const before = traffic(ms);
  assert.deepStrictEqual(await checkEveryGroupHeard(ms, lead, 5_000), []);
  const [m1, m2, m3] = ms as [Member, Member, Member];
  for (const [m, peer] of [
    [m3, 1],
    [m3, 2],
    [m1, 3],
    [m2, 3],
  ] as const) {
    const { framesIn, messagesIn } = frames(m, peer);
    assert.equal(framesIn, messagesIn, `node ${m.id} from node ${peer}: version 3, not coalesced`);
  }
  // Between nodes 1 and 2, while idle: fewer frames than messages.
  const after = traffic(ms);
  const delta = (link: string, k: 'framesIn' | 'messagesIn'): number =>
    (after.get(link)?.[k] ?? 0) - (before.get(link)?.[k] ?? 0);
  const framesIn = delta('1<-2', 'framesIn') + delta('2<-1', 'framesIn');
  const messagesIn = delta('1<-2', 'messagesIn') + delta('2<-1', 'messagesIn');
  assert.ok(
    messagesIn > 0 && framesIn * 2 < messagesIn,
    `nodes 1 and 2 still coalesce between them: ${framesIn} frames for ${messagesIn} messages`,
  );
});

void test('the check names a group whose records a coalesced frame lost (planted)', async () => {
  const drop = new Set<number>();
  // Node 1's connection to node 2 goes through the lossy proxy.
  const ms = await cluster({
    route: (from, to, a) => (from === 1 && to === 2 ? lossyProxy(a, drop) : Promise.resolve(a)),
  });
  const lead = await elected(ms);
  // A group for which node 1 sends node 2 something: it leads it, or node 2 does.
  const g = lead.findIndex((l) => l === 1 || l === 2);
  assert.ok(g >= 0, `node 3 leads every group: ${lead.join(',')}`);
  drop.add(g);
  const missing = await checkEveryGroupHeard(ms, lead, 1_500);
  assert.ok(missing.length > 0, 'the lost group went unnoticed');
  assert.ok(
    missing.every((s) => s.startsWith(`group ${g}:`)),
    `only group ${g} is missing, saw ${missing.join('; ')}`,
  );
});
