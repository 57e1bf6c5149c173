// What a FlotillaClient is made with: its options, checked at construction, each refusal
// naming the option and the value seen, and the options every call takes.

import { randomUUID } from 'node:crypto';
import { FlotillaError } from '../base/errors.js';
import { defaultLimits } from '../base/limits.js';
import { checkOptions } from './util.js';

/** How a read is served; see API.md, "Consistency of reads". */
export type ReadConsistency = 'linearizable' | 'serializable' | 'lease';

export interface ClientOptions {
  /** Base URLs of the nodes, e.g. http://127.0.0.1:8001. */
  readonly endpoints: readonly string[];
  /** Per-attempt timeout. Default 5,000 ms. */
  readonly timeoutMs?: number;
  /** Total time one call may take, retries included. Default 15,000 ms. */
  readonly deadlineMs?: number;
  /** Attempts per call. Default 8. */
  readonly maxAttempts?: number;
  /** Connections per endpoint. Default 64. */
  readonly connections?: number;
  /** Session id; a new random one by default. */
  readonly clientId?: string;
  /**
   * How far a write's sequence number may run ahead of the oldest write still in flight;
   * keep it below the cluster's session window (256). Default 128.
   */
  readonly writeWindow?: number;
  /**
   * After a node refused the `ackedBelow` mark (a release before it, during an upgrade), how
   * many writes go without it before the client tries it again. Default 1,000 (a refused try
   * costs one attempt per that many writes); from 1 to 1,000,000.
   */
  readonly markRetryWrites?: number;
  /**
   * `auto`: use a node's binary client protocol once its HTTP answers name the port
   * (docs/CLIENT-PROTOCOL.md), HTTP otherwise; `http`: HTTP only. Default `auto`.
   */
  readonly protocol?: 'auto' | 'http';
  /** Binary protocol connections per endpoint; requests share them. Default 2. */
  readonly binaryConnections?: number;
  /**
   * The bearer token every request presents, to a cluster that requires one (API.md,
   * "Authentication"); its role decides what the client may do. A cluster without
   * authentication ignores it.
   */
  readonly token?: string;
  /**
   * For `https://` endpoints (docs/SECURITY.md, "TLS"): the cluster's CA certificate (PEM) to
   * trust instead of the system's, and a client certificate and key for a cluster that asks
   * for one (tlsClientCertAuth). The binary protocol of such an endpoint runs over TLS too.
   */
  readonly tls?: ClientTlsOptions;
  /**
   * Send each key-value request (put, get, range, delete, txn) to the node leading the range
   * that holds its keys, from a cached copy of the range map (docs/CLIENT.md, "Range
   * routing"), rather than to any endpoint, which would forward it there. Default: on when
   * more than one endpoint is given (one endpoint is often a load balancer).
   */
  readonly rangeRouting?: boolean;
  /** With range routing: a cached range map older than this is fetched again. Default 30,000 ms. */
  readonly rangeMapMaxAgeMs?: number;
  /**
   * Send a queue's adds made in the same turn of the event loop as one add-bulk write, and its
   * completes and fails as one report-bulk write, each still answered as its own (docs/CLIENT.md,
   * "Job queue"). Default true; false sends every call alone.
   */
  readonly gather?: boolean;
}

/** Every field of ClientOptions: the constructor refuses any other (a misspelt option). */
const clientOptionNames = [
  'endpoints',
  'timeoutMs',
  'deadlineMs',
  'maxAttempts',
  'connections',
  'clientId',
  'writeWindow',
  'markRetryWrites',
  'protocol',
  'binaryConnections',
  'token',
  'tls',
  'rangeRouting',
  'rangeMapMaxAgeMs',
  'gather',
] as const satisfies readonly (keyof ClientOptions)[];

/** Compiles only while clientOptionNames lists every field of ClientOptions. */
export type ClientOptionsListed =
  Exclude<keyof ClientOptions, (typeof clientOptionNames)[number]> extends never ? true : never;

export interface ClientTlsOptions {
  readonly ca?: string | Uint8Array;
  readonly cert?: string | Uint8Array;
  readonly key?: string | Uint8Array;
}

export interface CallOptions {
  readonly signal?: AbortSignal;
}

/**
 * ClientOptions checked, with their defaults: what the client's parts are made from. Not kept
 * once they are made: it holds the token, which Connections alone keeps, out of sight (`#token`).
 */
export interface ClientSettings {
  readonly endpoints: string[];
  readonly timeoutMs: number;
  readonly deadlineMs: number;
  readonly maxAttempts: number;
  readonly clientId: string;
  /** Whether the caller named the session (`clientId`) rather than leaving it random. */
  readonly clientIdGiven: boolean;
  readonly markRetryWrites: number;
  readonly writeWindow: number;
  readonly protocol: 'auto' | 'http';
  readonly binaryConnections: number;
  readonly token: string | null;
  readonly tls: TlsPem;
  readonly poolConnections: number;
  readonly gather: boolean;
  readonly rangeRouting: boolean;
  readonly rangeMapMaxAgeMs: number;
}

export function checkClientOptions(opts: ClientOptions): ClientSettings {
  // Checked here, each naming the option and the value seen, for callers in plain JavaScript
  // too: before, a missing `endpoints` threw a TypeError without a code, and a `maxAttempts`
  // of 0 or a `timeoutMs` that is not a number was taken and every call failed TIMEOUT.
  if (typeof opts !== 'object' || opts === null)
    throw new FlotillaError('BAD_REQUEST', 'FlotillaClient needs options: { endpoints }', false);
  if (!Array.isArray(opts.endpoints) || opts.endpoints.length === 0)
    throw new FlotillaError(
      'BAD_REQUEST',
      `endpoints must be a non-empty array of base URLs, got ${describe(opts.endpoints)}`,
      false,
    );
  checkOptions(opts, 'FlotillaClient', clientOptionNames);
  const endpoints = opts.endpoints.map(checkEndpoint);
  const timeoutMs = positiveInt(opts, 'timeoutMs', 5_000);
  const deadlineMs = positiveInt(opts, 'deadlineMs', 15_000);
  const maxAttempts = positiveInt(opts, 'maxAttempts', 8);
  // The node's limit, in the same units (UTF-16 code units): a longer id would have every
  // write refused, one by one, long after the client was made.
  const maxIdChars = defaultLimits.maxClientIdChars;
  if (
    opts.clientId !== undefined &&
    (typeof opts.clientId !== 'string' || opts.clientId === '' || opts.clientId.length > maxIdChars)
  )
    throw new FlotillaError(
      'BAD_REQUEST',
      `clientId must be a string of 1 to ${maxIdChars} characters, got ` +
        `${typeof opts.clientId === 'string' ? `${opts.clientId.length} characters` : describe(opts.clientId)}`,
      false,
    );
  const markRetryWrites = intUpTo(opts, 'markRetryWrites', 1_000, 1_000_000);
  const writeWindow = intUpTo(opts, 'writeWindow', 128, 256);
  if (opts.protocol !== undefined && opts.protocol !== 'auto' && opts.protocol !== 'http')
    throw new FlotillaError(
      'BAD_REQUEST',
      `protocol must be "auto" or "http", got ${describe(opts.protocol)}`,
      false,
    );
  const binaryConnections = opts.binaryConnections ?? 2;
  if (!Number.isInteger(binaryConnections) || binaryConnections < 1)
    throw new FlotillaError(
      'BAD_REQUEST',
      `binaryConnections must be a positive integer, got ${String(opts.binaryConnections)}`,
      false,
    );
  if (opts.token !== undefined && !/^[A-Za-z0-9\-._~+/]+=*$/.test(opts.token))
    throw new FlotillaError(
      'BAD_REQUEST',
      'token must be a bearer token (letters, digits and - . _ ~ + /, = at the end)',
      false,
    );
  const tls = tlsConnectOptions(opts.tls);
  const poolConnections = positiveInt(opts, 'connections', 64);
  if (opts.gather !== undefined && typeof opts.gather !== 'boolean')
    throw new FlotillaError(
      'BAD_REQUEST',
      `gather must be true or false, got ${JSON.stringify(opts.gather)}`,
      false,
    );
  const maxAgeMs = opts.rangeMapMaxAgeMs ?? 30_000;
  if (!Number.isInteger(maxAgeMs) || maxAgeMs < 1)
    throw new FlotillaError(
      'BAD_REQUEST',
      `rangeMapMaxAgeMs must be a positive integer, got ${String(opts.rangeMapMaxAgeMs)}`,
      false,
    );
  return {
    endpoints,
    timeoutMs,
    deadlineMs,
    maxAttempts,
    clientId: opts.clientId ?? randomUUID(),
    clientIdGiven: opts.clientId !== undefined,
    markRetryWrites,
    writeWindow,
    protocol: opts.protocol ?? 'auto',
    binaryConnections,
    token: opts.token ?? null,
    tls,
    poolConnections,
    gather: opts.gather !== false,
    rangeRouting: opts.rangeRouting ?? endpoints.length > 1,
    rangeMapMaxAgeMs: maxAgeMs,
  };
}

/** What a TLS connection to a node is made with (node:tls options). */
export interface TlsPem {
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
}

function tlsConnectOptions(o: ClientTlsOptions | undefined): TlsPem {
  const pem = (v: string | Uint8Array): string | Buffer =>
    typeof v === 'string' ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  if (o === undefined) return {};
  checkOptions(o, 'FlotillaClient tls', ['ca', 'cert', 'key']);
  if ((o.cert === undefined) !== (o.key === undefined))
    throw new FlotillaError(
      'BAD_REQUEST',
      'tls.cert and tls.key go together: a client certificate needs its key',
      false,
    );
  return {
    ...(o.ca === undefined ? {} : { ca: pem(o.ca) }),
    ...(o.cert === undefined ? {} : { cert: pem(o.cert) }),
    ...(o.key === undefined ? {} : { key: pem(o.key) }),
  };
}

/** A value as an error message shows it. */
function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  return Array.isArray(v) ? 'an array' : `a ${typeof v}`;
}

/** A numeric option: absent takes `fallback`; anything but a positive integer is refused. */
function positiveInt(
  opts: ClientOptions,
  name: 'timeoutMs' | 'deadlineMs' | 'maxAttempts' | 'connections',
  fallback: number,
): number {
  const v: unknown = opts[name];
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1)
    throw new FlotillaError(
      'BAD_REQUEST',
      `${name} must be a positive integer, got ${describe(v)}`,
      false,
    );
  return v;
}

/** Option `name`, an integer from 1 to `max` (`fallback` when absent). */
function intUpTo(
  opts: ClientOptions,
  name: 'markRetryWrites' | 'writeWindow',
  fallback: number,
  max: number,
): number {
  const v = opts[name] ?? fallback;
  if (!Number.isInteger(v) || v < 1 || v > max)
    throw new FlotillaError(
      'BAD_REQUEST',
      `${name} must be an integer from 1 to ${max}, got ${String(opts[name])}`,
      false,
    );
  return v;
}

/**
 * An endpoint as the requests use it: a node's base URL without its trailing slash. Anything
 * else is refused here, naming the value, rather than by the HTTP stack on the first request as
 * "Invalid URL" without saying which endpoint.
 */
function checkEndpoint(endpoint: string): string {
  const refuse = (why: string) =>
    new FlotillaError(
      'BAD_REQUEST',
      `Endpoint ${JSON.stringify(endpoint)} ${why}: give a node's base URL, such as http://127.0.0.1:8001`,
      false,
    );
  if (typeof endpoint !== 'string') throw refuse('is not a string');
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw refuse('is not a URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw refuse(`has scheme ${JSON.stringify(url.protocol)}, not http: or https:`);
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '')
    throw refuse('has a path, query or fragment');
  return endpoint.replace(/\/$/, '');
}
