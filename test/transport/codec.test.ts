import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createRng } from '../../src/raft/rng.js';
import { encodeConfChange } from '../../src/raft/confchange.js';
import type { Message } from '../../src/raft/types.js';
import { backoffDelayMs } from '../../src/transport/backoff.js';
import { decodeMessage, encodeMessage, pack } from '../../src/transport/codec.js';
import { TransportError } from '../../src/transport/errors.js';
import {
  FrameDecoder,
  FrameType,
  encodeFrame,
  encodeSmallFrame,
} from '../../src/transport/frame.js';
import { SendQueue } from '../../src/transport/sendqueue.js';
import { defaultValidationLimits, validateMessage } from '../../src/transport/validate.js';
import { entries, everyMessage } from './fixtures.js';

void describe('frame decoder', () => {
  void it('reassembles frames split at every byte boundary', () => {
    const a = encodeSmallFrame(FrameType.message, Buffer.from('hello'));
    const b = Buffer.concat(
      encodeFrame(FrameType.chunk, [Buffer.from('ab'), new Uint8Array([1, 2])]),
    );
    const all = Buffer.concat([a, b]);
    for (let cut = 0; cut <= all.length; cut++) {
      const d = new FrameDecoder(1024);
      d.push(all.subarray(0, cut));
      const frames = [];
      for (let f = d.next(); f !== null; f = d.next()) frames.push(f);
      d.push(all.subarray(cut));
      for (let f = d.next(); f !== null; f = d.next()) frames.push(f);
      assert.deepStrictEqual(
        frames.map((f) => (f instanceof TransportError ? f.code : [f.type, [...f.payload]])),
        [
          [FrameType.message, [...Buffer.from('hello')]],
          [FrameType.chunk, [0x61, 0x62, 1, 2]],
        ],
      );
    }
  });

  void it('refuses an oversized length before the payload arrives', () => {
    const d = new FrameDecoder(100);
    d.push(encodeSmallFrame(FrameType.message, Buffer.alloc(101)).subarray(0, 9));
    const r = d.next();
    assert.ok(r instanceof TransportError);
    assert.equal(r.code, 'TRANSPORT_FRAME_TOO_LARGE');
    assert.match(r.message, /frame of 101 bytes exceeds limit 100/);
    assert.equal(d.bufferedBytes, 0);
  });

  void it('catches a flipped bit anywhere in a frame (planted corruption)', () => {
    const good = encodeSmallFrame(
      FrameType.message,
      encodeMessage(everyMessage(1, 2)[4] as Message),
    );
    for (let i = 4; i < good.length; i++) {
      const bad = Buffer.from(good);
      bad.writeUInt8((bad.at(i) ?? 0) ^ 0x10, i);
      const d = new FrameDecoder(1 << 20);
      d.push(bad);
      const r = d.next();
      assert.ok(r instanceof TransportError, `flip at byte ${i} went unnoticed`);
    }
  });
});

void describe('message validation', () => {
  void it('accepts every well-formed message and round-trips it through msgpack', () => {
    for (const m of everyMessage(1, 2)) {
      const back = decodeMessage(encodeMessage(m), defaultValidationLimits);
      assert.deepStrictEqual(back, { msg: m, group: 0 });
      for (const group of [1, 7, 0xffff_ffff]) {
        const tagged = decodeMessage(encodeMessage(m, group), defaultValidationLimits);
        assert.deepStrictEqual(tagged, { msg: m, group }, `group ${group} survives the wire`);
      }
    }
  });

  void it('refuses a group id that is not a u32', () => {
    const m = everyMessage(1, 2)[0] as Message;
    for (const group of [-1, 2 ** 32, 1.5, 'one', null]) {
      const r = decodeMessage(pack({ ...m, group }), defaultValidationLimits);
      assert.ok(r instanceof TransportError, `group ${String(group)} was accepted`);
      assert.equal(r.code, 'TRANSPORT_BAD_MESSAGE');
      assert.match(r.message, /message\.group must be an integer/);
    }
  });

  void it('rejects each planted defect with TRANSPORT_BAD_MESSAGE naming the field', () => {
    const append = everyMessage(1, 2)[4] as Message & { type: 'append' };
    const chunk = {
      from: 1,
      to: 2,
      term: 1,
      type: 'snapshot',
      snapshot: { index: 1, term: 1, voters: [1] },
      id: 'ab',
      offset: 8,
      length: 4,
      totalBytes: 12,
    };
    const cases: [unknown, RegExp][] = [
      [{ ...append, type: 'gossip' }, /unknown message type "gossip"/],
      [{ ...append, from: 0 }, /field from must be a positive node id/],
      [{ ...append, to: 1.5 }, /field to must be a non-negative safe integer, saw 1.5/],
      [{ ...append, term: -1 }, /field term/],
      [{ ...append, commit: '4' }, /field commit/],
      [{ ...append, entries: 'x' }, /field entries must be an array/],
      [
        { ...append, entries: [{ ...append.entries[0], data: 'str' }] },
        /entries\[0\].data must be bytes/,
      ],
      [{ ...append, entries: [{ ...append.entries[0], type: 'weird' }] }, /entries\[0\].type/],
      [{ ...append, entries: append.entries.slice(1) }, /entries\[0\].index must be 5, saw 6/],
      [
        { from: 1, to: 2, term: 1, type: 'vote-resp', granted: 1 },
        /field granted must be a boolean/,
      ],
      [
        { from: 1, to: 2, term: 1, type: 'snapshot', snapshot: { index: 1, term: 1, voters: [0] } },
        /voters\[0\]/,
      ],
      [
        {
          from: 1,
          to: 2,
          term: 1,
          type: 'snapshot',
          snapshot: { index: 1, term: 1, voters: [1], learners: [2, -3] },
        },
        /snapshot.learners\[1\] must be a positive node id/,
      ],
      [
        {
          from: 1,
          to: 2,
          term: 1,
          type: 'snapshot',
          snapshot: { index: 1, term: 1, voters: [1], autoLeave: 'yes' },
        },
        /field autoLeave must be a boolean/,
      ],
      [{ ...chunk, length: 5 }, /snapshot chunk 8\+5 must lie within its 12 bytes/],
      [{ ...chunk, totalBytes: 0, offset: 0, length: 0 }, /within its 0 bytes \(at least 1\)/],
      [{ ...chunk, id: '' }, /field id must be a string of 1..128 characters/],
      [{ ...chunk, id: 'x'.repeat(129) }, /field id must be a string/],
      [{ ...chunk, offset: -1 }, /field offset/],
      [{ from: 1, to: 2, term: 1, type: 'snapshot-resp', id: 'ab' }, /field received/],
      [[1, 2], /message must be a map, saw array/],
      [null, /message must be a map/],
    ];
    for (const [value, re] of cases) {
      const r = validateMessage(value);
      assert.ok(r instanceof TransportError, `accepted ${JSON.stringify(value)}`);
      assert.equal(r.code, 'TRANSPORT_BAD_MESSAGE');
      assert.match(r.message, re);
    }
  });

  void it('bounds the number of entries', () => {
    const m = {
      from: 1,
      to: 2,
      term: 3,
      type: 'append',
      prevIndex: 0,
      prevTerm: 0,
      entries: entries(5, 1),
      commit: 0,
    };
    const r = validateMessage(m, { maxEntriesPerMessage: 4, maxVoters: 1 });
    assert.ok(r instanceof TransportError);
    assert.match(r.message, /entries has 5 items, limit 4/);
  });

  void it('turns msgpack garbage into TRANSPORT_BAD_FRAME', () => {
    const r = decodeMessage(Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff]), defaultValidationLimits);
    assert.ok(r instanceof TransportError);
    assert.equal(r.code, 'TRANSPORT_BAD_FRAME');
    const trailing = decodeMessage(
      Buffer.concat([pack({ a: 1 }), Buffer.from([1])]),
      defaultValidationLimits,
    );
    assert.ok(trailing instanceof TransportError);
  });
});

void describe('backoff and send queue', () => {
  void it('backoff is reproducible from a seed, grows, and stays within [ceiling/2, ceiling]', () => {
    const opts = { baseMs: 50, maxMs: 1000 };
    const run = (seed: number): number[] => {
      const rng = createRng(seed);
      return Array.from({ length: 8 }, (_, i) => backoffDelayMs(i, opts, rng));
    };
    assert.deepStrictEqual(run(7), run(7));
    assert.notDeepStrictEqual(run(7), run(8));
    run(7).forEach((d, i) => {
      const ceiling = Math.min(1000, 50 * 2 ** i);
      assert.ok(
        d >= ceiling / 2 && d <= ceiling,
        `attempt ${i}: ${d} outside [${ceiling / 2}, ${ceiling}]`,
      );
    });
  });

  void it('serves control before bulk and bounds each lane by count and bulk by bytes', () => {
    const q = new SendQueue({ maxQueuedMessages: 2, maxQueuedBytes: 1000 });
    const [vote, , , , append] = everyMessage(1, 2);
    assert.ok(append !== undefined && vote !== undefined);
    assert.equal(q.offer(append, null), true); // 200 bytes of entry data
    assert.equal(q.offer(append, null), true);
    assert.equal(q.offer(append, null), false, 'count bound');
    assert.equal(q.offer(vote, null), true);
    assert.equal(q.nextControl()?.msg.type, 'vote');
    assert.equal(q.nextControl(), undefined);
    assert.equal(q.nextBulk()?.msg.type, 'append');
    const snap = everyMessage(1, 2).find((m) => m.type === 'snapshot') as Message;
    assert.equal(q.offer(snap, new Uint8Array(5000)), false, 'byte bound when lane not empty');
    q.nextBulk();
    assert.equal(
      q.offer(snap, new Uint8Array(5000)),
      true,
      'one oversize item admitted when empty',
    );
  });
});

void describe('membership on the wire', () => {
  void it('carries conf-change entries and the whole configuration of a snapshot', () => {
    const change: Message = {
      from: 1,
      to: 2,
      term: 3,
      type: 'append',
      prevIndex: 4,
      prevTerm: 3,
      commit: 4,
      entries: [
        {
          term: 3,
          index: 5,
          type: 'conf-change',
          data: encodeConfChange({ changes: [{ kind: 'add-learner', node: 4 }] }),
        },
      ],
    };
    const snapshot: Message = {
      from: 1,
      to: 2,
      term: 3,
      type: 'snapshot',
      snapshot: {
        index: 9,
        term: 3,
        voters: [1, 2, 4],
        learners: [5],
        outgoing: [1, 2, 3],
        learnersNext: [3],
        autoLeave: true,
      },
      id: 'c0ffee',
      offset: 0,
      length: 4,
      totalBytes: 4,
    };
    for (const m of [change, snapshot]) {
      assert.deepStrictEqual(decodeMessage(encodeMessage(m), defaultValidationLimits), {
        msg: m,
        group: 0,
      });
    }
  });

  void it('keeps a simple configuration as older builds sent it', () => {
    const m: Message = {
      from: 1,
      to: 2,
      term: 3,
      type: 'snapshot',
      snapshot: { index: 9, term: 3, voters: [1, 2, 3], learners: [] },
      id: 'c0ffee',
      offset: 0,
      length: 4,
      totalBytes: 4,
    };
    const decoded = decodeMessage(encodeMessage(m), defaultValidationLimits);
    assert.ok(!(decoded instanceof TransportError) && decoded.msg.type === 'snapshot');
    assert.deepStrictEqual(decoded.msg.snapshot, { index: 9, term: 3, voters: [1, 2, 3] });
  });
});
