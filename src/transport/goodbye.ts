// The GOODBYE frame (protocol version 5, docs/PROTOCOL.md "Goodbye"): a node that stops cleanly
// writes it on each main connection, either direction, before closing it, so the peer at the
// other end can tell a planned stop from a crash (both end in a closed connection). A peer of
// an older version would take the unknown frame type for a broken stream and say so as a
// protocol error: callers write it only on connections negotiated at GOODBYE_VERSION or above.

import type { Socket } from 'node:net';
import { pack } from './codec.js';
import { FrameType, encodeSmallFrame } from './frame.js';
import type { TransportClock } from './types.js';

/**
 * How long a stopping node waits for a peer to close its end after GOODBYE. A peer that
 * answers closes at once; one that hangs must not hold the shutdown, and loses nothing: it
 * then sees the close alone, as a disconnect.
 */
export const GOODBYE_LINGER_MS = 500;

/** The GOODBYE frame: an empty map, room for fields a later version may add. */
export function goodbyeFrame(): Buffer {
  return encodeSmallFrame(FrameType.goodbye, pack({}));
}

/**
 * Writes GOODBYE and half-closes the socket, then resolves once the peer closed its end (it
 * reads the frame before the end of the stream), or destroys the socket after
 * GOODBYE_LINGER_MS. Never rejects.
 */
export function sayGoodbye(socket: Socket, clock: TransportClock): Promise<void> {
  return new Promise((resolve) => {
    let timer: unknown = null;
    const done = (): void => {
      if (timer !== null) clock.clearTimeout(timer);
      timer = null;
      socket.destroy();
      resolve();
    };
    if (socket.destroyed) return done();
    socket.once('close', done);
    timer = clock.setTimeout(done, GOODBYE_LINGER_MS);
    socket.end(goodbyeFrame());
  });
}
