#!/usr/bin/env node
// The `flotilla` command's entry. It takes SIGTERM and SIGINT before it loads the program
// (program.ts and everything it imports, a few hundred milliseconds), then hands over.
//
// In a container the node is usually process 1 of its PID namespace, and the kernel drops any
// signal that process 1 has no handler for: a `docker stop` or a Kubernetes pod deletion that
// arrived while the modules were loading was lost, and the container was killed at the end of
// its grace period (10 s, 30 s) instead of stopping at once. Here a stop signal that arrives
// before a command takes the signal for itself ends the process as the default action would:
// killed by it, or, as process 1 (which the kernel will not kill so), exit status 128 + its
// number; nothing is open yet. A command that handles the signal (`start`, `cluster up`,
// `queue work`, …) adds a listener of its own, and this one is then gone for good: a second
// signal during `start`'s shutdown is the command's business, as it was before.

import { constants } from 'node:os';

const stopSignals: readonly string[] = ['SIGTERM', 'SIGINT'];

function dieAsByDefault(signal: NodeJS.Signals): void {
  for (const s of stopSignals) process.off(s, dieAsByDefault);
  if (process.pid === 1) process.exit(128 + constants.signals[signal]);
  // No listener left: the signal's default action ends the process, as if none had been here.
  process.kill(process.pid, signal);
}

const waiting = new Set(stopSignals);

function handOver(event: string | symbol): void {
  if (typeof event !== 'string' || !waiting.delete(event)) return;
  // Once the command's listener is in: taking the last listener off first would have Node stop
  // listening for the signal, and the command's would then never hear it.
  process.nextTick(() => process.off(event, dieAsByDefault));
  if (waiting.size === 0) process.off('newListener', handOver);
}

for (const signal of stopSignals) process.on(signal, dieAsByDefault);
process.on('newListener', handOver);

const { main } = await import('./program.js');
await main(process.argv);
