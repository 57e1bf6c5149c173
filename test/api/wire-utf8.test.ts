// Strings over the binary protocol must be valid UTF-8, as over HTTP: msgpack carries a lone
// surrogate (or any bytes) in a string, and the decoder turns what is not UTF-8 into U+FFFD,
// which made two different keys one. firstInvalidString finds such a string in a frame.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Packr } from 'msgpackr';
import {
  WIRE_MAGIC,
  decodePayload,
  firstInvalidString,
  parseHandshake,
  parseRequest,
} from '../../src/api/wire-codec.js';
import { FlotillaError } from '../../src/base/errors.js';

const packr = new Packr({ useRecords: false, moreTypes: false, variableMapSize: true });
const pack = (v: unknown): Buffer => packr.pack(v);

/** A msgpack str of `bytes`, with the header a string of that length takes. */
function rawStr(bytes: Buffer): Buffer {
  const n = bytes.length;
  const head =
    n < 32
      ? Buffer.from([0xa0 | n])
      : n < 256
        ? Buffer.from([0xd9, n])
        : n < 65_536
          ? Buffer.from([0xda, n >> 8, n & 0xff])
          : Buffer.from([0xdb, n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);
  return Buffer.concat([head, bytes]);
}

void test('valid strings of every length class, beside numbers, binaries and nil, pass', () => {
  const value = {
    a: 'plain',
    b: 'é'.repeat(40),
    c: 'x'.repeat(300),
    d: '💡'.repeat(20_000),
    e: '\ufffd itself is a character',
    n: [1, -1, 300, -300, 70_000, 2 ** 40, -(2 ** 40), 1.5, null, true, false],
    bin: new Uint8Array([0xff, 0xfe, 0xed, 0xa0, 0x80]),
    deep: [[[{ k: 'v' }]]],
  };
  assert.equal(firstInvalidString(pack(value)), -1);
});

void test('a string whose bytes are not UTF-8 is found at its header, in any length class', () => {
  for (const bad of [
    Buffer.from([0xed, 0xa0, 0x80]), // a lone surrogate, as msgpack packs '\ud800'
    Buffer.from([0xff]),
    Buffer.from([0xc0, 0xaf]), // overlong
    Buffer.concat([Buffer.from('x'.repeat(100)), Buffer.from([0xed, 0xbf, 0xbf])]),
    Buffer.concat([Buffer.from('x'.repeat(70_000)), Buffer.from([0x80])]),
  ]) {
    // {"ok": [1, "fine"], "k": <bad>}: the bad string's header is after the rest.
    const before = Buffer.concat([
      Buffer.from([0x82]),
      rawStr(Buffer.from('ok')),
      Buffer.from([0x92, 0x01]),
      rawStr(Buffer.from('fine')),
      rawStr(Buffer.from('k')),
    ]);
    const frame = Buffer.concat([before, rawStr(bad)]);
    assert.equal(firstInvalidString(frame), before.length, `${bad.subarray(-3).toString('hex')}`);
  }
  // As a map's name too.
  const asName = Buffer.concat([
    Buffer.from([0x81]),
    rawStr(Buffer.from([0xff])),
    Buffer.from([0x01]),
  ]);
  assert.equal(firstInvalidString(asName), 1);
  // Bytes inside a binary are not a string.
  assert.equal(firstInvalidString(Buffer.from([0x92, 0xc4, 0x01, 0xff, 0xc4, 0x00])), -1);
});

void test('every msgpack type is stepped over by its size, to the bad string after it', () => {
  const bad = rawStr(Buffer.from([0xff]));
  const items: [string, Buffer][] = [
    ['nil, false, true, 0xc1', Buffer.from([0xc0, 0xc2, 0xc3, 0xc1])],
    ['fixints', Buffer.from([0x7f, 0xe0])],
    ['float32', Buffer.from([0xca, 0xff, 0xff, 0xff, 0xff])],
    ['float64', Buffer.from([0xcb, ...Array<number>(8).fill(0xff)])],
    [
      'uint8..64',
      Buffer.from([
        0xcc,
        0xff,
        0xcd,
        0xff,
        0xff,
        0xce,
        0,
        0,
        0,
        0,
        0xcf,
        ...Array<number>(8).fill(0),
      ]),
    ],
    [
      'int8..64',
      Buffer.from([0xd0, 0xff, 0xd1, 0, 0, 0xd2, 0, 0, 0, 0, 0xd3, ...Array<number>(8).fill(0)]),
    ],
    ['bin16, bin32', Buffer.from([0xc5, 0x00, 0x01, 0xff, 0xc6, 0, 0, 0, 0x01, 0xff])],
    [
      'str16 and str32 of valid text',
      Buffer.from([0xda, 0x00, 0x01, 0x61, 0xdb, 0, 0, 0, 0x01, 0x61]),
    ],
    ['array16 and array32', Buffer.from([0xdc, 0x00, 0x01, 0x01, 0xdd, 0, 0, 0, 0x01, 0x01])],
    [
      'map16 and map32',
      Buffer.from([0xde, 0x00, 0x01, 0x01, 0x01, 0xdf, 0, 0, 0, 0x01, 0x01, 0x01]),
    ],
  ];
  for (const [what, before] of items) {
    // One array holding the items of `before`, then the bad string.
    const count = countItems(before);
    const frame = Buffer.concat([Buffer.from([0xdc, 0x00, count + 1]), before, bad]);
    assert.equal(firstInvalidString(frame), 3 + before.length, what);
  }
});

void test('an extension is reported where it is: the decoder may have made strings of it', () => {
  for (const ext of [
    [0xd4, 0x01, 0x00],
    [0xd5, 0x01, 0, 0],
    [0xd6, 0x69, 0, 0, 0, 0],
    [0xd7, 0x01, ...Array<number>(8).fill(0)],
    [0xd8, 0x01, ...Array<number>(16).fill(0)],
    [0xc7, 0x01, 0x62, 0x00],
    [0xc8, 0x00, 0x01, 0x62, 0x00],
    [0xc9, 0, 0, 0, 0x01, 0x62, 0x00],
  ])
    assert.equal(firstInvalidString(Buffer.from([0x92, 0x01, ...ext])), 2, ext.join(','));
  // Bytes past the one value were never decoded.
  assert.equal(firstInvalidString(Buffer.from([0x01, 0xa1, 0xff])), 1);
  // Structured clone would rebuild objects from an extension's bytes: refused as it decodes.
  assert.throws(
    () => decodePayload(Buffer.from([0xd6, 0x69, 0, 0, 0, 0, 0x81, 0xa1, 0x6b, 0xa1, 0x76])),
    (err: unknown) => err instanceof FlotillaError && err.code === 'BAD_FRAME',
  );
});

/** How many msgpack values `b` holds back to back (only the kinds the table above uses). */
function countItems(b: Buffer): number {
  let at = 0;
  let n = 0;
  const skip: Record<number, number> = {
    0xca: 4,
    0xcb: 8,
    0xcc: 1,
    0xcd: 2,
    0xce: 4,
    0xcf: 8,
    0xd0: 1,
    0xd1: 2,
    0xd2: 4,
    0xd3: 8,
  };
  while (at < b.length) {
    const t = b[at++] as number;
    n++;
    if (t <= 0x7f || t >= 0xe0 || (t >= 0xc0 && t <= 0xc3)) continue;
    if (t in skip) at += skip[t] as number;
    else if (t === 0xc5 || t === 0xda) at += 2 + b.readUInt16BE(at);
    else if (t === 0xc6 || t === 0xdb) at += 4 + b.readUInt32BE(at);
    else if (t === 0xdc)
      at += 2 + 1; // one fixint inside
    else if (t === 0xdd) at += 4 + 1;
    else if (t === 0xde)
      at += 2 + 2; // one pair of fixints inside
    else if (t === 0xdf) at += 4 + 2;
  }
  return n;
}

void test('a request whose body holds a lone surrogate is marked invalid, answered INVALID_UTF8', () => {
  const frame = pack([7, 'put', { key: 'a\ud800', value: 'x' }]);
  const req = parseRequest(decodePayload(frame), frame);
  assert.ok(req.invalid instanceof FlotillaError);
  assert.equal(req.invalid.code, 'INVALID_UTF8');
  assert.match(req.invalid.message, /Request 7's body holds a string that is not valid UTF-8/);
  const nested = pack([8, 'queue.add', { queue: 'q', data: { list: [{ k: 'x\udc00' }] } }]);
  assert.equal(parseRequest(decodePayload(nested), nested).invalid?.code, 'INVALID_UTF8');
  // U+FFFD sent as itself is a character like any other.
  const fine = pack([9, 'put', { key: 'a\ufffd', value: '\ufffd' }]);
  assert.equal(parseRequest(decodePayload(fine), fine).invalid, undefined);
  assert.deepEqual(parseRequest(decodePayload(fine), fine).body, {
    key: 'a\ufffd',
    value: '\ufffd',
  });
});

void test('a handshake whose clientId is not valid UTF-8 is refused', () => {
  const frame = pack({ magic: WIRE_MAGIC, version: 1, clientId: 'c\ud800' });
  assert.throws(
    () => parseHandshake(decodePayload(frame), frame),
    (err: unknown) => err instanceof FlotillaError && err.code === 'INVALID_UTF8',
  );
  const fine = pack({ magic: WIRE_MAGIC, version: 1, clientId: 'c\ufffd' });
  assert.equal(parseHandshake(decodePayload(fine), fine).clientId, 'c\ufffd');
});
