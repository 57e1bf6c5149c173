// The event log keeps its events in the columns of a ring (events.ts): it must answer every
// read as a plain list of event objects, trimmed to `max`, answers. The model here is that list.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EventLog, positionBefore, type EventLogState } from '../../src/queue/events.js';
import type { EventPosition, EventType, QueueEvent } from '../../src/queue/types.js';

/** The log as a list: what the ring must be indistinguishable from. */
class ListModel {
  events: QueueEvent[] = [];
  trimmed = 0;
  lastTrimmed: EventPosition = { index: 0, seq: 0 };
  last: EventPosition = { index: 0, seq: 0 };
  /** Per queue, its newest trimmed event; up to `floor`, any queue's (after a restore). */
  trimmedOf = new Map<string, EventPosition>();
  floor: EventPosition = { index: 0, seq: 0 };
  constructor(readonly max: number) {}
  /** This list as a log restored from it knows it: which queue lost what is forgotten. */
  restored(): ListModel {
    const m = new ListModel(this.max);
    Object.assign(m, { events: [...this.events], ...this.state(), floor: this.lastTrimmed });
    return m;
  }
  append(e: Omit<QueueEvent, 'seq'>): void {
    const seq = e.index === this.last.index ? this.last.seq + 1 : 1;
    this.events.push({ ...e, seq });
    this.last = { index: e.index, seq };
    if (this.events.length > this.max) {
      const gone = this.events.shift() as QueueEvent;
      this.lastTrimmed = { index: gone.index, seq: gone.seq };
      this.trimmedOf.set(gone.queue, this.lastTrimmed);
      this.trimmed++;
    }
  }
  read(after: EventPosition, limit: number, queue: string | null) {
    const out: QueueEvent[] = [];
    let next = after;
    for (const e of this.events.filter((x) => positionBefore(after, x))) {
      if (out.length >= limit) break;
      next = { index: e.index, seq: e.seq };
      if (queue === null || e.queue === queue) out.push(e);
    }
    const mark = queue === null ? this.lastTrimmed : this.trimmedOf.get(queue);
    const lost = (p: EventPosition | undefined): boolean =>
      p !== undefined && positionBefore(after, p);
    return {
      events: out,
      next,
      behind: this.trimmed > 0 && (lost(mark) || (queue !== null && lost(this.floor))),
    };
  }
  state(): EventLogState {
    return { trimmed: this.trimmed, lastTrimmed: this.lastTrimmed, last: this.last };
  }
}

const types: EventType[] = ['added', 'active', 'completed', 'progress', 'failed', 'resumed'];

function rng(seed: number): (n: number) => number {
  let x = seed;
  return (n) => {
    x = (x * 1_103_515_245 + 12_345) % 2 ** 31;
    return x % n;
  };
}

function randomEvent(r: (n: number) => number, index: number): Omit<QueueEvent, 'seq'> {
  const type = types[r(types.length)] as EventType;
  return {
    index,
    timeMs: 1_700_000_000_000 + index * 3 + 0.5,
    type,
    queue: `q${r(3)}`,
    job: type === 'resumed' ? null : `#${r(1_000)}`,
    detail: type === 'progress' ? r(101) : type === 'failed' ? `boom ${r(9)}` : null,
  };
}

function compareReads(log: EventLog, model: ListModel, r: (n: number) => number): void {
  assert.equal(log.size, model.events.length);
  assert.deepStrictEqual(log.kept(), model.events);
  assert.deepStrictEqual(log.state(), model.state());
  const positions: EventPosition[] = [{ index: 0, seq: 0 }, model.last, model.lastTrimmed];
  for (let i = 0; i < 6 && model.events.length > 0; i++) {
    const e = model.events[r(model.events.length)] as QueueEvent;
    positions.push({ index: e.index, seq: e.seq }, { index: e.index, seq: 0 });
  }
  for (const after of positions)
    for (const queue of [null, 'q1'])
      for (const limit of [1, 7, 10_000])
        assert.deepStrictEqual(
          log.read(after, limit, queue),
          model.read(after, limit, queue),
          `read after ${JSON.stringify(after)}, limit ${limit}, queue ${queue}`,
        );
}

void test('the ring answers as a trimmed list, through wrap-around, growth and restores', () => {
  // 1 and 3: every append trims; 1,500 and 3,000: the ring grows past its first 1,024 slots.
  for (const [seed, max] of [
    [1, 1],
    [2, 3],
    [3, 1_500],
    [4, 3_000],
  ] as const) {
    const r = rng(seed);
    const log = new EventLog(max);
    const model = new ListModel(max);
    let index = 0;
    for (let step = 0; step < 40; step++) {
      const n = r(200);
      for (let i = 0; i < n; i++) {
        if (r(3) > 0) index++;
        const e = randomEvent(r, index);
        log.append(e.index, e.timeMs, e.type, e.queue, e.job, e.detail);
        model.append(e);
      }
      compareReads(log, model, r);
    }
    // A restore, as from a snapshot of another replica, into a fresh log and into this one.
    for (const target of [new EventLog(max), log]) {
      target.restore(model.events, model.state());
      compareReads(target, model.restored(), r);
    }
  }
});

void test('a restored log holding more than max trims one event per append, as a list does', () => {
  const big = new ListModel(50);
  for (let i = 1; i <= 50; i++) big.append(randomEvent(rng(i), i));
  const log = new EventLog(10);
  const model = new ListModel(10);
  log.restore(big.events, big.state());
  Object.assign(model, { events: [...big.events], ...big.state(), floor: big.lastTrimmed });
  const r = rng(7);
  for (let i = 51; i <= 120; i++) {
    const e = randomEvent(r, i);
    log.append(e.index, e.timeMs, e.type, e.queue, e.job, e.detail);
    model.append(e);
    compareReads(log, model, r);
  }
  // As the list it was: one in, one out, so it keeps the 50 it was restored with.
  assert.equal(log.size, 50);
});

void test('a restore refuses an event type the log does not know', () => {
  const log = new EventLog(4);
  const bad = {
    index: 1,
    seq: 1,
    timeMs: 0,
    type: 'exploded',
    queue: 'q',
    job: null,
    detail: null,
  };
  assert.throws(
    () =>
      log.restore([bad as unknown as QueueEvent], {
        trimmed: 0,
        lastTrimmed: { index: 0, seq: 0 },
        last: { index: 1, seq: 1 },
      }),
    /Unknown queue event type exploded/,
  );
});

void test("a reader of one queue is behind only when that queue's events were trimmed", () => {
  const log = new EventLog(3);
  for (let i = 1; i <= 5; i++) log.append(i, i, 'added', 'busy', `#${i}`, null);
  log.append(6, 6, 'added', 'new', '#6', null);
  const start = { index: 0, seq: 0 };
  // A queue made after others' events were trimmed was told it missed some.
  assert.equal(log.read(start, 100, 'new').behind, false);
  assert.equal(log.read(start, 100, 'busy').behind, true);
  assert.equal(log.read(start, 100, null).behind, true);
  // Past the marks it keeps, it forgets them and answers as a restored log does: every queue
  // counts as trimmed up to the newest event trimmed then, wrongly perhaps, never missing one.
  const many = new EventLog(1);
  for (let i = 1; i <= 4_098; i++) many.append(i, i, 'added', `q${i}`, '#', null);
  assert.equal(many.read({ index: 4_097, seq: 1 }, 100, 'q1').behind, false);
  assert.equal(many.read(start, 100, 'q4098').behind, true, 'q4098 lost nothing, but is forgotten');
});
