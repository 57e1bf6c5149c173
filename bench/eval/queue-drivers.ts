// The queue scenario's two systems behind one QueueDriver: Flotilla through the project's own
// client and Worker (binary protocol, exactly-once sessions, one claim long poll per slot, and
// the client's defaults: adds and reports made in one turn gathered into one write), BullMQ through
// its Queue and Worker on one redis-server. Both run a handler that returns at once and keep the
// last 1,000 completed jobs (Flotilla's default retention; BullMQ's removeOnComplete: 1000), so
// neither store grows over a run.

import { FlotillaClient, Worker as FlotillaWorker } from '../../src/client/index.js';
import type { JobData, LoadConfig, QueueDriver } from './queue-load.js';

/** Finished jobs each system keeps per queue. */
export const keepCompleted = 1_000;

export function flotillaDriver(c: LoadConfig): QueueDriver {
  const client = new FlotillaClient({
    endpoints: c.endpoints,
    // The binary protocol once the first HTTP answer named its port: requests of all slots
    // share its connections, pipelined; HTTP (one connection per add loop or worker slot) only
    // until then.
    connections: Math.max(c.adders, c.workers) + 4,
  });
  const q = client.queue(c.queue);
  let worker: FlotillaWorker<JobData, null> | undefined;
  return {
    async add(data) {
      await q.add('job', data);
    },
    startWorkers(concurrency, completed) {
      worker = new FlotillaWorker<JobData, null>(q, () => Promise.resolve(null), {
        concurrency,
        waitMs: 1_000,
        onCompleted: (job) => completed(job.data),
        onError: () => undefined,
      });
    },
    async close() {
      await worker?.close({ graceMs: 5_000 });
      await client.close();
    },
  };
}

export async function bullmqDriver(c: LoadConfig): Promise<QueueDriver> {
  const { Queue, Worker } = await import('bullmq');
  const connection = { host: '127.0.0.1', port: c.redisPort };
  const queue = new Queue<JobData>(c.queue, {
    connection,
    defaultJobOptions: { removeOnComplete: keepCompleted, removeOnFail: keepCompleted },
  });
  let worker: InstanceType<typeof Worker<JobData>> | undefined;
  return {
    async add(data) {
      await queue.add('job', data);
    },
    startWorkers(concurrency, completed) {
      worker = new Worker<JobData>(c.queue, () => Promise.resolve(null), {
        connection: { ...connection, maxRetriesPerRequest: null },
        concurrency,
      });
      // 'completed' is emitted once moveToFinished returned: Redis has recorded the completion.
      worker.on('completed', (job) => completed(job.data));
      worker.on('error', () => undefined);
    },
    async close() {
      await worker?.close();
      await queue.close();
    },
  };
}
