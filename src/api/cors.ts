// Cross-origin requests from the dashboard of another member. A page served by member A that
// follows member B once A is down (dashboard/app.js) reads B's event stream and calls B's API
// from A's origin: to the browser those are cross-origin requests, which it lets the page read
// only when B's answer names A's origin in Access-Control-Allow-Origin, and which it sends at
// all, when they carry a token (Authorization) or a JSON body, only after a preflight (OPTIONS)
// that B answered yes.
//
// The rule is narrow on both sides. Origins: only the cluster members' own client addresses
// (scheme, host and port, as the address book has them); a page from anywhere else gets no
// Access-Control-Allow-Origin and its preflight is refused ORIGIN_NOT_ALLOWED. Paths: only the
// dashboard's stream and the API calls the page makes (dashboard-routes.ts, `dashboardApiPaths`);
// every other route answers an OPTIONS 405 as before. No credentials mode: the page sends its
// token as a header, never a cookie, so Access-Control-Allow-Credentials is never sent.
//
// Refusing an actual (not preflight) request from a foreign origin is left to the browser: it
// does not show the page an answer without the header. The server still answers, as it does
// for curl, which sends no Origin at all.

import { FlotillaError } from '../base/errors.js';

/** The headers a preflight may ask for: the page's token and its JSON body's type. */
const allowedRequestHeaders = ['authorization', 'content-type'];
const allowedMethods = ['GET', 'POST'];
/** How long a browser may reuse a preflight's yes before asking again. */
const preflightMaxAgeSeconds = 600;

/** `scheme://host:port` of a member's client address, or null if it is not a URL. */
export function originOf(address: string): string | null {
  try {
    const u = new URL(address);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.origin : null;
  } catch {
    return null;
  }
}

export class CorsPolicy {
  private readonly paths: ReadonlySet<string>;

  constructor(
    paths: Iterable<string>,
    /** The members' client addresses now (membership changes while the node runs). */
    private readonly addresses: () => Iterable<string>,
  ) {
    this.paths = new Set(paths);
  }

  /** Whether `path` takes cross-origin requests at all. */
  covers(path: string): boolean {
    return this.paths.has(path);
  }

  /** The members' origins now, for the page's Content-Security-Policy too. */
  origins(): Set<string> {
    const out = new Set<string>();
    for (const a of this.addresses()) {
      const o = originOf(a);
      if (o !== null) out.add(o);
    }
    return out;
  }

  allows(origin: string): boolean {
    return this.origins().has(origin);
  }

  /**
   * The headers of an answer on `path` to a request from `origin` (its Origin header): the
   * origin itself when it is a member's, and `Vary: Origin` on every covered path so that a
   * cache never hands one origin's answer to another.
   */
  answerHeaders(path: string, origin: string | undefined): Record<string, string> {
    if (!this.covers(path)) return {};
    if (origin === undefined || !this.allows(origin)) return { Vary: 'Origin' };
    return { 'Access-Control-Allow-Origin': origin, Vary: 'Origin' };
  }

  /**
   * The answer to a preflight (OPTIONS with Access-Control-Request-Method) on a covered path:
   * its headers, or ORIGIN_NOT_ALLOWED / BAD_REQUEST thrown with why.
   */
  preflight(
    path: string,
    headers: Readonly<Record<string, string | string[] | undefined>>,
  ): Record<string, string> {
    const origin = headers['origin'];
    const method = headers['access-control-request-method'];
    if (typeof origin !== 'string' || typeof method !== 'string')
      throw new FlotillaError(
        'BAD_REQUEST',
        `An OPTIONS request on ${path} is a CORS preflight and needs Origin and Access-Control-Request-Method`,
      );
    if (!this.allows(origin))
      throw new FlotillaError(
        'ORIGIN_NOT_ALLOWED',
        `Origin ${JSON.stringify(origin)} is not a member of this cluster (members: ${[...this.origins()].join(', ')})`,
      );
    if (!allowedMethods.includes(method))
      throw new FlotillaError(
        'ORIGIN_NOT_ALLOWED',
        `Method ${JSON.stringify(method)} is not allowed across origins (allowed: ${allowedMethods.join(', ')})`,
      );
    const asked = headers['access-control-request-headers'];
    const names =
      typeof asked === 'string' ? asked.split(',').map((h) => h.trim().toLowerCase()) : [];
    const extra = names.filter((h) => h !== '' && !allowedRequestHeaders.includes(h));
    if (extra.length > 0)
      throw new FlotillaError(
        'ORIGIN_NOT_ALLOWED',
        `Headers ${extra.join(', ')} are not allowed across origins (allowed: ${allowedRequestHeaders.join(', ')})`,
      );
    return {
      'Access-Control-Allow-Origin': origin,
      'Access-Control-Allow-Methods': allowedMethods.join(', '),
      'Access-Control-Allow-Headers': allowedRequestHeaders.join(', '),
      'Access-Control-Max-Age': String(preflightMaxAgeSeconds),
      Vary: 'Origin',
    };
  }
}
