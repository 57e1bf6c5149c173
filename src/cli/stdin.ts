// Standard input read whole by a command that takes its data from it (`kv put KEY`, `queue add
// QUEUE -`): a terminal is refused (a forgotten pipe would wait for typing), and so is more
// than `maxBytes`, before any of it is sent.

import { UsageError } from './usage-error.js';

export async function readStdin(command: string, what: string, maxBytes: number): Promise<Buffer> {
  if (process.stdin.isTTY === true)
    throw new UsageError(`${command}: give ${what}, or pipe one on standard input`);
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes)
      throw new UsageError(
        `${command}: standard input holds more than ${maxBytes} bytes, more than any node accepts as ${what}`,
      );
    parts.push(chunk);
  }
  return Buffer.concat(parts);
}

/** `bytes` as UTF-8 text; null when they are not. */
export function utf8Text(bytes: Buffer): string | null {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return null;
  }
}
