// The event trace: a running FNV-1a hash of every event (always, it is cheap) and, when asked,
// one readable line per event for --verbose and for the determinism test.

import type { Message } from '../raft/index.js';
import type { SimEvent } from './types.js';

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

export function describeMessage(m: Message): string {
  const head = `${m.from}->${m.to} ${m.type} t${m.term}`;
  switch (m.type) {
    case 'append':
      return `${head} prev=${m.prevTerm}/${m.prevIndex} n=${m.entries.length} commit=${m.commit}`;
    case 'append-resp':
      return `${head} ${m.success ? 'ok' : 'reject'} index=${m.index} hint=${m.hintTerm}/${m.hintIndex}${m.lost ? ' lost' : ''}`;
    case 'vote':
    case 'pre-vote':
      return `${head} last=${m.lastLogTerm}/${m.lastLogIndex}`;
    case 'vote-resp':
    case 'pre-vote-resp':
      return `${head} ${m.granted ? 'granted' : 'refused'}`;
    case 'heartbeat':
      return `${head} commit=${m.commit} seq=${m.seq}`;
    case 'heartbeat-resp':
      return `${head} seq=${m.seq}`;
    case 'read-index':
      return `${head} req=${m.requestId}${m.lease ? ' lease' : ''}`;
    case 'read-index-resp':
      return `${head} req=${m.requestId} ok=${m.ok} index=${m.index}`;
    case 'snapshot':
      return `${head} snapshot=${m.snapshot.term}/${m.snapshot.index} id=${m.id.slice(0, 8)} ${m.offset}+${m.length}/${m.totalBytes}`;
    case 'snapshot-resp':
      return `${head} id=${m.id.slice(0, 8)} received=${m.received}`;
    case 'timeout-now':
      return head;
  }
}

export function describeEvent(ev: SimEvent): string {
  switch (ev.kind) {
    case 'timer':
    case 'disk':
      return `${ev.kind} n${ev.node}`;
    case 'restart':
      return `restart n${ev.node}`;
    case 'deliver':
      return `deliver ${ev.group === undefined ? '' : `g${ev.group} `}${describeMessage(ev.msg)}`;
    case 'client':
      return `client c${ev.client}`;
    default:
      return ev.kind;
  }
}

export class Trace {
  hash = FNV_OFFSET;
  readonly lines: string[] | null;
  readonly verbose: boolean;

  constructor(
    keep: boolean,
    private readonly log: ((line: string) => void) | null,
  ) {
    this.lines = keep ? [] : null;
    this.verbose = log !== null;
  }

  private mix(n: number): void {
    this.hash = Math.imul(this.hash ^ (n & 0xffff), FNV_PRIME) >>> 0;
    this.hash = Math.imul(this.hash ^ (n >>> 16), FNV_PRIME) >>> 0;
  }

  record(timeMs: number, ev: SimEvent): void {
    this.mix(timeMs);
    this.mix(ev.kind.length * 31 + ev.kind.charCodeAt(0));
    if (ev.kind === 'deliver') {
      this.mix(ev.msg.from * 64 + ev.msg.to);
      this.mix(ev.msg.term);
      this.mix(ev.msg.type.charCodeAt(0) + ev.msg.type.length * 256);
      if (ev.group !== undefined) this.mix(ev.group);
    } else if ('node' in ev) {
      this.mix(ev.node);
    }
    if (this.lines !== null || this.log !== null) this.note(timeMs, describeEvent(ev));
  }

  note(timeMs: number, text: string): void {
    if (this.lines === null && this.log === null) return;
    const line = `${String(timeMs).padStart(6)} ${text}`;
    this.lines?.push(line);
    this.log?.(line);
  }
}
