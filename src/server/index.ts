// Public entry point of the server assembly (`flotilla/server`), for programs that embed a
// Flotilla node: the node itself, the configuration it is built from, and the errors start-up
// can report. `flotilla start` is `runNode(resolveNodeConfig(file, env, flags))`.

export { FlotillaNode } from './node.js';
export { runNode } from './run-node.js';
// The type of `FlotillaNode.runtime`, so that a program can name what it reads from it.
export type { RaftRuntime } from '../host/runtime.js';
export {
  ConfigError,
  configDefaults,
  configFromEnv,
  parseInitialCluster,
  readConfigFile,
  resolveNodeConfig,
  unknownEnvVars,
  type Member,
  type NodeConfig,
} from './config.js';
export { StartupError, type StartupErrorCode } from './startup.js';
export { DataDirError, type DataDirErrorCode } from './data-dir.js';
export { StorageError, type StorageErrorCode } from '../storage/errors.js';
export { FlotillaError, errorCodes, type ErrorCode } from '../base/errors.js';
export { createLogger } from './logging.js';
