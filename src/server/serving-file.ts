// Where a running node serves its clients, written into its data directory once it listens
// (`serving.json`), for the container image's HEALTHCHECK (src/cli/healthcheck.ts): the node's
// command line, which names its config file, is not the health check's, so without it the
// check could only guess the port from FLOTILLA_LISTEN_CLIENT and speak plain HTTP. The data
// directory can come from that command line too (a flag, or a config file with the image's
// FLOTILLA_DATA_DIR set empty), so the node also writes the same record to the file the image
// names in FLOTILLA_SERVING_FILE, which does not depend on it. Not state: rewritten at every
// start, read by nothing else, and a stale one (the node is down) only points at a port
// nothing answers on.

import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const SERVING_FILE = 'serving.json';

export interface Serving {
  /** The node's `/readyz`, on loopback when it listens on every address. */
  readonly readyz: string;
  /** The node's TLS files when its client port speaks TLS: the check trusts the CA and shows
   * the node's certificate (a port with tlsClientCertAuth asks for one). */
  readonly tls: {
    readonly caFile: string;
    readonly certFile: string;
    readonly keyFile: string;
  } | null;
}

/** Writes `s` to `file` whole (a temporary file renamed into place). */
export function writeServingFile(file: string, s: Serving): void {
  writeFileSync(`${file}.tmp`, `${JSON.stringify(s, null, 2)}\n`, { mode: 0o644 });
  renameSync(`${file}.tmp`, file);
}

/** What `dir` says, or null when it says nothing usable (no file, or not this format). */
export function readServing(dir: string): Serving | null {
  return readServingFile(join(dir, SERVING_FILE));
}

/** What `file` says, or null when it says nothing usable (no file, or not this format). */
export function readServingFile(file: string): Serving | null {
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return null;
  }
  if (v === null || typeof v !== 'object') return null;
  const o = v as Record<string, unknown>;
  if (typeof o['readyz'] !== 'string') return null;
  const t = o['tls'] as Record<string, unknown> | null | undefined;
  if (t === null || t === undefined) return { readyz: o['readyz'], tls: null };
  const files = [t['caFile'], t['certFile'], t['keyFile']];
  if (!files.every((f) => typeof f === 'string')) return null;
  const [caFile, certFile, keyFile] = files as [string, string, string];
  return { readyz: o['readyz'], tls: { caFile, certFile, keyFile } };
}
