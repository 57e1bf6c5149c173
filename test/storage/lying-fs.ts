// A planted bug for the durability checks: a file system that acknowledges before data is
// durable.

import type { StorageFile, StorageFs } from '../../src/storage/fs.js';

/** A disk whose fsync, fdatasync, O_DSYNC and directory fsync do nothing: acks before durability. */
export function lyingFs(fs: StorageFs): StorageFs {
  const lyingFile = (f: StorageFile): StorageFile => ({
    write: (d, o, l, p) => f.write(d, o, l, p),
    writev: (b, p) => f.writev(b, p),
    read: (b, o, l, p) => f.read(b, o, l, p),
    datasync: () => Promise.resolve(),
    sync: () => Promise.resolve(),
    truncate: (n) => f.truncate(n),
    close: () => f.close(),
  });
  return {
    mkdirp: (d) => fs.mkdirp(d),
    readdir: (d) => fs.readdir(d),
    readFile: (p) => fs.readFile(p),
    open: async (p, o) => lyingFile(await fs.open(p, { create: o.create })),
    rename: (a, b) => fs.rename(a, b),
    rm: (p) => fs.rm(p),
    syncDir: () => Promise.resolve(),
    lock: (p) => fs.lock(p),
  };
}
