// Client authentication (docs/API.md, "Authentication"): a request presents a bearer token,
// the node finds the token's holder in its token book, and the holder's role must cover what
// the request needs. Three roles, each a superset of the one before: `read` (ranges, watches,
// status), `write` (read, and every write: puts, deletes, transactions, leases, the job queue)
// and `admin` (everything: membership, compaction, backups, leadership transfer, and the calls
// members make to each other).
//
// The book holds SHA-256 digests of the tokens, never the tokens: a presented token is hashed
// and compared with every digest in constant time, without stopping at a match, so neither
// what is stored nor how long a refusal takes tells anything about a token. Both fronts (the
// HTTP routes and the binary client protocol) ask the same book and the same tables below, and
// refuse with the same codes: UNAUTHENTICATED (401: no token, or one the book does not hold)
// and PERMISSION_DENIED (403: a known token whose role does not cover the request). A refusal
// happens before anything else is done, so it is always definite.
//
// A token is never put in an error message, a log line or a metric label: refusals name the
// holder (for a known token) or nothing.

import { createHash, timingSafeEqual } from 'node:crypto';
import { FlotillaError } from '../base/errors.js';
import { dashboardAssets, dashboardEventsPath, dashboardMemberPath } from './dashboard-routes.js';
import { queuePaths, queueReads, type QueueOpName } from './queue-paths.js';
import { rangePath, writePaths } from './requests.js';

export const roles = ['read', 'write', 'admin'] as const;
export type Role = (typeof roles)[number];

/** What a request needs: a role, or nothing at all (health probes, metrics). */
export type Need = Role | 'open';

/** One holder of a token: a name for logs and refusals, and its role. */
export interface Principal {
  readonly name: string;
  readonly role: Role;
}

/** One entry of the book: the holder and the SHA-256 digest of its token (32 bytes). */
export interface TokenEntry extends Principal {
  readonly sha256: Uint8Array;
}

/** The shortest token accepted: 16 characters of the bearer alphabet hold 96 bits or more. */
export const minTokenLength = 16;
/** The longest: a header line has room, and hashing it costs nothing noticeable. */
export const maxTokenLength = 4096;

/** RFC 6750's b64token: what may follow `Bearer ` in an Authorization header. */
const bearerAlphabet = /^[A-Za-z0-9\-._~+/]+=*$/;

/** Whether `token` can be a Flotilla token; a description of the problem, or null. */
export function tokenProblem(token: string): string | null {
  if (token.length < minTokenLength)
    return `is ${token.length} characters long; at least ${minTokenLength} are needed`;
  if (token.length > maxTokenLength)
    return `is ${token.length} characters long; at most ${maxTokenLength} are allowed`;
  if (!bearerAlphabet.test(token))
    return 'holds a character outside A-Z a-z 0-9 - . _ ~ + / (and = at the end)';
  return null;
}

export function sha256(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

function covers(has: Role, need: Role): boolean {
  return roles.indexOf(has) >= roles.indexOf(need);
}

/**
 * The tokens a node accepts. Immutable: a reload of the tokens file builds a new book and the
 * node swaps it in whole, so a request is checked against one book or the other.
 */
export class TokenBook {
  private readonly entries: readonly TokenEntry[];

  constructor(entries: readonly TokenEntry[]) {
    for (const e of entries)
      if (e.sha256.length !== 32)
        throw new RangeError(
          `Token ${e.name}: a SHA-256 digest is 32 bytes, got ${e.sha256.length}`,
        );
    this.entries = entries;
  }

  get size(): number {
    return this.entries.length;
  }

  /** The holder of `token`, or null. Takes the same time whichever entry (if any) matches. */
  find(token: string): Principal | null {
    const digest = sha256(token);
    let found: TokenEntry | null = null;
    for (const e of this.entries)
      if (timingSafeEqual(digest, e.sha256) && found === null) found = e;
    return found === null ? null : { name: found.name, role: found.role };
  }

  /**
   * The holder of a presented token whose role covers `need`, or a definite refusal:
   * UNAUTHENTICATED for no token or an unknown one, PERMISSION_DENIED for a role short of it.
   * `what` names the request in the refusal (a path, a request type).
   */
  check(token: string | null, need: Role, what: string): Principal {
    const p = token === null ? null : this.find(token);
    permit(p, token !== null, need, what);
    return p;
  }
}

/**
 * Refuses, definitely, a request `what` that needs `need` from `holder` (null: no token was
 * `given`, or the one given is not in the book); returns when the holder's role covers it.
 */
export function permit(
  holder: Principal | null,
  given: boolean,
  need: Role,
  what: string,
): asserts holder is Principal {
  if (holder === null)
    throw new FlotillaError(
      'UNAUTHENTICATED',
      given
        ? `${what}: the bearer token given is not one this node accepts`
        : `${what} needs a bearer token (Authorization: Bearer <token>) with the ${need} role; none was given`,
      false,
    );
  if (!covers(holder.role, need))
    throw new FlotillaError(
      'PERMISSION_DENIED',
      `${what} needs the ${need} role; token "${holder.name}" has the ${holder.role} role`,
      false,
    );
}

/**
 * The token of an Authorization header: `Bearer <token>` (the scheme in any letter case), or
 * null when there is none or it is not a bearer token.
 */
export function bearerToken(header: string | string[] | undefined): string | null {
  if (typeof header !== 'string') return null;
  const m = /^bearer +(\S+) *$/i.exec(header);
  return m === null ? null : (m[1] as string);
}

/** The Authorization header value that presents `token`. */
export function bearerHeader(token: string): string {
  return `Bearer ${token}`;
}

/**
 * Health probes and metrics: open, so that probes and scrapers need no token (API.md). So are
 * the dashboard's files, which hold no data: the page asks for the token, and every request it
 * makes for data carries it.
 */
const openPaths = new Set([
  '/healthz',
  '/readyz',
  '/metrics',
  ...dashboardAssets.map((a) => a.path),
]);

/** The HTTP paths a read or write token may use; every other path needs admin. */
const rolePaths: ReadonlyMap<string, Role> = new Map<string, Role>([
  [rangePath, 'read'],
  ['/v1/watch', 'read'],
  ['/v1/status', 'read'],
  ['/v1/cluster/status', 'read'],
  // The range map: a client routing requests to each range's leader needs it with any token.
  // Splitting (/v1/ranges/split) stays admin's.
  ['/v1/ranges', 'read'],
  ['/v1/lease/timetolive', 'read'],
  ['/v1/lease/leases', 'read'],
  [dashboardEventsPath, 'read'],
  [dashboardMemberPath, 'read'],
  ...Object.values(writePaths).map((p): [string, Role] => [p, 'write']),
  ['/v1/lease/grant', 'write'],
  ['/v1/lease/revoke', 'write'],
  ['/v1/lease/keepalive', 'write'],
  ...(Object.entries(queuePaths) as [QueueOpName, string][]).map(([name, path]): [string, Role] => [
    path,
    queueReads.has(name) ? 'read' : 'write',
  ]),
]);

/**
 * What an HTTP request to `path` needs. A path in neither table needs admin: a route added
 * later is closed to read and write tokens until it is listed here (compaction, backups,
 * membership and leadership transfer are admin's by being absent).
 */
export function httpNeed(path: string): Need {
  if (openPaths.has(path)) return 'open';
  return rolePaths.get(path) ?? 'admin';
}

/** What a request of the binary client protocol needs, by its type. */
export function wireNeed(type: string): Role {
  if (type === 'range' || type === 'watch' || type === 'status' || type === 'cancel') return 'read';
  if (type === 'put' || type === 'delete' || type === 'txn') return 'write';
  if (type.startsWith('queue.')) {
    const name = type.slice('queue.'.length) as QueueOpName;
    return Object.hasOwn(queuePaths, name) && queueReads.has(name) ? 'read' : 'write';
  }
  return 'admin';
}

/**
 * The check of an HTTP request (http.ts, `authorize`): what its path needs, against the book
 * in force (`book()`, which a reload of the tokens file may have replaced).
 */
export function httpAuthorizer(
  book: () => TokenBook,
): (path: string, authorization: string | string[] | undefined) => void {
  return (path, authorization) => {
    const need = httpNeed(path);
    if (need === 'open') return;
    const token = bearerToken(authorization);
    if (token === null && authorization !== undefined)
      throw new FlotillaError(
        'UNAUTHENTICATED',
        `${path}: the Authorization header must be "Bearer <token>"`,
        false,
      );
    book().check(token, need, path);
  };
}
