// The storage contract, run against the real WAL over the simulated disk (src/sim/sim-fs.ts):
// the simulator runs this code, so it must behave there as it does over node:fs. One mount
// per backend is one process: reopening after close() takes the simulated lock again.

import { createRng } from '../../src/raft/index.js';
import { SimDisk } from '../../src/sim/sim-fs.js';
import type { SimDiskOptions } from '../../src/sim/sim-fs.js';
import type { WalOptions } from '../../src/storage/types.js';
import { openWalStorage } from '../../src/storage/wal.js';
import { runContract } from './contract.js';

function simWal(name: string, disk: Omit<SimDiskOptions, 'rng'>, wal: WalOptions): void {
  runContract(`WAL over the simulated disk, ${name}`, () => {
    const fs = new SimDisk({ rng: createRng(1), ...disk }).mount();
    return Promise.resolve({
      open: () => openWalStorage('/node/data', { ...wal, fs }),
      cleanup: () => Promise.resolve(),
    });
  });
}

simWal('O_DSYNC writes', {}, {});
simWal('fdatasync, 4 KiB segments', {}, { syncMode: 'fdatasync', segmentBytes: 4096 });
// Every operation completes on a later turn, in the order issued, and writes come up short:
// the WAL's write loops and its group commit see the interleavings a real disk gives them.
simWal(
  'operations deferred, short writes',
  { schedule: () => Promise.resolve(), shortWriteProbability: 0.3 },
  { segmentBytes: 4096 },
);
