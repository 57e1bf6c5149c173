// Structured logs (pino) of the events a person follows when watching a cluster: role
// changes, elections with who voted for whom and why a vote was refused, leader changes,
// snapshots, peer connections, and fatal errors.

import { pino, type Logger } from 'pino';
import type { RuntimeEvent } from './runtime.js';

export function createLogger(nodeId: number, level: string): Logger {
  return pino({ level, base: { node: nodeId } });
}

export function logRuntimeEvent(log: Logger, e: RuntimeEvent): void {
  switch (e.kind) {
    case 'raft': {
      const r = e.event;
      const fields = { term: r.term, ...(r.peer ? { peer: r.peer } : {}), reason: r.reason };
      if (r.kind === 'vote-granted' || r.kind === 'vote-refused')
        log.info(
          fields,
          r.kind === 'vote-granted' ? `voted for ${r.peer}` : `refused vote to ${r.peer}`,
        );
      else if (r.kind === 'become-leader') log.info(fields, 'became leader');
      else if (r.kind === 'step-down') log.warn(fields, 'stepped down');
      else if (r.kind === 'follower-lost-log')
        log.warn(fields, `follower ${r.peer} lost its data: replicating it again from the start`);
      else if (r.kind === 'recovery-started' || r.kind === 'recovery-finished')
        log.warn(fields, r.kind.replace(/-/g, ' '));
      else log.info(fields, r.kind.replace(/-/g, ' '));
      return;
    }
    case 'leader-changed':
      log.info(
        { leader: e.leader, term: e.term },
        e.leader === 0 ? 'no leader' : `leader is ${e.leader}`,
      );
      return;
    case 'snapshot-saved':
      log.info({ index: e.index, bytes: e.bytes }, 'snapshot saved');
      return;
    case 'snapshot-restored':
      log.info({ index: e.index, bytes: e.bytes }, 'snapshot installed from leader');
      return;
    case 'fatal':
      log.fatal({ err: e.error }, 'node stopped');
      return;
    case 'persisted':
    case 'applied':
      return; // too frequent to log; see the metrics
  }
}
