// etcd's rule for the operations of one transaction branch: a key may be written once. Two puts
// to one key, or a put to a key that a delete in the same branch covers, are refused ("duplicate
// key given in txn request"), because the result would depend on the order of operations that
// a transaction presents as happening at once. Ranges read and may repeat; deletes may overlap
// each other (deleting twice is deleting once).

import type { Op } from '../kv/kv-store.js';
import { FlotillaError } from '../base/errors.js';

/** Throws DUPLICATE_KEY if two operations of `ops` (one branch, named `where`) write one key. */
export function checkTxnKeysDistinct(ops: readonly Op[], where: string): void {
  const puts = new Map<string, number>();
  ops.forEach((op, i) => {
    if (op.kind !== 'put') return;
    const id = Buffer.from(op.key).toString('latin1');
    const first = puts.get(id);
    if (first !== undefined)
      throw duplicate(`${where}[${first}] and ${where}[${i}] both put key ${show(op.key)}`);
    puts.set(id, i);
  });
  ops.forEach((op, i) => {
    if (op.kind !== 'delete') return;
    ops.forEach((other, j) => {
      if (other.kind === 'put' && covers(op.range, other.key))
        throw duplicate(`${where}[${i}] deletes key ${show(other.key)}, which ${where}[${j}] puts`);
    });
  });
}

function covers(range: { key: Uint8Array; rangeEnd: Uint8Array | null }, key: Uint8Array): boolean {
  if (range.rangeEnd === null) return Buffer.compare(range.key, key) === 0;
  // A range end of one zero byte means "to the end of the keyspace" (etcd's convention).
  const toEnd = range.rangeEnd.length === 1 && range.rangeEnd[0] === 0;
  return Buffer.compare(range.key, key) <= 0 && (toEnd || Buffer.compare(key, range.rangeEnd) < 0);
}

function duplicate(what: string): FlotillaError {
  return new FlotillaError('DUPLICATE_KEY', `A transaction writes each key at most once: ${what}`);
}

function show(key: Uint8Array): string {
  const s = JSON.stringify(Buffer.from(key).toString('utf8'));
  return s.length > 60 ? `${s.slice(0, 57)}..."` : s;
}
