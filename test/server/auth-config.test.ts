// Authentication settings (authTokensFile, authNodeTokenFile): every bad file refused at start
// with a ConfigError naming the file and the entry (never the token), the node's own token
// kept out of what a config prints, and the tokens file followed when it changes.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { sha256 } from '../../src/api/auth.js';
import { LiveTokenBook } from '../../src/server/auth-tokens.js';
import { ConfigError, configFromEnv, resolveNodeConfig } from '../../src/server/config.js';
import { createLogger } from '../../src/server/logging.js';

const adminToken = 'node-admin-token-0123456789';
const writeToken = 'app-write-token-0123456789';
let dir: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'flotilla-auth-config-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
function file(text: string): string {
  const path = join(dir, `f${files++}`);
  writeFileSync(path, text);
  return path;
}

const goodTokens = (): string =>
  JSON.stringify({
    tokens: [
      { name: 'members', role: 'admin', sha256: sha256(adminToken).toString('hex') },
      { name: 'app', role: 'write', token: writeToken },
    ],
  });

function configWith(auth: Record<string, unknown>) {
  return resolveNodeConfig({
    id: 1,
    dataDir: join(dir, 'data'),
    initialCluster: '1=127.0.0.1:7001@http://127.0.0.1:8001',
    ...auth,
  });
}

function refused(auth: Record<string, unknown>, pattern: RegExp): string {
  try {
    configWith(auth);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    assert.match(err.message, pattern);
    return err.message;
  }
  assert.fail(`expected a ConfigError matching ${String(pattern)}`);
}

void describe('authentication settings', () => {
  void it('are off, with no file, as before: zero configuration', () => {
    const c = configWith({});
    assert.equal(c.auth, null);
    assert.equal(c.authTokensFile, '');
  });

  void it('read a tokens file by digest or by token, from a file, the environment or flags', () => {
    const tokens = file(goodTokens());
    const nodeToken = file(`${adminToken}\n`);
    const env = configFromEnv({
      FLOTILLA_AUTH_TOKENS_FILE: tokens,
      FLOTILLA_AUTH_NODE_TOKEN_FILE: nodeToken,
    });
    const c = resolveNodeConfig(
      {
        id: 1,
        dataDir: join(dir, 'data'),
        initialCluster: '1=127.0.0.1:7001@http://127.0.0.1:8001',
      },
      env,
    );
    assert.ok(c.auth !== null);
    assert.equal(c.auth.book.size, 2);
    assert.deepEqual(c.auth.book.find(adminToken), { name: 'members', role: 'admin' });
    assert.deepEqual(c.auth.book.find(writeToken), { name: 'app', role: 'write' });
    assert.equal(c.auth.nodeToken.reveal(), adminToken, 'the trailing newline is not the token');
  });

  void it('keep the node token out of JSON, inspection and string conversion of the config', () => {
    const c = configWith({
      authTokensFile: file(goodTokens()),
      authNodeTokenFile: file(adminToken),
    });
    for (const shown of [JSON.stringify(c), inspect(c, { depth: 10 }), String(c.auth?.nodeToken)])
      assert.ok(!shown.includes(adminToken), shown);
    assert.match(JSON.stringify(c), /\[redacted\]/);
  });

  void it('refuse every bad tokens file, naming the file and entry and never the token', () => {
    const node = file(adminToken);
    const admin = { name: 'members', role: 'admin', token: adminToken };
    const cases: [unknown, RegExp][] = [
      [
        { tokens: [admin, { name: 'x', role: 'superuser', token: writeToken }] },
        /tokens\[1\] \("x"\): role must be one of read, write, admin, got "superuser"/,
      ],
      [
        { tokens: [admin, { name: 'x', role: 'read', token: adminToken }] },
        /tokens\[1\] \("x"\) has the same token as tokens\[0\]/,
      ],
      [
        {
          tokens: [admin, { name: 'x', role: 'read', sha256: sha256(adminToken).toString('hex') }],
        },
        /same token as tokens\[0\]/,
      ],
      [
        { tokens: [admin, { name: 'x', role: 'read', token: 'short' }] },
        /tokens\[1\] \("x"\): the token is 5 characters long; at least 16/,
      ],
      [
        { tokens: [admin, { name: 'x', role: 'read', token: 'has a space in it, see' }] },
        /character outside/,
      ],
      [
        { tokens: [admin, { name: 'members', role: 'read', token: writeToken }] },
        /name is already used by tokens\[0\]/,
      ],
      [{ tokens: [admin, { name: 'x', role: 'read' }] }, /exactly one of sha256/],
      [
        { tokens: [admin, { name: 'x', role: 'read', token: writeToken, sha256: 'ab' }] },
        /exactly one of sha256/,
      ],
      [
        { tokens: [admin, { name: 'x', role: 'read', sha256: 'abc' }] },
        /sha256 must be 64 hex digits/,
      ],
      [
        { tokens: [admin, { name: 'x', role: 'read', token: writeToken, note: 1 }] },
        /unknown field "note"/,
      ],
      [{ tokens: [admin, { role: 'read', token: writeToken }] }, /tokens\[1\]: name must be/],
      [{ tokens: [] }, /lists no tokens/],
      [{ tokenz: [] }, /must hold a mapping with one field, "tokens"/],
      [[admin], /must hold a mapping/],
    ];
    for (const [content, pattern] of cases) {
      const tokens = file(JSON.stringify(content));
      const message = refused({ authTokensFile: tokens, authNodeTokenFile: node }, pattern);
      assert.ok(message.includes(tokens), `names the file: ${message}`);
      assert.ok(!message.includes(adminToken) && !message.includes(writeToken), message);
    }
    refused(
      { authTokensFile: file('tokens: [\n'), authNodeTokenFile: node },
      /not valid YAML\/JSON/,
    );
    // A YAML fault next to a token: the parser's message quotes the line, token and all;
    // the refusal says where, not what (an operator's pass found the token in the log).
    const broken = refused(
      {
        authTokensFile: file(`tokens:\n  - { name: dash, role: read, token: ${writeToken}\n`),
        authNodeTokenFile: node,
      },
      /not valid YAML\/JSON at line \d+, column \d+/,
    );
    assert.ok(!broken.includes(writeToken), broken);
  });

  void it('refuse an unreadable file, and one of the two files without the other', () => {
    const missing = join(dir, 'no-such-file');
    refused(
      { authTokensFile: missing, authNodeTokenFile: file(adminToken) },
      /Cannot read authTokensFile .*no-such-file/,
    );
    refused(
      { authTokensFile: file(goodTokens()), authNodeTokenFile: missing },
      /Cannot read authNodeTokenFile/,
    );
    refused({ authTokensFile: file(goodTokens()) }, /authTokensFile needs authNodeTokenFile/);
    refused(
      { authNodeTokenFile: file(adminToken) },
      /authNodeTokenFile is set without authTokensFile/,
    );
  });

  void it('refuse a node token that is not an admin token of the book', () => {
    const tokens = file(goodTokens());
    refused(
      { authTokensFile: tokens, authNodeTokenFile: file('some-other-token-0123456789') },
      /is not in authTokensFile/,
    );
    const m = refused(
      { authTokensFile: tokens, authNodeTokenFile: file(writeToken) },
      /is "app", whose role is write; the calls members make to each other need admin/,
    );
    assert.ok(!m.includes(writeToken), m);
    refused({ authTokensFile: tokens, authNodeTokenFile: file('short') }, /at least 16/);
  });
});

void describe('LiveTokenBook', () => {
  void it('takes a changed file that passes the checks, and keeps the last good book otherwise', async () => {
    const tokens = file(goodTokens());
    const c = configWith({ authTokensFile: tokens, authNodeTokenFile: file(adminToken) });
    assert.ok(c.auth !== null);
    const lines: string[] = [];
    const log = createLogger(1, {
      level: 'info',
      format: 'json',
      out: { isTTY: false, write: (s: string) => void lines.push(s) },
    });
    using live = new LiveTokenBook(c.auth, log, { pollMs: 20 });
    const added = 'added-later-token-0123456789';
    writeFileSync(
      tokens,
      JSON.stringify({
        tokens: [
          { name: 'members', role: 'admin', token: adminToken },
          { name: 'late', role: 'read', token: added },
        ],
      }),
    );
    // The file is polled: wait for the new book, bounded.
    const deadline = Date.now() + 5_000;
    while (live.current().find(added) === null && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(live.current().find(added), { name: 'late', role: 'read' }, lines.join(''));
    assert.equal(live.current().find(writeToken), null, 'a token taken out is revoked');
    // A file that would lock the members out is not taken.
    writeFileSync(
      tokens,
      JSON.stringify({ tokens: [{ name: 'app', role: 'admin', token: writeToken }] }),
    );
    assert.equal(live.reload(), false);
    assert.deepEqual(live.current().find(added), { name: 'late', role: 'read' });
    assert.match(lines.join(''), /cannot be used; the tokens read before stay in force/);
    writeFileSync(tokens, 'tokens: nope');
    assert.equal(live.reload(), false);
    for (const t of [adminToken, writeToken, added]) assert.ok(!lines.join('').includes(t));
  });
});
