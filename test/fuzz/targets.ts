// Each protocol's target: what it is fuzzed against (an in-process node or cluster) and how.

import { startClientNode } from './client-node.js';
import { httpTarget } from './http-target.js';
import { startPeerCluster } from './peer-cluster.js';
import { peerTarget } from './peer-target.js';
import type { FuzzTarget } from './run.js';
import { wireTarget } from './wire-target.js';

export const PROTOCOLS = ['http', 'wire', 'peer'] as const;
export type Protocol = (typeof PROTOCOLS)[number];

/** Starts what a protocol is fuzzed against and returns its target. */
export async function startTarget(protocol: Protocol): Promise<FuzzTarget> {
  if (protocol === 'peer') {
    const c = await startPeerCluster();
    return peerTarget(c);
  }
  const n = await startClientNode();
  if (protocol === 'http')
    return httpTarget({
      port: n.httpPort,
      internalErrors: n.internalErrors,
      stillServes: () => n.httpStillServes(),
      clear: () => n.clear(),
      close: () => n.close(),
    });
  return wireTarget({
    port: n.wirePort,
    internalErrors: n.internalErrors,
    maxFrameBytes: n.maxBodyBytes,
    stillServes: () => n.wireStillServes(),
    clear: () => n.clear(),
    close: () => n.close(),
  });
}

/**
 * The default inputs in flight. Fewer on the peer port: accepted fuzz connections share the
 * two absent members' names, and a new one replaces an open one of the same name.
 */
export function defaultConcurrency(protocol: Protocol): number {
  return protocol === 'peer' ? 8 : 32;
}
