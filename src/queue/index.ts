// The job queue state machine's public entry point (see docs/DESIGN.md, "The job queue").

export { QueueStateMachine } from './machine.js';
export {
  encodeQueueCommand,
  decodeQueueCommand,
  checkName,
  checkProposal,
  jobId,
} from './codec.js';
export { parseCron, nextCronMs, type CronPattern } from './cron.js';
export type { EventRead } from './events.js';
export type { JobPage, RepeatablePage, RepeatableView } from './reads.js';
export * from './types.js';
