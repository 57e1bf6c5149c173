// Strict decoding of request bodies: the duplicate-field scanner against a model over random
// JSON documents, and the UTF-8 check's report of where a body breaks.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { FlotillaError } from '../../src/base/errors.js';
import { MAX_BODY_DEPTH } from '../../src/base/limits.js';
import { bodyText, findDuplicateField, parseJsonText } from '../../src/api/json-body.js';

/** As the HTTP server decodes a body: its text, then the parse. */
const parseJsonBody = (bytes: Buffer): unknown => parseJsonText(bodyText(bytes));

/** A JSON document whose objects are lists of (name, value), so names may repeat. */
type Doc =
  | { kind: 'scalar'; value: null | boolean | number | string }
  | { kind: 'array'; items: Doc[] }
  | { kind: 'object'; fields: [string, Doc][] };

const names = fc.constantFrom('a', 'b', 'key', 'k"y', 'k\\y', 'é', '😀', '', '{', ',');

const doc: fc.Arbitrary<Doc> = fc.letrec<{ doc: Doc }>((tie) => ({
  doc: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc
      .oneof(fc.constant(null), fc.boolean(), fc.integer(), fc.string(), names)
      .map((value) => ({ kind: 'scalar' as const, value })),
    fc.array(tie('doc'), { maxLength: 4 }).map((items) => ({ kind: 'array' as const, items })),
    fc
      .array(fc.tuple(names, tie('doc')), { maxLength: 4 })
      .map((fields) => ({ kind: 'object' as const, fields })),
  ),
})).doc;

/** Renders a document, escaping every character of a name as \uXXXX when `escape` says so. */
function render(d: Doc, escape: boolean, space: string): string {
  switch (d.kind) {
    case 'scalar':
      return JSON.stringify(d.value);
    case 'array':
      return `[${space}${d.items.map((x) => render(x, escape, space)).join(`,${space}`)}]`;
    case 'object': {
      const name = (n: string) =>
        escape
          ? `"${[...n].map((c) => ((c.codePointAt(0) as number) > 0xffff ? JSON.stringify(c).slice(1, -1) : `\\u${(c.codePointAt(0) as number).toString(16).padStart(4, '0')}`)).join('')}"`
          : JSON.stringify(n);
      const fields = d.fields.map(
        ([n, v]) => `${name(n)}${space}:${space}${render(v, escape, space)}`,
      );
      return `{${space}${fields.join(`,${space}`)}}`;
    }
  }
}

function hasDuplicate(d: Doc): boolean {
  if (d.kind === 'scalar') return false;
  if (d.kind === 'array') return d.items.some(hasDuplicate);
  const seen = new Set(d.fields.map(([n]) => n));
  return seen.size !== d.fields.length || d.fields.some(([, v]) => hasDuplicate(v));
}

void test('property: a duplicate field is found exactly when some object names one twice', () => {
  fc.assert(
    fc.property(doc, fc.boolean(), fc.constantFrom('', ' ', '\n\t'), (d, escape, space) => {
      const text = render(d, escape, space);
      JSON.parse(text); // the scanner's precondition: the text is valid JSON
      const found = findDuplicateField(text);
      assert.equal(found !== null, hasDuplicate(d), `${text} -> ${JSON.stringify(found)}`);
    }),
    { numRuns: 2000 },
  );
});

void test('the duplicate is named, decoded, with where it appears again', () => {
  assert.deepEqual(findDuplicateField('{"k":1,"\\u006b":2}'), { field: 'k', offset: 7 });
  assert.deepEqual(findDuplicateField('[{"a":{"b":1,"c":"\\"b\\""}},{"b":1,"b":2}]'), {
    field: 'b',
    offset: 34,
  });
  assert.equal(findDuplicateField('{"a":"\\\\","b":"\\\\"}'), null);
});

function refused(bytes: Buffer): FlotillaError {
  try {
    parseJsonBody(bytes);
  } catch (err) {
    if (err instanceof FlotillaError) return err;
    throw err;
  }
  throw new Error(`${bytes.toString('hex')} was accepted`);
}

void test('bytes that are not UTF-8 are refused with the offending byte and its offset', () => {
  const cases: [number[], number][] = [
    [[0x80], 0],
    [[0x41, 0xc1, 0x81], 1], // overlong
    [[0x41, 0x42, 0xe0, 0x80, 0xaf], 2], // overlong
    [[0xed, 0xb0, 0x80], 0], // a surrogate
    [[0xf4, 0x90, 0x80, 0x80], 0], // past U+10FFFF
    [[0x22, 0xf0, 0x9f, 0x98], 1], // truncated
  ];
  for (const [bytes, offset] of cases) {
    const e = refused(Buffer.from(bytes));
    assert.equal(e.code, 'INVALID_UTF8');
    assert.match(e.message, new RegExp(`at offset ${offset}$`), e.message);
  }
  assert.deepEqual(parseJsonBody(Buffer.from('{"k":"é😀"}')), { k: 'é😀' });
  assert.deepEqual(parseJsonBody(Buffer.from(' \n')), {}, 'an empty body is an empty object');
  assert.equal(refused(Buffer.from('{"k":1,"k":1}')).code, 'DUPLICATE_FIELD');
  assert.equal(refused(Buffer.from('{"k":')).code, 'BAD_JSON');
});

void test('a body nested past the depth limit is refused BAD_REQUEST, however deep', () => {
  // 5,000 levels overflowed the stack in a route's check and answered 500 INTERNAL.
  const text = (containers: number) =>
    `{"data":${'['.repeat(containers - 1)}1${']'.repeat(containers - 1)}}`;
  assert.ok(parseJsonText(text(MAX_BODY_DEPTH)), 'the limit itself is taken');
  for (const containers of [MAX_BODY_DEPTH + 1, 5_000, 100_000])
    assert.throws(
      () => parseJsonText(text(containers)),
      (e: unknown) =>
        e instanceof FlotillaError &&
        e.code === 'BAD_REQUEST' &&
        e.message.includes(`more than ${MAX_BODY_DEPTH} levels`),
    );
});
