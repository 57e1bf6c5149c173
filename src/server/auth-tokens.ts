// The tokens a node accepts (`authTokensFile`) and the one it presents to other members
// (`authNodeTokenFile`): read and checked at start, with a ConfigError naming the file, the
// entry and what is wrong, never the token itself; and read again when the tokens file
// changes, so that tokens can be added or revoked without a restart.
//
// The tokens file, YAML or JSON:
//
//   tokens:
//     - { name: ops, role: admin, sha256: 5e88...42d8 }   # the SHA-256 of the token, in hex
//     - { name: app, role: write, token: 3q2+7w... }      # or the token itself
//
// A digest is the better entry: the file then holds nothing a client could present, and can be
// shared with whoever deploys the members. `flotilla token` makes a token and its entry.

import { readFileSync, statSync } from 'node:fs';
import { inspect } from 'node:util';
import type { Logger } from 'pino';
import { parse as parseYaml } from 'yaml';
import {
  TokenBook,
  bearerHeader,
  roles,
  sha256,
  tokenProblem,
  type Role,
  type TokenEntry,
} from '../api/auth.js';
import { ConfigError } from './config-error.js';

/**
 * A secret that does not leak by accident: JSON, `util.inspect` (and so pino and
 * console.log) and string conversion show `[redacted]`; only `reveal()` gives the value.
 */
export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  reveal(): string {
    return this.#value;
  }

  toJSON(): string {
    return '[redacted]';
  }

  toString(): string {
    return '[redacted]';
  }

  [inspect.custom](): string {
    return 'Secret [redacted]';
  }
}

/** A node's authentication settings, resolved from the two files. */
export interface NodeAuth {
  readonly tokensFile: string;
  readonly nodeTokenFile: string;
  /** The book as read at start; `LiveTokenBook` follows the file from there. */
  readonly book: TokenBook;
  /** The admin token this node presents on the calls it makes to other members. */
  readonly nodeToken: Secret;
}

const namePattern = /^[A-Za-z0-9._@-]{1,64}$/;
const entryFields = new Set(['name', 'role', 'token', 'sha256']);

/** Parses a tokens file's text; `source` names it in errors. */
export function parseTokensFile(text: string, source: string): TokenBook {
  let parsed: unknown;
  try {
    parsed = parseYaml(text);
  } catch (err) {
    // Where, not what: the parser's message quotes the lines around the fault, and they may
    // hold a token (tokens are never put in messages or logs).
    const e = err as { linePos?: readonly { line: number; col: number }[]; code?: string };
    const at = e.linePos?.[0];
    throw new ConfigError(
      `${source} is not valid YAML/JSON${at === undefined ? '' : ` at line ${at.line}, column ${at.col}`}${typeof e.code === 'string' ? ` (${e.code})` : ''}`,
    );
  }
  const list = (parsed as { tokens?: unknown } | null)?.tokens;
  if (
    parsed === null ||
    typeof parsed !== 'object' ||
    Array.isArray(parsed) ||
    Object.keys(parsed).some((k) => k !== 'tokens') ||
    !Array.isArray(list)
  )
    throw new ConfigError(
      `${source} must hold a mapping with one field, "tokens": a list of {name, role, sha256 or token}`,
    );
  if (list.length === 0)
    throw new ConfigError(`${source} lists no tokens: no client (and no member) could be admitted`);
  const entries: TokenEntry[] = [];
  const names = new Map<string, number>();
  const digests = new Map<string, number>();
  list.forEach((raw: unknown, i) => {
    const at = `${source}: tokens[${i}]`;
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
      throw new ConfigError(`${at} must be a mapping of name, role and sha256 (or token)`);
    const r = raw as Record<string, unknown>;
    for (const k of Object.keys(r))
      if (!entryFields.has(k))
        throw new ConfigError(`${at} has unknown field "${k}" (fields: name, role, sha256, token)`);
    const name = r['name'];
    if (typeof name !== 'string' || !namePattern.test(name))
      throw new ConfigError(
        `${at}: name must be 1-64 of A-Z a-z 0-9 . _ @ -, got ${JSON.stringify(name ?? null)}`,
      );
    const entry = `${at} ("${name}")`;
    const role = r['role'];
    if (typeof role !== 'string' || !(roles as readonly string[]).includes(role))
      throw new ConfigError(
        `${entry}: role must be one of ${roles.join(', ')}, got ${JSON.stringify(role ?? null)}`,
      );
    const digest = digestOf(r, entry);
    const hex = digest.toString('hex');
    const sameName = names.get(name);
    if (sameName !== undefined)
      throw new ConfigError(`${entry}: the name is already used by tokens[${sameName}]`);
    const sameToken = digests.get(hex);
    if (sameToken !== undefined)
      throw new ConfigError(
        `${entry} has the same token as tokens[${sameToken}]: each holder needs a token of its own`,
      );
    names.set(name, i);
    digests.set(hex, i);
    entries.push({ name, role: role as Role, sha256: digest });
  });
  return new TokenBook(entries);
}

/** The entry's digest: given, or of the token given. The token never appears in a message. */
function digestOf(r: Record<string, unknown>, entry: string): Buffer {
  const token = r['token'];
  const digest = r['sha256'];
  if ((token === undefined) === (digest === undefined))
    throw new ConfigError(
      `${entry} must have exactly one of sha256 (the token's SHA-256 in hex) and token`,
    );
  if (digest !== undefined) {
    if (typeof digest !== 'string' || !/^[0-9a-fA-F]{64}$/.test(digest))
      throw new ConfigError(`${entry}: sha256 must be 64 hex digits (a SHA-256 digest)`);
    return Buffer.from(digest, 'hex');
  }
  if (typeof token !== 'string') throw new ConfigError(`${entry}: token must be a string`);
  const problem = tokenProblem(token);
  if (problem !== null) throw new ConfigError(`${entry}: the token ${problem}`);
  return sha256(token);
}

function readText(path: string, field: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`Cannot read ${field} ${path}: ${(err as Error).message}`);
  }
}

/**
 * The node's authentication from its two files, or null when `tokensFile` is empty (no
 * authentication: every request is served, as without this feature). Both files or neither:
 * the members call each other's client port, and with authentication on each must present an
 * admin token of the book.
 */
export function resolveNodeAuth(tokensFile: string, nodeTokenFile: string): NodeAuth | null {
  if (tokensFile === '') {
    if (nodeTokenFile !== '')
      throw new ConfigError(
        'authNodeTokenFile is set without authTokensFile: set both to turn authentication on, or neither',
      );
    return null;
  }
  const book = parseTokensFile(readText(tokensFile, 'authTokensFile'), tokensFile);
  if (nodeTokenFile === '')
    throw new ConfigError(
      'authTokensFile needs authNodeTokenFile too: members call each other (forwarding, member ' +
        'lists, joins) and must present an admin token of the tokens file',
    );
  const token = readText(nodeTokenFile, 'authNodeTokenFile').trim();
  const problem = tokenProblem(token);
  if (problem !== null)
    throw new ConfigError(`The token in authNodeTokenFile ${nodeTokenFile} ${problem}`);
  checkNodeToken(book, token, tokensFile, nodeTokenFile);
  return { tokensFile, nodeTokenFile, book, nodeToken: new Secret(token) };
}

function checkNodeToken(book: TokenBook, token: string, tokensFile: string, nodeTokenFile: string) {
  const holder = book.find(token);
  if (holder === null)
    throw new ConfigError(
      `The token in authNodeTokenFile ${nodeTokenFile} is not in authTokensFile ${tokensFile}`,
    );
  if (holder.role !== 'admin')
    throw new ConfigError(
      `The token in authNodeTokenFile ${nodeTokenFile} is "${holder.name}", whose role is ` +
        `${holder.role}; the calls members make to each other need admin`,
    );
}

/** The headers a member's own calls to another member carry: its admin token, when on. */
export function memberAuthHeaders(auth: NodeAuth | null): Record<string, string> {
  return auth === null ? {} : { authorization: bearerHeader(auth.nodeToken.reveal()) };
}

/**
 * The book in force, following the tokens file: when the file changes it is read again, and a
 * file that passes every start-up check (the node's own token still admin included) replaces
 * the book; one that does not is logged and ignored, the last good book staying in force.
 */
export class LiveTokenBook implements Disposable {
  private book: TokenBook;
  /** The file as last seen (taken at once, so a change right after the start is not missed). */
  private seen: string;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly auth: NodeAuth,
    private readonly log: Logger,
    o: { readonly pollMs: number },
  ) {
    this.book = auth.book;
    this.seen = this.look();
    // Polled by this process's own timer against the stat taken here: a watcher whose first
    // look comes later (fs.watchFile's is asynchronous) takes a change made meanwhile for the
    // file as it always was, and would never load it.
    this.timer = setInterval(() => {
      const now = this.look();
      if (now === this.seen) return;
      this.seen = now;
      this.reload();
    }, o.pollMs);
    this.timer.unref();
  }

  /** What tells one version of the file from another: inode, size and modification time. */
  private look(): string {
    try {
      const st = statSync(this.auth.tokensFile);
      return `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch (err) {
      return `missing: ${(err as NodeJS.ErrnoException).code ?? 'error'}`;
    }
  }

  current(): TokenBook {
    return this.book;
  }

  /** Reads the file again; the outcome is logged (counts and the file, never a token). */
  reload(): boolean {
    const file = this.auth.tokensFile;
    try {
      const book = parseTokensFile(readText(file, 'authTokensFile'), file);
      checkNodeToken(book, this.auth.nodeToken.reveal(), file, this.auth.nodeTokenFile);
      this.book = book;
      this.log.info({ file, tokens: book.size }, 'tokens file changed: reloaded');
      return true;
    } catch (err) {
      this.log.warn(
        { file, err: (err as Error).message },
        'tokens file changed but cannot be used; the tokens read before stay in force',
      );
      return false;
    }
  }

  [Symbol.dispose](): void {
    clearInterval(this.timer);
  }
}
