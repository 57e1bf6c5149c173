// The identity file's format, read back: a newer release's file says so, other values name
// what this release reads; format 1 (0.1) says what to do.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { IDENTITY_FILE, readIdentity } from '../../src/server/data-dir.js';

void test('an identity file of another format is refused with what this release reads', () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-identity-'));
  try {
    const base = { clusterId: 'c', memberId: 1, members: [1], storage: 'wal', recovery: 'none' };
    for (const [format, message] of [
      [
        99,
        /format 99 was written by a newer release of Flotilla than this one, which reads format 2/,
      ],
      ['2', /format "2" is not one Flotilla writes \(this release reads 2\)/],
      [1, /format 1 was written by Flotilla 0\.1/],
    ] as const) {
      writeFileSync(join(dir, IDENTITY_FILE), JSON.stringify({ format, ...base }));
      assert.throws(
        () => readIdentity(dir),
        (err: Error & { code?: string }) =>
          err.code === 'DATA_DIR_INVALID' && message.test(err.message),
        String(format),
      );
    }
    writeFileSync(join(dir, IDENTITY_FILE), JSON.stringify({ format: 2, ...base }));
    assert.equal(readIdentity(dir)?.clusterId, 'c');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
