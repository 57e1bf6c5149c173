// Who is dialling: the front proxies (proxy.ts) read the first bytes of each connection to name
// the member that opened it, since every member dials the same address for a given member.
//
//   peer port    the dialler's preface `FLOT` and HELLO frame (PROTOCOL.md, "Handshake"),
//                which names the sender in `from`;
//   client port  the first HTTP request's `x-flotilla-member` header, which every request
//                a member sends to another carries (API.md, "Between members").
//
// A sniffer sees everything buffered so far and answers: read more, this member, or no member
// (and why). It answers "no member" for anything that cannot be a member's opening within the
// bound the receiving node itself applies (a HELLO within 4 KiB; HTTP headers within 16 KiB,
// Node's default), so that a proxy never buffers without bound.

import { FrameDecoder, FrameType, HEADER_BYTES, PREFACE } from '../../src/transport/frame.js';
import { decodeHello } from '../../src/transport/codec.js';
import { TransportError } from '../../src/transport/errors.js';
import { memberHeader } from '../../src/server/member-pool.js';

export type Sniffed =
  | { readonly kind: 'more' }
  | { readonly kind: 'member'; readonly id: number }
  | { readonly kind: 'unknown'; readonly why: string };

/** Reads the opening bytes of a connection; `head` is everything received so far. */
export type Sniffer = (head: Buffer) => Sniffed;

/** The acceptor refuses a first frame larger than this (transport `maxHandshakeFrameBytes`). */
export const HELLO_BYTES_MAX = 4096;
/** Node's HTTP parser refuses a header block larger than this (`--max-http-header-size`). */
export const HTTP_HEAD_BYTES_MAX = 16 * 1024;

const more: Sniffed = { kind: 'more' };
const unknown = (why: string): Sniffed => ({ kind: 'unknown', why });

function hex(b: Buffer): string {
  return b.subarray(0, 16).toString('hex');
}

/** The sender named by the peer handshake's HELLO. */
export const sniffPeerHello: Sniffer = (head) => {
  const seen = Math.min(head.length, PREFACE.length);
  if (!head.subarray(0, seen).equals(PREFACE.subarray(0, seen)))
    return unknown(`no FLOT preface: starts ${hex(head)}`);
  if (head.length < PREFACE.length + HEADER_BYTES) return more;
  const length = head.readUInt32BE(PREFACE.length);
  const type = head.readUInt8(PREFACE.length + 8);
  if (type !== FrameType.hello) return unknown(`first frame is of type ${type}, not HELLO`);
  if (length > HELLO_BYTES_MAX)
    return unknown(`HELLO of ${length} bytes is over ${HELLO_BYTES_MAX}`);
  if (head.length < PREFACE.length + HEADER_BYTES + length) return more;
  const decoder = new FrameDecoder(HELLO_BYTES_MAX);
  decoder.push(head);
  decoder.take(PREFACE.length);
  const frame = decoder.next();
  if (frame === null) return more; // cannot be: the whole frame is buffered
  if (frame instanceof TransportError) return unknown(`bad HELLO frame: ${frame.message}`);
  try {
    return { kind: 'member', id: Number(decodeHello(frame.payload).from) };
  } catch (err) {
    return unknown(`bad HELLO: ${(err as Error).message}`);
  }
};

/** The sender named by the first HTTP request's `x-flotilla-member` header. */
export const sniffMemberHeader: Sniffer = (head) => {
  const end = head.indexOf('\r\n\r\n');
  if (end < 0 || end > HTTP_HEAD_BYTES_MAX) {
    if (head.length <= HTTP_HEAD_BYTES_MAX) return more;
    return unknown(`no end of HTTP headers within ${HTTP_HEAD_BYTES_MAX} bytes`);
  }
  const lines = head.subarray(0, end).toString('latin1').split('\r\n');
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon < 0 || line.slice(0, colon).trim().toLowerCase() !== memberHeader) continue;
    const value = line.slice(colon + 1).trim();
    if (!/^[1-9][0-9]{0,9}$/.test(value))
      return unknown(`${memberHeader} ${JSON.stringify(value)} is not a member id`);
    return { kind: 'member', id: Number(value) };
  }
  return unknown(`no ${memberHeader} header: ${JSON.stringify(lines[0]?.slice(0, 80) ?? '')}`);
};
