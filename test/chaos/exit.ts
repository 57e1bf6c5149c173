// The chaos command's exit status (docs/TESTING.md, "Fault injection"), one place for the
// command and its tests.

import type { RunVerdict } from './run.js';

export const EXIT = {
  /** Every run ok (with --expect-anomaly: every run found an anomaly). */
  ok: 0,
  /** A run found an anomaly (with --expect-anomaly: a run did not). */
  anomaly: 1,
  /** No anomaly, but a run could not be judged (checker budget). */
  unknown: 2,
  /** Bad options or a harness error before any verdict. */
  error: 3,
  /** A first SIGINT/SIGTERM ended the seed in progress early and no later seed ran. */
  interrupted: 4,
  /** A second signal: stopped at once, the seed in progress not written. */
  stopped: 130,
} as const;

/**
 * An anomaly outranks an interruption: a user who stopped a run because something looked
 * wrong must see it confirmed. Otherwise an interrupted campaign is not a pass, whatever its
 * runs said, since some seeds never ran and one ran short.
 */
export function exitStatus(
  verdicts: readonly RunVerdict[],
  o: { readonly expectAnomaly: boolean; readonly interrupted: boolean },
): number {
  const anomalies = verdicts.filter((v) => v === 'anomaly').length;
  if (o.expectAnomaly) {
    if (o.interrupted) return EXIT.interrupted;
    return anomalies === verdicts.length ? EXIT.ok : EXIT.anomaly;
  }
  if (anomalies > 0) return EXIT.anomaly;
  if (o.interrupted) return EXIT.interrupted;
  return verdicts.includes('unknown') ? EXIT.unknown : EXIT.ok;
}
