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
  // Bytes inside a binary or an extension are not a string.
  assert.equal(firstInvalidString(Buffer.from([0x92, 0xc4, 0x01, 0xff, 0xd4, 0x01, 0xff])), -1);
});

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
