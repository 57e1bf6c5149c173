// The backup file format (src/server/backup-format.ts): what is written reads back the same
// however the bytes are cut into reads, and every kind of damage is refused before the reader
// hands out its end record: a cut anywhere, a changed byte anywhere, another format version,
// another kind of file, bytes after the end.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { chunkStream } from '../../src/host/contracts.js';
import {
  BackupError,
  BackupWriter,
  readBackup,
  type BackupRecord,
} from '../../src/server/backup-format.js';

const header = {
  clusterId: 'c1',
  savedBy: 2,
  savedAt: '2026-11-30T12:00:00.000Z',
  groups: [
    { group: 0, index: 1234, term: 7, voters: [1, 2, 3] },
    { group: 1, index: 99, term: 5, voters: [1, 2, 3] },
  ],
};

function bytesOf(seed: number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

/** Group 0: three chunks (one empty, one of 200 KB); group 1: one chunk. */
const chunks: [number, Uint8Array][] = [
  [0, bytesOf(1, 40)],
  [0, new Uint8Array(0)],
  [0, bytesOf(2, 200_000)],
  [1, bytesOf(3, 17)],
];

function encode(parts: readonly [number, Uint8Array][] = chunks): Buffer {
  const w = new BackupWriter();
  const out = [w.header(header)];
  for (const [g, c] of parts) out.push(w.chunk(g, c));
  out.push(w.end().bytes);
  return Buffer.concat(out);
}

/** The buffer as a stream of reads of `size` bytes. */
function pieces(b: Uint8Array, size: number): AsyncIterable<Uint8Array> {
  return chunkStream(function* () {
    for (let at = 0; at < b.length; at += size) yield b.subarray(at, at + size);
  });
}

async function readAll(b: Uint8Array, size = 4096): Promise<BackupRecord[]> {
  const out: BackupRecord[] = [];
  for await (const r of readBackup(pieces(b, size))) out.push(r);
  return out;
}

/** Reads `b`; returns the error's code, failing if the reader handed out its end record. */
async function refusal(b: Uint8Array, size = 4096): Promise<string> {
  let ended = false;
  try {
    for await (const r of readBackup(pieces(b, size))) if (r.kind === 'end') ended = true;
  } catch (err) {
    assert.ok(err instanceof BackupError, `not a BackupError: ${String(err)}`);
    assert.equal(ended, false, 'the end record was handed out before the refusal');
    return err.code;
  }
  throw new Error('damaged backup was read as whole');
}

void test('a backup reads back as written, whatever the size of the reads', async () => {
  const file = encode();
  for (const size of [1, 7, 4096, file.length]) {
    const recs = await readAll(file, size);
    assert.equal(recs[0]?.kind, 'header');
    assert.deepEqual(recs[0]?.kind === 'header' ? recs[0].header : null, { format: 1, ...header });
    const got = recs.filter((r) => r.kind === 'chunk');
    assert.equal(got.length, chunks.length);
    got.forEach((r, i) => {
      assert.equal(r.group, chunks[i]?.[0]);
      assert.deepEqual(Buffer.from(r.data), Buffer.from(chunks[i]?.[1] as Uint8Array));
    });
    const end = recs[recs.length - 1];
    assert.equal(end?.kind, 'end');
    if (end?.kind !== 'end') return;
    assert.deepEqual(end.summary.groups, [
      { group: 0, chunks: 3, bytes: 200_040 },
      { group: 1, chunks: 1, bytes: 17 },
    ]);
    assert.equal(
      end.sha256,
      createHash('sha256')
        .update(file.subarray(0, file.length - 32))
        .digest('hex'),
    );
  }
});

void test('a backup cut short anywhere is refused as corrupt', async () => {
  const file = encode([
    [0, bytesOf(1, 40)],
    [1, bytesOf(3, 17)],
  ]);
  for (let len = 0; len < file.length; len++)
    assert.equal(await refusal(file.subarray(0, len), 5), 'BACKUP_CORRUPT', `cut at ${len}`);
  // The large file too, at a few places inside its big chunk and in its trailer.
  const big = encode();
  for (const len of [100, 150_000, big.length - 40, big.length - 1])
    assert.equal(await refusal(big.subarray(0, len)), 'BACKUP_CORRUPT', `cut at ${len}`);
});

void test('a backup with any one byte changed is refused', async () => {
  const file = encode([
    [0, bytesOf(1, 40)],
    [0, new Uint8Array(0)],
    [1, bytesOf(3, 17)],
  ]);
  for (let at = 0; at < file.length; at++) {
    const bad = Buffer.from(file);
    bad[at] = (bad[at] as number) ^ 0x01;
    const code = await refusal(bad, 3);
    // The magic and the format number name the file as unknown rather than damaged.
    assert.equal(code, at < 6 ? 'BACKUP_UNSUPPORTED' : 'BACKUP_CORRUPT', `byte ${at}`);
  }
});

void test('the checksum is what catches a changed chunk byte: resealed, it reads as whole', async () => {
  // Shows the test above can fail: the same change with the checksum recomputed passes every
  // other check, so without the checksum a flipped byte inside a chunk would go unnoticed.
  const file = encode();
  const bad = Buffer.from(file);
  const at = 2000;
  bad[at] = (bad[at] as number) ^ 0x01;
  createHash('sha256')
    .update(bad.subarray(0, bad.length - 32))
    .digest()
    .copy(bad, bad.length - 32);
  const recs = await readAll(bad);
  assert.equal(recs[recs.length - 1]?.kind, 'end');
  const big = recs.filter((r) => r.kind === 'chunk')[2];
  assert.notDeepEqual(
    Buffer.from(big?.kind === 'chunk' ? big.data : []),
    Buffer.from(chunks[2]?.[1] as Uint8Array),
  );
});

void test('another format version, another kind of file and trailing bytes are refused', async () => {
  const file = encode();
  const v2 = Buffer.from(file);
  v2.writeUInt16LE(2, 4);
  await assert.rejects(readAll(v2), (e: unknown) => {
    assert.ok(e instanceof BackupError);
    assert.equal(e.code, 'BACKUP_UNSUPPORTED');
    assert.match(e.message, /format 2 is not one this release reads \(it reads 1\)$/);
    return true;
  });
  // A flipped bit in the format's high byte (257) reads as damage, not a newer release.
  const flipped = Buffer.from(file);
  flipped.writeUInt16LE(257, 4);
  await assert.rejects(readAll(flipped), (e: unknown) => {
    assert.ok(e instanceof BackupError);
    assert.match(e.message, /format 257 .*more likely a damaged file than a newer release/);
    return true;
  });
  const other = Buffer.concat([Buffer.from('PK\u0003\u0004'), file.subarray(4)]);
  await assert.rejects(readAll(other), (e: unknown) => {
    assert.ok(e instanceof BackupError);
    assert.equal(e.code, 'BACKUP_UNSUPPORTED');
    assert.match(e.message, /Not a Flotilla backup/);
    return true;
  });
  assert.equal(await refusal(Buffer.concat([file, Buffer.from([0])])), 'BACKUP_CORRUPT');
  assert.equal(await refusal(Buffer.alloc(0)), 'BACKUP_CORRUPT');
  assert.equal(await refusal(file.subarray(0, 2)), 'BACKUP_CORRUPT', 'the start of a backup');
  // A file of another kind shorter than the header is not called a truncated backup.
  await assert.rejects(readAll(Buffer.from('hello\n')), (e: unknown) => {
    assert.ok(e instanceof BackupError);
    assert.equal(e.code, 'BACKUP_UNSUPPORTED');
    assert.match(e.message, /Not a Flotilla backup: it begins with "hell", not "FLBK"/);
    return true;
  });
});

void test('the writer refuses chunks out of the header order', () => {
  const w = new BackupWriter();
  w.header(header);
  w.chunk(1, bytesOf(1, 3));
  assert.throws(() => w.chunk(0, bytesOf(1, 3)), /after the next group began/);
  assert.throws(() => w.chunk(5, bytesOf(1, 3)), /out of place/);
});
