import { createMemoryDisk, createMemoryStorage } from '../../src/storage/memory.js';
import { runContract } from './contract.js';

runContract('memory', () => {
  const disk = createMemoryDisk();
  return Promise.resolve({
    open: () => Promise.resolve(createMemoryStorage({ disk, quiet: true })),
    cleanup: () => Promise.resolve(),
  });
});
