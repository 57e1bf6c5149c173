// The WAL's encode buffer pool: exact sizes, reuse after give, and no reuse of memory it does
// not own or of a buffer handed back twice (either would let two writes share bytes).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BufferPool } from '../../src/storage/buffer-pool.js';

void describe('BufferPool', () => {
  void it('hands out buffers of the asked size and reuses one given back', () => {
    const pool = new BufferPool(1 << 20, 2);
    const a = pool.take(1000);
    assert.equal(a.length, 1000);
    pool.give(a);
    const b = pool.take(5000);
    assert.equal(b.length, 5000);
    assert.equal(b.buffer, a.buffer, 'the 64 KiB buffer behind the first take is reused');
    const c = pool.take(100);
    assert.notEqual(c.buffer, b.buffer, 'a buffer in use is not handed out again');
  });

  void it('does not keep buffers above its size limit or beyond its count', () => {
    const pool = new BufferPool(64 * 1024, 1);
    const big = pool.take(100_000);
    pool.give(big);
    assert.notEqual(pool.take(100_000).buffer, big.buffer);
    const x = pool.take(10);
    const y = pool.take(10);
    pool.give(x);
    pool.give(y);
    const z = pool.take(10);
    assert.equal(z.buffer, x.buffer);
    assert.notEqual(pool.take(10).buffer, y.buffer, 'only one idle buffer was kept');
  });

  void it('ignores buffers it did not allocate and a buffer given back twice', () => {
    const pool = new BufferPool(1 << 20, 4);
    const foreign = Buffer.allocUnsafe(16); // a slice of Node's shared pool
    pool.give(foreign);
    assert.notEqual(pool.take(16).buffer, foreign.buffer);
    const a = pool.take(10);
    pool.give(a);
    pool.give(a);
    const first = pool.take(10);
    const second = pool.take(10);
    assert.notEqual(first.buffer, second.buffer);
  });
});
