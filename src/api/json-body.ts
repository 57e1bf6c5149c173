// Request bodies decoded strictly. Three things the platform would let through silently are
// refused, because each makes two different requests mean the same thing:
// - bytes that are not UTF-8: `Buffer#toString` replaces each with U+FFFD, so two different
//   keys became one;
// - a field named twice in one object: `JSON.parse` keeps the last, so `{"key":"a","key":"b"}`
//   meant whatever the sender's JSON library and ours disagree about;
// - a string holding a lone surrogate (`"\ud800"`): it has no UTF-8 form, and encoding it
//   replaced it with U+FFFD (that check is on each string field, in validate.ts).

import { isUtf8 } from 'node:buffer';
import { FlotillaError } from '../base/errors.js';
import { MAX_BODY_DEPTH } from '../base/limits.js';

/** A request body's text: refused INVALID_UTF8 unless the bytes are valid UTF-8. */
export function bodyText(bytes: Buffer): string {
  if (!isUtf8(bytes)) {
    const at = firstInvalidUtf8(bytes);
    throw new FlotillaError(
      'INVALID_UTF8',
      `Body is not valid UTF-8: byte 0x${(bytes[at] ?? 0).toString(16).padStart(2, '0')} at offset ${at}`,
    );
  }
  return bytes.toString('utf8');
}

/** Parses a body's text (bodyText): valid JSON, no object naming a field twice; blank is {}. */
export function parseJsonText(text: string): unknown {
  if (text.trim() === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(text) as unknown;
  } catch (err) {
    throw new FlotillaError('BAD_JSON', `Body is not valid JSON: ${(err as Error).message}`);
  }
  if (nesting(value) > MAX_BODY_DEPTH)
    throw new FlotillaError(
      'BAD_REQUEST',
      `Body is nested more than ${MAX_BODY_DEPTH} levels deep`,
    );
  const dup = findDuplicateField(text);
  if (dup !== null) {
    throw new FlotillaError(
      'DUPLICATE_FIELD',
      `Body names field ${JSON.stringify(dup.field)} twice in one object (again at offset ${dup.offset})`,
    );
  }
  return value;
}

/**
 * How many arrays and objects deep `v` nests (0 for a scalar), without recursion; counting
 * stops once past MAX_BODY_DEPTH.
 */
function nesting(v: unknown): number {
  if (v === null || typeof v !== 'object') return 0;
  let deepest = 0;
  // Containers only, with their depth: a body of many scalars allocates nothing per value.
  const stack: [object, number][] = [[v, 1]];
  for (let top = stack.pop(); top !== undefined; top = stack.pop()) {
    const [x, d] = top;
    if (d > deepest) deepest = d;
    if (deepest > MAX_BODY_DEPTH) return deepest;
    for (const y of Array.isArray(x) ? x : Object.values(x))
      if (y !== null && typeof y === 'object') stack.push([y as object, d + 1]);
  }
  return deepest;
}

const QUOTE = 0x22;
const COMMA = 0x2c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;

/**
 * The first field named twice within one object of JSON text that `JSON.parse` accepted, or
 * null. One pass: a stack holds the names seen in each open object (null for an array); a
 * string is a name when it comes right after `{` or after a `,` inside an object. Names are
 * compared decoded, so `"k"` and `"\u006b"` are the same field.
 */
export function findDuplicateField(text: string): { field: string; offset: number } | null {
  const open: (Set<string> | null)[] = [];
  let expectName = false;
  const stringStop = /["\\]/g;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const start = i;
      let escaped = false;
      stringStop.lastIndex = i + 1;
      for (;;) {
        const m = stringStop.exec(text);
        if (m === null) return null; // unreachable for text JSON.parse accepted
        if (text.charCodeAt(m.index) === QUOTE) {
          i = m.index;
          break;
        }
        escaped = true;
        stringStop.lastIndex = m.index + 2; // the escaped character is never a stop
      }
      const names = open[open.length - 1];
      if (expectName && names) {
        const raw = text.slice(start, i + 1);
        const field = escaped ? (JSON.parse(raw) as string) : raw.slice(1, -1);
        if (names.has(field)) return { field, offset: start };
        names.add(field);
      }
      expectName = false;
    } else if (c === OPEN_OBJECT) {
      open.push(new Set());
      expectName = true;
    } else if (c === OPEN_ARRAY) {
      open.push(null);
      expectName = false;
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      open.pop();
      expectName = false;
    } else if (c === COMMA) {
      expectName = (open[open.length - 1] ?? null) !== null;
    }
  }
  return null;
}

/** Offset of the first byte that breaks UTF-8 (RFC 3629: no overlongs, no surrogates). */
function firstInvalidUtf8(b: Buffer): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i] as number;
    let n: number;
    let min: number;
    if (c < 0x80) {
      i++;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) [n, min] = [1, 0x80];
    else if (c >= 0xe0 && c <= 0xef) [n, min] = [2, 0x800];
    else if (c >= 0xf0 && c <= 0xf4) [n, min] = [3, 0x10000];
    else return i;
    let cp = c & (0x3f >> n);
    for (let k = 1; k <= n; k++) {
      const d = b[i + k];
      if (d === undefined || (d & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (d & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += n + 1;
  }
  return b.length;
}
