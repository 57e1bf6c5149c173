// What a split must leave behind, checked against a reference store that applied the same
// commands and never split: the left half reads exactly the reference's keys below the split
// key and the right half exactly those from it on, at every revision not compacted (so the
// keys, their versions and their history), with the same revision, compaction and leases.
// Shared by the range machine's tests and the three-host test.

import type { KvStateMachine } from '../../src/kv/machine.js';
import type { KeyValue } from '../../src/kv/kv-store.js';
import type { RangeDescriptor } from '../../src/ranges/types.js';

const TO_END = new Uint8Array([0]);

function render(kvs: readonly KeyValue[]): string {
  return kvs
    .map(
      (kv) =>
        `${Buffer.from(kv.key).toString('hex')}=${Buffer.from(kv.value).toString('hex')}` +
        `@${kv.createRevision}/${kv.modRevision}/v${kv.version}/l${kv.lease ?? 0}`,
    )
    .join(' ');
}

/** Every key of `kv` within [start, end) as of `revision`. */
function readHalf(
  kv: KvStateMachine,
  start: Uint8Array,
  end: Uint8Array | null,
  revision: number,
): string {
  const key = start.length === 0 ? new Uint8Array([0]) : start;
  return render(
    kv.range({ range: { key, rangeEnd: end ?? TO_END }, limit: 0, countOnly: false, revision }).kvs,
  );
}

/**
 * The differences between the two halves and the reference; empty when the split is right.
 * `leases` says how each half's leases must look: every lease of the reference, each with the
 * keys of that half only.
 */
export function splitProblems(
  reference: KvStateMachine,
  left: { readonly kv: KvStateMachine; readonly descriptor: RangeDescriptor },
  right: { readonly kv: KvStateMachine; readonly descriptor: RangeDescriptor },
): string[] {
  const problems: string[] = [];
  const at = right.descriptor.start;
  if (Buffer.compare(left.descriptor.end ?? Buffer.alloc(0), at) !== 0)
    problems.push('the left half does not end where the right half starts');
  const rev = reference.revision();
  for (const [name, half] of [
    ['left', left],
    ['right', right],
  ] as const) {
    if (half.kv.revision() !== rev)
      problems.push(`${name} is at revision ${half.kv.revision()}, the reference at ${rev}`);
    if (half.kv.compacted() !== reference.compacted())
      problems.push(
        `${name} is compacted to ${half.kv.compacted()}, the reference to ${reference.compacted()}`,
      );
  }
  const from = Math.max(1, reference.compacted());
  for (let r = from; r <= rev; r++) {
    for (const [name, half] of [
      ['left', left],
      ['right', right],
    ] as const) {
      const { start, end } = half.descriptor;
      const want = readHalf(reference, start, end, r);
      const got = readHalf(half.kv, start, end, r);
      if (want !== got) problems.push(`${name} at revision ${r}: ${got} where ${want}`);
    }
  }
  // Keys the other half owns must be absent, now and in the past (checked on the whole space).
  for (const [name, half] of [
    ['left', left],
    ['right', right],
  ] as const) {
    for (let r = from; r <= rev; r++) {
      const all = readHalf(half.kv, new Uint8Array(0), null, r);
      const own = readHalf(half.kv, half.descriptor.start, half.descriptor.end, r);
      if (all !== own) problems.push(`${name} holds keys outside its bounds at revision ${r}`);
    }
  }
  const refLeases = reference.leases().map((l) => `${l.id}:${l.ttlSeconds}`);
  for (const [name, half] of [
    ['left', left],
    ['right', right],
  ] as const) {
    const got = half.kv.leases().map((l) => `${l.id}:${l.ttlSeconds}`);
    if (got.join(' ') !== refLeases.join(' '))
      problems.push(`${name} has leases ${got.join(' ')} where ${refLeases.join(' ')}`);
    for (const l of half.kv.leases()) {
      const keys = half.kv.lease(l.id)?.keys ?? [];
      const { start, end } = half.descriptor;
      const inside = (k: Uint8Array): boolean =>
        Buffer.compare(k, start) >= 0 && (end === null || Buffer.compare(k, end) < 0);
      const want = (reference.lease(l.id)?.keys ?? []).filter(inside);
      if (
        keys.map((k) => Buffer.from(k).toString('hex')).join(',') !==
        want.map((k) => Buffer.from(k).toString('hex')).join(',')
      )
        problems.push(`${name} lease ${l.id} holds other keys than the reference's in its bounds`);
    }
  }
  return problems;
}
