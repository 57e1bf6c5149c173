// The token book and the tables of what each request needs (src/api/auth.ts): who is let in,
// with which role, and what the refusals say (never the token).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  TokenBook,
  bearerToken,
  httpNeed,
  sha256,
  wireNeed,
  type Role,
} from '../../src/api/auth.js';
import { memberPaths } from '../../src/api/member-routes.js';
import { queuePaths, queueReads, type QueueOpName } from '../../src/api/queue-paths.js';
import { writePaths } from '../../src/api/requests.js';
import { FlotillaError } from '../../src/base/errors.js';

const tokens: Record<Role, string> = {
  read: 'read-token-0123456789abcdef',
  write: 'write-token-0123456789abcdef',
  admin: 'admin-token-0123456789abcdef',
};

const book = new TokenBook(
  (Object.entries(tokens) as [Role, string][]).map(([role, t]) => ({
    name: `${role}-holder`,
    role,
    sha256: sha256(t),
  })),
);

function refusal(fn: () => unknown): FlotillaError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof FlotillaError, String(err));
    return err;
  }
  assert.fail('expected a refusal');
}

void describe('TokenBook', () => {
  void it('finds the holder of each token, and no one for an unknown or near-miss token', () => {
    for (const [role, t] of Object.entries(tokens))
      assert.deepEqual(book.find(t), { name: `${role}-holder`, role });
    assert.equal(book.find('unknown-token-0123456789abcdef'), null);
    assert.equal(book.find(tokens.admin.slice(0, -1)), null);
    assert.equal(book.find(tokens.admin + 'x'), null);
  });

  void it('lets a role do what it and the roles below it need, and nothing above', () => {
    const order: Role[] = ['read', 'write', 'admin'];
    for (const has of order)
      for (const need of order) {
        const what = `${has} doing ${need}`;
        if (order.indexOf(has) >= order.indexOf(need))
          assert.equal(book.check(tokens[has], need, what).role, has, what);
        else {
          const e = refusal(() => book.check(tokens[has], need, what));
          assert.equal(e.code, 'PERMISSION_DENIED', what);
          assert.equal(e.indefinite, false);
          assert.match(e.message, new RegExp(`needs the ${need} role; token "${has}-holder"`));
        }
      }
  });

  void it('refuses no token and an unknown token UNAUTHENTICATED, definite, naming no token', () => {
    const none = refusal(() => book.check(null, 'read', '/v1/kv/range'));
    assert.equal(none.code, 'UNAUTHENTICATED');
    assert.equal(none.indefinite, false);
    assert.match(none.message, /none was given/);
    const bogus = 'bogus-token-0123456789abcdef';
    const unknown = refusal(() => book.check(bogus, 'read', '/v1/kv/range'));
    assert.equal(unknown.code, 'UNAUTHENTICATED');
    assert.ok(!unknown.message.includes(bogus), unknown.message);
    const denied = refusal(() => book.check(tokens.read, 'admin', '/v1/kv/compact'));
    assert.ok(!denied.message.includes(tokens.read), denied.message);
  });
});

void describe('bearerToken', () => {
  void it('takes the token of a Bearer header in any letter case, and nothing else', () => {
    assert.equal(bearerToken('Bearer abc.def'), 'abc.def');
    assert.equal(bearerToken('bearer   abc'), 'abc');
    assert.equal(bearerToken('BEARER abc'), 'abc');
    assert.equal(bearerToken('Basic dXNlcjpwYXNz'), null);
    assert.equal(bearerToken('Bearer'), null);
    assert.equal(bearerToken('Bearer a b'), null);
    assert.equal(bearerToken(undefined), null);
    assert.equal(bearerToken(['Bearer a', 'Bearer b']), null);
  });
});

void describe('what each request needs', () => {
  void it('leaves the health probes and metrics open', () => {
    for (const p of ['/healthz', '/readyz', '/metrics']) assert.equal(httpNeed(p), 'open', p);
  });

  void it('gives reads to read, writes to write, over HTTP and the binary protocol alike', () => {
    assert.equal(httpNeed('/v1/kv/range'), 'read');
    assert.equal(httpNeed('/v1/watch'), 'read');
    assert.equal(httpNeed('/v1/status'), 'read');
    assert.equal(httpNeed('/v1/cluster/status'), 'read');
    assert.equal(httpNeed('/v1/ranges'), 'read');
    assert.equal(httpNeed('/v1/lease/leases'), 'read');
    assert.equal(httpNeed('/v1/lease/timetolive'), 'read');
    for (const p of Object.values(writePaths)) assert.equal(httpNeed(p), 'write', p);
    for (const p of ['/v1/lease/grant', '/v1/lease/revoke', '/v1/lease/keepalive'])
      assert.equal(httpNeed(p), 'write', p);
    for (const [name, path] of Object.entries(queuePaths) as [QueueOpName, string][]) {
      const need = queueReads.has(name) ? 'read' : 'write';
      assert.equal(httpNeed(path), need, path);
      assert.equal(wireNeed(`queue.${name}`), need, name);
    }
    for (const t of ['range', 'watch', 'status', 'cancel']) assert.equal(wireNeed(t), 'read', t);
    for (const t of ['put', 'delete', 'txn']) assert.equal(wireNeed(t), 'write', t);
  });

  void it('keeps membership, compaction, backups, transfers and unknown paths for admin', () => {
    for (const p of [
      ...Object.values(memberPaths),
      '/v1/kv/compact',
      '/v1/snapshot',
      '/v1/cluster/transfer-leadership',
      '/v1/ranges/split',
      '/v1/some/route/added/later',
    ])
      assert.equal(httpNeed(p), 'admin', p);
    assert.equal(wireNeed('queue.noSuchOp'), 'write');
    assert.equal(wireNeed('compact'), 'admin');
  });
});
