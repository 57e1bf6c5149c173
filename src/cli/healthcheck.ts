#!/usr/bin/env node
// The container image's HEALTHCHECK: exits 0 when the node in this container answers
// `/readyz` with 200 (it knows a leader, has applied what it knows committed, and is not
// recovering lost data), 1 otherwise. It asks where the node said it serves: in the file
// FLOTILLA_SERVING_FILE names (the image sets it; the node writes it wherever its data
// directory is), else in `serving.json` in FLOTILLA_DATA_DIR; over TLS with the node's own
// files when its client port speaks TLS (the CA checks the node's chain; the node's
// certificate is shown to a port that asks for one). Before the node first listened, at
// FLOTILLA_LISTEN_CLIENT (the image sets 0.0.0.0:8001) on loopback, over HTTP.
// The slim images carry no curl; Node's own client does, within a bounded time.

import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { localUrl, parseHostPort } from '../base/host-port.js';
import { readServing, readServingFile, type Serving } from '../server/serving-file.js';

const timeoutMs = 3_000;

/**
 * Where to ask: what the node wrote, else the listen address from the environment; a string
 * when neither says.
 */
function target(): Serving | string {
  const file = process.env['FLOTILLA_SERVING_FILE'];
  const dir = process.env['FLOTILLA_DATA_DIR'];
  const written =
    (file === undefined || file === '' ? null : readServingFile(file)) ??
    (dir === undefined || dir === '' ? null : readServing(dir));
  if (written !== null) return written;
  const listen = process.env['FLOTILLA_LISTEN_CLIENT'] || '127.0.0.1:8001';
  const a = parseHostPort(listen);
  if (a === null) return `FLOTILLA_LISTEN_CLIENT is not host:port: ${JSON.stringify(listen)}`;
  return { readyz: localUrl(a.host, a.port, false, '/readyz'), tls: null };
}

function check(): Promise<number> {
  const t = target();
  if (typeof t === 'string') {
    process.stdout.write(`${t}\n`);
    return Promise.resolve(1);
  }
  const say = (what: string): number => {
    process.stdout.write(`${t.readyz}: ${what}\n`);
    return 1;
  };
  return new Promise<number>((resolve) => {
    let req;
    try {
      req =
        t.tls === null
          ? httpRequest(t.readyz, { timeout: timeoutMs })
          : httpsRequest(t.readyz, {
              timeout: timeoutMs,
              ca: readFileSync(t.tls.caFile),
              cert: readFileSync(t.tls.certFile),
              key: readFileSync(t.tls.keyFile),
              // Asked on loopback, which the node's certificate need not name: its chain to
              // the cluster's CA is still checked.
              checkServerIdentity: () => undefined,
            });
    } catch (err) {
      resolve(say((err as Error).message));
      return;
    }
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err) => resolve(say(err.message)));
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve(res.statusCode === 200 ? 0 : say(`${res.statusCode} ${body}`)));
      res.on('error', (err) => resolve(say(err.message)));
    });
    req.end();
  });
}

process.exitCode = await check();
