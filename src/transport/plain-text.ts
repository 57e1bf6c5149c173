// What a TLS port says to a connection that does not speak TLS. OpenSSL reads the first bytes
// of a plain HTTP request (or of a plain Flotilla preface) as a broken handshake and the
// connection closes without a word: curl printed "Empty reply from server". So each new
// connection's first bytes are read before the TLS handshake: a TLS record starts with 0x16
// (a handshake) and goes to TLS unchanged; anything else may be answered, in plain text, with
// what the port speaks (as nginx answers "The plain HTTP request was sent to HTTPS port").

import type { Socket } from 'node:net';
import type { Server as TlsServer } from 'node:tls';

/** The first byte of a TLS record that carries a handshake (RFC 8446 5.1, ContentType 22). */
const TLS_HANDSHAKE = 0x16;

/**
 * The bytes to send in plain text to a connection that began with `first` (not a TLS
 * handshake), before it is closed; null leaves it to TLS, which refuses it as before.
 */
export type PlainTextAnswer = (first: Buffer, socket: Socket) => Buffer | null;

export interface PlainTextOptions {
  /**
   * A connection must send its first bytes within this (the TLS handshake then has its own
   * timeout); one answered in plain text is closed within it after the answer.
   */
  readonly timeoutMs: number;
  readonly answer: PlainTextAnswer;
}

/**
 * Makes `server` read each new connection's first bytes before TLS does. Call it right after
 * the server is made: the 'connection' listeners it has then (TLS's own) run once the first
 * bytes arrived and were put back; listeners added later see the connection at once. Nothing
 * is buffered beyond the first read, and the server's connection limit still applies (it
 * counts a connection when it is accepted).
 */
export function answerPlainText(server: TlsServer, o: PlainTextOptions): void {
  const tls = server.listeners('connection') as ((socket: Socket) => void)[];
  for (const l of tls) server.removeListener('connection', l);
  server.on('connection', (socket: Socket) => {
    const onError = (): void => undefined; // 'close' follows; nothing to answer
    const timer = setTimeout(() => socket.destroy(), o.timeoutMs);
    socket.on('error', onError);
    socket.once('close', () => clearTimeout(timer));
    socket.once('data', (first: Buffer) => {
      socket.pause();
      const answer = first[0] === TLS_HANDSHAKE ? null : o.answer(first, socket);
      if (answer === null) {
        clearTimeout(timer);
        socket.removeListener('error', onError);
        // Put back for TLS: a TLS socket made over this one reads what it holds first.
        socket.unshift(first);
        for (const l of tls) l.call(server, socket);
        return;
      }
      // Read and drop what else the client sends until it closes (closing with unread bytes
      // would reset the connection, and the client could lose the answer); the timer bounds it.
      socket.on('data', () => undefined);
      socket.resume();
      socket.end(answer);
    });
  });
}

/** Whether `first` starts as an HTTP/1.x request line does: a method in capitals. */
export function looksLikeHttp(first: Buffer): boolean {
  const c = first[0] ?? 0;
  return c >= 0x41 && c <= 0x5a;
}

/**
 * A plain-text HTTP/1.1 answer `400 Bad Request` with `body` and `headers` (lower-case names);
 * the connection closes after it.
 */
export function plainHttpRefusal(body: string, headers: Record<string, string> = {}): Buffer {
  const text = `${body}\n`;
  const extra = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  return Buffer.from(
    'HTTP/1.1 400 Bad Request\r\n' +
      'content-type: text/plain; charset=utf-8\r\n' +
      'x-content-type-options: nosniff\r\n' +
      extra +
      `content-length: ${Buffer.byteLength(text)}\r\n` +
      'connection: close\r\n\r\n' +
      text,
    'utf8',
  );
}

/**
 * The host and path a plain HTTP request in `first` asked for (its Host header and request
 * target), for an https:// URL to suggest; null when they are not there or look odd.
 */
export function requestedUrl(first: Buffer): { host: string; path: string } | null {
  const head = first.subarray(0, 2048).toString('latin1');
  const line = /^[A-Z]+ (\/[!-~]{0,200}) HTTP\/1\.[01]\r\n/.exec(head);
  const host = /\r\nhost:[ \t]*([A-Za-z0-9.:[\]-]{1,255})[ \t]*\r\n/i.exec(head);
  if (line === null || host === null) return null;
  return { host: host[1] as string, path: line[1] as string };
}
