// What watches a node's load and health (node.ts, FlotillaNode.start): the admission of client
// requests, the event loop's delay and stalls, and how long no leader has been known; with the
// metrics that show them.

import type { Host } from '../host/host.js';
import { systemClock } from '../host/contracts.js';
import type { RaftRuntime } from '../host/runtime.js';
import { Admission } from './admission.js';
import { LeaderlessWatch } from './leaderless.js';
import { LoopDelayMonitor, LoopStallWatch } from './loop-health.js';
import type { NodeMetrics } from './metrics.js';
import type { OpenedNode } from './node-open.js';
import { packageVersion } from './version.js';

/** The watches; the stall and leaderless watches start once the node serves. */
export interface NodeHealth {
  readonly admission: Admission;
  readonly loopDelay: LoopDelayMonitor;
  readonly stallWatch: LoopStallWatch;
  readonly leaderless: LeaderlessWatch;
  /** The shortest election timeout. */
  readonly electionTimeoutMs: number;
}

/** Makes the watches of a node whose groups run on `host`, range 0 on `runtime`. */
export function watchHealth(
  opened: Pick<OpenedNode, 'config' | 'log' | 'tls' | 'peers'>,
  o: { readonly metrics: NodeMetrics; readonly host: Host; readonly runtime: RaftRuntime },
): NodeHealth {
  const { config, log, tls, peers } = opened;
  const { transport } = peers;
  const { metrics, host, runtime } = o;
  const admission = new Admission(
    {
      maxRequests: config.maxInflightRequests,
      maxBytes: config.maxInflightBytes,
      maxAgeMs: config.maxInflightAgeMs,
      maxWaitMs: config.maxInflightWaitMs,
      maxWaiting: 4 * config.maxInflightRequests,
    },
    (ok) => metrics.admission.inc({ outcome: ok ? 'admitted' : 'overloaded' }),
  );
  metrics.bindAdmission(() => admission.state());
  const loopDelay = new LoopDelayMonitor();
  metrics.bindLoopDelay(() => loopDelay.snapshot());
  metrics.bindBuild(packageVersion());
  if (tls !== null) metrics.bindTlsExpiry(() => Math.floor(tls.material.validToMs / 1000));
  metrics.bindQuiescing(() => host.stats());
  // A heartbeat sent just before a stall leaves a peer's election timer the election timeout
  // less one heartbeat interval: a stall that long may cost an election, or, on a follower,
  // its leader's check-quorum. The warning names the stall that explains such an election.
  const electionTimeoutMs = config.electionTicks * config.tickMs;
  const stallWatch = new LoopStallWatch({
    clock: systemClock,
    periodMs: config.tickMs,
    thresholdMs: (config.electionTicks - config.heartbeatTicks) * config.tickMs,
    onStall: (s) => {
      metrics.loopStalls.inc();
      log.warn(
        { stalledMs: s.stalledMs, electionTimeoutMs },
        'event loop stalled: long enough for an election to start meanwhile',
      );
    },
  });
  const leaderless = new LeaderlessWatch({
    clock: systemClock,
    log,
    status: () => runtime.status(),
    received: (id) => {
      const got = transport.stats().peers.get(id)?.received ?? {};
      return Object.values(got).reduce((n, t) => n + t.messages, 0);
    },
  });
  metrics.bindLiveness(() => peers.transport.liveness?.sent ?? 0);
  return { admission, loopDelay, stallWatch, leaderless, electionTimeoutMs };
}
