// A binary-protocol connection for tests that writes raw bytes and records every frame that
// comes back, in order: for what a broken, hostile or slow client sends and sees.

import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { FrameReader, WIRE_MAGIC, decodePayload, encodeFrame } from '../../src/api/wire-codec.js';

export /** A connection that writes raw bytes and records every frame that comes back, in order. */
class RawConnection {
  readonly frames: unknown[] = [];
  closed = false;
  private readonly reader = new FrameReader(64 * 1024 * 1024);
  private waiters: (() => void)[] = [];

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      for (const p of this.reader.push(chunk)) this.frames.push(decodePayload(p));
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  static async open(port: number, handshake = true): Promise<RawConnection> {
    const socket = connect({ host: '127.0.0.1', port, noDelay: true });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const c = new RawConnection(socket);
    if (handshake) {
      c.socket.write(encodeFrame({ magic: WIRE_MAGIC, version: 1, clientId: 'raw' }));
      await c.until('the handshake answer', () => c.frames.length >= 1);
    }
    return c;
  }

  /** Waits (bounded) until `done` holds, failing with what was seen. */
  async until(what: string, done: () => boolean, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      const left = deadline - Date.now();
      if (left <= 0)
        assert.fail(
          `${what} did not happen within ${timeoutMs} ms; frames seen: ` +
            `${JSON.stringify(this.frames).slice(0, 500)}; closed: ${this.closed}`,
        );
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** The answer frames [id, status, payload] after the handshake's. */
  answers(): [number, number, Record<string, unknown>][] {
    return this.frames.filter(Array.isArray) as [number, number, Record<string, unknown>][];
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}
