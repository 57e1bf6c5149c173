// Strict validation of JSON request bodies: each field has one type, unknown fields are
// refused, and messages name the field and the value seen. No schema library: the shapes are
// few and flat, and the errors must carry our own codes.

import { FlotillaError } from '../base/errors.js';

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type Obj = Record<string, Json>;

export function asObject(v: unknown, what = 'body'): Obj {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new FlotillaError('BAD_REQUEST', `${what} must be a JSON object`);
  }
  return v as Obj;
}

export function onlyFields(o: Obj, allowed: readonly string[], what = 'body'): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) {
      throw new FlotillaError(
        'UNKNOWN_FIELD',
        `${what} has unknown field "${k}" (allowed: ${allowed.join(', ')})`,
      );
    }
  }
}

/** A UTF-16 surrogate without its other half: it has no UTF-8 form. */
const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** A string field; it must be valid Unicode, so that it has exactly one UTF-8 form. */
export function reqString(o: Obj, k: string): string {
  const v = o[k];
  if (typeof v !== 'string')
    throw new FlotillaError('BAD_REQUEST', `"${k}" must be a string, got ${describe(v)}`);
  checkUnicode(v, `"${k}"`);
  return v;
}

/** Refuses (INVALID_UTF8) a string holding a lone surrogate: `what` names it in the message. */
export function checkUnicode(v: string, what: string): void {
  const bad = loneSurrogate.exec(v);
  if (bad !== null) {
    const unit = bad[0].charCodeAt(0).toString(16);
    throw new FlotillaError(
      'INVALID_UTF8',
      `${what} holds a lone surrogate \\u${unit} at index ${bad.index}: strings must be valid Unicode`,
    );
  }
}

export function optString(o: Obj, k: string): string | undefined {
  return o[k] === undefined ? undefined : reqString(o, k);
}

export function optBool(o: Obj, k: string): boolean {
  const v = o[k];
  if (v === undefined) return false;
  if (typeof v !== 'boolean')
    throw new FlotillaError('BAD_REQUEST', `"${k}" must be a boolean, got ${describe(v)}`);
  return v;
}

export function optInt(o: Obj, k: string, min: number, max: number): number | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    throw new FlotillaError(
      'BAD_REQUEST',
      `"${k}" must be an integer in [${min}, ${max}], got ${describe(v)}`,
    );
  }
  return v;
}

export function optArray(o: Obj, k: string, maxLength: number): Json[] {
  const v = o[k];
  if (v === undefined) return [];
  if (!Array.isArray(v))
    throw new FlotillaError('BAD_REQUEST', `"${k}" must be an array, got ${describe(v)}`);
  if (v.length > maxLength)
    throw new FlotillaError(
      'BAD_REQUEST',
      `"${k}" has ${v.length} items; at most ${maxLength} allowed`,
    );
  return v;
}

export type Encoding = 'utf8' | 'base64';

export function encodingOf(o: Obj): Encoding {
  const e = o['encoding'];
  if (e === undefined) return 'utf8';
  if (e !== 'utf8' && e !== 'base64')
    throw new FlotillaError(
      'BAD_REQUEST',
      `"encoding" must be "utf8" or "base64", got ${describe(e)}`,
    );
  return e;
}

const base64Re = /^[A-Za-z0-9+/]*={0,2}$/;

/** Decodes a key or value given as a UTF-8 string or as base64, by the request's encoding. */
export function bytesField(o: Obj, k: string, enc: Encoding): Uint8Array {
  const s = reqString(o, k);
  if (enc === 'utf8') return new Uint8Array(Buffer.from(s, 'utf8'));
  if (s.length % 4 !== 0 || !base64Re.test(s))
    throw new FlotillaError('BAD_REQUEST', `"${k}" is not valid base64`);
  return new Uint8Array(Buffer.from(s, 'base64'));
}

export function optBytesField(o: Obj, k: string, enc: Encoding): Uint8Array | undefined {
  return o[k] === undefined ? undefined : bytesField(o, k, enc);
}

export function encodeBytes(b: Uint8Array, enc: Encoding): string {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  return enc === 'utf8' ? buf.toString('utf8') : buf.toString('base64');
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  // JSON.stringify writes Infinity (a JSON 1e400) and NaN as null.
  if (typeof v === 'number') return String(v);
  const s = JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/**
 * What `make` builds from one part of a request (an item of a bulk, a compare or an operation
 * of a transaction); its refusal names the part first.
 */
export function naming<T>(item: string, make: () => T): T {
  try {
    return make();
  } catch (err) {
    if (!(err instanceof FlotillaError)) throw err;
    throw new FlotillaError(err.code, `${item}: ${err.message}`);
  }
}
