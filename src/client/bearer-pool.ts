// The client's connections to a node that requires a token (API.md, "Authentication"): every
// request the pool dispatches carries `Authorization: Bearer <token>`, so that no call (a
// write, a watch, the status read behind leader discovery) can go without it.

import { Pool, type Dispatcher } from 'undici';

type Headers = Dispatcher.DispatchOptions['headers'];

/** `headers` (any form undici accepts) with the Authorization header set to `value`. */
function withAuthorization(headers: Headers, value: string): Exclude<Headers, undefined> {
  if (headers === null || headers === undefined) return { authorization: value };
  if (Array.isArray(headers)) return [...headers, 'authorization', value];
  if (Symbol.iterator in headers) {
    const pairs = [...(headers as Iterable<[string, string | string[] | undefined]>)];
    return {
      *[Symbol.iterator](): Iterator<[string, string | string[] | undefined]> {
        yield* pairs;
        yield ['authorization', value];
      },
    };
  }
  return { ...headers, authorization: value };
}

/** An undici Pool whose every request presents the bearer token. */
export class BearerPool extends Pool {
  readonly #authorization: string;

  constructor(url: string, token: string, options?: Pool.Options) {
    super(url, options);
    this.#authorization = `Bearer ${token}`;
  }

  override dispatch(
    options: Dispatcher.DispatchOptions,
    handler: Dispatcher.DispatchHandler,
  ): boolean {
    return super.dispatch(
      { ...options, headers: withAuthorization(options.headers, this.#authorization) },
      handler,
    );
  }
}
