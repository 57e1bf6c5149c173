// The verdict on a certificate the other end presented (peer port and client ports), on a
// socket the test describes: a resumed TLS session counts as authorized with the verdict of
// its first handshake, so it is judged again here (presented at all, and valid now).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  unverifiedCertificate,
  type PresentedCertificate,
} from '../../src/base/certificate-verdict.js';

const now = Date.parse('2026-12-06T12:00:00Z');
const cert = {
  subject: { CN: 'node1' },
  issuer: { CN: 'Cluster CA' },
  valid_from: 'Dec  1 00:00:00 2026 GMT',
  valid_to: 'Dec 31 00:00:00 2026 GMT',
};

function socket(o: {
  authorized: boolean;
  reused: boolean;
  cert?: object | null;
  error?: string;
}): PresentedCertificate {
  return {
    authorized: o.authorized,
    authorizationError: o.error,
    getPeerCertificate: () => (o.cert === undefined ? cert : o.cert),
    isSessionReused: () => o.reused,
  };
}

void test('a full handshake is judged by its verification; a resumed one again, on validity', () => {
  assert.equal(
    unverifiedCertificate(socket({ authorized: true, reused: false }), 'peer', now),
    null,
  );
  assert.equal(
    unverifiedCertificate(socket({ authorized: true, reused: true }), 'peer', now),
    null,
  );
  assert.match(
    unverifiedCertificate(
      socket({ authorized: false, reused: false, error: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }),
      'client',
      now,
    ) ?? '',
    /^client certificate not issued by this cluster's CA \(UNABLE_TO_VERIFY_LEAF_SIGNATURE; subject CN=node1, issuer CN=Cluster CA\)$/,
  );
  // Resumed after the certificate expired: the session's verdict is older than the expiry.
  assert.match(
    unverifiedCertificate(
      socket({ authorized: true, reused: true }),
      'peer',
      Date.parse('2027-01-01T00:00:00Z'),
    ) ?? '',
    /^peer certificate expired on Dec 31 00:00:00 2026 GMT \(a resumed TLS session; subject CN=node1/,
  );
  assert.match(
    unverifiedCertificate(
      socket({ authorized: true, reused: true }),
      'peer',
      Date.parse('2026-11-01T00:00:00Z'),
    ) ?? '',
    /not valid before Dec {2}1 00:00:00 2026 GMT/,
  );
  // A server certificate (serverAuth only) presented by a client.
  assert.match(
    unverifiedCertificate(
      socket({ authorized: false, reused: false, error: 'INVALID_PURPOSE' }),
      'client',
      now,
    ) ?? '',
    /^client certificate lacks the usage its end needs \(clientAuth to connect, serverAuth to accept\) \(INVALID_PURPOSE; subject CN=node1/,
  );
});

void test('no certificate is refused, also on a resumed session that counts as authorized', () => {
  for (const empty of [null, {}])
    for (const [authorized, reused, why] of [
      [false, false, /^client presented no certificate$/],
      [true, true, /presented no certificate \(a resumed TLS session\)/],
    ] as const)
      assert.match(
        unverifiedCertificate(
          socket({ authorized, reused, cert: empty, error: 'UNABLE_TO_GET_ISSUER_CERT' }),
          'client',
          now,
        ) ?? '',
        why,
      );
});
