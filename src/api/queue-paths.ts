// The job queue's request types and their HTTP paths, shared by the node's routes
// (queue-routes.ts), the binary protocol (wire-codec.ts: `queue.<name>` for each) and the
// client, which picks the protocol by path.

export const queuePaths = {
  add: '/v1/queue/add',
  addBulk: '/v1/queue/add-bulk',
  claim: '/v1/queue/claim',
  heartbeat: '/v1/queue/heartbeat',
  progress: '/v1/queue/progress',
  complete: '/v1/queue/complete',
  fail: '/v1/queue/fail',
  reportBulk: '/v1/queue/report-bulk',
  cancel: '/v1/queue/cancel',
  retry: '/v1/queue/retry',
  delete: '/v1/queue/delete',
  pause: '/v1/queue/pause',
  resume: '/v1/queue/resume',
  stats: '/v1/queue/stats',
  queues: '/v1/queue/queues',
  get: '/v1/queue/get',
  list: '/v1/queue/list',
  events: '/v1/queue/events',
  configure: '/v1/queue/configure',
  repeatUpsert: '/v1/queue/repeat/upsert',
  repeatRemove: '/v1/queue/repeat/remove',
  repeatList: '/v1/queue/repeat/list',
} as const;

export type QueueOpName = keyof typeof queuePaths;

/** The request types that change nothing: on a lost connection they may simply be sent again. */
export const queueReads: ReadonlySet<QueueOpName> = new Set<QueueOpName>([
  'stats',
  'queues',
  'get',
  'list',
  'events',
  'repeatList',
]);
