// What tests of backups share: the check that a restored cluster holds every acknowledged
// write, and planted damage to a backup's content that its checksum cannot catch (the file is
// re-sealed), standing for a save or restore that loses a chunk.

import { createReadStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { Packr } from 'msgpackr';
import type { FlotillaClient } from '../../src/client/index.js';
import { BackupWriter, readBackup, type BackupHeader } from '../../src/server/backup-format.js';

/**
 * The acknowledged writes (key -> value) that the cluster behind `client` lacks or holds with
 * another value, read under `prefix` (empty: every key) in one linearizable range.
 */
export async function missingWrites(
  acked: ReadonlyMap<string, string>,
  client: FlotillaClient,
  prefix: string,
): Promise<string[]> {
  // An empty prefix is every key: from the lowest key to the end of the key space.
  const r =
    prefix === ''
      ? await client.range('\u0000', { rangeEnd: '\u0000' })
      : await client.range(prefix, { prefix: true });
  if (r.more) throw new Error(`The range under "${prefix}" was cut short (${r.count} keys)`);
  const found = new Map(r.kvs.map((kv) => [kv.key, kv.value]));
  const missing: string[] = [];
  for (const [k, v] of acked) if (found.get(k) !== v) missing.push(k);
  return missing.sort();
}

const packr = new Packr({ useRecords: false, moreTypes: false });

/**
 * Writes to `out` the backup `file` with the last chunk of the key-value group (0) dropped,
 * sealed with a valid checksum. With `consistent`, the key-value store's header is changed to
 * count one chunk fewer, so the state still loads, short of up to 1,024 keys: a loss only a
 * check of the data itself can find. Needs a store with no past versions (each key written
 * once), whose last chunk is then one of live keys.
 */
export async function dropLastKvChunk(
  file: string,
  out: string,
  consistent: boolean,
): Promise<void> {
  let header: BackupHeader | null = null;
  const groups = new Map<number, Uint8Array[]>();
  for await (const r of readBackup(createReadStream(file) as AsyncIterable<Uint8Array>)) {
    if (r.kind === 'header') header = r.header;
    else if (r.kind === 'chunk') {
      const list = groups.get(r.group) ?? [];
      list.push(Buffer.from(r.data));
      groups.set(r.group, list);
    }
  }
  if (header === null) throw new Error('no header');
  const kv = groups.get(0) ?? [];
  kv.pop();
  if (consistent) {
    // Session header, its session chunks, the range's header (a store written since ranges
    // exist), then the key-value header.
    const sessions = packr.unpack(kv[0] as Uint8Array) as { chunks: number };
    let at = 1 + sessions.chunks;
    const range = packr.unpack(kv[at] as Uint8Array) as Record<string, unknown>;
    if ('range' in range) at++;
    const kvHeader = packr.unpack(kv[at] as Uint8Array) as { chunks: number; pastChunks: number };
    if (kvHeader.pastChunks !== 0) throw new Error('the store holds past versions');
    kv[at] = packr.pack({ ...kvHeader, chunks: kvHeader.chunks - 1 });
  }
  const w = new BackupWriter();
  const parts: Buffer[] = [w.header(header)];
  for (const g of header.groups)
    for (const c of groups.get(g.group) ?? []) parts.push(w.chunk(g.group, c));
  parts.push(w.end().bytes);
  await writeFile(out, Buffer.concat(parts));
}
