// One half of a queue load point in a worker thread (queue-load.ts). workerData: {role, config}.
// The producer posts {result} when its adds end. The consumer posts {ready} once its workers
// run and {result} after the parent's {stop}.

import { parentPort, workerData } from 'node:worker_threads';
import { bullmqDriver, flotillaDriver } from './queue-drivers.js';
import { consume, produce, type LoadConfig, type QueueDriver } from './queue-load.js';

const port = parentPort;
if (port === null) throw new Error('queue-thread.js runs as a worker thread');
const { role, config } = workerData as { role: 'produce' | 'consume'; config: LoadConfig };

async function driver(): Promise<QueueDriver> {
  return config.system === 'flotilla' ? flotillaDriver(config) : bullmqDriver(config);
}

const d = await driver();
if (role === 'produce') {
  const result = await produce(config, d);
  await d.close();
  port.postMessage({ result });
} else {
  const stop = consume(config, d);
  port.postMessage({ ready: true });
  port.once('message', () => {
    void stop().then((result) => port.postMessage({ result }));
  });
}
