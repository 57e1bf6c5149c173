// The TypeScript client for a Flotilla cluster: a list of endpoints, leader discovery, and
// retries that are safe because every write carries an exactly-once session (client id and a
// sequence number that a retry reuses; Raft thesis §6.3).
//
// The public client entry point (`flotilla/client` in package.json's "exports"): programs
// import from here and never from the files behind it, so those can change without breaking them.

export { FlotillaClient } from './client.js';
export type {
  CallOptions,
  ClientOptions,
  ClientOptionsListed,
  ClientTlsOptions,
  ReadConsistency,
} from './options.js';
export type * from '../api/types.js';
export type { PlacementResponse, PlacementStepJson } from '../api/placement-routes.js';
export type { WatchBatch, WatchEventJson, WatchOptions } from './watch.js';

// One error type from the Raft core to here: `code` is one of src/base/errors.ts's table, the
// codes a node sends plus the client's own (CONNECTION, BAD_RESPONSE, CLIENT_CLOSED); `indefinite` says
// whether the operation may have taken effect; `leader` is the leader the answering node named.
export { FlotillaError, errorCodes, type ErrorCode } from '../base/errors.js';
export { Election, Mutex, Session, observe, type Held } from './concurrency.js';
export { Worker, type Handler, type WorkerContext, type WorkerOptions } from './worker.js';
export {
  QueueClient,
  type AddBulkResponse,
  type AddOptions,
  type AddResponse,
  type ClaimOptions,
  type ClaimResponse,
  type ClaimedJob,
  type Job,
  type JobState,
  type QueueSettings,
  type QueueStatsResponse,
  type QueuesResponse,
  type Repeatable,
  type RepeatOptions,
  type ReportOptions,
  type ReportResponse,
  type Retention,
} from './queue.js';
