// Small helpers of the client: a sleep an abort cuts short, picking set fields, refusing
// options a call does not have, and telling a node's certificate this client refused.

import { verifyMeaning } from '../base/certificate-verdict.js';
import { closestName } from '../base/closest.js';
import { FlotillaError } from '../base/errors.js';

/** Resolves after `ms`, or at once when `signal` aborts (never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Asks `candidates` in turn for one answer, the next asked when the one before failed or has
 * not answered within `hedgeMs`: a candidate that takes requests and answers none (a frozen
 * process) costs that long, not the whole of `timeoutMs`. Resolves with the first answer (the
 * questions still open are aborted); rejects at once with an error `fatal` says every
 * candidate would give, else with the last failure once all failed or `timeoutMs` passed.
 */
export function hedged<C, T>(
  candidates: readonly C[],
  ask: (candidate: C, signal: AbortSignal) => Promise<T>,
  o: { readonly hedgeMs: number; readonly timeoutMs: number; fatal(err: unknown): boolean },
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const stop = new AbortController();
    let next = 0;
    let open = 0;
    let settled = false;
    let last: Error | null = null;
    let hedge: NodeJS.Timeout | undefined;
    const finish = (settle: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(hedge);
      clearTimeout(deadline);
      stop.abort();
      settle();
    };
    const deadline = setTimeout(
      () =>
        finish(() =>
          reject(last ?? new FlotillaError('TIMEOUT', `No answer within ${o.timeoutMs} ms`, false)),
        ),
      o.timeoutMs,
    );
    const launch = (): void => {
      clearTimeout(hedge);
      if (settled || next >= candidates.length) return;
      const candidate = candidates[next++] as C;
      open++;
      if (next < candidates.length) hedge = setTimeout(launch, o.hedgeMs);
      ask(candidate, stop.signal).then(
        (answer) => finish(() => resolve(answer)),
        (err: unknown) => {
          open--;
          if (settled) return;
          const e = err instanceof Error ? err : new Error(String(err));
          last = e;
          if (o.fatal(e)) finish(() => reject(e));
          else if (next < candidates.length) launch();
          else if (open === 0) finish(() => reject(e));
        },
      );
    };
    launch();
  });
}

/** The fields of `o` named by `keys` that are set. */
export function pick<T extends object, K extends keyof T>(o: T, ...keys: K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {};
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k];
  return out;
}

/**
 * Refuses BAD_REQUEST an options object with a field `where` does not take (`signal` is taken
 * everywhere): a misspelt option (`prefx`, `timeout` for `timeoutMs`) was ignored, and the call
 * did something else than asked, such as reading one key for a prefix, as the server refuses
 * unknown fields (UNKNOWN_FIELD).
 */
export function checkOptions(o: object, where: string, names: readonly string[]): void {
  for (const [k, v] of Object.entries(o)) {
    // A field left undefined asks for nothing (a spread of optional settings), as pick reads it.
    if (k === 'signal' || v === undefined || names.includes(k)) continue;
    const meant = closestName(k, names);
    throw new FlotillaError(
      'BAD_REQUEST',
      `${where} has no option ${JSON.stringify(k)}${meant === undefined ? '' : ` (did you mean "${meant}"?)`}; it takes ${names.length === 0 ? 'only signal' : `${names.join(', ')} and signal`}`,
      false,
    );
  }
}

/**
 * The code of a node's certificate that this client's TLS handshake refused (not signed by a
 * CA it trusts, expired, not naming the host dialled), or null for any other failure. Such a
 * refusal comes back on every attempt at that node until its certificate or this client's CA
 * changes: the client does not try that node again within the call.
 */
export function refusedCertificateCode(err: unknown): string | null {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && Object.hasOwn(verifyMeaning, code) ? code : null;
}

/**
 * The code of a TLS handshake that the other end answered without TLS (a plain HTTP port, a
 * plain binary protocol port: OpenSSL reads their bytes as a record of no TLS version), or
 * null for any other failure. Such a port answers so on every attempt until it is named by its
 * scheme (http://): the client does not try it again within the call.
 */
export function notTlsCode(err: unknown): string | null {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ERR_SSL_WRONG_VERSION_NUMBER' ? code : null;
}

/**
 * The code of a failure of a connection that no retry gets past (a certificate refused, a
 * port without TLS dialled with TLS), or null.
 */
export function refusalCode(err: unknown): string | null {
  return refusedCertificateCode(err) ?? notTlsCode(err);
}

/**
 * The CONNECTION errors of an endpoint that will fail the same way on every attempt (its
 * certificate refused, a port that speaks TLS named http://, or a port without TLS named
 * https://), with what went wrong.
 */
const refusedEndpoints = new WeakMap<FlotillaError, string>();

/** Marks `e` as the failure of an endpoint that no retry helps, for `why`; answers `e`. */
export function markRefusedEndpoint(e: FlotillaError, why: string): FlotillaError {
  refusedEndpoints.set(e, why);
  return e;
}

/**
 * Marks `e`, raised for `cause`, as the failure of a refused endpoint when `cause` is a refused
 * certificate or an answer without TLS (refusalCode); answers `e`.
 */
export function withRefusalCause(e: FlotillaError, cause: unknown): FlotillaError {
  const code = refusalCode(cause);
  return code === null ? e : markRefusedEndpoint(e, code);
}

/**
 * What went wrong in `err`, for an error message: OpenSSL's "wrong version number" comes as
 * its error queue ("80EC...:error:0A00010B:SSL routines:ssl3_get_record:wrong version
 * number:../deps/openssl/...:350:" and a newline), which tells a user nothing, so it is said
 * in words; anything else as its message.
 */
export function failureText(err: unknown): string {
  if (notTlsCode(err) !== null)
    return 'the TLS handshake was answered without TLS (ERR_SSL_WRONG_VERSION_NUMBER)';
  return err instanceof Error ? err.message : String(err);
}

/** What `e` was marked for (markRefusedEndpoint), or null. */
export function refusedEndpoint(e: FlotillaError): string | null {
  return refusedEndpoints.get(e) ?? null;
}

/**
 * A hint for a failure that a wrong scheme, port or CA explains, to an endpoint that never
 * answered: a port serving TLS closes a plain HTTP connection without a word ("other side
 * closed", as a node dying mid-request does, hence the "if"; a node of this release answers it
 * a 400 that says so instead), a plain HTTP port answers a TLS handshake with bytes that are no
 * TLS record ("wrong version number"), a node's certificate signed by a CA this client does not
 * trust, and a port of another protocol answers what undici cannot parse as HTTP.
 */
export function schemeHint(endpoint: string, err: unknown): string {
  const e = err as { code?: unknown };
  if (endpoint.startsWith('http:') && e.code === 'UND_ERR_SOCKET')
    return ' (if the node serves its clients over TLS, its endpoint is https://)';
  if (endpoint.startsWith('https:') && e.code === 'ERR_SSL_WRONG_VERSION_NUMBER')
    return ' (the port answered without TLS: if the node serves plain HTTP, its endpoint is http://)';
  // A cluster's own CA, which the system does not trust.
  if (
    endpoint.startsWith('https:') &&
    (e.code === 'SELF_SIGNED_CERT_IN_CHAIN' ||
      e.code === 'DEPTH_ZERO_SELF_SIGNED_CERT' ||
      e.code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' ||
      e.code === 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY')
  )
    return " (the node's certificate is signed by a CA this client does not trust: give the cluster's CA, tls.ca, or --cacert with the CLI)";
  // A port that requires a client certificate closes a handshake without one.
  if (endpoint.startsWith('https:') && e.code === 'UND_ERR_SOCKET')
    return ' (if the cluster requires client certificates, give one: tls.cert and tls.key, or --cert and --key with the CLI)';
  // A node's peer port and its binary client protocol port answer in frames of their own.
  if ((err as Error).name === 'HTTPParserError')
    return " (the port answered, but not in HTTP: an endpoint is a node's client port, listenClient, not its peer port or its binary protocol port)";
  return '';
}
