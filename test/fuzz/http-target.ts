// The HTTP API under fuzz (docs/API.md): every input is the raw bytes of one connection.
// `structured` inputs are well-formed HTTP/1.1 requests whose body (a mutated valid body),
// path, method or headers were mutated; `mutated` ones are such requests with their bytes
// mutated; `random` ones are random bytes, some after a plausible request line. Each goes on a
// connection of its own; all but the well-formed ones are half-closed after the input, so a
// request cut short ends there rather than at the node's header timeout.
//
// The oracle: an answer is a success, or an error whose body is `{"error": {code, message,
// indefinite}}` with a code of src/base/errors.ts that a node sends, the status that code
// has (src/api/errors.ts), and never INTERNAL (an exception the node did not expect); a
// well-formed request is always answered; anything else closes the connection.

import { connect } from 'node:net';
import { isErrorCode } from '../../src/base/errors.js';
import { httpStatusOf, isNodeErrorCode } from '../../src/api/errors.js';
import type { FuzzRng } from './gen.js';
import { mutateBytes, mutateJson, randomJson } from './gen.js';
import { bodyTemplates, fieldPool } from './bodies.js';
import { unlessLogged, type FuzzInput, type FuzzTarget, type Verdict } from './run.js';

const getPaths = ['/v1/status', '/v1/cluster/status', '/healthz', '/readyz', '/metrics'];
const contentTypes = [
  'application/json',
  'Application/JSON; charset=UTF-8',
  'application/json; charset=latin1',
  'text/plain',
  'application/x-www-form-urlencoded',
  '',
];

export function generateHttp(rng: FuzzRng): FuzzInput {
  const r = rng.int(100);
  if (r < 15) {
    const prefix = rng.chance(0.5)
      ? rng.pick(['GET / HTTP/1.1\r\n', 'POST /v1/kv/put HTTP/1.1\r\n'])
      : '';
    return {
      kind: 'random',
      what: prefix === '' ? 'random bytes' : `random bytes after "${prefix.trim()}"`,
      bytes: Buffer.concat([Buffer.from(prefix), rng.bytes(rng.length(600))]),
    };
  }
  const { bytes, what } = structuredRequest(rng);
  if (r < 35) return { kind: 'mutated', what, bytes: mutateBytes(rng, bytes) };
  return { kind: 'structured', what, bytes };
}

function structuredRequest(rng: FuzzRng): { bytes: Buffer; what: string } {
  let method = 'POST';
  let path: string;
  let body: Buffer | null;
  if (rng.chance(0.07)) {
    method = 'GET';
    path = rng.pick(getPaths);
    body = null;
  } else {
    const t = rng.pick(bodyTemplates);
    path = t.path;
    const json = rng.chance(0.85)
      ? mutateJson(rng, t.body, fieldPool, new Set(t.pinned ?? []))
      : rng.chance(0.5)
        ? t.body
        : randomJson(rng, 3, fieldPool);
    let text = JSON.stringify(json);
    if (rng.chance(0.1)) text = textMutation(rng, text);
    body = Buffer.from(text);
  }
  if (rng.chance(0.05)) method = rng.pick(['GET', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'HEAD']);
  if (rng.chance(0.05))
    path = rng.pick([
      `${path}?x=${rng.int(9)}`,
      `${path}/`,
      path.toUpperCase(),
      '/v1/kv/%00',
      '/../v1/kv/put',
      '/v1/' + 'x'.repeat(rng.length(9_000)),
    ]);
  const headers = [`Host: fuzz`];
  const type = rng.chance(0.9) ? 'application/json' : rng.pick(contentTypes);
  if (body !== null && type !== '') headers.push(`Content-Type: ${type}`);
  if (body !== null) headers.push(`Content-Length: ${body.length}`);
  if (rng.chance(0.03)) headers.push(`X-Flotilla-Member: ${rng.pick(['1', '2', '-1', 'x'])}`);
  const head = `${method} ${path} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n`;
  return {
    bytes: Buffer.concat([Buffer.from(head), body ?? Buffer.alloc(0)]),
    what: `${method} ${path.slice(0, 60)}`,
  };
}

/** JSON text that is not quite JSON: duplicate keys, bad escapes, lone surrogates, cuts. */
function textMutation(rng: FuzzRng, text: string): string {
  switch (rng.int(6)) {
    case 0:
      return text.replace(/^\{/, '{"key":"dup",');
    case 1:
      return text.slice(0, rng.int(text.length + 1));
    case 2:
      return text.replace(/"$|"(?=[,}])/, '\\ud800"');
    case 3:
      return text + rng.pick(['', ' ', ',', '}', '\u0000', 'null']);
    case 4:
      return `[${text}]`;
    default:
      return text.replace(/:/, ':\\x');
  }
}

/** What came back on one connection: an answer's head and body, or nothing before close. */
interface Exchange {
  readonly status: number | null;
  readonly headers: Map<string, string>;
  readonly body: Buffer;
  readonly stream: boolean;
}

function exchange(port: number, bytes: Buffer, halfClose: boolean): Promise<Exchange> {
  const head = bytes.subarray(0, 5).toString('latin1') === 'HEAD ';
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, noDelay: true });
    let got = Buffer.alloc(0);
    let settled = false;
    const finish = (e: Exchange): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve(e);
    };
    const parse = (closed: boolean): void => {
      const end = got.indexOf('\r\n\r\n');
      if (end < 0) {
        if (closed) finish({ status: null, headers: new Map(), body: got, stream: false });
        return;
      }
      const lines = got.subarray(0, end).toString('latin1').split('\r\n');
      const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(lines[0] ?? '')?.[1] ?? NaN);
      const headers = new Map<string, string>();
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        headers.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
      }
      const rest = got.subarray(end + 4);
      if (headers.get('transfer-encoding') === 'chunked') {
        if (headers.get('content-type')?.startsWith('application/x-ndjson') === true)
          return finish({ status, headers, body: Buffer.alloc(0), stream: true });
        const body = dechunk(rest);
        if (body !== null || closed) finish({ status, headers, body: body ?? rest, stream: false });
        return;
      }
      // An answer to HEAD announces the length of a body it does not carry (RFC 9110).
      const length = head ? 0 : Number(headers.get('content-length') ?? '0');
      if (rest.length >= length || closed) finish({ status, headers, body: rest, stream: false });
    };
    socket.on('connect', () => {
      socket.write(bytes);
      if (halfClose) socket.end();
    });
    socket.on('data', (c: Buffer) => {
      got = Buffer.concat([got, c]);
      parse(false);
    });
    socket.on('error', () => undefined);
    socket.on('close', () => parse(true));
  });
}

/** A whole chunked body, decoded; null while its last chunk has not arrived. */
function dechunk(b: Buffer): Buffer | null {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = b.indexOf('\r\n', at);
    if (eol < 0) return null;
    const size = parseInt(b.subarray(at, eol).toString('latin1'), 16);
    if (!Number.isFinite(size)) return null;
    if (size === 0) return Buffer.concat(parts);
    if (b.length < eol + 2 + size + 2) return null;
    parts.push(b.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
}

/** Nothing but line breaks, which a server skips before a request (RFC 9112 2.2). */
function noRequest(input: FuzzInput): boolean {
  return /^[\r\n]*$/.test(input.bytes.toString('latin1'));
}

/** Judges one exchange against the error contract of docs/API.md. */
export function judgeHttp(input: FuzzInput, e: Exchange): Verdict {
  if (e.status === null) {
    // Only a connection that sent no request may be closed unanswered.
    if (noRequest(input)) return { ok: true, outcome: 'closed' };
    return { ok: false, failure: `closed without an answer (saw ${e.body.length} bytes)` };
  }
  if (!Number.isInteger(e.status))
    return { ok: false, failure: 'an answer without an HTTP/1.1 status line' };
  if (e.stream)
    return e.status === 200
      ? { ok: true, outcome: 'ok' }
      : { ok: false, failure: `a stream with status ${e.status}` };
  if (e.status < 400) return { ok: true, outcome: 'ok' };
  // An answer to HEAD has no body (RFC 9110), so its error code cannot be seen.
  if (input.bytes.subarray(0, 5).toString('latin1') === 'HEAD ')
    return { ok: true, outcome: `HEAD ${e.status}` };
  let json: unknown;
  try {
    json = JSON.parse(e.body.toString('utf8'));
  } catch {
    return {
      ok: false,
      failure: `status ${e.status} with a body that is not JSON: ${e.body.toString('utf8').slice(0, 200)}`,
    };
  }
  const err = (json as { error?: { code?: unknown; message?: unknown; indefinite?: unknown } })
    .error;
  if (e.status === 503 && err === undefined && (json as { ready?: unknown }).ready === false)
    return { ok: true, outcome: 'not-ready' };
  if (err === undefined || typeof err.code !== 'string')
    return {
      ok: false,
      failure: `status ${e.status} without an error code: ${JSON.stringify(json).slice(0, 200)}`,
    };
  const code = err.code;
  if (!isErrorCode(code) || !isNodeErrorCode(code))
    return { ok: false, failure: `status ${e.status} with code ${code}, not a code a node sends` };
  if (code === 'INTERNAL')
    return {
      ok: false,
      failure: `INTERNAL (an exception the node did not expect): ${String(err.message)}`,
    };
  if (httpStatusOf[code] !== e.status)
    return {
      ok: false,
      failure: `code ${code} with status ${e.status}, documented ${httpStatusOf[code]}`,
    };
  if (typeof err.message !== 'string' || err.message.length === 0)
    return { ok: false, failure: `code ${code} without a message` };
  if (typeof err.indefinite !== 'boolean')
    return { ok: false, failure: `code ${code} without "indefinite"` };
  return { ok: true, outcome: code };
}

export interface HttpTargetOptions {
  /** What the node logged at error level since last taken: each line is a bug. */
  readonly internalErrors: string[];
  readonly port: number;
  /** A put and a get after the run; null when they work. */
  readonly stillServes: () => Promise<string | null>;
  readonly clear?: () => Promise<void>;
  readonly close: () => Promise<void>;
}

export function httpTarget(o: HttpTargetOptions): FuzzTarget {
  return {
    protocol: 'http',
    generate: generateHttp,
    exercise: async (input) => {
      const halfClose = input.kind !== 'structured';
      const first = await exchange(o.port, input.bytes, halfClose);
      // A half-close is the client going away: node:http drops a request still being served
      // (a write waiting for its commit). Such an input is sent again and left open, so the
      // node answers it, or its header and request timeouts end it with a 408.
      const e =
        first.status !== null || !halfClose || noRequest(input)
          ? first
          : await exchange(o.port, input.bytes, false);
      return unlessLogged(judgeHttp(input, e), o.internalErrors);
    },
    stillServes: o.stillServes,
    ...(o.clear === undefined ? {} : { clear: o.clear }),
    close: o.close,
  };
}
