// Addresses written `host:port`, where an IPv6 host is in brackets (`[::1]:7001`), as in a URL.
// Every layer that reads or writes one (configuration, listeners, the peer transport, the join
// route, the health check) goes through here, so that an address one of them takes the others
// take too.

/** A host (an IPv6 one without its brackets) and a port. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

const shape = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/;

/**
 * `host:port` or `[ipv6]:port` with a port from `minPort` to 65535, or null when `s` is not
 * one. The host comes back without brackets, as `net.connect` and `server.listen` take it.
 */
export function parseHostPort(s: string, minPort = 0): HostPort | null {
  const m = shape.exec(s);
  if (m === null) return null;
  const host = m[1] ?? m[2] ?? '';
  const port = Number(m[3]);
  if (host === '' || port < minPort || port > 65_535) return null;
  if (m[1] !== undefined && !host.includes(':')) return null;
  return { host, port };
}

/**
 * The host and port of an address already checked (configuration, a member record): an
 * address that does not parse is a bug of the caller's, and throws.
 */
export function splitHostPort(s: string): HostPort {
  const a = parseHostPort(s);
  if (a === null) throw new Error(`not a host:port address: ${JSON.stringify(s)}`);
  return a;
}

/** `host:port`, with an IPv6 host in brackets. */
export function joinHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * A URL at which this host reaches a listener bound to `address`: a wildcard address (any
 * interface) is asked on loopback.
 */
export function localUrl(address: string, port: number, tls: boolean, path: string): string {
  const host =
    address === '' || address === '0.0.0.0' ? '127.0.0.1' : address === '::' ? '::1' : address;
  return `${tls ? 'https' : 'http'}://${joinHostPort(host, port)}${path}`;
}
