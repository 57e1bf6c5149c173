// A delay line for a kernel without sch_netem (hosts.ts, `degrade`). It runs inside a host's
// namespace, where iptables REDIRECT sends every new TCP connection the host opens to a
// degraded destination to one of its listening ports instead; it opens the real connection
// from a source port in its own range (which the REDIRECT rule leaves alone, or it would loop)
// and forwards what the host sends `delayMs` late, in order. What comes back is not delayed:
// as with netem on the host's interface, only what the host sends is.
//
//   node delay-relay.js DELAY_MS FIRST_SOURCE_PORT LAST_SOURCE_PORT MAX_LIFE_MS \
//        LISTEN_PORT=HOST:PORT ...
//
// It prints `ready` once every port listens, and exits when its standard input closes (the
// test that started it ended or let go of it) or after MAX_LIFE_MS, whichever comes first.

import { connect, createServer, type Server, type Socket } from 'node:net';

const [delayArg, firstArg, lastArg, lifeArg, ...routeArgs] = process.argv.slice(2);
const delayMs = Number(delayArg);
const firstPort = Number(firstArg);
const lastPort = Number(lastArg);
const maxLifeMs = Number(lifeArg);
const routes = routeArgs.map((r) => {
  const m = /^(\d+)=([\d.]+):(\d+)$/.exec(r);
  if (m === null) throw new Error(`A route is LISTEN_PORT=HOST:PORT, saw ${r}`);
  return { listen: Number(m[1]), host: m[2] as string, port: Number(m[3]) };
});
if (
  !(delayMs >= 0) ||
  !Number.isInteger(firstPort) ||
  !(lastPort >= firstPort) ||
  !(maxLifeMs > 0) ||
  routes.length === 0
)
  throw new Error(
    `usage: DELAY_MS FIRST_PORT LAST_PORT MAX_LIFE_MS LISTEN=HOST:PORT..., saw ${process.argv.slice(2).join(' ')}`,
  );

let nextPort = firstPort;
const sockets = new Set<Socket>();

/** The real connection, from the next source port of the range (one in TIME_WAIT is skipped). */
function dial(
  host: string,
  port: number,
  attempts: number,
  done: (s: Socket | null) => void,
): void {
  const localPort = nextPort;
  nextPort = nextPort === lastPort ? firstPort : nextPort + 1;
  const s = connect({ host, port, localPort });
  s.setNoDelay(true);
  const onError = (err: Error & { code?: string }): void => {
    s.destroy();
    if (err.code === 'EADDRINUSE' && attempts > 1) dial(host, port, attempts - 1, done);
    else done(null);
  };
  s.once('error', onError);
  s.once('connect', () => {
    s.off('error', onError);
    done(s);
  });
}

function relay(inbound: Socket, host: string, port: number): void {
  sockets.add(inbound);
  inbound.setNoDelay(true);
  inbound.pause();
  dial(host, port, lastPort - firstPort + 1, (out) => {
    if (out === null || inbound.destroyed) {
      out?.destroy();
      inbound.destroy();
      return;
    }
    sockets.add(out);
    const closeBoth = (): void => {
      inbound.destroy();
      out.destroy();
      sockets.delete(inbound);
      sockets.delete(out);
    };
    // Timers of one duration fire in the order they were set: the bytes keep their order.
    inbound.on('data', (chunk: Buffer) => {
      setTimeout(() => {
        if (!out.destroyed) out.write(chunk);
      }, delayMs);
    });
    inbound.on('end', () => setTimeout(() => out.end(), delayMs));
    out.on('data', (chunk: Buffer) => {
      if (!inbound.destroyed) inbound.write(chunk);
    });
    out.on('end', () => inbound.end());
    inbound.on('error', closeBoth);
    out.on('error', closeBoth);
    inbound.on('close', () => setTimeout(closeBoth, delayMs));
    out.on('close', closeBoth);
    inbound.resume();
  });
}

const servers: Server[] = [];
function exit(code: number): never {
  for (const s of sockets) s.destroy();
  for (const s of servers) s.close();
  process.exit(code);
}

let listening = 0;
for (const r of routes) {
  const server = createServer((c) => relay(c, r.host, r.port));
  servers.push(server);
  server.once('error', (err) => {
    console.error(`relay port ${r.listen}: ${err.message}`);
    exit(1);
  });
  server.listen(r.listen, '127.0.0.1', () => {
    listening += 1;
    if (listening === routes.length) console.log('ready');
  });
}
process.stdin.on('end', () => exit(0));
process.stdin.on('error', () => exit(0));
process.stdin.resume();
setTimeout(() => exit(0), maxLifeMs).unref();
