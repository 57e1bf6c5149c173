// Keys on the command line that are not UTF-8. Node decodes argv as UTF-8 and turns bytes that
// are not into U+FFFD, so a key given as text can only be UTF-8, and one that came out holding
// U+FFFD was most likely not the key meant: written as it is, the command would read, write or
// delete another key. The API takes any bytes in base64 (`"encoding": "base64"`), so the kv
// commands, `watch`, `lock` and `elect` take `--key-base64`, and print a key or value that is
// not UTF-8 in base64 beside its text (`keyBase64`, `valueBase64`) where the output is for
// programs.

import type { KeyValue } from '../client/index.js';
import { utf8Text } from './stdin.js';
import { UsageError } from './usage-error.js';

/** The character Node puts for bytes of argv that are not UTF-8. */
const replacement = '\uFFFD';

/** base64 as Buffer writes it: the alphabet, padded to a multiple of 4. */
const base64Form = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * The bytes of `key` as the command line gave it: base64 with `base64`, else its UTF-8 text.
 * Refuses (a usage error, nothing sent) base64 that is not, and a text key holding U+FFFD.
 */
export function keyBytes(key: string, o: { readonly base64: boolean; readonly what: string }) {
  if (o.base64) {
    if (!base64Form.test(key))
      throw new UsageError(
        `--key-base64: the ${o.what} ${JSON.stringify(key)} is not base64 (A-Z, a-z, 0-9, + and /, padded with = to a multiple of 4)`,
      );
    return Buffer.from(key, 'base64');
  }
  if (key.includes(replacement))
    throw new UsageError(
      `The ${o.what} ${JSON.stringify(key)} holds U+FFFD, which is what bytes that are not UTF-8 become on the command line: it would not be the ${o.what} given. Give it in base64 with --key-base64 (printf '%s' KEY | base64), as a ${o.what} that really holds U+FFFD must be too`,
    );
  return Buffer.from(key, 'utf8');
}

/** Bytes as text, lossy as a UTF-8 answer of the API is (U+FFFD for bytes that are not). */
export function lossyText(base64: string): string {
  return Buffer.from(base64, 'base64').toString('utf8');
}

/**
 * A key-value read in base64, for a program to read: key and value as text, and beside a key
 * or value that is not UTF-8 its exact bytes in base64 (`keyBase64`, `valueBase64`).
 */
export function exactKv(x: KeyValue): KeyValue & { keyBase64?: string; valueBase64?: string } {
  const key = exactText(x.key);
  const value = exactText(x.value);
  return {
    ...x,
    key: key.text,
    value: value.text,
    ...(key.base64 === undefined ? {} : { keyBase64: key.base64 }),
    ...(value.base64 === undefined ? {} : { valueBase64: value.base64 }),
  };
}

/** Bytes in base64 as text, lossy, and when they are not UTF-8 the base64 too (`base64`). */
export function exactText(base64: string): { text: string; base64?: string } {
  const bytes = Buffer.from(base64, 'base64');
  const text = utf8Text(bytes);
  return text === null ? { text: bytes.toString('utf8'), base64 } : { text };
}
