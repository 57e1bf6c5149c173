// The fuzzer's generators: a seeded random source per input, byte mutations and structured
// mutations of JSON-shaped values. Input i of a run is generated from (seed, i) alone, so any
// input a run reports can be generated again, and sent alone, from those two numbers.

import { Xoshiro128 } from '../../src/raft/rng.js';

export class FuzzRng {
  private readonly x: Xoshiro128;

  constructor(seed: number, index: number) {
    // Two rounds of a 32-bit mix of seed and index: neighbouring inputs share no stream.
    this.x = new Xoshiro128(mix32(mix32(seed) ^ index));
  }

  int(maxExclusive: number): number {
    return this.x.int(maxExclusive);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.x.float() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.x.int(items.length)] as T;
  }

  u32(): number {
    return this.x.nextU32();
  }

  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) out[i] = this.x.int(256);
    return out;
  }

  /** A length skewed to small values, up to max: most inputs are short, some are long. */
  length(max: number): number {
    const r = this.x.float();
    return Math.floor(r * r * r * (max + 1));
  }
}

function mix32(v: number): number {
  let z = (v + 0x9e3779b9) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

/** Values that sit at the edges of what validators check: types, signs, limits, encodings. */
const interestingNumbers = [
  0,
  -1,
  1,
  2,
  255,
  256,
  65_535,
  65_536,
  2 ** 31 - 1,
  2 ** 31,
  2 ** 32 - 1,
  2 ** 32,
  2 ** 53 - 1,
  2 ** 53,
  -(2 ** 53),
  1.5,
  -0.5,
  1e300,
  -1e300,
  Number.MIN_VALUE,
];
const interestingStrings = [
  '',
  ' ',
  'a',
  '\u0000',
  '\ud800',
  '\udfff',
  'é',
  '😀',
  '%',
  '/',
  '..',
  '__proto__',
  'constructor',
  'null',
  'true',
  '0',
  '-1',
  'base64',
  'utf8',
  'AAAA',
  '====',
  'x'.repeat(300),
  'k'.repeat(5_000),
];

/**
 * Sets an own field, also one named `__proto__`: as JSON.parse and msgpack decoding make it,
 * where an assignment would replace the object's prototype instead.
 */
function setField(o: Record<string, JsonValue>, k: string, v: JsonValue): void {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}

export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };

/** A random JSON-shaped value, nested at most `depth` levels. */
export function randomJson(rng: FuzzRng, depth: number, fieldPool: readonly string[]): JsonValue {
  switch (rng.int(depth > 0 ? 8 : 6)) {
    case 0:
      return null;
    case 1:
      return rng.chance(0.5);
    case 2:
      return rng.pick(interestingNumbers);
    case 3:
      return rng.int(1_000);
    case 4:
      return rng.pick(interestingStrings);
    case 5:
      return rng.bytes(rng.length(24)).toString(rng.chance(0.5) ? 'latin1' : 'base64');
    case 6:
      return Array.from({ length: rng.length(6) }, () => randomJson(rng, depth - 1, fieldPool));
    default: {
      const o: Record<string, JsonValue> = {};
      for (let i = rng.length(5); i > 0; i--)
        setField(
          o,
          rng.chance(0.8) ? rng.pick(fieldPool) : rng.pick(interestingStrings),
          randomJson(rng, depth - 1, fieldPool),
        );
      return o;
    }
  }
}

/**
 * One to three structured mutations of a valid body: a field dropped, added (from the names
 * the endpoint family uses, so validators see plausible shapes), retyped or set to an edge
 * value, a nested value mutated, a string grown or emptied. The template is not changed.
 * Keys in `pinned` are never touched (a flaw a body must keep, e.g. a member id that cannot
 * be added, so that no mutation turns it into a request that reconfigures the cluster).
 */
export function mutateJson(
  rng: FuzzRng,
  template: JsonValue,
  fieldPool: readonly string[],
  pinned: ReadonlySet<string> = new Set(),
): JsonValue {
  let v = structuredClone(template);
  for (let n = 1 + rng.int(3); n > 0; n--) {
    const before = structuredClone(v);
    v = mutateOnce(rng, v, fieldPool, pinned, 0);
    // Repeated lists of grown strings inside repeated lists grow without bound: past every
    // limit the protocols check, and past what a buffer can hold.
    if (nodes(v, maxNodes) > maxNodes) v = before;
  }
  return v;
}

/**
 * The largest a mutated body grows, in `weight` units (one per value, one more per 8
 * characters or bytes): about 800 KB of text, past every limit the protocols check.
 */
const maxNodes = 100_000;

/** The weight of `v`, counted up to max + 1. */
function nodes(v: JsonValue, max: number): number {
  const stack: unknown[] = [v];
  let n = 0;
  while (stack.length > 0 && n <= max) {
    const x = stack.pop();
    n += 1;
    if (typeof x === 'string') n += x.length >> 3;
    else if (x instanceof Uint8Array) n += x.length >> 3;
    else if (Array.isArray(x)) {
      if (x.length > max) return max + 1;
      for (const c of x as unknown[]) stack.push(c);
    } else if (x !== null && typeof x === 'object') for (const c of Object.values(x)) stack.push(c);
  }
  return n;
}

function mutateOnce(
  rng: FuzzRng,
  v: JsonValue,
  fieldPool: readonly string[],
  pinned: ReadonlySet<string>,
  depth: number,
): JsonValue {
  // Binary fields (a peer message's entry data) are mutated as bytes or replaced.
  if (v instanceof Uint8Array)
    return (
      rng.chance(0.7) ? mutateBytes(rng, Buffer.from(v)) : randomJson(rng, 1, fieldPool)
    ) as JsonValue;
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    const keys = Object.keys(v).filter((k) => !pinned.has(k));
    const op = rng.int(5);
    if (op === 0 && keys.length > 0) {
      delete v[rng.pick(keys)];
      return v;
    }
    if (op === 1 || keys.length === 0) {
      const k = rng.chance(0.9) ? rng.pick(fieldPool) : rng.pick(interestingStrings);
      if (!pinned.has(k)) setField(v, k, randomJson(rng, 2, fieldPool));
      return v;
    }
    const k = rng.pick(keys);
    setField(
      v,
      k,
      op === 2 && depth < 4
        ? mutateOnce(rng, v[k] as JsonValue, fieldPool, pinned, depth + 1)
        : mutateScalar(rng, v[k] as JsonValue, fieldPool),
    );
    return v;
  }
  if (Array.isArray(v)) {
    const op = rng.int(4);
    if (op === 0 || v.length === 0) v.push(randomJson(rng, 2, fieldPool));
    else if (op === 1) v.splice(rng.int(v.length), 1);
    else if (op === 2 && depth < 4) {
      const i = rng.int(v.length);
      v[i] = mutateOnce(rng, v[i] as JsonValue, fieldPool, pinned, depth + 1);
    } else {
      // Many copies of one element: lists at and past their limits.
      const e = v[rng.int(v.length)] as JsonValue;
      const copies = Math.min(rng.length(200), Math.floor(maxNodes / nodes(e, maxNodes)));
      for (let i = copies; i > 0; i--) v.push(structuredClone(e));
    }
    return v;
  }
  return mutateScalar(rng, v, fieldPool);
}

function mutateScalar(rng: FuzzRng, v: JsonValue, fieldPool: readonly string[]): JsonValue {
  if (typeof v === 'string' && rng.chance(0.5)) {
    switch (rng.int(4)) {
      case 0:
        // Past the body limit (256 KiB in the fuzzed node), not past memory.
        return v.repeat(Math.min(1 + rng.length(2_000), Math.ceil(300_000 / (v.length + 1))));
      case 1:
        return v.slice(0, rng.int(v.length + 1));
      case 2:
        return v + rng.pick(interestingStrings);
      default:
        return Buffer.from(v).toString('base64');
    }
  }
  if (typeof v === 'number' && rng.chance(0.5))
    return rng.pick([v + 1, v - 1, -v, v * 2 ** 20, v + 0.5]);
  return randomJson(rng, 1, fieldPool);
}

/** A byte-level mutation of an encoded input: flips, edge bytes, cuts, splices, repeats. */
export function mutateBytes(rng: FuzzRng, input: Buffer): Buffer {
  let b = Buffer.from(input);
  for (let n = 1 + rng.int(3); n > 0; n--) {
    const at = rng.int(b.length + 1);
    switch (rng.int(7)) {
      case 0:
        if (b.length > 0) b[at % b.length] = (b[at % b.length] as number) ^ (1 << rng.int(8));
        break;
      case 1:
        if (b.length > 0) b[at % b.length] = rng.pick([0, 0x7f, 0x80, 0xc1, 0xff]);
        break;
      case 2:
        b = b.subarray(0, at);
        break;
      case 3:
        b = Buffer.concat([b.subarray(0, at), rng.bytes(1 + rng.length(64)), b.subarray(at)]);
        break;
      case 4:
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + rng.length(16))]);
        break;
      case 5: {
        const from = rng.int(b.length + 1);
        const piece = b.subarray(from, from + 1 + rng.length(64));
        b = Buffer.concat([b.subarray(0, at), piece, piece, b.subarray(at)]);
        break;
      }
      default:
        // An edge value written over four bytes: lengths, counts and ids.
        if (b.length >= 4) {
          const w = rng.pick([0, 1, 0x7fffffff, 0x80000000, 0xffffffff, rng.u32()]);
          b.writeUInt32BE(w >>> 0, Math.min(at, b.length - 4));
        }
    }
  }
  return b;
}

/** Up to `max` bytes of an input as hex, for a failure report. */
export function hex(b: Buffer, max = 4_096): string {
  return b.subarray(0, max).toString('hex') + (b.length > max ? `…(${b.length} bytes)` : '');
}
