// Creating a directory a user named, with its missing parents, one level at a time.
//
// Not `mkdir(dir, { recursive: true })`: on Linux it never returns for a path under /proc (mkdir
// answers ENOENT for a component whose parent exists, and Node's recursive walk goes back to the
// parent for ever), so `flotilla snapshot restore --data-dir /proc/a/b` hung. Here each missing
// component is created once, from the top down: the walk is bounded by the path's depth, and a
// failure is the errno error of the component that failed (its `path` names it). The node's
// data directory is made by it too, with messages of its own (src/server/startup.ts, prepareDataDir).

import { mkdirSync, statSync } from 'node:fs';
import { dirname, resolve, sep } from 'node:path';

function errnoOf(err: unknown): string | undefined {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** A component on the way exists and is not a directory. */
export class NotADirectoryError extends Error {
  readonly code = 'ENOTDIR';
  readonly syscall = 'mkdir';
  constructor(readonly path: string) {
    super(`ENOTDIR: not a directory, mkdir '${path}'`);
  }
}

/**
 * Creates `dir` and its missing parents, each with `mode` when given (as Node's recursive mkdir
 * applies it), `dir` itself with `leafMode` when given; returns the directories it created,
 * parents first. Throws the errno error of the first component that could not be looked at
 * (`syscall` stat; the root's, when even the root is missing) or created (`syscall` mkdir), and
 * NotADirectoryError for a component on the way that is not a directory.
 */
export function makeDirs(
  dir: string,
  o: { readonly mode?: number; readonly leafMode?: number } = {},
): string[] {
  const target = resolve(dir);
  const missing: string[] = [];
  // One look per component of the path, and one more for the root.
  const depth = target.split(sep).length;
  let p = target;
  for (let i = 0; i <= depth; i++) {
    let isDir: boolean;
    try {
      isDir = statSync(p).isDirectory();
    } catch (err) {
      // ENOTDIR: a component above is a file; the walk up finds it and says so.
      const errno = errnoOf(err);
      if (errno !== 'ENOENT' && errno !== 'ENOTDIR') throw err;
      missing.push(p);
      const parent = dirname(p);
      if (parent === p) throw err;
      p = parent;
      continue;
    }
    if (!isDir) throw new NotADirectoryError(p);
    break;
  }
  const created: string[] = [];
  for (const m of missing.reverse()) {
    try {
      const mode = m === target ? (o.leafMode ?? o.mode) : o.mode;
      mkdirSync(m, mode === undefined ? {} : { mode });
      created.push(m);
    } catch (err) {
      // Another process may have made it meanwhile; a file there fails the next level, or is
      // what the caller finds when it uses the directory.
      if (errnoOf(err) !== 'EEXIST') throw err;
    }
  }
  return created;
}
