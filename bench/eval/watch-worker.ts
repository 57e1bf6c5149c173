// A worker thread holding one group of watches for the watch scenario (watchers.ts). Messages
// from the parent: {measure: boolean}, {fewest: true} (answered {fewest: n}), {stop: true}
// (answered with the group's counts and latency samples, then the worker ends).

import { parentPort, workerData } from 'node:worker_threads';
import { Watchers, type WatchersOptions } from './watchers.js';

const port = parentPort;
if (port === null) throw new Error('watch-worker.js runs as a worker thread');
const group = new Watchers(workerData as WatchersOptions);
void group.ready.then(() => port.postMessage({ ready: true }));
port.on('message', (m: { measure?: boolean; fewest?: boolean; stop?: boolean }) => {
  if (m.measure !== undefined) group.measure(m.measure);
  if (m.fewest === true) port.postMessage({ fewest: group.fewest() });
  if (m.stop === true)
    void group.stop().then((r) => {
      port.postMessage({ result: r });
      port.close();
    });
});
