// Public entry point of the Raft core (`flotilla/raft`).

export { RaftNode, successors, type ProgressStatus, type Status } from './node.js';
export {
  changeConf,
  confMembers,
  confOfSnapshot,
  decodeConfChange,
  describeConf,
  encodeConfChange,
  isJointConf,
  sameConf,
  simpleConf,
  snapshotMetaOf,
  MAX_CONF_CHANGES,
  type ConfChange,
  type ConfChangeKind,
  type ConfChangeSingle,
  type ConfState,
} from './confchange.js';
export { resolveConfig, type RaftConfig, type RaftEvent, type ResolvedConfig } from './config.js';
export { FlotillaError, AssertionError, assert, type ErrorCode, type Result } from './errors.js';
export { createRng, Xoshiro128, type Rng } from './rng.js';
export { ownedData, ownedEntries } from './owned.js';
export {
  majority,
  committedIndex,
  voteResult,
  hasQuorum,
  simpleConfig,
  isJoint,
  jointVoters,
  jointCommittedIndex,
  jointVoteResult,
  jointHasQuorum,
  type VoteResult,
  type MajorityConfig,
  type JointConfig,
} from './quorum.js';
export type { ProgressState } from './progress.js';
export * from './types.js';
