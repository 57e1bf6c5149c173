#!/usr/bin/env node
// The `flotilla` command's entry. It takes SIGTERM and SIGINT before it loads the program
// (program.ts and everything it imports, a few hundred milliseconds), then hands over.
//
// In a container the node is usually process 1 of its PID namespace, and the kernel drops any
// signal that process 1 has no handler for: a `docker stop` or a Kubernetes pod deletion that
// arrived while the modules were loading was lost, and the container was killed at the end of
// its grace period (10 s, 30 s) instead of stopping at once. Here a stop signal that arrives
// before a command takes the signal for itself ends the process as the default action would
// (status 128 + the signal's number); nothing is open yet. A command that handles the signal
// (`start`, `cluster up`, `queue work`, …) adds a listener of its own, and this one then steps
// aside.

import { constants } from 'node:os';

const stopSignals = ['SIGTERM', 'SIGINT'] as const;

function exitAsByDefault(signal: NodeJS.Signals): void {
  if (process.listenerCount(signal) > 1) return;
  process.exit(128 + constants.signals[signal]);
}

for (const signal of stopSignals) process.on(signal, exitAsByDefault);

const { main } = await import('./program.js');
await main(process.argv);
