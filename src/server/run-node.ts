// What `flotilla start` runs: a node (node.ts) kept until SIGTERM or SIGINT, then shut down
// cleanly, and what a second signal or a parent gone means meanwhile.

import { constants } from 'node:os';
import type { Logger } from 'pino';
import { FlotillaError } from '../base/errors.js';
import type { NodeConfig } from './config.js';
import { createLogger } from './logging.js';
import { FlotillaNode } from './node.js';

/** How long a shutdown may take before the node says what it still waits for. */
const shutdownWarnMs = 10_000;

/**
 * A stop signal this soon after the first is the same stop arriving twice, not a second
 * Ctrl-C: under `npm run` one Ctrl-C reaches the command twice (from the terminal and
 * forwarded by npm), and a node of `cluster up` gets the terminal's SIGINT and its parent's
 * SIGTERM at once. A person pressing Ctrl-C again to stop at once is slower than this.
 */
export const SIGNAL_ECHO_MS = 500;

/**
 * What the first stop signal's log line adds: how to stop at once. Not as process 1 (a
 * container's entry), which keeps its shutdown whatever follows (forcedStop).
 */
function secondSignalHint(signal: string): string {
  if (process.pid === 1) return '';
  if (signal === 'SIGINT') return '; press Ctrl-C again to stop at once';
  if (signal === 'SIGTERM') return '; a second SIGTERM stops it at once';
  return '';
}

/**
 * A second stop signal during a shutdown (or a start told to stop): the process ends at once,
 * saying so, with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM), as the signal's
 * default action would have ended it before, without a word. Nothing acknowledged is lost: a
 * write is acknowledged only once its log entry is synced to disk, and the next start replays
 * the log as after a crash. As process 1 the signal changes nothing (returns false): there the
 * kernel dropped it before, and an orchestrator's grace period, then its kill, is what bounds
 * the shutdown; the line says so.
 */
function forcedStop(log: Logger, signal: NodeJS.Signals): void {
  if (process.pid === 1) {
    log.info({ signal }, `${signal} again: as process 1 the shutdown under way goes on`);
    return;
  }
  log.warn(
    { signal },
    `${signal} again: stopping at once without finishing the shutdown ` +
      '(nothing acknowledged is lost: the log is synced before a write is acknowledged)',
  );
  process.exit(128 + constants.signals[signal]);
}

/**
 * Runs a node until SIGTERM or SIGINT, then shuts it down cleanly. The handlers are installed
 * before the node starts: a signal that arrives while it starts (or just after it said "node
 * started") stops it cleanly once started, rather than killing the process mid-write.
 */
export async function runNode(
  config: NodeConfig,
  o: {
    /** FLOTILLA_* variables nothing reads (config.ts, unknownEnvVars): logged as warnings first. */
    unknownEnv?: readonly { name: string; meant?: string }[];
    /** Where to write, besides the data directory, where the node serves (FLOTILLA_SERVING_FILE). */
    servingFile?: string;
  } = {},
): Promise<void> {
  let stopSignal: string | null = null;
  // A signal before the node started ends a start that waits (a join, an empty data
  // directory's wait for its peers) at once; one that is not waiting stops the node once up.
  const starting = new AbortController();
  let onSignal: (signal: string) => void = (signal) => {
    stopSignal = signal;
    starting.abort(signal);
  };
  // `on`, not `once`: a second signal is not left to its default action, which ended the
  // process mid-shutdown without a word; it is said, then ends it (forcedStop).
  let signalledAt: number | null = null;
  /** Whether the shutdown began (on a signal, or on the member's removal). */
  let shuttingDown = false;
  const handler = (signal: NodeJS.Signals): void => {
    if (signalledAt !== null) {
      if (performance.now() - signalledAt < SIGNAL_ECHO_MS) return;
      return forcedStop(logger, signal);
    }
    signalledAt = performance.now();
    // A shutdown begun without a signal (the member was removed) said no hint: say it now.
    if (shuttingDown) logger.info({ signal }, `already shutting down${secondSignalHint(signal)}`);
    onSignal(signal);
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
  // A node started with an IPC channel (by `cluster up`) belongs to that parent: when the
  // channel closes because the parent ended without stopping it (killed, or orphaned by a
  // wrapper that took the signal), the node stops as on SIGTERM rather than running on with
  // nobody left to stop it. The channel does not keep the process alive by itself.
  const parentGone = (): void => onSignal('parent exited');
  if (process.channel !== undefined) {
    process.channel.unref();
    process.once('disconnect', parentGone);
  }
  const logger = createLogger(config.id, { level: config.logLevel, format: config.logFormat });
  for (const { name, meant } of o.unknownEnv ?? [])
    logger.warn(
      { variable: name, meant },
      `${name} is not a setting and is ignored${meant === undefined ? '' : `: did you mean ${meant}?`}`,
    );
  let node: FlotillaNode;
  try {
    node = await FlotillaNode.start(config, {
      signal: starting.signal,
      logger,
      ...(o.servingFile === undefined ? {} : { servingFile: o.servingFile }),
    });
  } catch (err) {
    process.off('SIGTERM', handler);
    process.off('SIGINT', handler);
    process.off('disconnect', parentGone);
    // Stopped while it waited: that is the stop asked for, not a failure (exit code 0).
    if (stopSignal !== null && err instanceof FlotillaError && err.code === 'SHUTTING_DOWN') return;
    throw err;
  }
  // A member removed from the cluster stops by itself; the process then ends as on a signal.
  // `stopped` also settles after a close() on a signal: that shutdown is already under way.
  void node.stopped.then(() => onSignal('removed'));
  await new Promise<void>((resolve) => {
    onSignal = (signal) => {
      if (shuttingDown) return;
      shuttingDown = true;
      node.log.info({ signal }, `shutting down${secondSignalHint(signal)}`);
      // A stop should take a second or two: one that lasts says what it waits for, once, so
      // that a node an orchestrator must kill leaves its reason in the log.
      const slow = setTimeout(() => {
        node.log.warn(
          { waitingFor: node.closingStages(), afterMs: shutdownWarnMs },
          `shutdown still under way after ${shutdownWarnMs / 1000} s: waiting for ${node.closingStages().join('; ')}`,
        );
      }, shutdownWarnMs);
      slow.unref();
      node
        .close()
        .finally(() => clearTimeout(slow))
        .then(resolve, (err: unknown) => {
          node.log.error({ err }, 'shutdown failed');
          // Everything is closed but what failed: the process ends, and says it did not end well.
          process.exitCode = 1;
          resolve();
        });
    };
    if (stopSignal !== null) onSignal(stopSignal);
  });
  // The shutdown is over: a signal now has nothing left to cut short.
  process.off('SIGTERM', handler);
  process.off('SIGINT', handler);
}
