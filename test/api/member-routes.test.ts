import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FlotillaError } from '../../src/base/errors.js';
import { parseNewMember } from '../../src/api/member-routes.js';

void test('a new member is named as a node configuration names one, IPv6 in brackets', () => {
  assert.deepEqual(
    parseNewMember({ id: 4, peer: '[fd00::4]:7001', client: 'http://[fd00::4]:8001' }),
    parseNewMember({ id: 4, peer: '[fd00::4]:7001', client: 'http://[fd00::4]:8001/' }),
  );
  assert.equal(
    parseNewMember({ id: 4, peer: '[::1]:7001', client: 'http://[::1]:8001' }).peer,
    '[::1]:7001',
  );
  assert.equal(
    parseNewMember({ id: 4, peer: '10.0.0.4:7001', client: 'http://10.0.0.4:8001' }).peer,
    '10.0.0.4:7001',
  );
  // Port 0 listens anywhere; nobody can dial it. IPv6 without brackets is ambiguous.
  for (const peer of ['10.0.0.4:0', '::1:7001', '10.0.0.4', '10.0.0.4:65536'])
    assert.throws(
      () => parseNewMember({ id: 4, peer, client: 'http://10.0.0.4:8001' }),
      (e: unknown) =>
        e instanceof FlotillaError &&
        e.code === 'BAD_REQUEST' &&
        e.message.startsWith('"peer" must be host:port (an IPv6 host in brackets'),
      peer,
    );
});
