// One direction of one link between two nodes: a TCP proxy on 127.0.0.1 that the fault injector
// can cut. Flotilla's transport sends on the connection it dialled and receives on the ones its
// peers dialled (docs/PROTOCOL.md), so a proxy in front of node j that only node i dials carries
// exactly the traffic i -> j (plus the handshake answer). Cutting it is a one-way partition;
// cutting both directions is a full one.
//
// A cut link behaves like a black hole, the way a dropped route or a dead switch does: existing
// connections are torn down (what they had in flight is lost), and new connections are
// accepted but go nowhere and carry nothing until the link heals, when they are closed so the
// dialler reconnects through the healed link. Nothing is ever forwarded in part: a healed link
// starts on fresh connections, so no frame is cut in half.

import { createConnection, createServer, type Server, type Socket } from 'node:net';

export interface ProxyStats {
  readonly accepted: number;
  readonly blackholed: number;
  readonly bytesForwarded: number;
}

export class LinkProxy {
  private server: Server | null = null;
  private cut = false;
  /** Live forwarded pairs, so a cut can tear them down. */
  private readonly pairs = new Set<readonly [Socket, Socket]>();
  /** Connections accepted while cut, held open without a target. */
  private readonly holes = new Set<Socket>();
  private accepted = 0;
  private blackholed = 0;
  private bytesForwarded = 0;
  private listenPort = 0;

  constructor(
    /** Where traffic goes, host:port. */
    private readonly target: { readonly host: string; readonly port: number },
    readonly label: string,
  ) {}

  get port(): number {
    return this.listenPort;
  }

  get isCut(): boolean {
    return this.cut;
  }

  stats(): ProxyStats {
    return {
      accepted: this.accepted,
      blackholed: this.blackholed,
      bytesForwarded: this.bytesForwarded,
    };
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

  /** Starts dropping everything on this link. Idempotent. */
  cutLink(): void {
    if (this.cut) return;
    this.cut = true;
    for (const [a, b] of this.pairs) {
      a.destroy();
      b.destroy();
    }
    this.pairs.clear();
  }

  /** Lets traffic through again; connections opened while cut are closed so they redial. */
  heal(): void {
    if (!this.cut) return;
    this.cut = false;
    for (const h of this.holes) h.destroy();
    this.holes.clear();
  }

  async close(): Promise<void> {
    this.cutLink();
    for (const h of this.holes) h.destroy();
    this.holes.clear();
    const server = this.server;
    this.server = null;
    if (server !== null) await new Promise<void>((r) => server.close(() => r()));
  }

  private onConnection(client: Socket): void {
    this.accepted++;
    client.on('error', () => undefined);
    if (this.cut) {
      this.blackholed++;
      this.holes.add(client);
      client.on('data', () => undefined); // read and drop, like a black hole
      client.on('close', () => this.holes.delete(client));
      return;
    }
    const upstream = createConnection({ ...this.target, noDelay: true });
    upstream.on('error', () => undefined);
    const pair = [client, upstream] as const;
    this.pairs.add(pair);
    const teardown = (): void => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', teardown);
    upstream.on('close', teardown);
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
