// The liveness lane's thread (liveness.ts says why it exists). It holds one connection to each
// peer and a timer; it sends only heartbeats, and only while the main thread is silent.

import { parentPort, workerData } from 'node:worker_threads';
import { createRng } from '../raft/rng.js';
import type { Heartbeat, NodeId } from '../raft/types.js';
import { laneNowMs, type FromLane, type LaneData, type Leading, type ToLane } from './liveness.js';
import { PeerLink, type PeerContext } from './peer.js';
import { PeerTls } from './tls.js';
import { systemTransportClock, type TransportEvent } from './types.js';

const data = workerData as LaneData;
const port = parentPort;
if (port === null) throw new Error('liveness-thread.ts runs as a worker thread');

const shared = new Float64Array(data.shared);
const { heartbeatMs, graceMs } = data.liveness;
const self = data.opts.nodeId;
const links = new Map<NodeId, PeerLink>();
const leading = new Map<number, Leading>();
/** When each group's last heartbeat went out from here. */
const lastSent = new Map<number, number>();
/** Peers whose refusal was reported, so a peer that refuses the lane is not reported every dial. */
const reported = new Set<NodeId>();
const tls = data.tls === null ? null : new PeerTls(data.tls);

const ctx: PeerContext = {
  opts: data.opts,
  clock: systemTransportClock,
  rng: createRng(self * 40503 + 7),
  tls,
  lane: 'liveness',
  emit: (e) => report(e),
};

/**
 * Refusals and errors reach the node's log; connection comings and goings do not (the main
 * connection's events say whether a peer is reachable, and the lane's would contradict them).
 */
function report(e: TransportEvent): void {
  if (e.kind === 'peer-connected') reported.delete(e.peer);
  if (e.kind !== 'handshake-refused' && e.kind !== 'tls-refused' && e.kind !== 'protocol-error')
    return;
  if (reported.has(e.peer)) return;
  reported.add(e.peer);
  const m: FromLane = { kind: 'event', event: e };
  port?.postMessage(m);
}

port.on('message', (m: ToLane) => {
  switch (m.kind) {
    case 'peer': {
      if (m.id === self) return;
      const link = links.get(m.id);
      if (link === undefined) links.set(m.id, new PeerLink(m.id, m.address, ctx));
      else link.setAddress(m.address);
      return;
    }
    case 'alive':
      links.get(m.id)?.peerAlive();
      return;
    case 'remove':
      void links.get(m.id)?.close();
      links.delete(m.id);
      return;
    case 'lead':
      if (m.leading === null) leading.delete(m.group);
      else leading.set(m.group, m.leading);
      watchWhileLeading();
      return;
    case 'tls':
      tls?.update(m.material);
      return;
  }
});

/**
 * Speaks for a main thread silent for at least a heartbeat interval and at most the grace:
 * one heartbeat per led group per interval, to each follower whose lane is connected.
 */
function check(): void {
  const now = laneNowMs();
  const silentMs = now - (shared[0] ?? now);
  if (silentMs < heartbeatMs || silentMs > graceMs) return;
  for (const [group, l] of leading) {
    if (now - (lastSent.get(group) ?? 0) < heartbeatMs) continue;
    lastSent.set(group, now);
    for (const to of l.followers) {
      const link = links.get(to);
      if (link === undefined || !link.connected) continue;
      const hb: Heartbeat = { type: 'heartbeat', from: self, to, term: l.term, commit: 0, seq: 0 };
      link.send(hb, null, group);
      // Counted before the flush below writes it: a reader that has seen it has seen the count.
      shared[1] = (shared[1] ?? 0) + 1;
    }
  }
  // Once for all groups: a peer that speaks version 4 gets them in one coalesced frame.
  for (const link of links.values()) link.flush();
}

/** The timer runs only while this node leads a group: a follower's thread sleeps throughout. */
let timer: NodeJS.Timeout | null = null;
function watchWhileLeading(): void {
  if (leading.size > 0 && timer === null)
    timer = setInterval(check, Math.max(5, Math.floor(heartbeatMs / 2)));
  else if (leading.size === 0 && timer !== null) {
    clearInterval(timer);
    timer = null;
  }
}
