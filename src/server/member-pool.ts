// Every HTTP request one member makes to another (a forwarded write, a status poll, a member
// list, a removal notice, a join) names the sending member in `x-flotilla-member` (API.md,
// "Between members"). Nodes do not act on it: it lets what sits between members (a proxy, a
// firewall or access log, a packet capture, the chaos harness's partitions) tell which member
// sent a request without knowing every member's source address, which a member does not choose.
// The pool adds it to every request it dispatches, so no call site can forget it.

import { Pool, type Dispatcher } from 'undici';

export const memberHeader = 'x-flotilla-member';

type Headers = Dispatcher.DispatchOptions['headers'];

/** `headers` (any form undici accepts) with `name: value` added. */
export function withHeader(
  headers: Headers,
  name: string,
  value: string,
): Exclude<Headers, undefined> {
  if (headers === null || headers === undefined) return { [name]: value };
  if (Array.isArray(headers)) return [...headers, name, value];
  if (Symbol.iterator in headers) {
    // Pairs, which undici reads as such only from an iterable that is not an array.
    const pairs = [...(headers as Iterable<[string, string | string[] | undefined]>)];
    return {
      *[Symbol.iterator](): Iterator<[string, string | string[] | undefined]> {
        yield* pairs;
        yield [name, value];
      },
    };
  }
  return { ...headers, [name]: value };
}

/** An undici Pool to another member whose every request names this member. */
export class MemberPool extends Pool {
  private readonly memberId: string;

  constructor(url: string, memberId: number, options: Pool.Options) {
    super(url, options);
    this.memberId = String(memberId);
  }

  override dispatch(
    options: Dispatcher.DispatchOptions,
    handler: Dispatcher.DispatchHandler,
  ): boolean {
    return super.dispatch(
      { ...options, headers: withHeader(options.headers, memberHeader, this.memberId) },
      handler,
    );
  }
}
