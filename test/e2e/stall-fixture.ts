// Loaded into a node process with `--import` by the liveness test: SIGUSR2 stops the main
// thread (only it: the process's other threads go on) for STALL_MS, 900 ms by default, as a
// starved process or a long garbage collection stops it, then says so on stderr.

import { isMainThread } from 'node:worker_threads';

if (isMainThread) {
  const ms = Number(process.env['FLOTILLA_TEST_STALL_MS'] ?? 900);
  let stalls = 0;
  process.on('SIGUSR2', () => {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
    stalls += 1;
    process.stderr.write(`test fixture: main thread stalled ${ms} ms (stall ${stalls})\n`);
  });
}
