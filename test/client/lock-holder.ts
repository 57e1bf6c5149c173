// A lock holder in its own process, for the test that freezes it (SIGSTOP) past its lease:
// takes the lock named argv[3] on the cluster at argv[2] with a session of argv[4] seconds,
// prints `locked <token>`, then for each line "write" on its standard input tries a guarded
// write and prints `guarded <succeeded>`. Not a test file itself.

import { createInterface } from 'node:readline';
import { FlotillaClient, Mutex, Session } from '../../src/client/index.js';

const [endpoints = '', name = 'lock', ttl = '1'] = process.argv.slice(2);
const client = new FlotillaClient({ endpoints: endpoints.split(',') });
const session = await Session.create(client, { ttl: Number(ttl) });
const mutex = new Mutex(session, name);
const held = await mutex.lock();
process.stdout.write(`locked ${held.token}\n`);
for await (const line of createInterface({ input: process.stdin })) {
  if (line !== 'write') continue;
  const r = await mutex.guardedTxn(
    [],
    [{ put: { key: `${name}-data`, value: 'from the paused holder' } }],
  );
  process.stdout.write(`guarded ${r.succeeded}\n`);
}
await client.close();
