#!/usr/bin/env node
// The container image's HEALTHCHECK: exits 0 when the node in this container answers
// `/readyz` with 200 (it knows a leader, has applied what it knows committed, and is not
// recovering lost data), 1 otherwise. It asks where the node serves HTTP, from
// FLOTILLA_LISTEN_CLIENT (the image sets 0.0.0.0:8001), on the loopback interface. The slim
// images carry no curl; Node's own fetch does, within a bounded time.

const timeoutMs = 3_000;

/** The URL of `/readyz` for a listen address: a wildcard host is asked on loopback. */
function readyzUrl(listenClient: string): string {
  const i = listenClient.lastIndexOf(':');
  const host = listenClient.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  const port = listenClient.slice(i + 1);
  const target =
    host === '' || host === '0.0.0.0'
      ? '127.0.0.1'
      : host === '::'
        ? '[::1]'
        : host.includes(':')
          ? `[${host}]`
          : host;
  return `http://${target}:${port}/readyz`;
}

async function check(): Promise<number> {
  const url = readyzUrl(process.env['FLOTILLA_LISTEN_CLIENT'] || '127.0.0.1:8001');
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  try {
    const res = await fetch(url, { signal: ac.signal });
    const body = await res.text();
    if (res.status === 200) return 0;
    process.stdout.write(`${url}: ${res.status} ${body}\n`);
    return 1;
  } catch (err) {
    process.stdout.write(`${url}: ${(err as Error).message}\n`);
    return 1;
  } finally {
    clearTimeout(timer);
  }
}

process.exitCode = await check();
