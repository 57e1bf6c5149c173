// Drives a queue machine the way the host does: encoded commands with increasing log indexes
// and the leader's times; results come back as the proposer would see them.

import assert from 'node:assert/strict';
import type { QueueLimits } from '../../src/base/limits.js';
import type { Command } from '../../src/host/contracts.js';
import {
  QueueStateMachine,
  type AddResult,
  type ClaimResult,
  type Claimed,
  type QueueCommandAny,
  type QueueResult,
} from '../../src/queue/index.js';

export const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

export class Harness {
  index = 0;
  timeMs = 0;

  readonly m: QueueStateMachine;

  constructor(limits: Partial<QueueLimits> = {}) {
    this.m = new QueueStateMachine(limits);
  }

  command(c: QueueCommandAny, timeMs = this.timeMs): Command {
    this.timeMs = timeMs;
    return { index: ++this.index, term: 1, timeMs, payload: QueueStateMachine.encode(c) };
  }

  run(c: QueueCommandAny, timeMs = this.timeMs): QueueResult {
    const [r] = this.m.apply([this.command(c, timeMs)]);
    assert.ok(r !== undefined && !('refused' in r), `refused: ${JSON.stringify(r)}`);
    const problems = this.m.checkInvariants();
    assert.deepEqual(problems, [], `invariants after ${c.op}`);
    return r;
  }

  /** Runs a command that must succeed. */
  ok(c: QueueCommandAny, timeMs = this.timeMs): QueueResult {
    const r = this.run(c, timeMs);
    assert.ok(r.ok, `${c.op} failed: ${JSON.stringify(r)}`);
    return r;
  }

  /** Runs a command that must be refused with `code`. */
  refused(c: QueueCommandAny, code: string, timeMs = this.timeMs): string {
    const r = this.run(c, timeMs);
    assert.ok(!r.ok, `${c.op} should have been refused with ${code}`);
    assert.equal(r.code, code, r.message);
    return r.message;
  }

  add(queue: string, extra: Partial<Extract<QueueCommandAny, { op: 'add' }>> = {}): AddResult {
    return this.ok({ op: 'add', queue, name: 'job', payload: bytes('p'), ...extra }) as AddResult;
  }

  claim(
    queue: string,
    extra: Partial<Extract<QueueCommandAny, { op: 'claim' }>> = {},
  ): ClaimResult {
    return this.ok({ op: 'claim', queue, ...extra }) as ClaimResult;
  }

  /** Claims exactly one job and returns it. */
  claimOne(queue: string, extra: Partial<Extract<QueueCommandAny, { op: 'claim' }>> = {}): Claimed {
    const r = this.claim(queue, extra);
    assert.equal(r.jobs.length, 1, `expected one job, got ${JSON.stringify(r)}`);
    return r.jobs[0] as Claimed;
  }

  tick(timeMs: number): void {
    this.ok({ op: 'tick' }, timeMs);
  }

  state(queue: string, id: string): string | null {
    return this.m.getJob(queue, id)?.state ?? null;
  }
}
