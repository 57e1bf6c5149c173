// Typed errors of the peer transport. Bad input from the network is never a bug: it gets one of
// these codes, is counted per peer, is reported through the event hook, and the connection that
// carried it is closed. Nothing here is thrown across send(); only construction with an invalid
// configuration throws.

export type TransportErrorCode =
  /** A frame could not be parsed: unknown frame type, bad msgpack, wrong order of frames. */
  | 'TRANSPORT_BAD_FRAME'
  /** A frame's length prefix exceeds the limit in force (checked before allocating). */
  | 'TRANSPORT_FRAME_TOO_LARGE'
  /** A frame's CRC32C does not match its bytes. */
  | 'TRANSPORT_CHECKSUM_MISMATCH'
  /** A frame decoded but the message inside is not a well-formed Raft message. */
  | 'TRANSPORT_BAD_MESSAGE'
  /** A snapshot attachment is larger than maxAttachmentBytes or its chunks do not add up. */
  | 'TRANSPORT_ATTACHMENT_TOO_LARGE'
  /** The handshake was refused: wrong magic, version, cluster id or node id. */
  | 'TRANSPORT_HANDSHAKE_REFUSED'
  /** Mutual TLS failed: a certificate not issued by the cluster's CA, or no TLS at all. */
  | 'TRANSPORT_TLS_REFUSED'
  /** The handshake did not finish within handshakeTimeoutMs. */
  | 'TRANSPORT_HANDSHAKE_TIMEOUT'
  /** Too many connections are open on the peer port; the new one was closed at once. */
  | 'TRANSPORT_TOO_MANY_CONNECTIONS'
  /** The options given to a transport are invalid (thrown by the constructor). */
  | 'TRANSPORT_INVALID_CONFIG';

export class TransportError extends Error {
  override readonly name = 'TransportError';
  readonly code: TransportErrorCode;

  constructor(code: TransportErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

/** Renders up to 16 bytes as hex, for error messages that show the value seen. */
export function hexPreview(bytes: Uint8Array, max = 16): string {
  const shown = Array.from(bytes.subarray(0, max), (b) => b.toString(16).padStart(2, '0'));
  return shown.join('') + (bytes.length > max ? '…' : '');
}
