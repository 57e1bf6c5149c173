// `npm test` after the build: the tests that start no cluster (simulated time, state machines,
// checkers, storage on files of their own: besideAnother) two files at a time, then every
// other test one file at a time, since those start clusters whose timing a second file
// running beside them would disturb on a 2-core machine. Both phases run whatever the first found; the exit
// status is 1 when either failed. Arguments, when given, are test files run as `node --test`
// would, one at a time.

import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

const root = 'dist/test';

/**
 * Whether a file may run beside another: it starts no cluster and waits on no clock. The core's,
 * the key-value store's, the range machine's and the job queue's state machines, the
 * checkers, the limits, storage on files and directories of its own (not its crash test, which
 * kills processes mid-write), and the simulator but for its command line (processes, signals).
 */
function besideAnother(dir, name) {
  if (['raft', 'kv', 'ranges', 'queue', 'check', 'base'].includes(dir)) return true;
  if (dir === 'storage') return name !== 'crash.test.js';
  return dir === 'sim' && name !== 'cli.test.js';
}

function run(concurrency, files) {
  if (files.length === 0) return 0;
  const r = spawnSync(
    process.execPath,
    ['--test', `--test-concurrency=${concurrency}`, '--test-reporter=spec', ...files],
    { stdio: 'inherit' },
  );
  return r.status ?? 1;
}

const given = process.argv.slice(2);
if (given.length > 0) process.exit(run(1, given) === 0 ? 0 : 1);

const parallel = [];
const serial = [];
for (const dir of readdirSync(root, { withFileTypes: true }).sort((a, b) =>
  a.name.localeCompare(b.name),
)) {
  if (!dir.isDirectory()) continue;
  for (const name of readdirSync(join(root, dir.name)).sort()) {
    if (!name.endsWith('.test.js')) continue;
    (besideAnother(dir.name, name) ? parallel : serial).push(join(root, dir.name, name));
  }
}
console.log(
  `${parallel.length} test files that start no cluster, two at a time; then ${serial.length} one at a time`,
);
const first = run(2, parallel);
const second = run(1, serial);
process.exit(first === 0 && second === 0 ? 0 : 1);
