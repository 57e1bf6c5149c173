// Waiting for a condition in a test: poll it with a bound, and fail naming what was awaited and
// what was seen, never sleep for a guessed time.

/**
 * Polls `probe` every 50 ms until it gives a value (anything but `null` or `false`), or throws
 * naming `what` after `timeoutMs`. `what` may be a function, called only on failure, so the
 * message can say what was seen last.
 */
export async function until<T>(
  what: string | (() => string),
  probe: () => T | null | false | Promise<T | null | false>,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const seen = await probe();
    if (seen !== false && seen !== null) return seen;
    if (Date.now() > deadline)
      throw new Error(`${typeof what === 'string' ? what : what()}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
