// A small seeded PRNG (xoshiro128**, Blackman & Vigna 2018) so that the core, the simulator
// and every layer that needs randomness are reproducible from one seed.

import { assert } from './errors.js';

export interface Rng {
  /** A uniformly distributed integer in [0, maxExclusive). */
  int(maxExclusive: number): number;
  /** A uniformly distributed float in [0, 1). */
  float(): number;
}

function splitmix32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

export class Xoshiro128 implements Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number) {
    const mix = splitmix32(seed);
    this.s0 = mix();
    this.s1 = mix();
    this.s2 = mix();
    this.s3 = mix();
  }

  /** The next 32 random bits as an unsigned integer. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  float(): number {
    return this.nextU32() / 4294967296;
  }

  int(maxExclusive: number): number {
    return Math.floor(this.float() * maxExclusive);
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/**
 * A random source seeded by `seed`, an integer; its low 32 bits choose the stream. Anything
 * else is refused: a seed that is not a number (from plain JavaScript) would give every node
 * the same stream, and nodes that draw the same election timeouts split their votes forever.
 */
export function createRng(seed: number): Rng {
  assert(
    Number.isInteger(seed),
    `createRng needs an integer seed, got ${typeof seed === 'number' ? String(seed) : `${typeof seed} ${JSON.stringify(seed) ?? String(seed)}`}`,
  );
  return new Xoshiro128(seed);
}
