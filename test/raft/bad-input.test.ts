// What the core does with input only a caller in plain JavaScript can give (the types refuse
// it): a coded refusal for an operation, a config error naming the field, never a TypeError
// from deep inside or an entry the rest of the system cannot store.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  AssertionError,
  RaftNode,
  createRng,
  decodeConfChange,
  encodeConfChange,
  type ConfChange,
  type RaftConfig,
} from '../../src/raft/index.js';

/** Node 1 leading alone. */
function leader(): RaftNode {
  const node = new RaftNode({ id: 1, voters: [1], rng: createRng(1) });
  node.campaign();
  for (let i = 0; i < 100 && node.hasReady(); i++) node.advance(node.ready());
  assert.equal(node.status().role, 'leader');
  return node;
}

void test('a proposal whose data is not bytes is refused BAD_REQUEST and appends nothing', () => {
  const node = leader();
  const last = node.status().lastIndex;
  // Before, a string was appended: its length (in characters) passed the byte limits, and the
  // entry then reached storage, transport and the state machine as a string.
  const refused: [string, unknown[]][] = [
    ['string', ['hello']],
    ['undefined', [undefined]],
    ['null', [null]],
    ['number array', [[1, 2, 3]]],
    ['second of two', [new Uint8Array([1]), 'x']],
  ];
  for (const [what, datas] of refused) {
    const r = node.proposeBatch(datas as Uint8Array[]);
    assert.equal(r.ok, false, what);
    assert.ok(!r.ok && r.error.code === 'BAD_REQUEST' && !r.error.indefinite, what);
    assert.match(r.ok ? '' : r.error.message, /must be a Uint8Array/, what);
  }
  const single = node.propose('hello' as unknown as Uint8Array);
  assert.ok(!single.ok && single.error.code === 'BAD_REQUEST');
  const notArray = node.proposeBatch('hello' as unknown as Uint8Array[]);
  assert.ok(!notArray.ok && notArray.error.code === 'BAD_REQUEST');
  assert.equal(node.status().lastIndex, last, 'nothing was appended');
  // Bytes, a Buffer among them, are taken as before.
  const taken = node.proposeBatch([new Uint8Array([1]), Buffer.from('b')]);
  assert.ok(taken.ok);
  assert.equal(node.status().lastIndex, last + 2);
});

void test('a config without a random source or without an object is refused, saying so', () => {
  // Before, both threw a TypeError ("Cannot read properties of undefined"): the missing rng
  // only at the first election timeout's draw.
  assert.throws(
    () => new RaftNode({ id: 1, voters: [1] } as unknown as RaftConfig),
    (e: unknown) => e instanceof AssertionError && /rng must be a random source/.test(e.message),
  );
  assert.throws(
    () => new RaftNode(undefined as unknown as RaftConfig),
    (e: unknown) => e instanceof AssertionError && /a config object is required/.test(e.message),
  );
});

void test('a malformed message is refused before it changes anything, naming the field', () => {
  // Before, a term decoded as the string "5" became the node's term (the next campaign's term
  // was "51"), and an append without entries threw a TypeError from inside the core.
  const fresh = () => new RaftNode({ id: 1, voters: [1, 2, 3], rng: createRng(1) });
  const heartbeat = { type: 'heartbeat', from: 2, to: 1, term: 5, commit: 0, seq: 0 };
  const append = { type: 'append', from: 2, to: 1, term: 1, prevIndex: 0, prevTerm: 0, commit: 0 };
  const snapshot = {
    type: 'snapshot',
    from: 2,
    to: 1,
    term: 1,
    id: 's',
    offset: 0,
    length: 1,
    totalBytes: 1,
  };
  const refused: [unknown, RegExp][] = [
    [undefined, /not a message/],
    [{ ...heartbeat, type: 'bogus' }, /type "bogus"/],
    [{ ...heartbeat, term: '5' }, /heartbeat: term must be an integer >= 0, got "5"/],
    [{ ...heartbeat, from: -1 }, /from must be an integer >= 0, got -1/],
    [{ ...heartbeat, seq: undefined }, /seq must be an integer/],
    [append, /entries must be an array/],
    [
      { ...append, entries: [{ term: 1, index: 1, type: 'normal', data: 'x' }] },
      /an entry needs an integer index and term and Uint8Array data/,
    ],
    [
      { ...append, entries: [{ term: 1, index: 1, type: 'bogus', data: new Uint8Array() }] },
      /entry type "bogus"/,
    ],
    // A follower took a message from itself for its leader's, and forwarded proposals to itself.
    [{ ...heartbeat, from: 1 }, /heartbeat from 1 to 1: not a peer's/],
    [{ ...heartbeat, from: 0 }, /heartbeat from 0 to 1: not a peer's/],
    // A verdict decoded as the string "false" is truthy: an append rejection was counted an
    // acknowledgement (the leader committed an entry only it held), a refused read confirmed.
    [
      {
        type: 'append-resp',
        from: 2,
        to: 1,
        term: 1,
        index: 2,
        hintIndex: 0,
        hintTerm: 0,
        success: 'false',
      },
      /append-resp: success must be a boolean, got "false"/,
    ],
    [
      { type: 'read-index-resp', from: 2, to: 1, term: 1, requestId: 7, index: 0, ok: 'false' },
      /read-index-resp: ok must be a boolean, got "false"/,
    ],
    [{ type: 'vote-resp', from: 2, to: 1, term: 1 }, /vote-resp: granted must be a boolean/],
    [{ ...heartbeat, quiesce: 1 }, /heartbeat: quiesce must be a boolean, got 1/],
    // A snapshot without its metadata threw a TypeError; one with an index "50" was taken.
    [snapshot, /snapshot: its metadata must be an object, got undefined/],
    [
      { ...snapshot, snapshot: { index: '50', term: 1, voters: [1, 2, 3] } },
      /its metadata: index must be an integer >= 0, got "50"/,
    ],
    [
      { ...snapshot, snapshot: { index: 50, term: 1 } },
      /its metadata: voters must be a list of node ids/,
    ],
  ];
  for (const [m, why] of refused) {
    const node = fresh();
    const before = JSON.stringify(node.status());
    assert.throws(
      () => node.step(m as Parameters<RaftNode['step']>[0]),
      (e: unknown) => e instanceof AssertionError && why.test(e.message),
      JSON.stringify(m),
    );
    assert.equal(JSON.stringify(node.status()), before, 'the node changed');
  }
  // The well-formed heartbeat is taken: the node follows node 2 in term 5.
  const node = fresh();
  node.step(heartbeat as Parameters<RaftNode['step']>[0]);
  assert.equal(node.status().term, 5);
  assert.equal(node.status().leader, 2);
});

void test('a recovered state with a missing or mistyped number is refused, naming it', () => {
  // Before, a missing `applied` made the applied index NaN and the committed entries were never
  // handed out again (a restarted state machine stayed empty); a term decoded as the string
  // "1" became "11" at the next campaign.
  const entry = (index: number) => ({
    term: 1,
    index,
    type: 'normal' as const,
    data: new Uint8Array([index]),
  });
  const good = {
    hardState: { term: 1, vote: 1, commit: 2 },
    snapshot: null,
    entries: [entry(1), entry(2)],
    applied: 0,
  };
  const incoming = {
    meta: { index: 9, term: 1, voters: [1] },
    id: 'c0ffee',
    totalBytes: 10,
    received: 4,
  };
  const start = (initial: unknown) =>
    new RaftNode({
      id: 1,
      voters: [1],
      rng: createRng(1),
      initial: initial as RaftConfig['initial'] & object,
    });
  const refused: [unknown, RegExp][] = [
    [{ ...good, applied: undefined }, /initial\.applied must be an integer >= 0, got undefined/],
    [{ ...good, hardState: { ...good.hardState, term: '1' } }, /initial\.hardState\.term/],
    [{ ...good, hardState: undefined }, /initial\.hardState\.term/],
    [{ ...good, snapshot: { index: 1 } }, /initial\.snapshot must be null or snapshot metadata/],
    [{ ...good, entries: [{ ...entry(1), data: 'x' }] }, /initial\.entries: an entry needs/],
    [{ ...good, entries: [{ ...entry(1), type: 'bogus' }] }, /entry 1 has type "bogus"/],
    [
      { ...good, entries: [{ ...entry(1), term: 2 }, entry(2)] },
      /entry 2 has term 1, below term 2 of entry 1: terms never fall/,
    ],
    [
      { ...good, snapshot: { index: 1, term: 3, voters: [1] }, entries: [entry(2)] },
      /entry 2 has term 1, below term 3 of the snapshot at 1/,
    ],
    // A snapshot being received when the node stopped (its partial file's record).
    [{ ...good, incoming: 'x' }, /initial\.incoming must be an object or absent/],
    [{ ...good, incoming: { ...incoming, meta: undefined } }, /initial\.incoming\.meta must be/],
    [
      { ...good, incoming: { ...incoming, meta: { index: 9, term: 1, voters: ['1'] } } },
      /initial\.incoming\.meta: voters must be a list of node ids/,
    ],
    [{ ...good, incoming: { ...incoming, id: '' } }, /initial\.incoming\.id must be a non-empty/],
    [{ ...good, incoming: { ...incoming, totalBytes: -1 } }, /initial\.incoming\.totalBytes/],
    [
      { ...good, incoming: { ...incoming, received: 11 } },
      /initial\.incoming\.received must be an integer from 0 to totalBytes \(10\), got 11/,
    ],
  ];
  for (const [initial, why] of refused)
    assert.throws(
      () => start(initial),
      (e: unknown) => e instanceof AssertionError && why.test(e.message),
      why.source,
    );
  // The good one restarts and hands both committed entries out again; with a snapshot half
  // received as well.
  const node = start(good);
  assert.deepEqual(
    node.ready().committedEntries.map((e) => e.index),
    [1, 2],
  );
  assert.deepEqual(
    start({ ...good, incoming })
      .ready()
      .committedEntries.map((e) => e.index),
    [1, 2],
  );
});

void test('a read whose requestId is not an integer is refused BAD_REQUEST where it is asked', () => {
  // Before, a follower forwarded it, and the leader threw when it stepped the request.
  const node = leader();
  for (const id of ['x', 1.5, -1, undefined]) {
    const r = node.readIndex(id as number);
    assert.ok(!r.ok && r.error.code === 'BAD_REQUEST', String(id));
    assert.match(r.ok ? '' : r.error.message, /requestId must be an integer >= 0/);
  }
  assert.ok(node.readIndex(7).ok);
});

void test('a membership change that is not { changes: [...] } is refused MEMBERSHIP_INVALID', () => {
  // Before, undefined and {} threw a TypeError from inside the core.
  const node = leader();
  for (const cc of [undefined, null, {}, { changes: 'x' }, { changes: [null] }, { changes: [2] }]) {
    const r = node.proposeConfChange(cc as unknown as Parameters<RaftNode['proposeConfChange']>[0]);
    assert.ok(!r.ok && r.error.code === 'MEMBERSHIP_INVALID', JSON.stringify(cc));
    assert.match(r.ok ? '' : r.error.message, /A membership change is|Each single change is/);
  }
  assert.ok(node.proposeConfChange({ changes: [{ kind: 'add-learner', node: 2 }] }).ok);
});

void test('config counts that are not positive integers, and odd settings, are refused naming them', () => {
  // Before, electionTicks "10" made the first campaign wait about ten times too long ("10" + n),
  // maxInflightMsgs 1.5 threw a RangeError, and a bogus recovery showed up in status().
  const base = { id: 1, voters: [1], rng: createRng(1) };
  const refused: [Record<string, unknown>, RegExp][] = [
    [{ electionTicks: '10' }, /electionTicks must be a positive integer, got "10"/],
    [{ electionTicks: Infinity }, /electionTicks must be a positive integer/],
    [{ maxInflightMsgs: 1.5 }, /maxInflightMsgs must be a positive integer, got 1.5/],
    [{ maxBytesPerMsg: '1024' }, /maxBytesPerMsg must be a positive integer, got "1024"/],
    [{ recovery: 'bogus' }, /recovery must be "none" or "recovering", got "bogus"/],
    [{ onEvent: 5 }, /onEvent must be a function/],
    [{ voters: 3 }, /voters must be an array of node ids, got 3/],
    [{ id: '1' }, /id must be a positive integer, got "1"/],
    [{ voters: [1, '2'] }, /voter ids must be positive integers, got "2"/],
    // A misspelt setting kept its default, silently.
    [
      { electionTimeout: 1000 },
      /unknown field "electionTimeout" \(did you mean "electionTicks"\?\)/,
    ],
    [{ PreVote: false }, /unknown field "PreVote" \(did you mean "preVote"\?\)/],
    [{ zzz: 1 }, /unknown field "zzz"$/],
    [
      { maxUncommittedBytes: 10 },
      /maxUncommittedBytes \(10\) must be >= maxBytesPerMsg \(\d+, its default\)/,
    ],
  ];
  for (const [extra, why] of refused)
    assert.throws(
      () => new RaftNode({ ...base, ...extra }),
      (e: unknown) => e instanceof AssertionError && why.test(e.message),
      why.source,
    );
  new RaftNode({ ...base, electionTicks: 20, leaseDriftTicks: null } as unknown as RaftConfig);
});

void test('compact refuses an index that is not an integer >= 0, naming it', () => {
  // Before, compact("3") made the first index "31" and failed much later, elsewhere.
  const node = leader();
  for (const bad of ['3', 2.5, -1, NaN])
    assert.throws(
      () => node.compact(bad as number),
      (e: unknown) =>
        e instanceof AssertionError && /compact needs an integer log index/.test(e.message),
      String(bad),
    );
  assert.equal(node.compact(1).index, 1);
});

void test("a stored term below its last entry's (the hard state lost to a torn write) starts at that entry's term, with no vote", () => {
  // Before, the node started in term 1 over an entry of term 5, led term 2 and appended a
  // term-2 entry after the term-5 one: a log whose terms fall.
  const node = new RaftNode({
    id: 1,
    voters: [1],
    rng: createRng(1),
    initial: {
      hardState: { term: 1, vote: 1, commit: 0 },
      snapshot: null,
      entries: [{ term: 5, index: 1, type: 'noop', data: new Uint8Array(0) }],
      applied: 0,
    },
  });
  assert.equal(node.status().term, 5);
  // The raised term is not on disk: the first Ready writes it.
  const first = node.ready();
  assert.deepEqual(first.hardState, { term: 5, vote: 0, commit: 0 });
  node.advance(first);
  node.campaign();
  const rd = node.ready();
  assert.equal(node.status().role, 'leader');
  assert.equal(rd.hardState?.term, 6);
  assert.deepEqual(
    rd.entries.map((e) => [e.index, e.term]),
    [[2, 6]],
  );
});

void test('a snapshot offered past the commit, of another term than the log there, or without an id is refused', () => {
  // Before, an offer at index 999 over a log ending at 11 was taken: a follower behind the
  // compacted log installed it, said commit 999, and no later, correct offer below it was used.
  const node = leader();
  for (let i = 0; i < 3; i++) assert.ok(node.propose(new Uint8Array([i])).ok);
  for (let i = 0; i < 100 && node.hasReady(); i++) node.advance(node.ready());
  const commit = node.status().commit;
  const meta = node.compact(commit - 1);
  const offer = { meta, id: 'snap-1', totalBytes: 4 };
  const refused: [object, RegExp][] = [
    [
      { meta: { ...meta, index: commit + 1 } },
      /must be at a committed index \(1 to \d+\), got \d+/,
    ],
    [
      { meta: { ...meta, term: meta.term + 1 } },
      /says term \d+, but the log's entry there is of term/,
    ],
    [{ id: '' }, /needs an id/],
    // Followers install its configuration: other members, or ids that are not numbers, were
    // taken (a follower ended with voters 7 and 8).
    [
      { meta: { ...meta, voters: [7, 8] } },
      /says voters 7,8, learners , but the configuration in force there is voters 1/,
    ],
    [{ meta: { ...meta, voters: 'x' } }, /voters must be a list of node ids, got "x"/],
    [{ meta: undefined }, /The snapshot offered must be an object, got undefined/],
  ];
  for (const [change, why] of refused)
    assert.throws(
      () => node.offerSnapshot({ ...offer, ...change }),
      (e: unknown) => e instanceof AssertionError && why.test(e.message),
      why.source,
    );
  node.offerSnapshot(offer);
  assert.throws(
    () => node.offerSnapshot(null as unknown as Parameters<RaftNode['offerSnapshot']>[0]),
    (e: unknown) => e instanceof AssertionError && /offerSnapshot takes/.test(e.message),
  );
});

void test('read options that are not { lease?: boolean }, and a conf-change decoded from no bytes, are refused', () => {
  const node = leader();
  // Before: a TypeError reading null's lease; a lease "yes" read as true.
  for (const o of [null, { lease: 'yes' }]) {
    const r = node.readIndex(5, o as unknown as { lease?: boolean });
    assert.ok(!r.ok && r.error.code === 'BAD_REQUEST', JSON.stringify(o));
  }
  assert.equal(
    decodeConfChange('abc' as unknown as Uint8Array),
    'a conf-change entry is bytes, got string',
  );
  // Encoded without a word before: an entry of garbage.
  assert.throws(
    () => encodeConfChange({ changes: [{ kind: 'zzz', node: 'a' }] } as unknown as ConfChange),
    (e: unknown) =>
      e instanceof AssertionError &&
      /Cannot encode a membership change: each is \{ kind, node \} .*got \{"kind":"zzz","node":"a"\}/.test(
        e.message,
      ),
  );
});

void test('switches given as anything but true or false are refused, naming them', () => {
  // Before, quiesce: "false" quiesced and checkQuorum: 0 turned check-quorum off.
  for (const [k, v] of [
    ['quiesce', 'false'],
    ['checkQuorum', 0],
    ['preVote', 'false'],
  ] as const)
    assert.throws(
      () => new RaftNode({ id: 1, voters: [1], rng: createRng(1), [k]: v }),
      (e: unknown) =>
        e instanceof AssertionError &&
        e.message.includes(
          `${k} must be true or false (or absent for the default), got ${JSON.stringify(v)}`,
        ),
      k,
    );
});

void test('an empty batch and a leadership transfer to an id that is not a number are refused BAD_REQUEST', () => {
  const node = leader();
  const last = node.status().lastIndex;
  // Before, an empty batch answered firstIndex 2, which the next proposal then took.
  const empty = node.proposeBatch([]);
  assert.ok(!empty.ok && empty.error.code === 'BAD_REQUEST', JSON.stringify(empty));
  assert.equal(node.status().lastIndex, last);
  // Before: UNKNOWN_NODE "Node 3 is not a voter", for a voter 3 whose id came as a string.
  const t = node.transferLeadership('3' as unknown as number);
  assert.ok(!t.ok && t.error.code === 'BAD_REQUEST' && /got "3"/.test(t.error.message));
});

void test('a clock moved by a count that is not a whole number >= 0 is refused, naming it', () => {
  // Before, tick('x'), tick(-100) and advanceClock(NaN) did nothing and said nothing.
  const node = leader();
  for (const bad of ['x', -100, NaN, 1.5])
    for (const call of [() => node.tick(bad as number), () => node.advanceClock(bad as number)])
      assert.throws(
        call,
        (e: unknown) => e instanceof AssertionError && /whole number of ticks >= 0/.test(e.message),
        String(bad),
      );
  node.advanceClock(0);
  node.tick();
  const r = node.propose('one' as unknown as Uint8Array);
  assert.match(r.ok ? '' : r.error.message, /^A proposal must be a Uint8Array, got string/);
});

void test('createRng refuses a seed that is not an integer, naming it', () => {
  // Before, a string (or no seed) gave every node the same stream: three nodes drawing the
  // same election timeouts split their votes forever.
  for (const bad of ['node-1', undefined, NaN, 1.5, null])
    assert.throws(
      () => createRng(bad as unknown as number),
      (e: unknown) =>
        e instanceof AssertionError && /createRng needs an integer seed, got/.test(e.message),
      String(bad),
    );
  assert.notEqual(createRng(1).float(), createRng(2).float());
});
