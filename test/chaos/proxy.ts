// The front of one member's port: a TCP proxy on 127.0.0.1 whose address is the one every node
// uses for that member (cluster.ts), and which the fault injector can cut per sender. Every
// member dials the same front, so the proxy tells senders apart by what they say first, not by
// the address they dialled (sniff.ts): the HELLO of the peer handshake names its `from`, and
// every HTTP request between members names its sender in `x-flotilla-member`. It buffers a
// connection's opening until the sniffer names the sender, then applies the link sender -> this
// member: forwards, replaying what it buffered, or black-holes.
//
// Flotilla's transport sends on the connection it dialled and receives on the ones its peers
// dialled (docs/PROTOCOL.md), and a member's HTTP requests go out and come back on connections
// it dialled; so the connections sender s opened to member t's front carry exactly the traffic
// s -> t (plus its answers). Cutting s at t's front is a one-way partition; cutting both
// directions is a full one. A cut at one front leaves every other sender's connections alone.
//
// A cut link behaves like a black hole, the way a dropped route or a dead switch does: the
// sender's existing connections are torn down (what they had in flight is lost), and its new
// connections are accepted, read and dropped, carrying nothing, until the link heals, when they
// are closed so the sender redials through the healed link. Nothing is ever forwarded in part:
// a healed link starts on fresh connections, so no frame is cut in half.
//
// A connection whose opening names no member (not a preface and HELLO, no header, something
// over the sniffer's bound, or an opening begun and not complete within `sniffTimeoutMs`) is
// forwarded as from an unknown sender, which no cut applies to: the member behind the proxy
// then sees exactly what it would without one, and refuses garbage itself. Members never open
// such connections, so the proxy counts them (`stats().unknown`, `unknownReasons()`), and the
// chaos run reports any as a problem: a partition that a connection could pass would be less
// than it says. A connection that sends nothing at all within `sniffTimeoutMs` is closed, as
// the member behind would close it (its handshake and header timeouts, 5 s), and only counted
// (`stats().silent`): it carried nothing, and forwarding it unnamed would let whatever it sent
// later pass every cut. A member's HTTP client can leave one behind: undici keeps a connection
// it opened for a request abandoned before it was written idle until its keep-alive timeout.

import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { Sniffer } from './sniff.js';

export interface ProxyStats {
  readonly accepted: number;
  /** Connections from a cut sender, held without a target. */
  readonly blackholed: number;
  /** Connections forwarded whose opening named no member. */
  readonly unknown: number;
  /** Connections closed for sending nothing within the sniff timeout. */
  readonly silent: number;
  readonly bytesForwarded: number;
}

export interface FrontProxyOptions {
  /**
   * An opening begun and not complete within this is forwarded as from an unknown sender; a
   * connection that sent nothing by then is closed.
   */
  readonly sniffTimeoutMs?: number;
}

/** A sender's connection: forwarded (with its upstream) or held in a black hole. */
interface Conn {
  /** The member that opened it; null when its opening named none. */
  readonly sender: number | null;
  readonly client: Socket;
  readonly upstream: Socket | null;
}

/** Longer than a node's handshake timeout (5 s): a node closes a silent dialler first. */
const DEFAULT_SNIFF_TIMEOUT_MS = 10_000;
/** Reasons kept for the report; the count goes on. */
const REASONS_KEPT = 10;

export class FrontProxy {
  private server: Server | null = null;
  /** Senders whose link to this member is cut. */
  private readonly cut = new Set<number>();
  private readonly conns = new Set<Conn>();
  /** Connections still being sniffed, so close() can end them. */
  private readonly sniffing = new Set<Socket>();
  private readonly reasons: string[] = [];
  private accepted = 0;
  private blackholed = 0;
  private unknown = 0;
  private silent = 0;
  private bytesForwarded = 0;
  private listenPort = 0;
  private readonly sniffTimeoutMs: number;

  constructor(
    /** Where traffic goes, host:port: the member's real port. */
    private readonly target: { readonly host: string; readonly port: number },
    readonly label: string,
    private readonly sniff: Sniffer,
    o: FrontProxyOptions = {},
  ) {
    this.sniffTimeoutMs = o.sniffTimeoutMs ?? DEFAULT_SNIFF_TIMEOUT_MS;
  }

  get port(): number {
    return this.listenPort;
  }

  stats(): ProxyStats {
    return {
      accepted: this.accepted,
      blackholed: this.blackholed,
      unknown: this.unknown,
      silent: this.silent,
      bytesForwarded: this.bytesForwarded,
    };
  }

  /** Why connections were taken as from an unknown sender (the first few). */
  unknownReasons(): readonly string[] {
    return this.reasons;
  }

  isCutFrom(sender: number): boolean {
    return this.cut.has(sender);
  }

  /** Listens on 127.0.0.1: on `port` if given, else on one the OS picks. */
  async listen(port = 0): Promise<number> {
    const server = createServer({ noDelay: true }, (s) => this.onConnection(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', () => undefined);
    this.server = server;
    const addr = server.address();
    if (addr === null || typeof addr === 'string') throw new Error(`${this.label}: no address`);
    this.listenPort = addr.port;
    return this.listenPort;
  }

  /** Drops everything `sender` sends to this member, from now on. Idempotent. */
  cutFrom(sender: number): void {
    if (this.cut.has(sender)) return;
    this.cut.add(sender);
    for (const c of this.conns) if (c.sender === sender) this.end(c);
  }

  /** Lets `sender` through again; its connections opened while cut close so it redials. */
  healFrom(sender: number): void {
    if (!this.cut.delete(sender)) return;
    for (const c of this.conns) if (c.sender === sender) this.end(c);
  }

  healAll(): void {
    for (const sender of [...this.cut]) this.healFrom(sender);
  }

  async close(): Promise<void> {
    for (const c of this.conns) this.end(c);
    for (const s of this.sniffing) s.destroy();
    this.sniffing.clear();
    const server = this.server;
    this.server = null;
    if (server !== null) await new Promise<void>((r) => server.close(() => r()));
  }

  private end(c: Conn): void {
    this.conns.delete(c);
    c.client.destroy();
    c.upstream?.destroy();
  }

  /** Buffers the opening until the sniffer names the sender (or gives up), then routes. */
  private onConnection(client: Socket): void {
    this.accepted++;
    client.on('error', () => undefined);
    this.sniffing.add(client);
    const chunks: Buffer[] = [];
    let decided = false;
    const decide = (sender: number | null, why: string | null): void => {
      if (decided) return;
      decided = true;
      clearTimeout(timer);
      client.off('data', onData);
      client.off('close', onClose);
      this.sniffing.delete(client);
      if (why !== null) {
        this.unknown++;
        if (this.reasons.length < REASONS_KEPT) this.reasons.push(`${this.label}: ${why}`);
      }
      this.route(client, sender, Buffer.concat(chunks));
    };
    const onData = (d: Buffer): void => {
      chunks.push(d);
      const s = this.sniff(Buffer.concat(chunks));
      if (s.kind === 'member') decide(s.id, null);
      else if (s.kind === 'unknown') decide(null, s.why);
    };
    const onClose = (): void => {
      decided = true;
      clearTimeout(timer);
      this.sniffing.delete(client);
    };
    const timer = setTimeout(() => {
      if (chunks.length > 0) {
        const got = chunks.reduce((n, c) => n + c.length, 0);
        decide(null, `${got} bytes and no complete opening within ${this.sniffTimeoutMs} ms`);
        return;
      }
      this.silent++;
      client.destroy();
    }, this.sniffTimeoutMs);
    client.on('data', onData);
    client.on('close', onClose);
  }

  private route(client: Socket, sender: number | null, head: Buffer): void {
    if (client.destroyed) return;
    if (sender !== null && this.cut.has(sender)) {
      this.blackholed++;
      const hole: Conn = { sender, client, upstream: null };
      this.conns.add(hole);
      client.on('data', () => undefined); // read and drop, like a black hole
      client.on('close', () => this.conns.delete(hole));
      return;
    }
    const upstream = createConnection({ ...this.target, noDelay: true });
    upstream.on('error', () => undefined);
    const pair: Conn = { sender, client, upstream };
    this.conns.add(pair);
    const teardown = (): void => {
      if (this.conns.has(pair)) this.end(pair);
    };
    client.on('close', teardown);
    upstream.on('close', teardown);
    this.bytesForwarded += head.length;
    upstream.write(head);
    client.on('data', (d: Buffer) => {
      this.bytesForwarded += d.length;
      if (!upstream.write(d)) client.pause();
    });
    upstream.on('drain', () => client.resume());
    upstream.on('data', (d: Buffer) => {
      this.bytesForwarded += d.length;
      if (!client.write(d)) upstream.pause();
    });
    client.on('drain', () => upstream.resume());
  }
}
