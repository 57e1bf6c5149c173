// The task board's web server: plain node:http, one page (examples/board/page/, served as it is
// under a strict Content-Security-Policy), a small JSON API, and a server-sent event stream of
// the board's changes. It keeps no state of its own: every answer comes from the cluster, so
// any number of these servers may run against one cluster.
//
// main.ts runs it.

import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { FlotillaError } from 'flotilla/client';
import { BoardError, parseTask, taskId, taskTitle, userName } from './board.js';
import type { Board } from './board.js';

const bodyBytesMax = 4_096;
const streamsMax = 100;
/**
 * Unread bytes a page's stream may hold before it is ended: the page reconnects by itself and
 * resumes after the last change it read, so a slow reader costs a reconnection, not memory.
 */
const streamUnreadBytesMax = 1 << 20;
/** How often the members are asked how they are, while any page follows the board. */
const membersPollMs = 1_000;

/** Scripts, styles and connections from this server only; nothing inline, no frames. */
const contentSecurityPolicy = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const assets: Readonly<Record<string, { file: string; type: string }>> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/board.css': { file: 'board.css', type: 'text/css; charset=utf-8' },
  '/board.js': { file: 'board.js', type: 'text/javascript; charset=utf-8' },
};

export interface BoardServerOptions {
  readonly endpoints: readonly string[];
  readonly host: string;
  readonly port: number;
}

export function parseOptions(argv: readonly string[], env: NodeJS.ProcessEnv): BoardServerOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      endpoints: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
    },
  });
  const list = values.endpoints ?? env['BOARD_ENDPOINTS'] ?? '';
  const endpoints = list
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '');
  if (endpoints.length === 0)
    throw new Error('No cluster endpoints: give --endpoints URL[,URL...] or BOARD_ENDPOINTS');
  for (const e of endpoints)
    if (!/^https?:\/\/[^/]+$/.test(e))
      throw new Error(`An endpoint is a base URL such as http://127.0.0.1:8101, got "${e}"`);
  const rawPort = values.port ?? env['BOARD_PORT'] ?? '8100';
  const port = Number(rawPort);
  if (!/^\d{1,5}$/.test(rawPort) || port > 65_535)
    throw new Error(`--port must be an integer from 0 to 65535, got "${rawPort}"`);
  return { endpoints, host: values.host ?? env['BOARD_HOST'] ?? '127.0.0.1', port };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  res.end(text);
}

/** Bad input and cluster errors alike become `{ error: { code, message } }`. */
function sendError(res: ServerResponse, err: unknown): void {
  // An event stream already under way has no room for a JSON error: end it (the page reconnects).
  if (res.headersSent) {
    console.error('board: error after the answer began', err);
    res.end();
    return;
  }
  if (err instanceof BoardError)
    return send(res, err.status, { error: { code: err.code, message: err.message } });
  if (err instanceof FlotillaError)
    // The client already retried on other members; what is left is worth showing as it is.
    return send(res, 503, { error: { code: err.code, message: err.message } });
  console.error('board: unexpected error', err);
  send(res, 500, { error: { code: 'INTERNAL', message: 'Unexpected error; see the server log' } });
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  if (!(req.headers['content-type'] ?? '').startsWith('application/json'))
    throw new BoardError('BAD_REQUEST', 'Send JSON (content-type: application/json)', 415);
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    bytes += chunk.length;
    if (bytes > bodyBytesMax)
      throw new BoardError('BAD_REQUEST', `The body is over ${bodyBytesMax} bytes`, 413);
    chunks.push(chunk);
  }
  let body: unknown;
  try {
    body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new BoardError('BAD_REQUEST', 'The body is not valid JSON');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new BoardError('BAD_REQUEST', 'The body must be a JSON object');
  return body as Record<string, unknown>;
}

export class BoardServer {
  private readonly pages = new Map<string, { text: string; type: string }>();
  private readonly streams = new Map<AbortController, ServerResponse>();
  /** The members' states as last sent to the pages, as the event's data. */
  private membersEvent = '';
  private readonly membersTimer: NodeJS.Timeout;
  private polling = false;
  private readonly memberIds = new Map<string, number>();
  private readonly http = createServer((req, res) => {
    this.handle(req, res).catch((err: unknown) => sendError(res, err));
  });

  constructor(
    private readonly board: Board,
    private readonly endpoints: readonly string[],
    pageDir: URL = new URL('../../../examples/board/page/', import.meta.url),
  ) {
    for (const [path, a] of Object.entries(assets))
      this.pages.set(path, { text: readFileSync(new URL(a.file, pageDir), 'utf8'), type: a.type });
    this.membersTimer = setInterval(() => void this.pollMembers(), membersPollMs);
    this.membersTimer.unref();
  }

  /**
   * Which members answer and which leads, pushed to every page when it changes: the page shows
   * a member go down and another take the lead while the board keeps working.
   */
  private async pollMembers(): Promise<void> {
    if (this.polling || this.streams.size === 0) return;
    this.polling = true;
    try {
      const states = await this.board.members(this.endpoints, membersPollMs - 200);
      // A member that is down cannot say its id: name it as it last answered.
      for (const m of states) if (m.id > 0) this.memberIds.set(m.endpoint, m.id);
      const members = states.map((m) => ({
        id: this.memberIds.get(m.endpoint) ?? 0,
        role: m.role,
      }));
      const data = JSON.stringify({ members });
      if (data === this.membersEvent) return;
      this.membersEvent = data;
      for (const res of this.streams.values()) res.write(`event: members\ndata: ${data}\n\n`);
    } finally {
      this.polling = false;
    }
  }

  /** Listens; a port another process holds is refused with a message naming it. */
  listen(host: string, port: number): Promise<string> {
    return new Promise((resolve, reject) => {
      this.http.once('error', (err: NodeJS.ErrnoException) =>
        reject(
          err.code === 'EADDRINUSE'
            ? new Error(
                `Cannot listen on ${host}:${port}: another process holds that port; choose another with --port`,
              )
            : err,
        ),
      );
      this.http.listen(port, host, () => {
        const a = this.http.address() as AddressInfo;
        resolve(`http://${host}:${a.port}/`);
      });
    });
  }

  async close(): Promise<void> {
    clearInterval(this.membersTimer);
    for (const s of this.streams.keys()) s.abort();
    this.http.closeAllConnections();
    await new Promise((r) => this.http.close(r));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://board');
    const page = this.pages.get(url.pathname);
    if (req.method === 'GET' && page !== undefined) {
      res.writeHead(200, {
        'content-type': page.type,
        'cache-control': 'no-cache',
        'content-security-policy': contentSecurityPolicy,
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
        'x-frame-options': 'DENY',
      });
      res.end(page.text);
      return;
    }
    if (req.method === 'GET' && url.pathname === '/api/board')
      return send(res, 200, await this.board.list());
    if (req.method === 'GET' && url.pathname === '/api/events') return this.follow(req, res, url);
    if (req.method === 'POST' && url.pathname.startsWith('/api/tasks')) {
      const body = await readJson(req);
      switch (url.pathname) {
        case '/api/tasks':
          return send(
            res,
            200,
            await this.board.add(userName(body['user']), taskTitle(body['title'])),
          );
        case '/api/tasks/claim':
          return send(res, 200, await this.board.claim(taskId(body['id']), userName(body['user'])));
        case '/api/tasks/done':
          return send(
            res,
            200,
            await this.board.complete(taskId(body['id']), userName(body['user'])),
          );
        case '/api/tasks/delete':
          return send(res, 200, await this.board.remove(taskId(body['id'])));
      }
    }
    send(res, 404, { error: { code: 'NOT_FOUND', message: `No ${req.method} ${url.pathname}` } });
  }

  /**
   * The board's changes as server-sent events, each with its revision as the event id. A
   * browser that lost the stream reconnects by itself and sends the last id it saw
   * (Last-Event-ID): the watch resumes after it, so no change is missed or shown twice. The
   * first connection gives the revision of the board it loaded (`?after=`).
   */
  private async follow(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const raw = String(req.headers['last-event-id'] ?? url.searchParams.get('after') ?? '');
    const after = Number(raw);
    if (!/^\d{1,15}$/.test(raw) || !Number.isSafeInteger(after))
      throw new BoardError('BAD_REQUEST', `after must be a revision, got "${raw}"`);
    if (this.streams.size >= streamsMax)
      throw new BoardError('BUSY', `This server already streams to ${streamsMax} pages`, 503);
    const ac = new AbortController();
    this.streams.set(ac, res);
    res.on('close', () => ac.abort());
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
    });
    // Tell the browser how soon to come back, and show the stream is open at once.
    res.write(`retry: 1000\nevent: open\ndata: {"after":${after}}\n\n`);
    if (this.membersEvent !== '') res.write(`event: members\ndata: ${this.membersEvent}\n\n`);
    try {
      for await (const batch of this.board.changes(after, ac.signal)) {
        if (batch.progress === true) {
          res.write(`id: ${batch.revision}\nevent: progress\ndata: {}\n\n`);
          continue;
        }
        const changes = batch.events.map((e) => ({
          id: e.kv.key.slice(e.kv.key.lastIndexOf('/') + 1),
          task: e.type === 'put' ? parseTask(e.kv) : null,
        }));
        res.write(
          `id: ${batch.revision}\nevent: change\ndata: ${JSON.stringify({ revision: batch.revision, changes })}\n\n`,
        );
        if (res.writableLength > streamUnreadBytesMax) break;
      }
    } catch (err) {
      // COMPACTED: the changes since `after` are gone; the page must load the board again.
      const code = err instanceof FlotillaError ? err.code : 'INTERNAL';
      if (code !== 'COMPACTED') console.error('board: watch ended', err);
      if (!res.writableEnded) res.write(`event: reload\ndata: ${JSON.stringify({ code })}\n\n`);
    } finally {
      this.streams.delete(ac);
      res.end();
    }
  }
}
