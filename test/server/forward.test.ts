// The forwarder against a scripted leader view and scripted answers: where each request goes,
// when it is sent again (only after a definite refusal or a refused connection), and when the
// node must answer it itself.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FlotillaError } from '../../src/base/errors.js';
import {
  Forwarder,
  type ForwardAnswer,
  type LeaderView,
  type SendFn,
} from '../../src/server/forward.js';

const members = [1, 2, 3].map((id) => ({
  id,
  peer: `127.0.0.1:${7000 + id}`,
  client: `http://n${id}`,
}));

/** A leader view the test moves by hand; waits give up after `waitMs`. */
class FakeLeaders implements LeaderView {
  private readonly listeners = new Set<(leader: number) => void>();
  constructor(
    private leader: number,
    private readonly waitMs = 200,
  ) {}

  leaderId(): number {
    return this.leader;
  }

  set(leader: number): void {
    this.leader = leader;
    for (const l of [...this.listeners]) l(leader);
  }

  onLeaderChange(listener: (leader: number) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  waitForLeader(o: { other?: number; signal?: AbortSignal }): Promise<number> {
    const ok = (l: number): boolean => l !== 0 && l !== (o.other ?? 0);
    if (ok(this.leader)) return Promise.resolve(this.leader);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error('no leader'));
      }, this.waitMs);
      const off = this.onLeaderChange((l) => {
        if (!ok(l)) return;
        clearTimeout(timer);
        off();
        resolve(l);
      });
    });
  }
}

const okAnswer: ForwardAnswer = { status: 200, json: { header: { revision: 2 } } };

function refusal(code: 'NOT_LEADER' | 'NO_LEADER', leader = 0): ForwardAnswer {
  return {
    status: code === 'NOT_LEADER' ? 421 : 503,
    json: {
      error: { code, message: 'scripted', indefinite: false, ...(leader ? { leader } : {}) },
    },
  };
}

const hang = Symbol('hang');

/**
 * A send that answers from `script` by target URL, recording every request; `hang` never
 * answers, and rejects with the signal's reason when it aborts (as undici does).
 */
function scripted(script: (url: string, n: number) => ForwardAnswer | Error | typeof hang): {
  send: SendFn;
  sent: string[];
} {
  const sent: string[] = [];
  const send: SendFn = (url, _path, body, signal) => {
    sent.push(`${url} ${body}`);
    const a = script(url, sent.length);
    if (a === hang)
      return new Promise((_resolve, reject) =>
        signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true }),
      );
    return a instanceof Error ? Promise.reject(a) : Promise.resolve(a);
  };
  return { send, sent };
}

function forwarder(leaders: LeaderView, send: SendFn, selfId = 1): Forwarder {
  return new Forwarder({ selfId, members, leaders, send, timeoutMs: 5_000 });
}

const signal = new AbortController().signal;

void test('the leader answers itself; a follower forwards to the leader it knows', async () => {
  const s = scripted(() => okAnswer);
  assert.equal(await forwarder(new FakeLeaders(1), s.send).forward('/p', 'b', signal), null);
  assert.deepEqual(
    await forwarder(new FakeLeaders(2), s.send).forward('/p', 'b', signal),
    okAnswer,
  );
  assert.deepEqual(s.sent, ['http://n2 b']);
});

void test('with no leader known it waits for the election', async () => {
  const leaders = new FakeLeaders(0);
  const s = scripted(() => okAnswer);
  const p = forwarder(leaders, s.send).forward('/p', 'b', signal);
  leaders.set(3);
  assert.deepEqual(await p, okAnswer);
  assert.deepEqual(s.sent, ['http://n3 b']);
});

void test('if this node wins the election, or none ends in time, it answers itself', async () => {
  const s = scripted(() => okAnswer);
  const leaders = new FakeLeaders(0);
  const p = forwarder(leaders, s.send).forward('/p', 'b', signal);
  leaders.set(1);
  assert.equal(await p, null);
  assert.equal(await forwarder(new FakeLeaders(0, 20), s.send).forward('/p', 'b', signal), null);
  assert.deepEqual(s.sent, []);
});

void test('a NOT_LEADER refusal naming the leader is sent on to it', async () => {
  const s = scripted((url) => (url === 'http://n2' ? refusal('NOT_LEADER', 3) : okAnswer));
  const r = await forwarder(new FakeLeaders(2), s.send).forward('/p', 'b', signal);
  assert.deepEqual(r, okAnswer);
  assert.deepEqual(s.sent, ['http://n2 b', 'http://n3 b']);
});

void test('a NO_LEADER refusal waits until this node learns of another leader', async () => {
  const leaders = new FakeLeaders(2);
  const s = scripted((url) => {
    if (url === 'http://n2') {
      setTimeout(() => leaders.set(3), 20); // the election ends a little later
      return refusal('NO_LEADER');
    }
    return okAnswer;
  });
  assert.deepEqual(await forwarder(leaders, s.send).forward('/p', 'b', signal), okAnswer);
  assert.deepEqual(s.sent, ['http://n2 b', 'http://n3 b']);
});

void test('a refusal is answered as it came when no other leader turns up', async () => {
  const s = scripted(() => refusal('NOT_LEADER', 2));
  const r = await forwarder(new FakeLeaders(2, 20), s.send).forward('/p', 'b', signal);
  assert.deepEqual(r, refusal('NOT_LEADER', 2));
  assert.equal(s.sent.length, 1);
});

void test('a refused connection is definite: sent elsewhere, else FORWARD_FAILED definite', async () => {
  const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
  const leaders = new FakeLeaders(2);
  const s = scripted((url) => {
    if (url === 'http://n2') {
      setTimeout(() => leaders.set(3), 20);
      return refused;
    }
    return okAnswer;
  });
  assert.deepEqual(await forwarder(leaders, s.send).forward('/p', 'b', signal), okAnswer);

  const alone = scripted(() => refused);
  await assert.rejects(
    forwarder(new FakeLeaders(2, 20), alone.send).forward('/p', 'b', signal),
    (e: unknown) => e instanceof FlotillaError && e.code === 'FORWARD_FAILED' && !e.indefinite,
  );
});

void test('an indefinite answer or failure is never sent again', async () => {
  const lost: ForwardAnswer = {
    status: 503,
    json: { error: { code: 'LEADERSHIP_LOST', message: 'scripted', indefinite: true } },
  };
  const s = scripted(() => lost);
  assert.deepEqual(await forwarder(new FakeLeaders(2), s.send).forward('/p', 'b', signal), lost);
  const reset = scripted(() => new Error('socket hang up'));
  await assert.rejects(
    forwarder(new FakeLeaders(2), reset.send).forward('/p', 'b', signal),
    (e: unknown) => e instanceof FlotillaError && e.code === 'FORWARD_FAILED' && e.indefinite,
  );
  assert.equal(s.sent.length + reset.sent.length, 2);
});

void test('refusals that point at each other stop after the hop limit', async () => {
  const s = scripted((url) => refusal('NOT_LEADER', url === 'http://n2' ? 3 : 2));
  const r = await forwarder(new FakeLeaders(2, 20), s.send).forward('/p', 'b', signal);
  assert.equal(r?.status, 421);
  assert.equal(s.sent.length, 4, 'the first send and three hops');
});

const withSession = JSON.stringify({ key: 'k', value: 'v', clientId: 'c', seq: 7 });

void test('a write with a session held by a replaced leader is sent to the new one', async () => {
  const leaders = new FakeLeaders(2);
  const s = scripted((url) => {
    if (url !== 'http://n2') return okAnswer;
    setTimeout(() => leaders.set(3), 20); // node 2 is paused; node 3 is elected
    return hang;
  });
  const r = await forwarder(leaders, s.send).forward('/p', withSession, signal);
  assert.deepEqual(r, okAnswer);
  assert.deepEqual(s.sent, [`http://n2 ${withSession}`, `http://n3 ${withSession}`]);
});

void test('a write with a session held by a replaced leader fails as indefinite when this node is elected', async () => {
  // Answering it here could end in a definite refusal (leadership moving on before it was
  // proposed) while the copy held by node 2 may still commit: indefinite, retried under its
  // session by the client.
  const leaders = new FakeLeaders(2);
  const s = scripted(() => {
    setTimeout(() => leaders.set(1), 20); // node 2 is paused; this node is elected
    return hang;
  });
  await assert.rejects(
    forwarder(leaders, s.send).forward('/p', withSession, signal),
    (e: unknown) =>
      e instanceof FlotillaError && e.code === 'FORWARD_FAILED' && e.indefinite && e.leader === 1,
  );
  assert.deepEqual(s.sent, [`http://n2 ${withSession}`]);
});

void test('without a session it fails at once as indefinite, naming the new leader', async () => {
  const leaders = new FakeLeaders(2);
  const s = scripted(() => {
    setTimeout(() => leaders.set(3), 20);
    return hang;
  });
  await assert.rejects(
    forwarder(leaders, s.send).forward('/p', '{"key":"k","value":"v"}', signal),
    (e: unknown) =>
      e instanceof FlotillaError && e.code === 'FORWARD_FAILED' && e.indefinite && e.leader === 3,
  );
  assert.equal(s.sent.length, 1);
});

void test('a later refusal does not hide a copy that may have been applied', async () => {
  const leaders = new FakeLeaders(2, 20);
  const s = scripted((url) => {
    if (url === 'http://n3') return refusal('NOT_LEADER');
    setTimeout(() => leaders.set(3), 20);
    return hang;
  });
  await assert.rejects(
    forwarder(leaders, s.send).forward('/p', withSession, signal),
    (e: unknown) => e instanceof FlotillaError && e.code === 'FORWARD_FAILED' && e.indefinite,
  );
  assert.equal(s.sent.length, 2);
});

void test('a leader that never answers is given up at the deadline, as indefinite', async () => {
  const s = scripted(() => hang);
  const f = new Forwarder({
    selfId: 1,
    members,
    leaders: new FakeLeaders(2),
    send: s.send,
    timeoutMs: 50,
  });
  await assert.rejects(
    f.forward('/p', withSession, signal),
    (e: unknown) =>
      e instanceof FlotillaError &&
      e.code === 'FORWARD_FAILED' &&
      e.indefinite &&
      /no answer within 50 ms/.test(e.message),
  );
});

void test('past maxInFlight forwards, one more is refused at once with OVERLOADED, definite', async () => {
  const pending: ((a: ForwardAnswer) => void)[] = [];
  const sent: string[] = [];
  const f = new Forwarder({
    selfId: 2,
    members,
    leaders: new FakeLeaders(1),
    send: (url) => {
      sent.push(url);
      return new Promise((resolve) => pending.push(resolve));
    },
    timeoutMs: 10_000,
    maxInFlight: 2,
  });
  const first = f.forward('/v1/kv/put', '{}', new AbortController().signal);
  const second = f.forward('/v1/kv/put', '{}', new AbortController().signal);
  await assert.rejects(
    f.forward('/v1/kv/put', '{}', new AbortController().signal),
    (e: unknown) => e instanceof FlotillaError && e.code === 'OVERLOADED' && !e.indefinite,
  );
  assert.deepEqual(sent, ['http://n1', 'http://n1'], 'the refused request was not sent');
  for (const answer of pending.splice(0)) answer(okAnswer);
  assert.deepEqual(await Promise.all([first, second]), [okAnswer, okAnswer]);
  // The slots are free again.
  const third = f.forward('/v1/kv/put', '{}', new AbortController().signal);
  for (let i = 0; i < 100 && pending.length === 0; i++) await new Promise((r) => setImmediate(r));
  assert.equal(pending.length, 1, 'the third request was sent');
  (pending.shift() as (a: ForwardAnswer) => void)(okAnswer);
  assert.deepEqual(await third, okAnswer);
});

void test('with slotWaitMs, requests past maxInFlight wait for a slot in arrival order, and are refused only when none comes', async () => {
  const pending: ((a: ForwardAnswer) => void)[] = [];
  const sent: string[] = [];
  const make = (slotWaitMs: number): Forwarder =>
    new Forwarder({
      selfId: 2,
      members,
      leaders: new FakeLeaders(1),
      send: (_url, _path, rawBody) => {
        sent.push(rawBody);
        return new Promise((resolve) => pending.push(resolve));
      },
      timeoutMs: 10_000,
      maxInFlight: 2,
      slotWaitMs,
    });
  const sentCount = async (n: number): Promise<void> => {
    for (let i = 0; i < 200 && sent.length < n; i++) await new Promise((r) => setImmediate(r));
    assert.equal(sent.length, n, `sent: ${sent.join(', ')}`);
  };
  const answerOldest = (): void => (pending.shift() as (a: ForwardAnswer) => void)(okAnswer);
  const f = make(60_000);
  const go = (body: string, signal = new AbortController().signal): Promise<unknown> =>
    f.forward('/v1/kv/put', body, signal);
  const a = go('a');
  const b = go('b');
  const c = go('c');
  const leaving = new AbortController();
  const d = go('d', leaving.signal);
  const e = go('e');
  await sentCount(2);
  // d leaves while it waits: refused, never sent, and e keeps its place behind c.
  leaving.abort();
  await assert.rejects(d, (err: unknown) => err instanceof FlotillaError && err.code === 'ABORTED');
  answerOldest();
  await sentCount(3);
  assert.equal(sent[2], 'c', 'the oldest waiter goes first');
  answerOldest();
  await sentCount(4);
  assert.equal(sent[3], 'e');
  for (const p of [a, b]) assert.deepEqual(await p, okAnswer);
  answerOldest();
  answerOldest();
  assert.deepEqual(await Promise.all([c, e]), [okAnswer, okAnswer]);

  // No slot within the wait: OVERLOADED, definite, nothing sent.
  sent.length = 0;
  const g = make(30);
  const held = [1, 2].map(() => g.forward('/v1/kv/put', 'h', new AbortController().signal));
  await sentCount(2);
  await assert.rejects(
    g.forward('/v1/kv/put', 'late', new AbortController().signal),
    (err: unknown) =>
      err instanceof FlotillaError &&
      err.code === 'OVERLOADED' &&
      !err.indefinite &&
      /none came free within 30 ms/.test(err.message),
  );
  // At most four times maxInFlight wait: the next is refused at once.
  const waiting = Array.from({ length: 8 }, () =>
    g.forward('/v1/kv/put', 'w', new AbortController().signal).catch((err: unknown) => err),
  );
  await assert.rejects(
    g.forward('/v1/kv/put', 'ninth', new AbortController().signal),
    (err: unknown) =>
      err instanceof FlotillaError && err.code === 'OVERLOADED' && /8 more wait/.test(err.message),
  );
  assert.equal(sent.filter((s) => s !== 'h').length, 0, 'nothing past the slots was sent');
  for (const w of await Promise.all(waiting))
    assert.ok(w instanceof FlotillaError && w.code === 'OVERLOADED', String(w));
  answerOldest();
  answerOldest();
  assert.deepEqual(await Promise.all(held), [okAnswer, okAnswer]);
});
