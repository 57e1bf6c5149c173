import { openWalStorage } from '../../src/storage/wal.js';
import { runContract } from './contract.js';
import { tempDir } from './helpers.js';

runContract('WAL', async () => {
  const { dir, cleanup } = await tempDir();
  return { open: () => openWalStorage(dir), cleanup };
});

// The same contract with tiny segments, so every test crosses segment boundaries.
runContract('WAL, 4 KiB segments', async () => {
  const { dir, cleanup } = await tempDir();
  return { open: () => openWalStorage(dir, { segmentBytes: 4096 }), cleanup };
});
